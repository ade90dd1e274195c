"""Load, validate and apply ``hub_config/settings.yaml`` (the one file a beamline edits).

``load()`` reads the YAML file, checks it against ``settings_schema.json`` and fills in the
defaults; a wrong key or value raises :class:`SettingsError` with one line per problem that names
the key (``auth.type: 'ldpa' is not one of ...``). ``apply(c, settings)`` turns the settings into
JupyterHub configuration; ``jupyterhub_config.py`` calls both.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import ssl
import sys
from pathlib import Path

from speckle.site import DEFAULT_UPLOAD_QUOTA_BYTES

HERE = Path(__file__).resolve().parent
HUB_CONFIG = HERE.parent
REPO = HUB_CONFIG.parent
SCHEMA_PATH = HERE / "settings_schema.json"
DEFAULT_SETTINGS_PATH = HUB_CONFIG / "settings.yaml"
DEFAULT_STATE_DIR = HUB_CONFIG / "state"
PROXY_BIN = HUB_CONFIG / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
TEMPLATES = HERE / "templates"
NOTEBOOKS = REPO / "notebooks"
#: What a user server runs: jupyterhub-singleuser without jsonschema's slow IRI checker (see there).
SINGLEUSER = HUB_CONFIG / "user_server" / "singleuser.py"
#: A Jupyter data folder (on the user servers' JUPYTER_PATH) holding the dashboards' Voila template
#: "speckle" (nothing from another host). Under nbconvert/templates, not voila/templates: Voila takes
#: the first <folder>/voila on the path as its own data folder (themes) and would miss the venv's.
JUPYTER_DATA = HUB_CONFIG / "jupyter"
VOILA_TEMPLATE = "speckle"

#: Home folders every user gets (relative to the home). The dashboards copy is refreshed at every
#: start; the examples are copied once so that users can change them.
DASHBOARDS_DIR = "dashboards"
EXAMPLES_DIR = "speckle-examples"
#: The Quick check profile lands here (relative to the user's server URL).
QUICK_CHECK_PATH = f"voila/render/{DASHBOARDS_DIR}/xpcs_quick_check.ipynb"

DEFAULTS: dict = {
    "hub": {
        "bind_address": "127.0.0.1",
        "port": 8000,
        "base_url": "/",
        "tls": {"cert": None, "key": None},
        "internal_port": 8081,
        "proxy_api_port": 8001,
        "state_dir": None,
        "allowed_networks": [],
        "announcement": None,
        "warm_start": True,
    },
    "auth": {
        "type": "native",
        "admin_users": ["admin"],
        "allowed_users": [],
        "allowed_groups": [],
        "allow_all": False,
        "native": {
            "open_signup": False,
            "minimum_password_length": 10,
            "allowed_failed_logins": 5,
            "seconds_before_next_try": 600,
            "max_pending_signups": 50,
        },
        "ldap": {},
        "oauth": {},
    },
    "users": {"unix_prefix": "speckle-", "home_root": "/home", "spawn_timeout": 120, "start_at_login": True},
    "data": {
        "beamline_dirs": [],
        "upload_dir": "speckle-uploads",
        "upload_quota_gb": DEFAULT_UPLOAD_QUOTA_BYTES / 1e9,  # the one default (speckle.site)
        "websocket_max_message_mb": 512,
    },
    "limits": {
        "method": "auto",
        "memory_gb": None,
        "cpus": None,
        "processes": 4096,
        "profiles": {},
        "users": {},
        "monitor": {},
    },
    "culling": {
        "server_idle_timeout": 3600,
        "server_max_age": 0,
        "cull_every": 300,
        "kernel_idle_timeout": 900,
        "kernel_cull_interval": 60,
        "dashboard_orphan_grace": 120,
    },
    "gpus": {"policy": "auto", "devices": "all", "let_users_choose": True, "nvidia_smi": "nvidia-smi"},
    "dashboards": {"preheat": ["xpcs_quick_check.ipynb"], "preheat_refill_delay": None},
    "monitor": {
        "enabled": True,
        "folders": None,
        "results_dir": None,
        "account": "speckle-monitor",
        "settle_seconds": 2.0,
        "watch": "auto",
        "poll_interval": 1.0,
        "max_seconds": 1800,
        "template": None,
        "internal_port": 8082,
        "cluster": {"type": "local", "workers": None, "memory": None, "address": None,
                    "queue": None, "walltime": "08:00:00"},
    },
}


class SettingsError(ValueError):
    """The settings file is missing, unreadable, or breaks the schema (one line per problem)."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _where(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def validate(raw: dict, source: str = "settings") -> None:
    """Check ``raw`` against the schema; raise :class:`SettingsError` listing every problem."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            msg = f"{err.message}; allowed here: {', '.join(allowed)}"
        else:
            msg = err.message
        problems.append(f"{source}: {_where(err)}: {msg}")
    if problems:
        raise SettingsError("\n".join(problems))


def _check_meaning(s: dict, source: str) -> None:
    """Rules a schema cannot say well."""
    problems = []
    tls = s["hub"]["tls"]
    if bool(tls["cert"]) != bool(tls["key"]):
        problems.append(f"{source}: hub.tls: give both cert and key, or neither")
    for name in ("cert", "key"):
        if tls[name] and not Path(tls[name]).is_file():
            problems.append(f"{source}: hub.tls.{name}: no such file: {tls[name]}")
    for net in s["hub"]["allowed_networks"]:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            problems.append(f"{source}: hub.allowed_networks: not a network: {net!r} (e.g. 10.0.5.0/24)")
    ports = [s["hub"]["port"], s["hub"]["internal_port"], s["hub"]["proxy_api_port"]]
    if len(set(ports)) != 3:
        problems.append(f"{source}: hub.port, hub.internal_port and hub.proxy_api_port must differ")
    kind = s["auth"]["type"]
    if kind == "ldap":
        problems += _ldap_problems(s["auth"], source)
    if kind == "oauth":
        need = ("client_id", "client_secret_file", "oauth_callback_url", "authorize_url", "token_url", "userdata_url")
        missing = [k for k in need if not s["auth"]["oauth"].get(k)]
        if missing:
            problems.append(f"{source}: auth.oauth needs {', '.join(missing)} with auth.type oauth")
        if s["auth"]["allowed_groups"] and not s["auth"]["oauth"].get("claim_groups_key"):
            problems.append(f"{source}: auth.allowed_groups with auth.type oauth needs auth.oauth.claim_groups_key "
                            "(the userinfo claim that lists a user's groups, e.g. groups)")
    if kind != "native" and not (s["auth"]["allow_all"] or s["auth"]["allowed_users"] or s["auth"]["allowed_groups"]):
        problems.append(
            f"{source}: auth.type {kind}: say who may log in (auth.allowed_users, auth.allowed_groups, "
            "or auth.allow_all: true); otherwise only the admins could"
        )
    problems += _monitor_problems(s, source)
    problems += _limits_problems(s["limits"], source)
    upload = s["data"]["upload_dir"]
    if upload.startswith("/") or ".." in Path(upload).parts:
        problems.append(f"{source}: data.upload_dir must be a folder inside the home, e.g. speckle-uploads")
    if problems:
        raise SettingsError("\n".join(problems))


def _monitor_problems(s: dict, source: str) -> list[str]:
    m = s["monitor"]
    if not m["enabled"]:
        return []
    problems = []
    ports = {s["hub"]["port"], s["hub"]["internal_port"], s["hub"]["proxy_api_port"]}
    if m["internal_port"] in ports:
        problems.append(f"{source}: monitor.internal_port must differ from the hub's ports")
    folders = m["folders"] if m["folders"] is not None else s["data"]["beamline_dirs"]
    for folder in folders:
        if not Path(folder).is_dir():
            problems.append(f"{source}: monitor: the folder to watch {folder} does not exist")
    results = m["results_dir"]
    for folder in folders if results else ():
        a, b = os.path.normpath(results), os.path.normpath(folder)
        if a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/"):
            problems.append(f"{source}: monitor.results_dir {results} and the watched folder "
                            f"{folder} must not contain one another (results never go into data folders)")
    if m["template"]:
        from speckle.errors import InvalidInputError
        from speckle.monitor.templates import load_template

        try:
            load_template(m["template"])
        except InvalidInputError as exc:
            problems.append(f"{source}: monitor.template: {exc}")
    if m["cluster"]["type"] in ("gateway", "scheduler") and not m["cluster"].get("address"):
        problems.append(f"{source}: monitor.cluster.type {m['cluster']['type']} needs monitor.cluster.address")
    return problems


#: A user server and one dashboard kernel take about 0.5 GB: a smaller limit kills them at start.
MIN_MEMORY_GB = 0.5


def _limits_problems(limits: dict, source: str) -> list[str]:
    layers = [("limits", limits)] + [(f"limits.profiles.{k}", v) for k, v in limits["profiles"].items()]
    layers += [(f"limits.users.{k}", v) for k, v in limits["users"].items()]
    layers.append(("limits.monitor", limits["monitor"]))
    return [f"{source}: {where}.memory_gb: {layer['memory_gb']} GB is too little for a user server "
            f"and a kernel (at least {MIN_MEMORY_GB}; 0 = no limit)"
            for where, layer in layers if 0 < (layer.get("memory_gb") or 0) < MIN_MEMORY_GB]


def _ldap_problems(auth: dict, source: str) -> list[str]:
    ldap = auth["ldap"]
    problems = []
    if not ldap.get("server_address"):
        problems.append(f"{source}: auth.ldap.server_address is needed with auth.type ldap")
    ca = ldap.get("ca_certs_file")
    if ca and not os.access(ca, os.R_OK):
        problems.append(f"{source}: auth.ldap.ca_certs_file {ca} cannot be read (the CA certificate "
                        "that signed the directory's certificate, PEM)")
    if ldap.get("lookup_dn"):
        missing = [k for k in ("user_search_base", "user_attribute") if not ldap.get(k)]
        if missing:
            problems.append(f"{source}: auth.ldap.lookup_dn needs {', '.join(missing)} "
                            "(e.g. ou=people,dc=facility,dc=example and uid)")
    elif not ldap.get("bind_dn_template"):
        problems.append(f"{source}: auth.ldap needs bind_dn_template (e.g. "
                        "['uid={username},ou=people,dc=facility,dc=example']) "
                        "or lookup_dn: true with user_search_base and user_attribute")
    not_dns = [g for g in auth["allowed_groups"] if "=" not in g]
    if not_dns:
        problems.append(f"{source}: auth.allowed_groups with auth.type ldap are group DNs, e.g. "
                        f"cn={not_dns[0]},ou=groups,dc=facility,dc=example (not {', '.join(not_dns)})")
    return problems


def load(path: str | os.PathLike | None = None) -> dict:
    """Read, validate and complete the settings.

    Parameters
    ----------
    path : path-like, optional
        The YAML file; default ``$SPECKLE_HUB_SETTINGS`` or ``hub_config/settings.yaml``.

    Returns
    -------
    dict
        The settings with every default filled in, plus ``_source`` (the file) and
        ``_state_dir`` (the resolved state folder, ``$SPECKLE_HUB_STATE`` winning).
    """
    import yaml

    path = Path(path or os.environ.get("SPECKLE_HUB_SETTINGS") or DEFAULT_SETTINGS_PATH)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"{source}: cannot read the settings file: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{source}: not valid YAML: {exc}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SettingsError(f"{source}: the file must be a mapping of sections (hub:, auth:, ...)")
    validate(raw, source)
    s = _merge(DEFAULTS, raw)
    _check_meaning(s, source)
    state = os.environ.get("SPECKLE_HUB_STATE") or s["hub"]["state_dir"] or DEFAULT_STATE_DIR
    s["_state_dir"] = str(Path(state).expanduser().resolve())
    s["_source"] = source
    return s


def is_root() -> bool:
    return os.geteuid() == 0


def public_url(s: dict) -> str:
    """Where browsers log in (for the banner)."""
    scheme = "https" if s["hub"]["tls"]["cert"] else "http"
    host = s["hub"]["bind_address"]
    if host in ("0.0.0.0", "", "::"):
        host = "<this machine's name>"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{s['hub']['port']}{s['hub']['base_url']}"


def read_secret(path: Path) -> str:
    return path.read_text().strip()


def firewall_note(s: dict) -> str | None:
    """The nftables rules that enforce ``hub.allowed_networks`` (the hub does not filter)."""
    nets = s["hub"]["allowed_networks"]
    if not nets:
        return None
    port = s["hub"]["port"]
    v4 = [n for n in nets if ipaddress.ip_network(n, strict=False).version == 4]
    v6 = [n for n in nets if ipaddress.ip_network(n, strict=False).version == 6]
    lines = [f"Only these networks should reach port {port}: {', '.join(nets)}. "
             "Enforce it with the firewall, e.g. (nftables, as root):"]
    lines.append("  nft add table inet speckle")
    lines.append("  nft add chain inet speckle input '{ type filter hook input priority 0; }'")
    if v4:
        lines.append(f"  nft add rule inet speckle input tcp dport {port} ip saddr {{ {', '.join(v4)} }} accept")
    if v6:
        lines.append(f"  nft add rule inet speckle input tcp dport {port} ip6 saddr {{ {', '.join(v6)} }} accept")
    lines.append(f"  nft add rule inet speckle input tcp dport {port} drop")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# apply: settings -> JupyterHub configuration
# --------------------------------------------------------------------------------------------

def _authenticator(c, s: dict) -> None:
    auth = s["auth"]
    kind = auth["type"]
    c.Authenticator.admin_users = set(auth["admin_users"])
    if kind == "native":
        c.JupyterHub.authenticator_class = "speckle_hub.auth.SpeckleNativeAuthenticator"
        native = auth["native"]
        # approval by an admin is the gate: every approved account may log in
        c.Authenticator.allow_all = True
        c.NativeAuthenticator.open_signup = native["open_signup"]
        c.NativeAuthenticator.minimum_password_length = native["minimum_password_length"]
        c.NativeAuthenticator.check_common_password = True
        # failed logins slow down the address they come from, never lock the name (throttle.py)
        c.NativeAuthenticator.allowed_failed_logins = 0
        c.SpeckleNativeAuthenticator.free_failures = native["allowed_failed_logins"]
        c.SpeckleNativeAuthenticator.max_wait = native["seconds_before_next_try"]
        c.SpeckleNativeAuthenticator.max_pending_signups = native["max_pending_signups"]
        # names that make sane unix account names (<prefix><name>) and URLs
        c.Authenticator.username_pattern = r"^[a-z][a-z0-9_-]{0,31}$"
        c.SpeckleNativeAuthenticator.first_admin_password_file = str(Path(s["_state_dir"]) / "first-admin-password")
        return
    c.Authenticator.allow_all = auth["allow_all"]
    c.Authenticator.allowed_users = set(auth["allowed_users"])
    if kind == "pam":
        c.JupyterHub.authenticator_class = "pam"
        if auth["allowed_groups"]:
            c.PAMAuthenticator.allowed_groups = set(auth["allowed_groups"])
        # the hub user is the unix user: root never logs in (the spawner also refuses system uids)
        c.Authenticator.blocked_users = {"root"}
    elif kind == "ldap":
        _require("ldapauthenticator", "auth.type ldap", "jupyterhub-ldapauthenticator")
        c.JupyterHub.authenticator_class = "ldapauthenticator.LDAPAuthenticator"
        ldap = auth["ldap"]
        for key, value in ldap.items():
            if key == "lookup_dn_search_password_file":
                c.LDAPAuthenticator.lookup_dn_search_password = read_secret(Path(value))
            elif key != "ca_certs_file":
                setattr(c.LDAPAuthenticator, key, value)
        if ldap.get("tls_strategy", "before_bind") != "insecure":
            # ldap3 accepts any server certificate unless told otherwise; the users' passwords
            # must only go to the real directory: verify it (system CAs, or the facility's CA)
            tls = {"validate": ssl.CERT_REQUIRED}
            if ldap.get("ca_certs_file"):
                tls["ca_certs_file"] = ldap["ca_certs_file"]
            c.LDAPAuthenticator.tls_kwargs = tls
        if ldap.get("lookup_dn") and not ldap.get("lookup_dn_user_dn_attribute"):
            # the looked-up entry's attribute that holds the login name (ldapauthenticator has no default)
            c.LDAPAuthenticator.lookup_dn_user_dn_attribute = ldap["user_attribute"]
        if auth["allowed_groups"]:
            c.LDAPAuthenticator.allowed_groups = list(auth["allowed_groups"])
    elif kind == "oauth":
        _require("oauthenticator", "auth.type oauth", "oauthenticator")
        c.JupyterHub.authenticator_class = "oauthenticator.generic.GenericOAuthenticator"
        o = auth["oauth"]
        g = c.GenericOAuthenticator
        g.client_id = o["client_id"]
        g.client_secret = read_secret(Path(o["client_secret_file"]))
        for key in ("oauth_callback_url", "authorize_url", "token_url", "userdata_url", "login_service"):
            if o.get(key):
                setattr(g, key, o[key])
        g.username_claim = o.get("username_claim", "preferred_username")
        g.scope = o.get("scope", ["openid", "profile"])
        if o.get("claim_groups_key"):
            g.manage_groups = True
            g.auth_state_groups_key = f"oauth_user.{o['claim_groups_key']}"
        if auth["allowed_groups"]:
            g.allowed_groups = set(auth["allowed_groups"])


def _require(module: str, what: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise SettingsError(f"{what} needs the package {package}: .venv/bin/pip install {package}")


def apply(c, s: dict) -> None:
    """Turn validated settings into JupyterHub configuration on the config object ``c``."""
    hub = s["hub"]
    state = Path(s["_state_dir"])
    c.JupyterHub.ip = hub["bind_address"]
    c.JupyterHub.port = hub["port"]
    c.JupyterHub.base_url = hub["base_url"]
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = hub["internal_port"]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub['proxy_api_port']}"
    if hub["tls"]["cert"]:
        c.JupyterHub.ssl_cert = hub["tls"]["cert"]
        c.JupyterHub.ssl_key = hub["tls"]["key"]

    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    token_file = state / "proxy-auth-token"
    if token_file.exists():
        c.ConfigurableHTTPProxy.auth_token = read_secret(token_file)
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")

    _authenticator(c, s)

    cull = s["culling"]
    spawner_settings = c.SpeckleSpawner.speckle_settings = {
        "data": s["data"],
        "culling": cull,
        "gpus": s["gpus"],
        "users": s["users"],
        "dashboards": s["dashboards"],
        "limits": s["limits"],
        "auth_type": s["auth"]["type"],
        "state_dir": str(state),
        "warm_start": hub["warm_start"],
    }
    c.Spawner.start_timeout = s["users"]["spawn_timeout"]
    services, roles = [], []
    if cull["server_idle_timeout"] > 0 or cull["server_max_age"] > 0:
        cmd = [sys.executable, "-m", "speckle_hub.culler", f"--cull-every={cull['cull_every']}"]
        cmd.append(f"--timeout={cull['server_idle_timeout'] or 10 ** 9}")
        if cull["server_max_age"]:
            cmd.append(f"--max-age={cull['server_max_age']}")
        services.append({"name": "idle-culler", "command": cmd,
                         "environment": {"PYTHONPATH": str(HUB_CONFIG)}})
        roles.append({
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        })
    if s["monitor"]["enabled"]:
        from . import beamtime, limits

        monitor = beamtime.monitor_settings(s)  # folders and account: made by launch.py
        spec = beamtime.service(s, monitor)
        # the wrapper joins the monitor's cgroup, drops to its account, dies with the hub
        spec["command"] = limits.service_command(s, "monitor", limits.resolve(s["limits"]["monitor"]),
                                                 spec.pop("user", None), spec["command"])
        services.append(spec)
        roles += beamtime.roles()
        spawner_settings["monitor"] = {
            "results_dir": monitor["results_dir"], "folders": monitor["folders"],
            "url": f"http://127.0.0.1:{monitor['internal_port']}{hub['base_url']}services/{beamtime.NAME}/"}
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
