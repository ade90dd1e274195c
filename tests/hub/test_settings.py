"""settings.yaml: the schema, clear errors, defaults, and what it turns into."""

from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from speckle_hub import settings
from speckle_hub.settings import SettingsError


def write(tmp_path, data) -> Path:
    p = tmp_path / "settings.yaml"
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_the_shipped_file_is_valid_and_says_the_defaults():
    raw = yaml.safe_load(settings.DEFAULT_SETTINGS_PATH.read_text())
    settings.validate(raw)
    s = settings.load(settings.DEFAULT_SETTINGS_PATH)
    for section, values in settings.DEFAULTS.items():
        for key, value in values.items():
            assert s[section][key] == value, f"settings.yaml {section}.{key} differs from DEFAULTS"


def test_one_upload_quota_default_for_the_hub_and_the_servers():
    from speckle.site import DEFAULT_UPLOAD_QUOTA_BYTES

    assert settings.DEFAULTS["data"]["upload_quota_gb"] * 1e9 == DEFAULT_UPLOAD_QUOTA_BYTES


def test_an_empty_file_takes_every_default(tmp_path, monkeypatch):
    monkeypatch.delenv("SPECKLE_HUB_STATE", raising=False)
    s = settings.load(write(tmp_path, ""))
    assert s["hub"]["bind_address"] == "127.0.0.1" and s["hub"]["port"] == 8000
    assert s["auth"]["type"] == "native"
    assert s["_state_dir"] == str(settings.DEFAULT_STATE_DIR)


def test_state_dir_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECKLE_HUB_STATE", str(tmp_path / "st"))
    assert settings.load(write(tmp_path, {"hub": {"state_dir": "/elsewhere"}}))["_state_dir"] == str(tmp_path / "st")


@pytest.mark.parametrize("data, needle", [
    ({"hub": {"prot": 8000}}, "hub: Additional properties are not allowed ('prot' was unexpected); allowed here:"),
    ({"hub": {"port": 70000}}, "hub.port: 70000 is greater than the maximum of 65535"),
    ({"auth": {"type": "ldpa"}}, "auth.type: 'ldpa' is not one of ['native', 'pam', 'ldap', 'oauth']"),
    ({"gpus": {"policy": "all"}}, "gpus.policy: 'all' is not one of"),
    ({"data": {"beamline_dirs": ["relative/path"]}}, "data.beamline_dirs.0: 'relative/path' does not match"),
    ({"culling": {"server_idle_timeout": -1}}, "culling.server_idle_timeout: -1 is less than the minimum of 0"),
    ({"hub": {"tls": {"cert": "/nonexistent.pem"}}}, "hub.tls: give both cert and key"),
    ({"hub": {"allowed_networks": ["10.0.5/24x"]}}, "hub.allowed_networks: not a network"),
    ({"hub": {"internal_port": 8000}}, "must differ"),
    ({"auth": {"type": "pam"}}, "say who may log in"),
    ({"auth": {"type": "oauth", "allow_all": True}}, "auth.oauth needs client_id"),
    ({"data": {"upload_dir": "../elsewhere"}}, "data.upload_dir must be a folder inside the home"),
    ({"dashboards": {"preheat": ["../x.ipynb"]}}, "dashboards.preheat.0: '../x.ipynb' does not match"),
    ({"monitor": {"folders": ["/nonexistent/beamline"]}}, "monitor: the folder to watch /nonexistent/beamline does not exist"),
    ({"monitor": {"watch": "inotfy"}}, "monitor.watch: 'inotfy' is not one of"),
    ({"monitor": {"cluster": {"type": "gateway"}}}, "monitor.cluster.type gateway needs monitor.cluster.address"),
    ({"monitor": {"cluster": {"memory": "lots"}}}, "monitor.cluster.memory"),
    ({"monitor": {"internal_port": 8000}}, "monitor.internal_port must differ"),
    ({"monitor": {"folders": ["/tmp"], "results_dir": "/tmp/results"}}, "must not contain one another"),
])
def test_mistakes_are_named_with_their_key(tmp_path, data, needle):
    with pytest.raises(SettingsError) as err:
        settings.load(write(tmp_path, data))
    assert needle in str(err.value)
    assert str(tmp_path / "settings.yaml") in str(err.value)


def test_every_problem_is_listed_at_once(tmp_path):
    with pytest.raises(SettingsError) as err:
        settings.load(write(tmp_path, {"hub": {"port": "eighty"}, "gpus": {"policy": "x"}}))
    assert len(str(err.value).splitlines()) == 2


def test_broken_yaml_and_missing_file(tmp_path):
    with pytest.raises(SettingsError, match="not valid YAML"):
        settings.load(write(tmp_path, "hub: [unclosed"))
    with pytest.raises(SettingsError, match="cannot read the settings file"):
        settings.load(tmp_path / "absent.yaml")
    with pytest.raises(SettingsError, match="must be a mapping"):
        settings.load(write(tmp_path, "- a\n- b\n"))


def _applied(tmp_path, data):
    s = settings.load(write(tmp_path, data))
    c = Config()
    settings.apply(c, s)
    return s, c


def test_apply_native_binds_and_culls(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECKLE_HUB_STATE", str(tmp_path / "state"))
    s, c = _applied(tmp_path, {"hub": {"bind_address": "10.1.2.3", "port": 8443},
                               "culling": {"server_idle_timeout": 1800}})
    assert c.JupyterHub.ip == "10.1.2.3" and c.JupyterHub.port == 8443
    assert c.JupyterHub.hub_ip == "127.0.0.1"
    assert c.JupyterHub.authenticator_class == "speckle_hub.auth.SpeckleNativeAuthenticator"
    assert c.Authenticator.allow_all is True and c.NativeAuthenticator.open_signup is False
    assert c.Authenticator.admin_users == {"admin"}
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path / 'state' / 'jupyterhub.sqlite'}"
    culler = c.JupyterHub.services[0]
    assert culler["name"] == "idle-culler" and "--timeout=1800" in culler["command"]
    assert {"delete:servers", "list:users"} <= set(c.JupyterHub.load_roles[0]["scopes"])


def test_apply_without_culling_and_monitor_has_no_service(tmp_path):
    _, c = _applied(tmp_path, {"culling": {"server_idle_timeout": 0}, "monitor": {"enabled": False}})
    assert c.JupyterHub.services == [] and c.JupyterHub.load_roles == []


def test_apply_the_monitor_service(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECKLE_HUB_STATE", str(tmp_path / "state"))
    data = tmp_path / "beamline"
    data.mkdir()
    s, c = _applied(tmp_path, {"data": {"beamline_dirs": [str(data)]},
                               "monitor": {"internal_port": 8099, "settle_seconds": 1.5,
                                           "cluster": {"type": "local", "workers": 2}}})
    service = {x["name"]: x for x in c.JupyterHub.services}["beamtime"]
    assert service["url"] == "http://127.0.0.1:8099"
    import json
    config = json.loads(service["environment"]["SPECKLE_MONITOR_CONFIG"])
    assert config["folders"] == [str(data)] and config["settle_seconds"] == 1.5
    assert config["results"] == str(tmp_path / "state-beamtime" / "results")
    assert config["cluster"]["workers"] == 2
    from speckle.monitor import MonitorConfig
    assert MonitorConfig.from_dict(config).folders == (str(data),)  # the service can read it
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert "access:services!service=beamtime" in roles["user"]["scopes"]
    assert "self" in roles["user"]["scopes"]  # users keep their own rights
    assert "access:services!service=beamtime" in roles["server"]["scopes"]
    spawner = c.SpeckleSpawner.speckle_settings["monitor"]
    assert spawner["url"] == "http://127.0.0.1:8099/services/beamtime/"
    assert not (tmp_path / "state-beamtime").exists()  # apply only configures (launch.py makes folders)


def test_apply_tls_and_pam(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    s, c = _applied(tmp_path, {"hub": {"tls": {"cert": str(cert), "key": str(key)}},
                               "auth": {"type": "pam", "allowed_groups": ["beamline"]}})
    assert c.JupyterHub.ssl_cert == str(cert) and c.JupyterHub.ssl_key == str(key)
    assert settings.public_url(s).startswith("https://")
    assert c.JupyterHub.authenticator_class == "pam"
    assert c.PAMAuthenticator.allowed_groups == {"beamline"}
    assert "root" in c.Authenticator.blocked_users


def test_apply_ldap_or_oauth_needs_its_package(tmp_path):
    import importlib.util

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    data = {"auth": {"type": "oauth", "allow_all": True, "oauth": {
        "client_id": "hub", "client_secret_file": str(secret),
        "oauth_callback_url": "https://hub.example/hub/oauth_callback",
        "authorize_url": "https://sso.example/auth", "token_url": "https://sso.example/token",
        "userdata_url": "https://sso.example/userinfo", "login_service": "Facility SSO"}}}
    if importlib.util.find_spec("oauthenticator") is None:
        with pytest.raises(SettingsError, match="pip install oauthenticator"):
            _applied(tmp_path, data)
    else:
        _, c = _applied(tmp_path, data)
        assert c.GenericOAuthenticator.client_secret == "s3cret"
        assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"


def test_firewall_note_for_allowed_networks(tmp_path):
    s = settings.load(write(tmp_path, {"hub": {"allowed_networks": ["10.0.5.0/24", "fd00::/8"]}}))
    note = settings.firewall_note(s)
    assert "ip saddr { 10.0.5.0/24 } accept" in note and "ip6 saddr { fd00::/8 } accept" in note
    assert note.strip().endswith("tcp dport 8000 drop")
    assert settings.firewall_note(settings.load(write(tmp_path, {}))) is None
