"""The real hub for tests: start/stop it, make users, talk to their servers (used by conftest.py)."""


from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
HUB_CONFIG = ROOT / "hub_config"
LAUNCH = HUB_CONFIG / "launch.py"
PROXY_BIN = HUB_CONFIG / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
]
TEST_UNIX_PREFIX = "sptest-"
IS_ROOT = os.geteuid() == 0

sys.path.insert(0, str(HUB_CONFIG))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@dataclass
class HubUser:
    """A hub account with a logged-in ``requests.Session``."""

    hub: "Hub"
    name: str
    password: str
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def xsrf(self) -> str:
        """The hub's XSRF token (for cookie-authenticated POSTs to /hub/...)."""
        return self.session.cookies.get("_xsrf", path="/hub/") or self.session.cookies.get("_xsrf", "")

    @property
    def unix_name(self) -> str:
        from speckle_hub.spawner import unix_name_for

        if not IS_ROOT:
            return pwd.getpwuid(os.geteuid()).pw_name
        return unix_name_for(self.name, TEST_UNIX_PREFIX, self.hub.auth_type)

    @property
    def home(self) -> Path:
        if not IS_ROOT:
            return self.hub.state_dir / "homes" / self.name
        return Path(pwd.getpwnam(self.unix_name).pw_dir)

    @property
    def server_url(self) -> str:
        return f"{self.hub.url}user/{self.name}/"

    def dashboard_url(self, notebook: str = "xpcs_quick_check.ipynb") -> str:
        from speckle_hub.settings import DASHBOARDS_DIR

        return f"{self.server_url}voila/render/{DASHBOARDS_DIR}/{notebook}"

    def start(self, profile: str = "lab", timeout: float = 90) -> dict:
        """Spawn the default server through the hub's API and wait until it answers."""
        return self.hub.start_server(self.name, {"profile": profile}, timeout=timeout, session=self.session)

    def stop(self, timeout: float = 30) -> None:
        self.hub.stop_server(self.name, timeout=timeout)

    def _server_xsrf(self) -> str:
        cookie = self.session.cookies.get("_xsrf", path=f"/user/{self.name}/")
        if not cookie:
            self.session.get(self.server_url + "lab")  # logs in to the server (oauth) and sets _xsrf
            cookie = self.session.cookies.get("_xsrf", path=f"/user/{self.name}/")
        return cookie or ""

    def get(self, path: str = "", **kw) -> requests.Response:
        self._server_xsrf()  # logged in to the server (its oauth cookie), so API paths answer too
        return self.session.get(self.server_url + path.lstrip("/"), **kw)

    def request(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"X-XSRFToken": self._server_xsrf(), **kw.pop("headers", {})}
        return self.session.request(method, self.server_url + path.lstrip("/"), headers=headers, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def api_token(self) -> str:
        """A hub API token for this user (works on their own server: ``Authorization: token ...``)."""
        r = self.hub.api("POST", f"users/{self.name}/tokens", json={"note": "test"})
        r.raise_for_status()
        return r.json()["token"]


class Hub:
    """A running speckle hub (see the module docstring)."""

    def __init__(self, workdir: Path, external_proxy: bool = False, settings: dict | None = None):
        self.workdir = workdir
        self.external_proxy = external_proxy
        # sections merged over the test defaults (e.g. {"auth": {"type": "ldap", ...}}); with an auth
        # type other than native, start() logs in nobody: the test calls take_admin(hub.login(...))
        self.settings = settings or {}
        self.proxy_proc: subprocess.Popen | None = None
        self.state_dir = workdir / "state"
        self.settings_path = workdir / "settings.yaml"
        self.log_path = workdir / "hub.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.beamline_dir = Path(tempfile.mkdtemp(prefix="speckle-beamline-", dir="/tmp"))
        os.chmod(self.beamline_dir, 0o755)
        self.home_root = Path(tempfile.mkdtemp(prefix="speckle-homes-", dir="/tmp"))
        os.chmod(self.home_root, 0o755)
        self.proc: subprocess.Popen | None = None
        self.users: list[HubUser] = []
        self.admin: HubUser | None = None
        self.token = ""

    @property
    def auth_type(self) -> str:
        return self.settings.get("auth", {}).get("type", "native")

    # ------------------------------------------------------------------ lifecycle
    def write_settings(self, **extra) -> None:
        ports = {self.port}
        while len(ports) < 3:
            ports.add(free_port())
        internal, api = sorted(ports - {self.port})
        settings = {
            "hub": {"port": self.port, "internal_port": internal, "proxy_api_port": api},
            "auth": {"type": "native", "admin_users": ["admin"],
                     "native": {"minimum_password_length": 10, "allowed_failed_logins": 0}},
            "users": {"unix_prefix": TEST_UNIX_PREFIX, "home_root": str(self.home_root), "spawn_timeout": 120},
            "data": {"beamline_dirs": [str(self.beamline_dir)]},
            "culling": {"server_idle_timeout": 3600, "cull_every": 300},
            # the beamtime monitor analyses whatever lands in the beamline folder: only the tests
            # about it turn it on (tests/hub/test_beamtime*.py), so that it takes no CPU elsewhere
            "monitor": {"enabled": False},
        }
        for section, values in extra.items():
            settings.setdefault(section, {}).update(values)
        self.settings_path.write_text(json.dumps(settings, indent=1))  # JSON is YAML

    def _env(self) -> dict:
        env = {**os.environ, "SPECKLE_HUB_STATE": str(self.state_dir), "SPECKLE_HUB_SETTINGS": str(self.settings_path)}
        if self.external_proxy:
            env["SPECKLE_HUB_PROXY"] = "external"
        return env

    def _launch(self, timeout: float) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCH)], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=str(self.workdir), start_new_session=True,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"the hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "hub/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        pytest.fail(f"the hub did not answer within {timeout} s:\n{self.log_tail()}")

    def start(self, timeout: float = 60) -> None:
        if not PROXY_BIN.exists():
            pytest.fail(f"the proxy is not installed ({PROXY_BIN}): run `make setup-test`")
        self.write_settings(**self.settings)
        if self.external_proxy:  # as systemd runs it: the proxy in its own process (unit)
            self.proxy_proc = subprocess.Popen(
                [sys.executable, str(HUB_CONFIG / "proxy_run.py")], env=self._env(),
                stdout=open(self.workdir / "proxy.log", "ab"), stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self._launch(timeout)
        if self.auth_type == "native":
            name, password = (self.state_dir / "first-admin-password").read_text().split()
            self.take_admin(self.login(name, password))

    def take_admin(self, admin: HubUser) -> None:
        """Use ``admin`` (an admin, logged in) for :meth:`api`: makes its API token."""
        self.admin = admin
        r = admin.session.post(self.url + f"hub/api/users/{admin.name}/tokens",
                               headers={"X-XSRFToken": admin.xsrf}, json={"note": "tests"})
        r.raise_for_status()
        self.token = r.json()["token"]

    def stop_hub_only(self, timeout: float = 15) -> float:
        """SIGTERM the hub process (as systemd does) and wait; returns the seconds it took."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - t0

    def restart_hub(self, timeout: float = 60) -> None:
        self.stop_hub_only()
        self._launch(timeout)

    def hub_pid(self) -> int:
        """The jupyterhub process: the child of ``launch.py``, which supervises it."""
        pids = [p for p in _children_map().get(self.proc.pid, []) if "jupyterhub" in _cmdline(p)]
        assert len(pids) == 1, pids
        return pids[0]

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop servers, the hub, its proxy and culler; remove the test accounts. Never hangs."""
        if self.proc is not None and self.proc.poll() is None and self.token:
            for user in self.users:
                try:
                    self.api("DELETE", f"users/{user.name}/server", timeout=5)
                except requests.RequestException:
                    pass
            for user in self.users:
                try:
                    self._wait_stopped(user.name, 20)
                except Exception:
                    pass
        proxy_pid = None
        try:
            proxy_pid = int((self.state_dir / "proxy.pid").read_text().strip())
        except (OSError, ValueError):
            pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proxy_proc is not None and self.proxy_proc.poll() is None:
            self.proxy_proc.terminate()
            try:
                self.proxy_proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proxy_proc.kill()
        # the proxy runs in its own session: make sure it does not keep the port
        if proxy_pid and "configurable-http-proxy" in _cmdline(proxy_pid):
            os.kill(proxy_pid, signal.SIGTERM)
            if not _wait_gone(proxy_pid, 5):
                os.kill(proxy_pid, signal.SIGKILL)
        if IS_ROOT:
            for user in self.users:
                self._remove_account(user.unix_name)
            from speckle_hub.limits import confiner

            way = confiner("auto", str(self.state_dir))
            if way.kind == "cgroup":
                way.remove_all()  # the servers' cgroups (limits.py), whatever the hub left
        shutil.rmtree(self.beamline_dir, ignore_errors=True)
        shutil.rmtree(self.home_root, ignore_errors=True)

    @staticmethod
    def _remove_account(unix_name: str) -> None:
        if not unix_name.startswith(TEST_UNIX_PREFIX):
            return
        try:
            uid = pwd.getpwnam(unix_name).pw_uid
        except KeyError:
            return
        for pid in _pids_of_uid(uid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in _pids_of_uid(uid):
            _wait_gone(pid, 5)
        subprocess.run(["userdel", "-r", unix_name], capture_output=True)

    # ------------------------------------------------------------------ API and accounts
    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kw.pop("headers", {})}
        kw.setdefault("timeout", 30)
        return requests.request(method, self.url + "hub/api/" + path, headers=headers, **kw)

    def login(self, name: str, password: str) -> HubUser:
        user = HubUser(self, name, password)
        user.session.get(self.url + "hub/login")
        r = user.session.post(self.url + "hub/login", allow_redirects=False,
                              data={"username": name, "password": password, "_xsrf": user.xsrf})
        if r.status_code != 302:
            raise AssertionError(f"login of {name} failed: {r.status_code}")
        return user

    def signup(self, name: str, password: str) -> requests.Response:
        s = requests.Session()
        s.get(self.url + "hub/signup")
        return s.post(self.url + "hub/signup", data={
            "username": name, "signup_password": password, "signup_password_confirmation": password,
            "_xsrf": s.cookies.get("_xsrf", ""),
        })

    def approve(self, name: str) -> None:
        """As the admin, press Approve on /hub/authorize (the hub takes it from its own page only)."""
        r = self.admin.session.get(self.url + f"hub/authorize/{name}",
                                   headers={"Referer": self.url + "hub/authorize"})
        r.raise_for_status()

    def new_user(self, prefix: str = "t") -> HubUser:
        """Sign up, approve and log in a fresh user (a unix account at its first spawn, as root)."""
        name = f"{prefix}{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(12)
        self.signup(name, password).raise_for_status()
        self.approve(name)
        user = self.login(name, password)
        self.users.append(user)
        return user

    def start_server(self, name: str, options: dict, timeout: float = 90, session=None) -> dict:
        r = self.api("POST", f"users/{name}/server", json=options)
        if r.status_code not in (201, 202, 400):
            raise AssertionError(f"spawn of {name}: {r.status_code} {r.text}\n{self.log_tail()}")
        start = time.monotonic()
        while time.monotonic() < start + timeout:
            model = self.api("GET", f"users/{name}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            if not server and not model.get("pending") and time.monotonic() > start + 3:
                raise AssertionError(f"the server of {name} did not start:\n{self.log_tail()}")
            time.sleep(0.3)
        raise AssertionError(f"the server of {name} was not ready within {timeout} s:\n{self.log_tail()}")

    def _wait_stopped(self, name: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            model = self.api("GET", f"users/{name}", timeout=5).json()
            if not model.get("servers") and not model.get("pending"):
                return
            time.sleep(0.3)

    def stop_server(self, name: str, timeout: float = 30) -> None:
        self.api("DELETE", f"users/{name}/server")
        self._wait_stopped(name, timeout)


@contextlib.contextmanager
def running_hub(workdir: Path, **kw):
    """A :class:`Hub` (``Hub(workdir, **kw)``) started for a ``with`` block, stopped after it."""
    hub = Hub(workdir, **kw)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


def browser_login(page, hub: Hub, user: HubUser, timeout_ms: int = 15000) -> None:
    """Log in through the real login form and wait for the landing page."""
    page.goto(hub.url + "hub/login", timeout=timeout_ms)
    page.fill("#username_input", user.name)
    page.fill("#password_input", user.password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/home", timeout=timeout_ms)


# ---------------------------------------------------------------------- the dashboards in a browser
# Shared by tests/hub/test_dashboard_browser.py and benchmarks/bench_hub.py. The selectors are the
# stable CSS classes documented in speckle/ui/__init__.py.
VERDICT_SELECTOR = ".speckle-verdict-good, .speckle-verdict-marginal, .speckle-verdict-bad"


def make_speckle_npy(path: Path, n_frames: int, shape=(256, 256), tau_frames: float = 20.0,
                     beta: float = 0.2, mean_counts: float = 2.0, seed: int = 1) -> Path:
    """Write a valid ``.npy`` uint16 stack of simulated speckle, chunk by chunk (bounded memory)."""
    import numpy as np

    from speckle.xpcs.simulate import ou_speckle_chunks

    path = Path(path)
    tmp = path.with_name(path.name + ".writing")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint16, shape=(n_frames, *shape))
    i = 0
    for chunk in ou_speckle_chunks(n_frames, shape, tau_frames, beta=beta, mean_counts=mean_counts,
                                   seed=seed, chunk_frames=200):
        out[i:i + len(chunk)] = chunk
        i += len(chunk)
    out.flush()
    del out
    tmp.rename(path)
    return path


def start_make_speckle_npy(path: Path, n_frames: int, shape=(256, 256)) -> subprocess.Popen:
    """:func:`make_speckle_npy` in a child process (it runs while the hub starts); wait() on it."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from hubtools import make_speckle_npy; "
            "make_speckle_npy(sys.argv[2], int(sys.argv[3]), (int(sys.argv[4]), int(sys.argv[5])))")
    return subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parent), str(path),
                             str(n_frames), str(shape[0]), str(shape[1])])


def wait_dashboard_ready(page, timeout_ms: int = 90000) -> None:
    """Wait until the XPCS dashboard's Analyze button is visible and enabled (kernel connected)."""
    page.locator("button.speckle-analyze").wait_for(state="visible", timeout=timeout_ms)
    page.wait_for_selector("button.speckle-analyze:enabled", timeout=timeout_ms)


def open_dashboard(page, user: HubUser, timeout_ms: int = 90000) -> float:
    """Open the XPCS quick check of ``user`` (logged in already); return the seconds it took."""
    t0 = time.monotonic()
    page.goto(user.dashboard_url(), timeout=timeout_ms)
    wait_dashboard_ready(page, timeout_ms)
    return time.monotonic() - t0


def choose_beamline_file(page, name: str, timeout_ms: int = 30000) -> None:
    """Select ``name`` in the beamline folder list (press Refresh first) and press Open."""
    page.click(".speckle-source-browse button:has-text('Refresh')")
    select = page.locator(".speckle-browse select")
    option = select.locator("option", has_text=name)
    option.first.wait_for(state="attached", timeout=timeout_ms)
    labels = select.locator("option").all_inner_texts()
    index = next(i for i, text in enumerate(labels) if text.split()[0] == name)
    select.select_option(index=index)
    page.wait_for_selector("button.speckle-browse-open:enabled", timeout=timeout_ms)
    page.click("button.speckle-browse-open")


def wait_dataset_open(page, name: str, timeout_ms: int = 60000) -> str:
    """Wait until the dataset description names ``name``; return that description."""
    info = page.locator(".speckle-dataset-info")
    info.filter(has_text=name).wait_for(state="visible", timeout=timeout_ms)
    return info.inner_text()


def add_rectangle(page, text: str, timeout_ms: int = 15000) -> None:
    """Type a rectangle ``ROW0:ROW1,COL0:COL1`` and press Add; wait until it is listed."""
    rois = page.locator(".speckle-region-list option")
    before = rois.count()
    page.fill(".speckle-region-text input", text)
    page.click("button.speckle-region-set")
    page.wait_for_function(
        "n => document.querySelectorAll('.speckle-region-list option').length > n", arg=before,
        timeout=timeout_ms)


def wait_analysis_done(page, timeout_ms: int = 180000) -> None:
    """Wait until the analysis finished: verdict, g2 image and the download links are shown."""
    page.wait_for_selector(VERDICT_SELECTOR, timeout=timeout_ms)
    page.wait_for_function(
        "() => { const e = document.querySelector('img.speckle-g2-plot');"
        " return e && e.complete && e.naturalWidth > 0 && e.offsetParent !== null; }",
        timeout=timeout_ms)
    page.wait_for_selector(".speckle-stage:has-text('done in')", timeout=timeout_ms)
    page.wait_for_selector("a.speckle-download-link", timeout=timeout_ms)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat_text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _memory(pid: int) -> int:
    """A process's share of physical memory (bytes): its proportional set size (pages shared with
    others, such as the forks of the hub's warm templates, counted once over the sharers), else
    its resident set size."""
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            text = Path(f"/proc/{pid}/{name}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise OSError(f"no memory figures for {pid}")


def process_tree_rss(root: int | None = None) -> dict[str, int]:
    """Memory (bytes, :func:`_memory`) of ``root``'s descendants, summed per kind: ``driver``
    (Playwright's node), ``chromium``, ``other``."""
    children = _children_map()
    todo, seen = list(children.get(root or os.getpid(), [])), []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(children.get(pid, []))
    out = {"driver": 0, "chromium": 0, "other": 0}
    for pid in seen:
        try:
            rss = _memory(pid)
        except OSError:
            continue
        cmd = _cmdline(pid)
        kind = "chromium" if "chromium" in cmd else "driver" if "run-driver" in cmd else "other"
        out[kind] += rss
    return out


def _kind(cmd: str) -> str:
    for key, kind in (("chromium", "chromium"), ("run-driver", "driver"),
                      ("configurable-http-proxy", "proxy"), ("user_server/singleuser.py", "user server"),
                      ("ipykernel", "kernel"), ("launch.py", "hub")):
        if key in cmd:
            return kind
    return "other"


def process_tree_cpu(root: int | None = None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by ``root``'s descendants, summed per kind:
    chromium, driver, proxy, user server, kernel, hub, other."""
    children = _children_map()
    todo, out = list(children.get(root or os.getpid(), [])), {}
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = _kind(_cmdline(pid))
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


class _Sampler:
    """Calls :meth:`sample` every ``interval`` s in a thread while in a ``with`` block."""

    def __init__(self, interval: float):
        import threading

        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)


class RssPeak(_Sampler):
    """Sample :func:`process_tree_rss` in a thread; ``peak`` holds the largest value per kind."""

    def __init__(self, interval: float = 0.2):
        super().__init__(interval)
        self.start_rss = process_tree_rss()
        self.peak = dict(self.start_rss)

    def sample(self) -> None:
        for kind, value in process_tree_rss().items():
            self.peak[kind] = max(self.peak[kind], value)


class HealthWatch(_Sampler):
    """GET ``/hub/health`` every ``interval`` s in a thread while in a ``with`` block: ``slowest``
    is the slowest answer in seconds (a failed request counts as 99 s), ``samples`` how many."""

    def __init__(self, url: str, interval: float = 0.2):
        super().__init__(interval)
        self.url = url + "hub/health"
        self.slowest, self.samples = 0.0, 0

    def sample(self) -> None:
        t0 = time.monotonic()
        try:
            ok = requests.get(self.url, timeout=10).status_code == 200
        except requests.RequestException:
            ok = False
        self.slowest = max(self.slowest, time.monotonic() - t0 if ok else 99.0)
        self.samples += 1
