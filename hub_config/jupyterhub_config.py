# speckle hub: the JupyterHub configuration.
#
# This file holds the readable defaults. A beamline does not edit it: it edits settings.yaml
# (address, port, TLS, accounts, data folders, quotas, culling, GPUs), which
# speckle_hub/settings.py validates and applies below. Started by `make hub`
# (hub_config/launch.py) or by systemd (hub_config/systemd/speckle-hub.service).
import os
import pwd
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from speckle_hub import settings as speckle_settings  # noqa: E402
from speckle_hub.database import use_wal  # noqa: E402
from speckle_hub.limits import event_loop_priority  # noqa: E402
from speckle_hub.pages import template_vars  # noqa: E402
from speckle_hub.spawner import SpeckleSpawner, options_form, pre_spawn_hook, prewarm  # noqa: E402
from speckle_hub.startstop import answer_interrupted_starts  # noqa: E402

c = get_config()  # noqa: F821 (provided by JupyterHub)

S = speckle_settings.load()  # $SPECKLE_HUB_SETTINGS or hub_config/settings.yaml; stops on errors
STATE = Path(S["_state_dir"])  # $SPECKLE_HUB_STATE, hub.state_dir, or hub_config/state (mode 700)
SINGLE_ACCOUNT = os.geteuid() != 0

# --- The proxy: the npm configurable-http-proxy installed in hub_config/proxy (not the PyPI
# package of the same name, which breaks websockets). The hub starts and stops it, unless
# systemd runs it in its own unit (speckle-proxy.service), so that routes and user servers
# survive a hub restart.
c.ConfigurableHTTPProxy.command = [str(speckle_settings.PROXY_BIN)]
if os.environ.get("SPECKLE_HUB_PROXY") == "external":
    c.ConfigurableHTTPProxy.should_start = False
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.cleanup_proxy = False
else:
    # a hub restarted after a crash (make hub restarts it) keeps the running proxy and the
    # users' connections through it; a proxy that died is started again within a second
    c.JupyterHub.proxy_class = "speckle_hub.proxy.AdoptingProxy"
    c.ConfigurableHTTPProxy.check_running_interval = 1

# --- Settings: address, port, TLS, state files, accounts (native sign-up + admin approval by
# default; pam, ldap, oauth), idle-server culler service, data folders, culling, GPUs.
event_loop_priority()  # this thread becomes the event loop: it answers before anything else
speckle_settings.apply(c, S)
use_wal()  # commits append to a log instead of waiting for fsync (speckle_hub/database.py)

# --- User servers: LocalProcessSpawner as each user's own unix account (root) or as the
# invoking account (single-account mode); GPU per server; spawn form with the profiles.
c.JupyterHub.spawner_class = SpeckleSpawner
c.Spawner.pre_spawn_hook = pre_spawn_hook  # unix account at the first start, home folders every start
c.Spawner.options_form = options_form  # "Quick check" / "JupyterLab", GPU choice when several
c.Spawner.http_timeout = 60
c.JupyterHub.allow_named_servers = False
answer_interrupted_starts()  # stop-while-starting: the start request gets 409 with a sentence, not 500
c.JupyterHub.concurrent_spawn_limit = 20  # more spawns at once wait (a small machine)

# --- Cookies: HttpOnly (JupyterHub's default) and SameSite=Lax for the hub's and, through the
# spawner, the user servers' cookies: a page on another site cannot send them along with a form
# or a script's request. Secure follows the scheme (hub.tls).
c.JupyterHub.tornado_settings = {"cookie_options": {"samesite": "Lax"}}

# --- Pages: the branded templates (nothing from a CDN: JupyterHub serves its own static files).
c.JupyterHub.template_paths = [str(speckle_settings.TEMPLATES)]
c.JupyterHub.logo_file = str(HERE / "speckle_hub" / "static" / "speckle-logo.svg")
c.JupyterHub.template_vars = template_vars(S)
c.JupyterHub.default_url = "/hub/home"  # land on the tiles, not straight in a server

# --- Optional extra configuration, e.g. user servers as Slurm jobs:
#   SPECKLE_HUB_EXTRA_CONFIG=hub_config/slurm/jupyterhub_slurm.py make hub
if os.environ.get("SPECKLE_HUB_EXTRA_CONFIG"):
    load_subconfig(os.environ["SPECKLE_HUB_EXTRA_CONFIG"])  # noqa: F821 (provided by JupyterHub)

# --- Logging: say loudly which mode this is.
c.JupyterHub.log_level = os.environ.get("SPECKLE_HUB_LOG_LEVEL", "INFO")
if c.JupyterHub.spawner_class is SpeckleSpawner:
    prewarm(S)  # the warm-start template imports the server's code while the hub starts
if SINGLE_ACCOUNT:
    import logging

    logging.getLogger("JupyterHub").warning(
        "SINGLE-ACCOUNT MODE: the hub does not run as root, so every hub user's server runs as "
        "the unix account %r, users' files are not separated and there are no memory or CPU limits. "
        "Run as root for a beamline.",
        pwd.getpwuid(os.geteuid()).pw_name,
    )
