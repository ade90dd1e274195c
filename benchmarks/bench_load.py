"""Many users at once on one hub (issue 11's "Load"): 10 and 20 users log in, start their server,
open the XPCS quick check and analyse the demo data, all at the same time.

Starts the real hub (``tests/hub/hubtools.Hub``, the path of ``make hub``; as root one unix
account and one cgroup per user) on loopback with scratch state and drives it:

* **protocol** (default): without browsers, so that the server's own capacity shows. Each user
  posts the login form, starts the Quick-check server through the hub's API, requests the
  dashboard page (Voila renders it in a kernel), connects to that kernel's websocket as the page
  does, and there runs what the page's buttons run (``chooser.open_demo``, then the runner's
  Analyze) on the dashboard object of that kernel.
* **browser** (``--browser``): the same steps through Debian's Chromium (one context per user,
  on the same 2 cores as the hub: it measures the machine, not only the hub).

Steps timed per user: ``login`` (the form's POST), ``start`` (API spawn until the progress stream
says ready, as the spawn page waits),
``dashboard`` (page rendered and its kernel connected), ``login_to_dashboard`` (the sum, what a
person waits for), ``analyze`` (Analyze until the verdict exists). Reported: success rate, p50
and p95 of each step, the slowest ``/hub/health`` answer during the run (every 0.2 s, from a
process of its own at the hub's priority: the benchmark's threads do not slow it down), peak
resident memory of the hub's process tree (hub, proxy, servers, kernels), and what is left once
the users went away (pages closed, dashboard kernels stopped after
``culling.dashboard_orphan_grace``, set to 10 s here).

Floors with 10 users (issue 11): 100 % success, login to ready dashboard p95 <= 15 s, Analyze to
verdict p95 <= 10 s, health never slower than 1 s. Exit status 1 when one is missed::

    .venv/bin/python benchmarks/bench_load.py                  # 10 then 20 users, protocol
    .venv/bin/python benchmarks/bench_load.py --users 10 --browser
    .venv/bin/python benchmarks/bench_load.py --users 5 --no-write

Loopback only; every wait is bounded (``--timeout``). Results: ``benchmarks/results/load_<tag>``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "hub"))

from bench_hub import load1, machine  # noqa: E402
from hubtools import (  # noqa: E402
    CHROMIUM, CHROMIUM_ARGS, VERDICT_SELECTOR, HealthWatch, Hub, process_tree_cpu, process_tree_rss,
    running_hub,
)
from kernel_client import KernelSocket, page_kernel_id  # noqa: E402
from speckle_hub.limits import hub_priority  # noqa: E402

RESULTS = HERE / "results"
FLOORS = {"success": 1.0, "login_to_dashboard_p95": 15.0, "analyze_p95": 10.0, "health_max": 1.0}
ORPHAN_GRACE_S = 10
STEPS = ("login", "start", "dashboard", "login_to_dashboard", "analyze")
#: What the dashboard's Demo button and then its Analyze button run, in the page's kernel.
OPEN_DEMO = ("import gc\nfrom speckle.ui import XpcsDashboard\n"
             "_d = next(o for o in gc.get_objects() if isinstance(o, XpcsDashboard))\n"
             "_d.chooser.open_demo('xpcs')\nprint('opened', _d.wait(120))")
ANALYZE = "_d.runner.run()\nprint('verdict', _d.wait(300) and _d.results.level)"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _login(hub: Hub, user) -> float:
    t0 = time.monotonic()
    fresh = hub.login(user.name, user.password)  # the form's POST, a 302 on success
    user.session = fresh.session
    return time.monotonic() - t0


def start_server(hub: Hub, name: str, timeout: float) -> None:
    """Start a Quick-check server and wait for it as the spawn page does: one request for the
    start, then the hub's progress event stream until it says ready (polling the user model
    instead, ten users at once asked the hub thirty times a second)."""
    r = hub.api("POST", f"users/{name}/server", json={"profile": "quick"})
    if r.status_code == 201:
        return
    # 400 "already running": the landing page started it at login (browser mode)
    if r.status_code != 202 and not (r.status_code == 400 and "already running" in r.text):
        raise RuntimeError(f"spawn of {name}: {r.status_code} {r.text[:300]}")
    with hub.api("GET", f"users/{name}/server/progress", stream=True, timeout=timeout) as events:
        for line in events.iter_lines():
            if not line.startswith(b"data:"):
                continue
            event = json.loads(line[5:])
            if event.get("failed"):
                raise RuntimeError(f"the server of {name} failed: {event.get('message')}")
            if event.get("ready"):
                return
    raise RuntimeError(f"the progress of {name}'s start ended before it was ready")


def one_user_protocol(hub: Hub, user, timeout: float) -> dict:
    """Log in, start, open the dashboard and analyse through HTTP and the kernel websocket."""
    out = {"login": _login(hub, user)}
    t0 = time.monotonic()
    start_server(hub, user.name, timeout)
    out["start"] = time.monotonic() - t0
    t0 = time.monotonic()
    page = user.get(user.dashboard_url().removeprefix(user.server_url), timeout=timeout)
    page.raise_for_status()
    socket = KernelSocket(user, page_kernel_id(page.text), user.api_token(), timeout=timeout)
    try:
        status, opened = socket.run("print('ready')", timeout=timeout)
        out["dashboard"] = time.monotonic() - t0
        out["login_to_dashboard"] = out["login"] + out["start"] + out["dashboard"]
        status, opened = socket.run(OPEN_DEMO, timeout=timeout)
        if "opened True" not in opened:
            raise RuntimeError(f"the demo did not open: {opened[-300:]}")
        t0 = time.monotonic()
        status, verdict = socket.run(ANALYZE, timeout=timeout)
        out["analyze"] = time.monotonic() - t0
        found = re.search(r"verdict (\w+)", verdict)
        if status != "ok" or not found or found.group(1) not in ("good", "marginal", "bad"):
            raise RuntimeError(f"no verdict: {verdict[-300:]}")
        out["verdict"] = found.group(1)
    finally:
        socket.close()  # the page goes away: its kernel is stopped after the grace period
    return out


async def one_user_browser(hub: Hub, user, browser, timeout: float) -> dict:
    """The same through Chromium (Playwright's async API: every user's page at once)."""
    ms = timeout * 1000
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        t0 = time.monotonic()
        await page.goto(hub.url + "hub/login", timeout=ms)
        await page.fill("#username_input", user.name)
        await page.fill("#password_input", user.password)
        await page.click("#login_submit")
        await page.wait_for_url("**/hub/home", timeout=ms)
        out = {"login": time.monotonic() - t0}
        t0 = time.monotonic()
        await asyncio.to_thread(start_server, hub, user.name, timeout)
        out["start"] = time.monotonic() - t0
        t0 = time.monotonic()
        await page.goto(user.dashboard_url(), timeout=ms)
        await page.wait_for_selector("button.speckle-analyze:enabled", timeout=ms)
        out["dashboard"] = time.monotonic() - t0
        out["login_to_dashboard"] = out["login"] + out["start"] + out["dashboard"]
        await page.click(".speckle-demo-xpcs")
        await page.wait_for_selector(".speckle-dataset-info:has-text('256')", timeout=ms)
        t0 = time.monotonic()
        await page.click("button.speckle-analyze")
        await page.wait_for_selector(VERDICT_SELECTOR, timeout=ms)
        await page.wait_for_selector(".speckle-stage:has-text('done in')", timeout=ms)
        out["analyze"] = time.monotonic() - t0
        return out
    finally:
        await context.close()


def _browser_users(hub: Hub, users: list, timeout: float) -> list:
    """Every user's Chromium page at once; each outcome or its exception."""
    from playwright.async_api import async_playwright  # noqa: PLC0415

    async def all_users():
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return await asyncio.gather(*(one_user_browser(hub, u, browser, timeout) for u in users),
                                            return_exceptions=True)
            finally:
                await browser.close()

    return asyncio.run(all_users())


class HealthProbe:
    """:class:`HealthWatch` in a process of its own (at the hub's priority when root), so that
    what it measures is the hub, not this process's threads and GIL busy with the users."""

    def __init__(self, url: str):
        ctx = multiprocessing.get_context("fork")
        self._stop, self._result = ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=self._run, args=(url,), daemon=True)

    def _run(self, url: str) -> None:
        if os.geteuid() == 0:
            # a session of its own, weighed as the hub's (limits.hub_priority): in the benchmark's
            # session it waited behind the users' client threads wherever the kernel groups
            # processes by session, and measured that instead of the hub
            os.setsid()
            hub_priority()
        with HealthWatch(url) as watch:
            self._stop.wait()
        self._result.put((watch.slowest, watch.samples))

    def __enter__(self):
        self._proc.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.slowest, self.samples = self._result.get(timeout=60)
        self._proc.join(10)


def run_load(hub: Hub, n_users: int, timeout: float, browser: bool = False) -> dict:
    """``n_users`` at once; the figures of one run."""
    users = [hub.new_user("load") for _ in range(n_users)]
    cpu0 = process_tree_cpu(hub.proc.pid)
    rss0 = sum(process_tree_rss(hub.proc.pid).values())
    peak = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            peak[0] = max(peak[0], sum(process_tree_rss(hub.proc.pid).values()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    load_before = load1()
    outcomes = []
    with HealthProbe(hub.url) as health:
        if browser:
            results = _browser_users(hub, users, timeout)
        else:
            with ThreadPoolExecutor(n_users) as pool:
                futures = [pool.submit(one_user_protocol, hub, u, timeout) for u in users]
                results = []
                for f in futures:
                    try:
                        results.append(f.result(timeout=timeout * 3))
                    except Exception as exc:  # noqa: BLE001 - a failed user is counted, not fatal
                        results.append(exc)
        for r in results:
            outcomes.append({"error": f"{type(r).__name__}: {str(r)[:300]}"} if isinstance(r, BaseException) else r)
    load_after = load1()
    cpu_kinds = process_tree_cpu(hub.proc.pid)
    cpu_kinds = {k: v - cpu0.get(k, 0.0) for k, v in cpu_kinds.items()}
    cpu = sum(cpu_kinds.values())
    time.sleep(ORPHAN_GRACE_S + 15)  # the pages are gone: their kernels stop, servers stay
    stop.set()
    sampler.join(5)
    idle = sum(process_tree_rss(hub.proc.pid).values())
    ok = [o for o in outcomes if "error" not in o]
    figures = {
        "users": n_users, "mode": "browser" if browser else "protocol",
        "limits": hub.settings["limits"]["method"],
        "success": len(ok) / n_users,
        "errors": [o["error"] for o in outcomes if "error" in o],
        "health_max": round(health.slowest, 3), "health_samples": health.samples,
        "rss_before_gb": round(rss0 / 1e9, 2), "rss_peak_gb": round(peak[0] / 1e9, 2),
        "rss_idle_gb": round(idle / 1e9, 2), "load_before": load_before, "load_after": load_after,
        # CPU time of the hub's tree (hub, proxy, servers, kernels) per user, login to verdict:
        # with C cores, N users at once need at least N * this / C seconds
        "cpu_s_per_user": round(cpu / n_users, 1),
        "cpu_s_per_user_by_kind": {k: round(v / n_users, 2) for k, v in sorted(cpu_kinds.items())},
    }
    for step in STEPS:
        values = [o[step] for o in ok if step in o]
        figures[f"{step}_p50"] = round(percentile(values, 50), 2)
        figures[f"{step}_p95"] = round(percentile(values, 95), 2)
    with ThreadPoolExecutor(n_users) as pool:  # stopping takes a few seconds each: at once
        list(pool.map(lambda u: hub.stop_server(u.name, timeout=120), users))
    return figures


def floors(figures: dict) -> dict[str, bool]:
    """Which of issue 11's floors (for 10 users) the figures meet."""
    return {"success": figures["success"] >= FLOORS["success"],
            "login_to_dashboard_p95": figures["login_to_dashboard_p95"] <= FLOORS["login_to_dashboard_p95"],
            "analyze_p95": figures["analyze_p95"] <= FLOORS["analyze_p95"],
            "health_max": figures["health_max"] <= FLOORS["health_max"]}


def table(runs: list[dict]) -> str:
    head = ("| users | mode | success | login→dashboard p50 / p95 (s) | Analyze→verdict p50 / p95 (s) "
            "| start p50 / p95 (s) | slowest health (s) | memory peak / idle (GB) | CPU s per user | load |")
    lines = [head, "|" + " --- |" * 10]
    for f in runs:
        lines.append(
            f"| {f['users']} | {f['mode']} | {f['success']:.0%} | {f['login_to_dashboard_p50']} / "
            f"{f['login_to_dashboard_p95']} | {f['analyze_p50']} / {f['analyze_p95']} | "
            f"{f['start_p50']} / {f['start_p95']} | {f['health_max']} | {f['rss_peak_gb']} / "
            f"{f['rss_idle_gb']} | {f.get('cpu_s_per_user', '?')} | {f['load_before']} → {f['load_after']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, action="append", help="users at once (repeatable; default 10 and 20)")
    parser.add_argument("--browser", action="store_true", help="drive Chromium pages instead of the protocol")
    parser.add_argument("--timeout", type=float, default=300.0, help="the longest wait of any step (s)")
    parser.add_argument("--no-limits", action="store_true",
                        help="limits.method: off (no cgroup per server), to compare")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    parser.add_argument("--tag", default=None, help="suffix of the result files (default: the date)")
    a = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the hub and accounts go too
    counts = a.users or [10, 20]
    settings = {"culling": {"dashboard_orphan_grace": ORPHAN_GRACE_S},
                "users": {"spawn_timeout": int(a.timeout)},
                "limits": {"method": "off" if a.no_limits else "auto"}}
    runs = []
    with tempfile.TemporaryDirectory(prefix="speckle-load-") as work, \
            running_hub(Path(work), settings=settings) as hub:
        for n in counts:
            print(f"{n} users at once ({'browser' if a.browser else 'protocol'}), load {load1()}...",
                  flush=True)
            runs.append(run_load(hub, n, a.timeout, a.browser))
            print(json.dumps(runs[-1]), flush=True)
    text = table(runs)
    ten = [f for f in runs if f["users"] == 10]
    verdicts = floors(ten[0]) if ten else {}
    print(text)
    for name, met in verdicts.items():
        print(f"floor {name} (10 users, {FLOORS[name]}): {'PASS' if met else 'FAIL'}")
    if not a.no_write:
        RESULTS.mkdir(exist_ok=True)
        tag = a.tag or _dt.date.today().isoformat()
        stem = RESULTS / f"load_{'browser' if a.browser else 'protocol'}_{tag}"
        record = {"machine": machine(), "when": _dt.datetime.now().isoformat(timespec="seconds"),
                  "runs": runs, "floors": verdicts}
        stem.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
        stem.with_suffix(".md").write_text(f"# Load: {tag}\n\n{text}\n\nMachine: "
                                           f"{json.dumps(record['machine'])}\n")
        print(f"written {stem}.json and .md")
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
