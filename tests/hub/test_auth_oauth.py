"""``auth.type: oauth`` for real: the hub's GenericOAuthenticator against an OAuth2 provider
(tests/hub/oauth_provider.py, a test-only stand-in for a facility's single sign-on), configured as a
beamline would (client secret in a file, groups from the userinfo claim), clicked through in
headless Chromium."""

from __future__ import annotations

import secrets

import pytest
from hubtools import Hub
from oauth_provider import OAuthAccount, OAuthProvider

GROUP = "beamline-7"
ADA = OAuthAccount("ada", "Ada-sso-1815", (GROUP, "staff"))
ADMIN = OAuthAccount("hubadmin", "Admin-sso-42", ("staff",))  # allowed as an admin, not by group
EVE = OAuthAccount("eve", "Eve-sso-2001", ("staff",))  # known to the SSO, not allowed on this hub
CLIENT_ID = "speckle-hub"


@pytest.fixture(scope="module")
def oauth_hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hub-oauth")
    hub = Hub(workdir)
    client_secret = secrets.token_urlsafe(16)
    secret_file = workdir / "oauth-client-secret"
    secret_file.write_text(client_secret + "\n")
    secret_file.chmod(0o600)
    callback = f"{hub.url}hub/oauth_callback"
    with OAuthProvider(CLIENT_ID, client_secret, callback, [ADA, ADMIN, EVE]) as provider:
        hub.settings = {
            "auth": {
                "type": "oauth", "admin_users": [ADMIN.username], "allowed_groups": [GROUP],
                "oauth": {
                    "login_service": "Facility SSO", "client_id": CLIENT_ID,
                    "client_secret_file": str(secret_file), "oauth_callback_url": callback,
                    "authorize_url": f"{provider.url}/authorize", "token_url": f"{provider.url}/token",
                    "userdata_url": f"{provider.url}/userinfo", "username_claim": "preferred_username",
                    "scope": ["openid", "profile"], "claim_groups_key": "groups",
                },
            },
            "users": {"start_at_login": False}, "dashboards": {"preheat": []},
        }
        hub.provider = provider
        try:
            hub.start()
            yield hub
        finally:
            hub.stop()


def sign_in(page, hub: Hub, account: OAuthAccount) -> None:
    """Click the hub's "Sign in with Facility SSO", log in at the provider (waits for its answer)."""
    page.goto(hub.url + "hub/login")
    page.click("text=Sign in with Facility SSO")
    page.wait_for_url(hub.provider.url + "/authorize**", timeout=15000)
    page.fill("#sso-username", account.username)
    page.fill("#sso-password", account.password)
    with page.expect_navigation(url=lambda u: u.startswith(hub.url), timeout=15000):
        page.click("#sso-submit")


def test_sso_user_signs_in_and_reaches_the_landing_page(oauth_hub, browser):
    page = browser.new_page()
    try:
        sign_in(page, oauth_hub, ADA)
        page.wait_for_url("**/hub/home", timeout=15000)
        assert page.evaluate("window.jhdata.user") == ADA.username
        assert page.locator(".speckle-tile").count() > 0
    finally:
        page.close()
    # the whole authorization-code exchange happened, in order
    log = oauth_hub.provider.log
    assert log.index("POST /token") < log.index("GET /userinfo")
    assert not oauth_hub.provider.codes  # the code was used (once)


def test_admin_from_the_settings_and_groups_from_the_claim(oauth_hub, browser):
    page = browser.new_page()
    try:
        sign_in(page, oauth_hub, ADMIN)
        page.wait_for_url("**/hub/home", timeout=15000)
        cookies = {c["name"]: c["value"] for c in page.context.cookies() if c["name"] == "_xsrf"}
        r = page.request.get(oauth_hub.url + f"hub/api/users/{ADA.username}",
                             headers={"X-XSRFToken": cookies.get("_xsrf", "")})
        assert r.status == 200, r.text()
        assert GROUP in r.json()["groups"]  # manage_groups: the hub's groups follow the claim
        me = page.request.get(oauth_hub.url + "hub/api/user", headers={"X-XSRFToken": cookies.get("_xsrf", "")})
        assert me.json()["admin"] is True
    finally:
        page.close()


def test_sso_user_the_settings_do_not_allow_is_refused(oauth_hub, browser):
    page = browser.new_page()
    try:
        sign_in(page, oauth_hub, EVE)
        body = page.inner_text("body")
        assert "403" in body and "not currently authorized to use this hub" in body
        assert "/hub/home" not in page.url
        r = page.request.get(oauth_hub.url + "hub/home", max_redirects=0)
        assert r.status == 302 and "/hub/login" in r.headers["location"]  # not logged in
    finally:
        page.close()


def test_wrong_sso_password_stays_at_the_provider(oauth_hub, browser):
    page = browser.new_page()
    try:
        page.goto(oauth_hub.url + "hub/login")
        page.click("text=Sign in with Facility SSO")
        page.fill("#sso-username", ADA.username)
        page.fill("#sso-password", "wrong")
        page.click("#sso-submit")
        page.wait_for_selector("#sso-error:has-text('Wrong user name or password')", timeout=15000)
        assert page.url.startswith(oauth_hub.provider.url)
    finally:
        page.close()


def test_allowed_groups_without_the_groups_claim_is_a_settings_error(tmp_path):
    """Without claim_groups_key GenericOAuthenticator never sees groups: everyone would be refused."""
    import json

    from speckle_hub import settings

    path = tmp_path / "settings.yaml"
    path.write_text(json.dumps({"auth": {"type": "oauth", "allowed_groups": [GROUP], "oauth": {
        "client_id": CLIENT_ID, "client_secret_file": "/x",
        "oauth_callback_url": "https://hub.example/hub/oauth_callback",
        "authorize_url": "https://sso.example/auth", "token_url": "https://sso.example/token",
        "userdata_url": "https://sso.example/userinfo"}}}))
    with pytest.raises(settings.SettingsError) as err:
        settings.load(path)
    assert "auth.allowed_groups with auth.type oauth needs auth.oauth.claim_groups_key" in str(err.value)
