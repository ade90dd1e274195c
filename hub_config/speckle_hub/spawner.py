"""The user servers: who they run as, what they get (GPU, env, folders), the spawn form.

Two modes, chosen by who runs the hub:

- **isolated** (the hub runs as root): hub user NAME runs as the unix account ``<prefix>NAME``
  (``users.unix_prefix``, default ``speckle-``), created at the first start with ``useradd`` and
  a home of mode 700; with ``auth.type: pam`` the hub user *is* the unix account (it must exist).
  System accounts (uid below UID_MIN, root) are refused. Users can read neither each other's
  files nor reach each other's servers.
- **single-account** (the hub runs as an ordinary user, e.g. to try it out): every server runs as
  that same account, each with its own folder ``<state>/homes/NAME`` as home. Nothing separates
  the users' files: the landing page and the log say so.

Every start: the dashboards are copied afresh (read-only) into ``~/dashboards``, the example
notebooks are copied once into ``~/speckle-examples`` (later only new ones are added), and
``~/speckle-uploads`` exists with mode 700. The copy runs *as the user* (never as root inside a
folder the user controls).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import html
import importlib.util
import os
import pwd
import re
import shlex
import subprocess
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from jupyterhub.utils import can_connect, exponential_backoff, random_port
from tornado import web
from traitlets import Dict, Float, Integer, List, Unicode, default

from . import gpus as gpu_mod
from . import limits as limits_mod
from . import warmstart
from .pages import BEAMLINE_LINKS_DIR
from .settings import (
    DASHBOARDS_DIR, EXAMPLES_DIR, HUB_CONFIG, JUPYTER_DATA, NOTEBOOKS, QUICK_CHECK_PATH, SINGLEUSER, VOILA_TEMPLATE,
)

PROFILES = {
    "quick": {
        "title": "Quick check",
        "description": "Point-and-click dashboards: is the data good? (XPCS quick check)",
        "default_url": "/" + QUICK_CHECK_PATH,
    },
    "lab": {
        "title": "JupyterLab",
        "description": "Notebooks, a terminal, the example notebooks and the speckle library",
        "default_url": "/lab",
    },
}
DEFAULT_PROFILE = "quick"


def _uid_min() -> int:
    try:
        for line in Path("/etc/login.defs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "UID_MIN" and parts[1].isdigit():
                return int(parts[1])
    except OSError:
        pass
    return 1000


def unix_name_for(hub_name: str, prefix: str, auth_type: str) -> str:
    """The unix account a hub user's server runs as (as root).

    ``pam``: the same name. Otherwise ``prefix + name`` when the name is a plain unix name of at
    most 24 characters; any other name (an e-mail from single sign-on, a long name) becomes
    ``prefix + <cleaned first 15 characters> + '-' + <8 hex of its sha1>``, so that two hub users
    never share an account.
    """
    if auth_type == "pam":
        return hub_name
    if re.fullmatch(r"[a-z][a-z0-9_-]{0,23}", hub_name):
        return prefix + hub_name
    clean = re.sub(r"[^a-z0-9_-]", "-", hub_name.lower()).strip("-")[:15] or "user"
    if not clean[0].isalpha():
        clean = "u" + clean[:14]
    digest = hashlib.sha1(hub_name.encode()).hexdigest()[:8]
    return f"{prefix}{clean}-{digest}"


class SpeckleSpawner(LocalProcessSpawner):
    """LocalProcessSpawner with the speckle hub's accounts, folders, GPUs and spawn form."""

    speckle_settings = Dict(config=True, help="The validated settings (set by speckle_hub.settings.apply).")
    interrupt_timeout = Integer(8, config=True)
    term_timeout = Integer(5, config=True)
    singleuser_cmd = List(Unicode(), [sys.executable, str(SINGLEUSER)], config=True,
                          help="The user server's command (jupyterhub-singleuser or a wrapper of it).")
    ready_poll_interval = Float(
        0.1, config=True,
        help="Seconds between checks that a starting server listens. JupyterHub's own wait backs "
             "off up to 5 s between tries, which cost a user 0.5-2 s of every start.")

    # ---------------------------------------------------------------- who and where
    @property
    def single_account(self) -> bool:
        return os.geteuid() != 0

    @property
    def _s(self) -> dict:
        return self.speckle_settings

    @property
    def unix_name(self) -> str:
        if self.single_account:
            return pwd.getpwuid(os.geteuid()).pw_name
        users = self._s.get("users", {})
        return unix_name_for(self.user.name, users.get("unix_prefix", "speckle-"), self._s.get("auth_type", "native"))

    @property
    def home(self) -> Path:
        if self.single_account:
            return Path(self._s["state_dir"]) / "homes" / self.user.name
        return Path(pwd.getpwnam(self.unix_name).pw_dir)

    @property
    def gpu_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    def _allocator(self) -> gpu_mod.GpuAllocator:
        g = self._s.get("gpus", {})
        return gpu_mod.allocator(g.get("policy", "auto"), g.get("devices", "all"), g.get("nvidia_smi", "nvidia-smi"))

    # ---------------------------------------------------------------- the account and the home
    async def _run(self, *cmd: str, **kwargs) -> None:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            text = out.decode(errors="replace").strip()
            raise RuntimeError(f"{' '.join(cmd[:2])}... failed ({proc.returncode}): {text}")

    async def ensure_account(self) -> None:
        """As root: the unix account exists (created if missing) and is not a system account."""
        if self.single_account:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            return
        name = self.unix_name
        managed = self._s.get("auth_type", "native") != "pam"
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if not managed:
                raise RuntimeError(f"There is no unix account {name!r} on this machine (auth.type pam).")
            home = Path(self._s.get("users", {}).get("home_root", "/home")) / name
            self.log.info("Creating unix account %s (home %s) for hub user %s", name, home, self.user.name)
            await self._run(
                "useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
                "--user-group", "--comment", f"speckle hub user {self.user.name}"[:60], name,
            )
            entry = pwd.getpwnam(name)
        if entry.pw_uid == 0 or entry.pw_uid < _uid_min():
            raise RuntimeError(f"Refusing to run a server as the system account {name!r} (uid {entry.pw_uid}).")
        home = Path(entry.pw_dir)
        if managed:
            if not home.is_dir():
                home.mkdir(parents=True, mode=0o700)
                os.chown(home, entry.pw_uid, entry.pw_gid)
            os.chmod(home, 0o700)  # nobody else reads this user's files, uploads and results
        elif home.is_dir() and home.stat().st_mode & 0o007:
            self.log.warning("Home %s of %s can be read by other users (mode %o)", home, name, home.stat().st_mode & 0o777)

    async def prepare_home(self) -> None:
        """Copy dashboards/examples and make the upload folder, running as the user."""
        data = self._s.get("data", {})
        cmd = [
            sys.executable, str(HUB_CONFIG / "speckle_hub" / "homeprep.py"),
            "--home", str(self.home),
            "--dashboards-src", str(NOTEBOOKS / "dashboards"), "--dashboards", DASHBOARDS_DIR,
            "--examples-src", str(NOTEBOOKS / "examples"), "--examples", EXAMPLES_DIR,
            "--uploads", data.get("upload_dir", "speckle-uploads"),
            "--beamline-links", BEAMLINE_LINKS_DIR,
        ]
        for folder in data.get("beamline_dirs", []):
            cmd += ["--beamline-dir", folder]
        kwargs = {"cwd": "/"}
        if not self.single_account:
            kwargs["preexec_fn"] = set_user_setuid(self.unix_name, chdir=False)
            kwargs["env"] = {"PATH": "/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8"}
        await self._run(*cmd, **kwargs)

    # ---------------------------------------------------------------- spawn form
    def _gpu_choices(self) -> list[dict]:
        return self._allocator().describe()

    async def _options_form(self, spawner=None) -> str:
        gpus = await asyncio.to_thread(self._gpu_choices)
        rows = []
        for key, p in PROFILES.items():
            checked = " checked" if key == DEFAULT_PROFILE else ""
            rows.append(
                f'<div class="form-check speckle-profile">'
                f'<input class="form-check-input" type="radio" name="profile" id="profile-{key}" value="{key}"{checked}>'
                f'<label class="form-check-label" for="profile-{key}"><strong>{html.escape(p["title"])}</strong>'
                f' &mdash; {html.escape(p["description"])}</label></div>'
            )
        parts = ['<fieldset id="speckle-profiles"><legend>What do you want to do?</legend>', *rows, "</fieldset>"]
        let_choose = self._s.get("gpus", {}).get("let_users_choose", True)
        if not gpus:
            parts.append('<p id="speckle-gpu-none" class="mt-3">This hub has no GPU: analysis runs on the CPU.</p>')
        elif len(gpus) == 1 or not let_choose:
            names = ", ".join(f"{g['name']}" for g in gpus)
            parts.append(f'<p id="speckle-gpu-auto" class="mt-3">GPU: assigned automatically ({html.escape(names)}).</p>')
        else:
            opts = ['<option value="auto" selected>Automatic: a free GPU, else the least busy</option>']
            for g in gpus:
                busy = "free" if g["servers"] == 0 else f"shared by {g['servers']} server(s)"
                label = f"GPU {g['index']}: {g['name']} ({busy}, {g['utilization']:.0f} % busy)"
                opts.append(f'<option value="{g["index"]}">{html.escape(label)}</option>')
            parts.append(
                '<div class="mt-3"><label for="speckle-gpu" class="form-label">GPU</label>'
                f'<select class="form-select" name="gpu" id="speckle-gpu">{"".join(opts)}</select></div>'
            )
        return "\n".join(parts)

    def _parse_options(self, data: dict) -> dict:
        def first(key, default):
            value = data.get(key, default)
            if isinstance(value, (list, tuple)):
                value = value[0] if value else default
            return str(value).strip()

        profile = first("profile", DEFAULT_PROFILE)
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        gpu = first("gpu", "auto")
        if gpu != "auto" and not gpu.isdigit():
            raise ValueError(f"GPU must be 'auto' or a GPU number, not {gpu!r}")
        return {"profile": profile, "gpu": gpu}

    def options_from_form(self, formdata):
        return self._parse_options(formdata)

    @default("apply_user_options")
    def _check_user_options(self):
        # the form's and the query's options are parsed already; options given through the REST
        # API are checked here: an unknown profile or GPU is a 400 with its reason, not a default
        def check(spawner, user_options):
            try:
                spawner.user_options = spawner._parse_options(user_options or {})
            except ValueError as e:
                raise web.HTTPError(400, str(e)) from None
        return check

    def options_from_query(self, query_data):
        return self._parse_options(query_data)

    # ---------------------------------------------------------------- what the server gets
    def _profile(self) -> dict:
        return PROFILES.get((self.user_options or {}).get("profile", DEFAULT_PROFILE), PROFILES[DEFAULT_PROFILE])

    def make_preexec_fn(self, name):
        """In the new server's process, before it runs anything: join its cgroup (as root), then
        become the user (unless systemd-run does, see :meth:`start`)."""
        home = str(self.home)
        join = self._confiner().preexec(self.confinement)
        as_user = None if self.single_account or self._confiner().prefix(self.confinement, None) \
            else set_user_setuid(self.unix_name)

        def preexec():
            limits_mod.user_priority()  # the hub runs at a higher priority than its users
            if join is not None:
                join()
            if as_user is not None:
                as_user()  # also goes to the home
            else:
                os.chdir(home)

        return preexec

    def user_env(self, env):
        if self.single_account:
            env["USER"] = self.unix_name
            env["HOME"] = str(self.home)
            return env
        entry = pwd.getpwnam(self.unix_name)
        env["USER"] = self.unix_name
        env["HOME"] = entry.pw_dir
        env["SHELL"] = entry.pw_shell or "/bin/bash"
        return env

    def get_env(self):
        env = super().get_env()
        data = self._s.get("data", {})
        home = self.home
        env["SPECKLE_HUB_MODE"] = "single-account" if self.single_account else "isolated"
        monitor = self._s.get("monitor")
        roots = list(data.get("beamline_dirs", []))
        if monitor:
            # the folders the beamtime monitor watches (the demo folder when no beamline folder is
            # set) are data folders too: a result on the Beamtime page opens its dataset
            roots += [f for f in monitor["folders"] if f not in roots]
            env["SPECKLE_MONITOR_URL"] = monitor["url"]
            env["SPECKLE_MONITOR_RESULTS"] = monitor["results_dir"]
        env["SPECKLE_DATA_DIRS"] = ":".join(roots)
        env["SPECKLE_UPLOAD_DIR"] = str(home / data.get("upload_dir", "speckle-uploads"))
        env["SPECKLE_UPLOAD_QUOTA_BYTES"] = str(int(float(data.get("upload_quota_gb", 50)) * 1e9))
        env["SPECKLE_DASHBOARDS_DIR"] = str(home / DASHBOARDS_DIR)
        env["SPECKLE_EXAMPLES_DIR"] = str(home / EXAMPLES_DIR)
        env.update(getattr(self, "_gpu_env", None) or gpu_mod.Assignment(None).env)
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(JUPYTER_DATA), env.get("JUPYTER_PATH", "")) if p)
        venv_bin = str(Path(sys.executable).parent)
        if not env.get("PATH", "").startswith(venv_bin):
            env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        return env

    def get_args(self):
        args = super().get_args()
        cull = self._s.get("culling", {})
        data = self._s.get("data", {})
        extensions = {"voila": True, "jupyterlab": True}
        if importlib.util.find_spec("speckle_jupyter") is not None:
            extensions["speckle_jupyter"] = True
        ws_bytes = int(float(data.get("websocket_max_message_mb", 512)) * 2**20)
        # mathjax_url/config None: Voila's page then typesets with the MathJax 3 bundled in its own
        # scripts instead of loading MathJax from cdnjs (its default when these are not set)
        tornado = {"websocket_max_message_size": ws_bytes, "mathjax_url": None, "mathjax_config": None}
        # Dict options on the command line take a Python literal (not JSON: True, not true)
        args += [
            f"--ServerApp.jpserver_extensions={extensions!r}",
            f"--ServerApp.tornado_settings={tornado!r}",
            # Voila leaves a kernel behind for every page view: cull idle kernels, connected or not
            f"--MappingKernelManager.cull_idle_timeout={int(cull.get('kernel_idle_timeout', 900))}",
            f"--MappingKernelManager.cull_interval={int(cull.get('kernel_cull_interval', 60))}",
            "--MappingKernelManager.cull_connected=False",
            # the dashboards' page template: Voila's lab page loading nothing from another host
            f"--VoilaConfiguration.template={VOILA_TEMPLATE}",
        ]
        return args + self._preheat_args()

    def _preheat_args(self) -> list[str]:
        """Every user server's kernels are managed by hub_config/user_server/speckle_preheat.py
        (a dashboard kernel that dies is reported to its page, not restarted empty; one whose page
        has gone is shut down after ``culling.dashboard_orphan_grace``); Quick-check
        servers also keep Voila's preheated kernels for ``dashboards.preheat``: each dashboard
        already executed in a waiting kernel, so that its page shows at once. JupyterLab servers
        do not (memory)."""
        grace = float(self._s.get("culling", {}).get("dashboard_orphan_grace", 120))
        args = ["--ServerApp.kernel_manager_class=speckle_preheat.PreheatedKernelManager",
                f"--PreheatedKernelManager.orphan_grace={grace}"]
        dash = self._s.get("dashboards", {})
        notebooks = dash.get("preheat", [])
        if (self.user_options or {}).get("profile", DEFAULT_PROFILE) != "quick" or not notebooks:
            return args
        delay = dash.get("preheat_refill_delay")
        if delay is None:
            args.append("--PreheatedKernelManager.refill=False")
        else:
            args.append(f"--PreheatedKernelManager.fill_delay={float(delay)}")
        args += [f"--PreheatedKernelManager.preheat_notebooks={DASHBOARDS_DIR}/{nb}" for nb in notebooks]
        return args

    # ---------------------------------------------------------------- limits
    confinement: dict = {}

    def _confiner(self):
        limits = self._s.get("limits", {})
        return _confiner_for(limits.get("method", "auto"), self._s.get("state_dir", ""))

    def limits(self) -> limits_mod.Limits:
        """This server's memory, CPU and process limits (settings ``limits``)."""
        profile = (self.user_options or {}).get("profile", DEFAULT_PROFILE)
        return limits_mod.resolve(self._s.get("limits", {}), self.user.name, profile)

    async def start(self):
        way = self._confiner()
        limits = self.limits()
        # what a server that died unnoticed (the hub was down) left in its cgroup goes first
        await asyncio.to_thread(way.release, way.placement(self.unix_name, limits))
        self.confinement = await asyncio.to_thread(way.setup, self.unix_name, limits)
        prefix = way.prefix(self.confinement, None if self.single_account else self.unix_name)
        self.cmd = prefix + list(self.singleuser_cmd)
        self.notebook_dir = str(self.home)
        self.default_url = self._profile()["default_url"]
        choice = (self.user_options or {}).get("gpu", "auto")
        alloc = self._allocator()
        found = await asyncio.to_thread(alloc.gpus)
        assignment = alloc.assign(self.gpu_key, None if choice in ("auto", None) else int(choice), gpus=found)
        self._gpu_env = assignment.env
        self.gpu_index = assignment.gpu.index if assignment.gpu else None
        self.log.info(
            "Server %s runs as %s (%s mode), profile %s, %s, %s", self.gpu_key, self.unix_name,
            "single-account" if self.single_account else "isolated",
            (self.user_options or {}).get("profile", DEFAULT_PROFILE), self._gpu_env["SPECKLE_GPU_NAME"],
            limits.text() if way.kind != "off" else "no limits",
        )
        try:
            ip, port = await self._start_process(way)
            await self._wait_listening(ip, port)
            return ip, port
        except BaseException:
            alloc.release(self.gpu_key)
            await asyncio.to_thread(way.release, self.confinement)
            raise

    async def _start_process(self, way) -> tuple[str, int]:
        """Fork the server from the warm template (settings ``hub.warm_start``), else start it as a
        new process (LocalProcessSpawner's way); either way the same command, environment,
        account, cgroup and home."""
        warm = (self._s.get("warm_start") and list(self.cmd) == [sys.executable, str(SINGLEUSER)]
                and not self.shell_cmd and not self.popen_kwargs)
        if not warm:
            return await super().start()
        if self.port == 0:
            self.port = random_port()
        env = self.get_env()
        args = self.get_args()
        self.log.info("Spawning %s (forked from the warm template)",
                      " ".join(shlex.quote(a) for a in [*self.cmd, *args]))
        try:
            self.pid = await _warm_starter(self._s.get("state_dir", "")).spawn(
                args, env, cwd=str(self.home), account=None if self.single_account else self.unix_name,
                cgroups=list(self.confinement.get("cgroups", [])))
        except (OSError, warmstart.WarmStartError) as exc:
            self.log.warning("Warm start of %s failed (%s): starting it as a new process", self.gpu_key, exc)
            return await super().start()
        self.proc = None
        return self.ip or "127.0.0.1", self.port

    def _process_gone(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is not None
        return not (self.pid and warmstart.pid_alive(self.pid))

    async def stop(self, now=False):
        placement = self.confinement  # poll() clears the state once the process is gone
        await super().stop(now=now)
        # kernels and analyses the server left behind (it was killed, or did not stop them)
        await asyncio.to_thread(self._confiner().release, placement)

    async def poll(self):
        placement = self.confinement
        if self.proc is None and self.pid and not warmstart.pid_alive(self.pid):
            self.clear_state()  # gone, or a zombie nobody reaps (its template ended with a hub)
            status = 0
        else:
            status = await super().poll()
        if status is not None and placement:  # the server died: what it started goes with it
            await asyncio.to_thread(self._confiner().release, placement)
        return status

    async def _wait_listening(self, ip: str, port: int) -> None:
        """Return as soon as the new server listens (or its process ended, or http_timeout passed).

        JupyterHub then asks the server over HTTP at once and finds it up, instead of after its
        own backed-off wait.
        """
        def up_or_gone() -> bool:
            return self._process_gone() or can_connect(ip, port)

        dt = self.ready_poll_interval
        try:
            await exponential_backoff(up_or_gone, "not listening yet", start_wait=dt, scale_factor=1,
                                      max_wait=dt, timeout=self.http_timeout, timeout_tolerance=0)
        except asyncio.TimeoutError:
            pass  # JupyterHub's own wait reports the server that does not answer

    # ---------------------------------------------------------------- state across hub restarts
    gpu_index = None

    def get_state(self):
        state = super().get_state()
        if self.gpu_index is not None and self.pid:
            state["gpu_index"] = self.gpu_index
        if self.confinement and self.pid:
            state["confinement"] = self.confinement
        return state

    def load_state(self, state):
        super().load_state(state)
        if state.get("confinement"):
            self.confinement = state["confinement"]
        if state.get("gpu_index") is not None and self.pid:
            self.gpu_index = state["gpu_index"]
            self._allocator().adopt(self.gpu_key, self.gpu_index)

    def clear_state(self):
        super().clear_state()
        self.confinement = {}
        self._allocator().release(self.gpu_key)
        self.gpu_index = None


@functools.lru_cache(maxsize=None)
def _warm_starter(state_dir: str) -> warmstart.WarmStarter:
    return warmstart.WarmStarter(state_dir, SINGLEUSER.parent)


@functools.lru_cache(maxsize=None)
def _confiner_for(method: str, state_dir: str):
    return limits_mod.confiner(method, state_dir)


def prewarm(s: dict) -> None:
    """Start the warm-start template with the hub (from its main thread: the template dies with
    it), so that the first server is forked too. Nothing when ``hub.warm_start`` is off or
    servers start through systemd-run."""
    state = s["_state_dir"]
    try:
        if not s["hub"]["warm_start"] or _confiner_for(s["limits"]["method"], state).kind == "systemd":
            return
    except limits_mod.LimitsError:
        return  # reported at the first start
    _warm_starter(state).launch()


async def pre_spawn_hook(spawner: SpeckleSpawner) -> None:
    """Before every start: the unix account (created at the first start) and the home folders."""
    await spawner.ensure_account()
    await spawner.prepare_home()


def options_form(spawner: SpeckleSpawner):
    """``c.Spawner.options_form``: the profiles and, with several GPUs, a GPU choice."""
    return spawner._options_form()
