"""``auth.type: ldap`` for real: a facility directory (OpenLDAP's slapd, tests/hub/ldap_server.py),
the hub configured the way a beamline would (look-up with a service account whose password is in a
file, one allowed group), logins through the real login form in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import pwd
from concurrent.futures import ThreadPoolExecutor

import pytest
from hubtools import IS_ROOT, Hub, HubUser, _cmdline, _pids_of_uid, browser_login
from ldap_server import PEOPLE, LdapServer, LdapUser, TestCertificates, group_dn

GROUP = "speckle-users"
ADA = LdapUser("ada", "Ada-pw-1815", (GROUP,))
ADMIN = LdapUser("hubadmin", "Admin-pw-42", (GROUP,))
BOB = LdapUser("bob", "Bob-pw-1979")  # in the directory, not in the group


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    with LdapServer(tmp_path_factory.mktemp("ldap"), [ADA, ADMIN, BOB]) as server:
        yield server


def ldap_auth_settings(server: LdapServer, password_file) -> dict:
    """What a beamline writes in settings.yaml's auth section (lookup with a service account)."""
    return {
        "type": "ldap", "admin_users": [ADMIN.uid], "allowed_groups": [group_dn(GROUP)],
        "ldap": {
            "server_address": "127.0.0.1", "server_port": server.port, "tls_strategy": "insecure",
            "lookup_dn": True, "user_search_base": PEOPLE, "user_attribute": "uid",
            "lookup_dn_search_user": server.service_dn, "lookup_dn_search_password_file": str(password_file),
        },
    }


@pytest.fixture(scope="module")
def ldap_hub(tmp_path_factory, directory):
    workdir = tmp_path_factory.mktemp("hub-ldap")
    secret = workdir / "ldap-reader-password"
    secret.write_text(directory.service_password + "\n")
    secret.chmod(0o600)
    hub = Hub(workdir, settings={
        "auth": ldap_auth_settings(directory, secret),
        "users": {"start_at_login": False}, "dashboards": {"preheat": []},
    })
    try:
        hub.start()
        hub.take_admin(hub.login(ADMIN.uid, ADMIN.password))
        yield hub
    finally:
        hub.stop()


def refused(page, hub: Hub, name: str, password: str) -> str:
    """Submit the login form; return the form's error message (the page must stay the login page)."""
    page.goto(hub.url + "hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_selector(".login_error", timeout=15000)
    assert "/hub/login" in page.url
    return page.inner_text(".login_error")


def test_directory_user_logs_in_with_the_form(ldap_hub, browser):
    page = browser.new_page()
    try:
        browser_login(page, ldap_hub, HubUser(ldap_hub, ADA.uid, ADA.password))
        assert page.evaluate("window.jhdata.user") == ADA.uid
        assert page.locator(".speckle-tile").count() > 0
    finally:
        page.close()
    model = ldap_hub.api("GET", f"users/{ADA.uid}").json()
    assert model["name"] == ADA.uid and not model["admin"]
    assert ldap_hub.api("GET", f"users/{ADMIN.uid}").json()["admin"]


def test_wrong_password_and_user_outside_the_group_are_refused(ldap_hub, directory, browser):
    import ldap3

    # bob's password is right (the directory lets him bind): only the group keeps him out
    ldap3.Connection(ldap3.Server("127.0.0.1", port=directory.port), user=BOB.dn, password=BOB.password,
                     auto_bind=True).unbind()
    page = browser.new_page()
    try:
        assert refused(page, ldap_hub, ADA.uid, "not-" + ADA.password) == "Invalid username or password"
        assert refused(page, ldap_hub, BOB.uid, BOB.password) == "Invalid username or password"
        assert refused(page, ldap_hub, "nobody", "whatever-1") == "Invalid username or password"
    finally:
        page.close()
    assert ldap_hub.api("GET", f"users/{BOB.uid}").status_code == 404


@pytest.mark.skipif(not IS_ROOT, reason="separate unix accounts need root (single-account mode otherwise)")
def test_directory_user_server_runs_as_its_own_unix_account(ldap_hub):
    user = ldap_hub.login(ADA.uid, ADA.password)  # the directory login once more (requests)
    ldap_hub.users.append(user)  # its unix account is removed with the hub
    assert user.unix_name == "sptest-ada"
    ldap_hub.start_server(ADA.uid, {"profile": "lab"}, timeout=90)
    account = pwd.getpwnam(user.unix_name)
    assert account.pw_uid >= 1000 and account.pw_dir.startswith(str(ldap_hub.home_root))
    servers = [p for p in _pids_of_uid(account.pw_uid) if "singleuser" in _cmdline(p)]
    assert servers, f"no user server runs as {user.unix_name}"
    assert user.get("api/status").status_code == 200
    user.stop()


def _authenticator(tmp_path, ldap: dict):
    """``login(name, password)`` through an LDAPAuthenticator configured by speckle's settings
    (``auth.ldap`` = ``ldap``, the group of ADA allowed); None when refused."""
    from speckle_hub import settings
    from traitlets.config import Config

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "settings.yaml"
    path.write_text(json.dumps({"auth": {"type": "ldap", "allowed_groups": [group_dn(GROUP)],
                                         "ldap": ldap}}))
    c = Config()
    settings.apply(c, settings.load(path))
    from ldapauthenticator import LDAPAuthenticator

    auth = LDAPAuthenticator(config=c)

    def login(name, password):
        coro = auth.get_authenticated_user(None, {"username": name, "password": password})
        with ThreadPoolExecutor(1) as pool:  # its own event loop (Playwright may hold this thread's)
            return pool.submit(asyncio.run, coro).result(30)

    return login


def test_bind_dn_template_settings_authenticate_against_the_directory(directory, tmp_path):
    """The other way a beamline configures it: the DN built from the name (no service account)."""
    login = _authenticator(tmp_path, {
        "server_address": "127.0.0.1", "server_port": directory.port, "tls_strategy": "insecure",
        "bind_dn_template": [f"uid={{username}},{PEOPLE}"]})
    assert login(ADA.uid, ADA.password)["name"] == ADA.uid
    assert login(ADA.uid, "wrong") is None
    assert login(BOB.uid, BOB.password) is None


def test_the_directory_certificate_is_verified(tmp_path):
    """Passwords go only to the real directory: with StartTLS (LDAPAuthenticator's default
    before_bind) the hub verifies the server's certificate, against auth.ldap.ca_certs_file or
    the system's CAs (which do not know this test CA). ldap3 alone would accept any."""
    certs = TestCertificates.make(tmp_path / "certs")
    with LdapServer(tmp_path / "tls-directory", [ADA, BOB], tls=certs) as server:
        ldap = {"server_address": "127.0.0.1", "server_port": server.port,
                "bind_dn_template": [f"uid={{username}},{PEOPLE}"]}
        trusting = _authenticator(tmp_path / "a", {**ldap, "ca_certs_file": str(certs.ca)})
        assert trusting(ADA.uid, ADA.password)["name"] == ADA.uid
        assert trusting(BOB.uid, BOB.password) is None  # over TLS, the group still counts
        untrusting = _authenticator(tmp_path / "b", ldap)
        try:
            answer = untrusting(ADA.uid, ADA.password)
        except Exception as e:  # noqa: BLE001 - ldap3 raises on a failed handshake
            answer = None
            assert "certificate" in str(e).lower() or "ssl" in type(e).__name__.lower() or \
                "tls" in str(e).lower(), repr(e)
        assert answer is None  # an unknown certificate: no password was sent, nobody logged in


@pytest.mark.parametrize("ldap, groups, needle", [
    ({"server_address": "ldap.example"}, [], "auth.ldap needs bind_dn_template"),
    ({"server_address": "ldap.example", "lookup_dn": True, "user_attribute": "uid"}, [],
     "auth.ldap.lookup_dn needs user_search_base"),
    ({"server_address": "ldap.example", "bind_dn_template": ["uid={username},ou=people,dc=x"]}, ["beamline"],
     "auth.allowed_groups with auth.type ldap are group DNs, e.g. cn=beamline,ou=groups"),
    ({"server_address": "ldap.example", "bind_dn_template": ["uid={username},ou=people,dc=x"],
      "ca_certs_file": "/nonexistent/facility-ca.pem"}, [],
     "auth.ldap.ca_certs_file /nonexistent/facility-ca.pem cannot be read"),
])
def test_ldap_settings_mistakes_are_named(tmp_path, ldap, groups, needle):
    from speckle_hub import settings

    path = tmp_path / "settings.yaml"
    path.write_text(json.dumps({"auth": {"type": "ldap", "allow_all": True, "allowed_groups": groups, "ldap": ldap}}))
    with pytest.raises(settings.SettingsError) as err:
        settings.load(path)
    assert needle in str(err.value)
