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
from ldap_server import PEOPLE, LdapServer, LdapUser, group_dn

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


def test_bind_dn_template_settings_authenticate_against_the_directory(directory, tmp_path):
    """The other way a beamline configures it: the DN built from the name (no service account)."""
    from speckle_hub import settings
    from traitlets.config import Config

    path = tmp_path / "settings.yaml"
    path.write_text(json.dumps({"auth": {
        "type": "ldap", "allowed_groups": [group_dn(GROUP)],
        "ldap": {"server_address": "127.0.0.1", "server_port": directory.port, "tls_strategy": "insecure",
                 "bind_dn_template": [f"uid={{username}},{PEOPLE}"]}}}))
    s = settings.load(path)
    c = Config()
    settings.apply(c, s)
    from ldapauthenticator import LDAPAuthenticator

    auth = LDAPAuthenticator(config=c)

    def login(name, password):
        coro = auth.get_authenticated_user(None, {"username": name, "password": password})
        with ThreadPoolExecutor(1) as pool:  # its own event loop (Playwright may hold this thread's)
            return pool.submit(asyncio.run, coro).result(30)

    assert login(ADA.uid, ADA.password)["name"] == ADA.uid
    assert login(ADA.uid, "wrong") is None
    assert login(BOB.uid, BOB.password) is None


@pytest.mark.parametrize("ldap, groups, needle", [
    ({"server_address": "ldap.example"}, [], "auth.ldap needs bind_dn_template"),
    ({"server_address": "ldap.example", "lookup_dn": True, "user_attribute": "uid"}, [],
     "auth.ldap.lookup_dn needs user_search_base"),
    ({"server_address": "ldap.example", "bind_dn_template": ["uid={username},ou=people,dc=x"]}, ["beamline"],
     "auth.allowed_groups with auth.type ldap are group DNs, e.g. cn=beamline,ou=groups"),
])
def test_ldap_settings_mistakes_are_named(tmp_path, ldap, groups, needle):
    from speckle_hub import settings

    path = tmp_path / "settings.yaml"
    path.write_text(json.dumps({"auth": {"type": "ldap", "allow_all": True, "allowed_groups": groups, "ldap": ldap}}))
    with pytest.raises(settings.SettingsError) as err:
        settings.load(path)
    assert needle in str(err.value)
