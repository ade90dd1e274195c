"""Every route of the hub, the API, a user's server (Jupyter, Voila, the speckle extension) and the
beamtime monitor, crawled without a login and as another user: each refused. Every
state-changing endpoint refuses a cookie-authenticated request without the XSRF token (and takes
it with the token); cookies are HttpOnly and SameSite; no page puts a token in a URL."""

import re

import pytest
import requests
import websocket

from hubtools import running_hub

PUBLIC = {"hub/login", "hub/signup", "hub/health", "hub/api/"}


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """A hub with the monitor on, ``owner`` with a running Quick-check server and a kernel,
    ``other`` logged in (no server)."""
    with running_hub(tmp_path_factory.mktemp("speckle-hub-routes"),
                     settings={"monitor": {"enabled": True}}) as hub:
        owner, other = hub.new_user("own"), hub.new_user("oth")
        owner.start("quick")
        kernel = owner.post("api/kernels", json={"name": "python3"}).json()["id"]
        yield hub, owner, other, kernel


def _routes(owner: str, kernel: str) -> dict[str, str]:
    """route -> who may read it: "public", "user" (any hub user), "owner", "admin"."""
    routes = {r: "public" for r in PUBLIC}
    routes.update({r: "user" for r in (
        "hub/home", "hub/spawn", "hub/token", "hub/change-password", "hub/api/user",
        "services/beamtime/", "services/beamtime/api/datasets")})
    routes.update({r: "admin" for r in (
        "hub/admin", "hub/authorize", f"hub/change-password/{owner}", "hub/metrics",
        "hub/api/info", "hub/api/users", "hub/api/groups", "hub/api/services", "hub/api/proxy")})
    server = f"user/{owner}/"
    routes.update({r: "owner" for r in (
        f"hub/spawn/{owner}", f"hub/user/{owner}/", f"hub/api/users/{owner}",
        f"hub/api/users/{owner}/tokens", f"hub/api/users/{owner}/server",
        server + "lab", server + "tree", server + "api/contents", server + "api/kernels",
        server + "api/sessions", server + "api/terminals", server + f"api/kernels/{kernel}",
        server + "files/dashboards/xpcs_quick_check.ipynb",
        server + "voila/render/dashboards/xpcs_quick_check.ipynb",
        server + "speckle/api/status", server + "speckle/api/data",
        server + "speckle/api/data?root=uploads", server + f"speckle/api/kernels/{kernel}/end")})
    return routes


def _refused(r: requests.Response, hub) -> bool:
    """Refused: an error status, or a redirect chain that ends on the login form."""
    if r.status_code in (401, 403, 404):
        return True
    return r.url.split("?")[0] == hub.url + "hub/login" and 'id="login_submit"' in r.text


def test_every_route_refuses_strangers_and_other_users(crawl):
    hub, owner, other, kernel = crawl
    anonymous = requests.Session()
    other.session.get(hub.url + "hub/home")
    for route, who in _routes(owner.name, kernel).items():
        a = anonymous.get(hub.url + route, timeout=30)
        b = other.session.get(hub.url + route, timeout=30)
        if who == "public":
            assert a.status_code == b.status_code == 200, route
            continue
        assert _refused(a, hub), (route, "anonymous", a.status_code, a.url)
        if who == "user":
            assert b.status_code == 200, (route, "a hub user", b.status_code)
            continue
        assert _refused(b, hub), (route, "another user", b.status_code, b.url)
        if who == "owner":  # the control: the owner does get it (the end of a kernel never dead: 404)
            assert owner.session.get(hub.url + route, timeout=30).status_code in (200, 404), route
    # nor through the API with another user's token, nor on the kernel's websocket
    token = other.api_token()
    for route in (f"hub/api/users/{owner.name}", f"user/{owner.name}/api/contents",
                  f"user/{owner.name}/speckle/api/status"):
        r = requests.get(hub.url + route, headers={"Authorization": f"token {token}"}, timeout=30)
        assert r.status_code in (403, 404), (route, r.status_code)
    url = owner.server_url.replace("http://", "ws://") + f"api/kernels/{kernel}/channels"
    for header in ([], [f"Authorization: token {token}"]):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, header=header, timeout=30)
        assert refused.value.status_code in (302, 401, 403)


def test_state_changing_endpoints_need_the_xsrf_token(crawl):
    hub, owner, other, kernel = crawl
    owner.get("api/contents")  # logged in to the server: its cookie and _xsrf
    server = owner.server_url
    for method, url, body in (
            ("POST", hub.url + f"hub/api/users/{owner.name}/tokens", {"note": "x"}),
            ("DELETE", hub.url + f"hub/api/users/{owner.name}/server", None),
            ("POST", server + "api/kernels", {"name": "python3"}),
            ("DELETE", server + f"api/kernels/{kernel}", None),
            ("PUT", server + "api/contents/x.txt", {"type": "file", "format": "text", "content": "x"}),
            ("POST", server + "speckle/api/uploads", {"name": "a.npy", "size": 10}),
            ("POST", hub.url + "services/beamtime/api/templates", {"folder": "/tmp", "template": {}})):
        r = owner.session.request(method, url, json=body, timeout=30, allow_redirects=False)
        assert r.status_code == 403, (method, url, r.status_code, r.text[:200])
        assert "xsrf" in r.text.lower() or "beamtime" in url, (method, url, r.text[:200])
    # the same requests with the token go through (the monitor's: refused for its content)
    r = owner.post("speckle/api/uploads", json={"name": "a.npy", "size": 10})
    assert r.status_code == 201, r.text
    page = owner.session.get(hub.url + "services/beamtime/", timeout=30).text
    token = re.search(r'data-xsrf="([^"]+)"', page).group(1)
    r = owner.session.post(hub.url + "services/beamtime/api/templates", timeout=30,
                           json={"folder": "/tmp", "template": {}}, headers={"X-XSRFToken": token})
    assert r.status_code == 400 and "not a folder the monitor watches" in r.text, r.text
    r = owner.session.post(hub.url + f"hub/api/users/{owner.name}/tokens", json={"note": "x"},
                           headers={"X-XSRFToken": owner.xsrf}, timeout=30)
    assert r.status_code == 201
    # the login and sign-up forms too
    s = requests.Session()
    s.get(hub.url + "hub/login")
    r = s.post(hub.url + "hub/login", data={"username": owner.name, "password": owner.password},
               allow_redirects=False, timeout=30)
    assert r.status_code == 403


def test_approving_an_account_is_not_a_plain_link(crawl, browser, browser_login):
    """/hub/authorize/<name> changes an account on GET: refused from another site's link or
    image, taken from the hub's own page (a real browser pressing the button)."""
    hub, owner, other, kernel = crawl
    hub.signup("pending1", "a-long-passphrase-9").raise_for_status()
    admin = hub.admin
    for headers in ({}, {"Referer": "https://evil.example/page"}, {"Sec-Fetch-Site": "cross-site"}):
        r = admin.session.get(hub.url + "hub/authorize/pending1", headers=headers, timeout=30)
        assert r.status_code == 403, headers
        r = admin.session.get(hub.url + "hub/discard/pending1", headers=headers, timeout=30)
        assert r.status_code == 403, headers
    assert admin.session.get(hub.url + "hub/authorize/nobody-here",
                             headers={"Referer": hub.url + "hub/authorize"}).status_code == 404
    context = browser.new_context()
    try:
        page = context.new_page()
        browser_login(page, hub, admin)
        page.goto(hub.url + "hub/authorize")
        page.click("a[href$='authorize/pending1']")
        page.wait_for_url("**/hub/authorize**")
    finally:
        context.close()
    user = hub.login("pending1", "a-long-passphrase-9")  # approved: it logs in
    assert user.session.get(hub.url + "hub/home").status_code == 200


def test_cookies_are_httponly_and_samesite_and_no_token_is_in_a_url(crawl):
    hub, owner, other, kernel = crawl
    s = requests.Session()
    s.get(hub.url + "hub/login")
    r = s.post(hub.url + "hub/login", allow_redirects=False, timeout=30,
               data={"username": other.name, "password": other.password, "_xsrf": s.cookies["_xsrf"]})
    cookies = r.raw.headers.getlist("Set-Cookie")
    login = [c for c in cookies if c.startswith(("jupyterhub-hub-login=", "jupyterhub-session-id="))]
    assert len(login) == 2
    for cookie in login:
        flags = {f.strip().lower() for f in cookie.split(";")}
        assert "httponly" in flags and any(f.startswith("samesite=") for f in flags), cookie
        assert "secure" not in flags  # plain http on loopback; with hub.tls the hub marks them Secure
    server_cookies = [c for c in owner.session.cookies if c.name.startswith("jupyterhub-user-")]
    assert server_cookies and all(c.has_nonstandard_attr("HttpOnly") for c in server_cookies)
    assert all(c.get_nonstandard_attr("SameSite") == "Lax" for c in server_cookies)
    for url in (hub.url + "hub/home", owner.dashboard_url(), hub.url + "services/beamtime/"):
        html = owner.session.get(url, timeout=60).text
        assert not re.search(r"[?&](token|access_token)=", html), url
        config = re.search(r'"token":\s*"([^"]*)"', html)
        assert config is None or config.group(1) == "", url
