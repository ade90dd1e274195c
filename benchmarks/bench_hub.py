"""The hub as a person meets it, timed (issue 3's "Numbers"): a real hub, a real browser.

Starts the real hub (JupyterHub + npm proxy + spawner, ``tests/hub/hubtools.Hub``, the same path
as ``make hub``) on loopback with scratch state, drives headless Debian Chromium through
Playwright's Python API, and measures:

1. **login to a live dashboard** (floor 8 s): from clicking the login form's submit button until
   the XPCS dashboard's Analyze button is visible and enabled, through the landing page's XPCS
   tile, clicked as soon as the landing page has loaded, for three kinds of login:

   * *first login*: a new account (unix account created, home prepared, server spawned);
   * *returning*: the account exists, its server was stopped (e.g. culled), the tile spawns it;
   * *server running*: the tile opens the dashboard at once.

   The landing page starts the server itself as it loads; the tile then waits for it. Each run
   says whether its dashboard came from Voila's preheated kernel (``dashboards.preheat``) or from
   a kernel started for the view. The floor is judged on the median of each kind.
2. **Analyze to plotted g2** (floor 5 s): 1000 frames of 256x256 (uint16 speckle from
   ``ou_speckle_chunks``, cached in ``benchmarks/.cache/``) placed in the hub's beamline folder and
   opened through the dashboard's folder list; four rectangles cover the whole detector; from the
   click on Analyze until the new g2 image is shown. The first analysis in a fresh dashboard
   (imports, warm-up) and the median of the next ones are reported separately.
3. **upload throughput through the browser uploader** (floor 100 MB/s): a 1 GB ``.npy`` (zeros:
   the content does not matter for the transfer, sparse on disk) given to the dashboard's
   ``input.speckle-upload-input`` by path; "transfer" is from the file's selection until the
   progress bar reaches 100 %, "with validation" until the page says "Uploaded". The protocol
   alone (no browser) is ``benchmarks/bench_upload.py``.

It prints a table with PASS/FAIL per floor, and writes ``benchmarks/results/hub_cpu_<date>.json``
and ``.md`` with the machine (CPU model, cores, memory), versions and the 1-minute load average
around every measurement (the machine is shared: a load above ~1 on 2 cores slows everything)::

    .venv/bin/python benchmarks/bench_hub.py                     # everything (about 3 minutes)
    .venv/bin/python benchmarks/bench_hub.py --rounds 5 --upload-mb 300
    .venv/bin/python benchmarks/bench_hub.py --no-upload --no-write
    .venv/bin/python benchmarks/bench_hub.py --login-only --rounds 5 # the logins alone (2 minutes)

Run as root for the real thing (one unix account per user); as another user the hub runs in its
single-account mode.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "hub"))
sys.path.insert(0, str(HERE / "peers"))

import hubtools  # noqa: E402
from hubtools import (  # noqa: E402
    CHROMIUM, CHROMIUM_ARGS, Hub, RssPeak, add_rectangle, choose_beamline_file, make_speckle_npy,
    wait_dashboard_ready, wait_dataset_open,
)

CACHE = HERE / ".cache"
RESULTS = HERE / "results"
FLOOR_LOGIN_S = 8.0
FLOOR_ANALYZE_S = 5.0
FLOOR_UPLOAD_MB_S = 100.0
QUADRANTS = ["0:128,0:128", "0:128,128:256", "128:256,0:128", "128:256,128:256"]

_G2_CHANGED = """old => { const e = document.querySelector('img.speckle-g2-plot');
  return !!e && e.src !== old && e.src !== '' && e.complete && e.naturalWidth > 0
    && e.offsetParent !== null; }"""

_UPLOAD_WATCH = """() => {
  const bar = document.querySelector('progress.speckle-upload-progress');
  const status = document.querySelector('.speckle-upload-status');
  const error = document.querySelector('.speckle-upload-error');
  const input = document.querySelector('input.speckle-upload-input');
  const u = window.__speckleUpload = {};
  input.addEventListener('change', () => { u.start = performance.now(); }, {capture: true});
  const timer = setInterval(() => {
    if (!u.start) return;
    if (!u.sent && bar.value >= 1) u.sent = performance.now();
    if (status.textContent.startsWith('Uploaded')) { u.done = performance.now(); clearInterval(timer); }
    if (error.textContent) { u.error = error.textContent; clearInterval(timer); }
  }, 5);
}"""


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict:
    try:
        from _runner_util import machine_info  # noqa: PLC0415

        info = machine_info()
    except Exception:  # noqa: BLE001 - the peers' helper is optional here
        info = {"hostname": platform.node(), "cpu_count": os.cpu_count()}
    info["cpus_allowed"] = len(os.sched_getaffinity(0))
    info["python"] = platform.python_version()
    info["user"] = "root (one unix account per user)" if os.geteuid() == 0 else "single-account mode"
    return info


def versions(browser) -> dict:
    from importlib.metadata import version  # noqa: PLC0415

    out = {"chromium": browser.version}
    for name in ("jupyterhub", "jupyter_server", "voila", "ipywidgets", "playwright", "speckle"):
        try:
            out[name] = version(name)
        except Exception:  # noqa: BLE001
            out[name] = "?"
    return out


def median(values):
    return statistics.median(values) if values else float("nan")


# ----------------------------------------------------------------------------- 1. login
def time_login(browser, hub: Hub, user) -> dict:
    """Submit the login form, click the XPCS tile, wait for Analyze; seconds from the submit."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(180_000)
    try:
        page.goto(hub.url + "hub/login")
        page.fill("#username_input", user.name)
        page.fill("#password_input", user.password)
        before = load1()
        t0 = time.perf_counter()
        page.click("#login_submit")
        page.wait_for_url("**/hub/home")
        t_home = time.perf_counter() - t0
        page.click("#tile-xpcs_quick_check")
        # the server answers (spawned if it was not running): the browser is sent to Voila
        page.wait_for_url(re.compile(r".*/voila/render/.*"), wait_until="commit")
        t_voila = time.perf_counter() - t0
        wait_dashboard_ready(page, 180_000)
        total = time.perf_counter() - t0
        kernel = json.loads(page.evaluate(
            "() => document.getElementById('jupyter-config-data').textContent"))["kernelId"]
        return {"seconds": round(total, 2), "landing_s": round(t_home, 2),
                "voila_request_s": round(t_voila, 2), "preheated": preheated(hub, kernel),
                "load1_before_after": [before, load1()]}
    finally:
        context.close()


def preheated(hub: Hub, kernel_id: str) -> bool:
    """Whether the user server logged that this dashboard's kernel came from Voila's pool."""
    try:
        return f"Using pre-heated kernel: {kernel_id} " in hub.log_path.read_text(errors="replace")
    except OSError:
        return False


def bench_login(browser, hub: Hub, rounds: int) -> dict:
    users = [hub.new_user("bench") for _ in range(rounds)]
    out = {"first login": [], "returning": [], "server running": []}
    print(f"login to a live dashboard ({rounds} users):", flush=True)
    for user in users:  # a new account: useradd, home, spawn
        out["first login"].append(time_login(browser, hub, user))
        print(f"  first login      {out['first login'][-1]}", flush=True)
    for user in users:  # the server runs now: the tile opens a new dashboard
        out["server running"].append(time_login(browser, hub, user))
        print(f"  server running   {out['server running'][-1]}", flush=True)
    for user in users:
        user.stop()
    for user in users:  # stopped (culled): the tile spawns again
        out["returning"].append(time_login(browser, hub, user))
        print(f"  returning        {out['returning'][-1]}", flush=True)
    for user in users[1:]:
        user.stop()
    return {"users": [u.name for u in users], "runs": out, "keep": users[0]}


# ----------------------------------------------------------------------------- 2. analyze
def bench_analyze(browser, hub: Hub, user, data: Path, rounds: int) -> dict:
    target = hub.beamline_dir / data.name
    if not target.exists():
        try:
            os.link(data, target)
        except OSError:
            shutil.copy(data, target)
        os.chmod(target, 0o644)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(180_000)
    runs = []
    try:
        hubtools.browser_login(page, hub, user)
        page.goto(user.dashboard_url())
        wait_dashboard_ready(page, 180_000)
        choose_beamline_file(page, target.name)
        info = wait_dataset_open(page, target.name)
        for rect in QUADRANTS:
            add_rectangle(page, rect)
        print(f"Analyze -> g2 ({' '.join(info.split()[3:9])}; {len(QUADRANTS)} rectangles "
              "over the whole detector, two-time maps on; repeats with frame times of 1, 2, ... ms "
              "so that each draws a new g2 image):", flush=True)
        frame_time = page.get_by_label("frame time (ms)", exact=True)
        for i in range(rounds + 1):
            page.wait_for_selector("button.speckle-analyze:enabled")
            if i:  # the same analysis, its lags in seconds of another frame time: a new g2 image
                frame_time.fill(f"{i:g}")
                frame_time.press("Enter")
                page.wait_for_timeout(300)
            old = page.evaluate("() => { const e = document.querySelector('img.speckle-g2-plot');"
                                " return e ? e.src : ''; }")
            before = load1()
            t0 = time.perf_counter()
            page.click("button.speckle-analyze")
            page.wait_for_function(_G2_CHANGED, arg=old, polling="raf", timeout=180_000)
            g2_s = time.perf_counter() - t0
            page.wait_for_selector(".speckle-stage:has-text('done in')", timeout=180_000)
            done_s = time.perf_counter() - t0
            stage = page.locator(".speckle-stage").inner_text().strip()
            level = page.locator(".speckle-verdict").get_attribute("class").split("speckle-verdict-")[-1]
            runs.append({"g2_s": round(g2_s, 2), "done_s": round(done_s, 2), "stage": stage,
                         "verdict": level.strip(), "first": i == 0,
                         "load1_before_after": [before, load1()]})
            print(f"  {'first ' if i == 0 else 'repeat'} {runs[-1]}", flush=True)
    finally:
        context.close()
    return {"frames": info, "regions": QUADRANTS, "runs": runs}


# ----------------------------------------------------------------------------- 3. upload
def sparse_npy(path: Path, megabytes: float, side: int = 512) -> Path:
    """A valid .npy of zeros, about ``megabytes`` MB, written as a sparse file (instant)."""
    import numpy as np  # noqa: PLC0415

    frames = max(2, round(megabytes * 1e6 / (side * side * 2)))
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(frames, side, side))
    m.flush()
    del m
    return path


def bench_upload(browser, hub: Hub, user, megabytes: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-hub-upload-") as tmp:
        path = sparse_npy(Path(tmp) / f"upload_{megabytes:.0f}MB.npy", megabytes)
        size = path.stat().st_size
        with open(path, "rb") as f:  # into the page cache: time the upload, not the disk
            while f.read(64 << 20):
                pass
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(600_000)
        try:
            hubtools.browser_login(page, hub, user)
            page.goto(user.dashboard_url())
            wait_dashboard_ready(page, 180_000)
            page.evaluate(_UPLOAD_WATCH)
            before = load1()
            cpu0 = hubtools.process_tree_cpu()
            with RssPeak() as rss:
                t0 = time.perf_counter()
                page.set_input_files("input.speckle-upload-input", str(path))
                page.wait_for_function("() => { const u = window.__speckleUpload;"
                                       " return u && (u.done || u.error); }", timeout=600_000)
                wall = time.perf_counter() - t0
            cpu1 = hubtools.process_tree_cpu()
            u = page.evaluate("() => window.__speckleUpload")
        finally:
            context.close()
        direct = upload_without_browser(user, path)
    if u.get("error"):
        raise RuntimeError(f"the upload failed: {u['error']}")
    transfer = (u["sent"] - u["start"]) / 1000
    total = (u["done"] - u["start"]) / 1000
    placed = user.home / "speckle-uploads" / path.name
    grown = {k: round((rss.peak[k] - rss.start_rss[k]) / 1e6) for k in rss.peak}
    out = {"bytes": size, "transfer_s": round(transfer, 2), "with_validation_s": round(total, 2),
           "wall_s": round(wall, 2), "transfer_mb_s": round(size / 1e6 / transfer, 1),
           "with_validation_mb_s": round(size / 1e6 / total, 1),
           "placed_size_ok": placed.exists() and placed.stat().st_size == size,
           "rss_growth_mb": grown, "rss_peak_mb": {k: round(v / 1e6) for k, v in rss.peak.items()},
           "cpu_s_during_upload": {k: round(v - cpu0.get(k, 0.0), 1) for k, v in cpu1.items()
                                   if v - cpu0.get(k, 0.0) >= 0.05},
           "load1_before_after": [before, load1()], "without_browser": direct}
    print(f"upload through the browser: {out}", flush=True)
    return out


def upload_without_browser(user, path: Path) -> dict:
    """The same file through the hub's proxy with the protocol alone (requests, a token): where
    the browser's share of the time is."""
    from speckle_jupyter.testing import UploadClient  # noqa: PLC0415

    client = UploadClient(user.server_url + "speckle/api/", user.api_token())
    client.session.get(client.api + "status").raise_for_status()
    size = path.stat().st_size
    with open(path, "rb") as f:
        def read(offset, n):
            f.seek(offset)
            return f.read(n)

        before = load1()
        t0 = time.perf_counter()
        cpu0 = hubtools.process_tree_cpu()
        r = client.create("direct_" + path.name, size)
        r.raise_for_status()
        info = r.json()
        offset = client.send(info["id"], read, size, chunk_size=info["chunk_size"])
        t1 = time.perf_counter()
        cpu1 = hubtools.process_tree_cpu()
        r = client.finish(info["id"])
        t2 = time.perf_counter()
    r.raise_for_status()
    assert offset == size
    out = {"transfer_s": round(t1 - t0, 2), "transfer_mb_s": round(size / 1e6 / (t1 - t0), 1),
           "with_validation_s": round(t2 - t0, 2), "chunk_bytes": info["chunk_size"],
           "cpu_s_during_transfer": {k: round(v - cpu0.get(k, 0.0), 1) for k, v in cpu1.items()
                                     if v - cpu0.get(k, 0.0) >= 0.05},
           "load1_before_after": [before, load1()]}
    print(f"  the same through the proxy without a browser: {out}", flush=True)
    return out


def spawn_times(hub: Hub) -> list[float]:
    """JupyterHub's own "User X took N seconds to start" lines (the spawns' share of a login)."""
    try:
        text = hub.log_path.read_text(errors="replace")
    except OSError:
        return []
    return [float(x) for x in re.findall(r"took ([0-9.]+) seconds to start", text)]


# ----------------------------------------------------------------------------- report
def table(results: dict) -> tuple[list[dict], str]:
    rows = []
    for kind, runs in results.get("login", {}).get("runs", {}).items():
        values = [r["seconds"] for r in runs]
        voila = ", ".join(f"{r['voila_request_s']:.1f}" for r in runs)
        warm = sum(bool(r.get("preheated")) for r in runs)
        m = median(values)
        rows.append({"measure": f"login -> live dashboard, {kind}", "value": f"{m:.1f} s",
                     "detail": f"median of {len(values)}: {', '.join(f'{v:.1f}' for v in values)} s; "
                               f"Voila page requested after {voila} s; preheated kernel in "
                               f"{warm} of {len(runs)}",
                     "floor": f"<= {FLOOR_LOGIN_S:g} s", "pass": m <= FLOOR_LOGIN_S})
    runs = results.get("analyze", {}).get("runs", [])
    if runs:
        first = [r for r in runs if r["first"]]
        rest = [r["g2_s"] for r in runs if not r["first"]]
        for label, values in (("first in a fresh dashboard", [r["g2_s"] for r in first]),
                              (f"repeated (median of {len(rest)})", rest)):
            if values:
                m = median(values)
                rows.append({"measure": f"Analyze -> g2 plotted, 1000x256x256, {label}",
                             "value": f"{m:.1f} s",
                             "detail": ", ".join(f"{v:.1f}" for v in values) + " s; until files "
                                       "written: " + ", ".join(f"{r['done_s']:.1f}" for r in runs) + " s",
                             "floor": f"<= {FLOOR_ANALYZE_S:g} s", "pass": m <= FLOOR_ANALYZE_S})
    up = results.get("upload")
    if up:
        rows.append({"measure": f"upload through the browser, {up['bytes'] / 1e9:.2f} GB",
                     "value": f"{up['transfer_mb_s']:.0f} MB/s",
                     "detail": f"transfer {up['transfer_s']:.1f} s; with validation and placement "
                               f"{up['with_validation_s']:.1f} s ({up['with_validation_mb_s']:.0f} MB/s); "
                               f"Chromium +{up['rss_growth_mb']['chromium']} MB, driver "
                               f"+{up['rss_growth_mb']['driver']} MB; the same file through the hub's "
                               f"proxy without a browser: {up['without_browser']['transfer_mb_s']:.0f} MB/s",
                     "floor": f">= {FLOOR_UPLOAD_MB_S:g} MB/s",
                     "pass": up["transfer_mb_s"] >= FLOOR_UPLOAD_MB_S})
    lines = ["| measure | value | floor | result | detail |", "|---|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['measure']} | {r['value']} | {r['floor']} | "
                     f"{'PASS' if r['pass'] else 'FAIL'} | {r['detail']} |")
    return rows, "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="logins per kind, repeated analyses")
    parser.add_argument("--frames", type=int, default=1000, help="frames of 256x256 to analyse")
    parser.add_argument("--upload-mb", type=float, default=1000.0, help="upload size in MB")
    parser.add_argument("--no-upload", action="store_true", help="skip the browser upload")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    parser.add_argument("--login-only", action="store_true", help="measure the logins only")
    parser.add_argument("--tag", default=None,
                        help="results file name tag (default: the date, plus _login with --login-only)")
    parser.add_argument("--keep-log", type=Path, default=None,
                        help="copy the hub's log (hub, proxy and user servers) here at the end")
    args = parser.parse_args(argv)

    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: run `make setup-test`", file=sys.stderr)
        return 2
    CACHE.mkdir(exist_ok=True)
    data = CACHE / f"hub_ou_{args.frames}x256x256_seed1_tau20_beta0.2_I2.npy"
    if not data.exists() and not args.login_only:
        print(f"simulating {args.frames} frames of 256x256 into {data} ...", flush=True)
        make_speckle_npy(data, args.frames, (256, 256))

    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    started = _dt.datetime.now()
    results: dict = {"date": started.isoformat(timespec="seconds"), "machine": machine(),
                     "floors": {"login_s": FLOOR_LOGIN_S, "analyze_s": FLOOR_ANALYZE_S,
                                "upload_mb_s": FLOOR_UPLOAD_MB_S},
                     "load1_start": load1()}
    hub = Hub(Path(tempfile.mkdtemp(prefix="bench-hub-")))
    pw = sync_playwright().start()
    browser = None
    try:
        t0 = time.perf_counter()
        hub.start()
        results["hub_start_s"] = round(time.perf_counter() - t0, 2)
        print(f"hub started in {results['hub_start_s']} s at {hub.url}", flush=True)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        results["versions"] = versions(browser)
        login = bench_login(browser, hub, args.rounds)
        user = login.pop("keep")
        results["login"] = login
        if args.login_only:
            results["analyze_note"] = results["upload_note"] = "skipped (--login-only)"
        else:
            results["analyze"] = bench_analyze(browser, hub, user, data, args.rounds)
        if args.login_only:
            pass
        elif not args.no_upload:
            results["upload"] = bench_upload(browser, hub, user, args.upload_mb)
        else:
            results["upload_note"] = "skipped (--no-upload); see benchmarks/bench_upload.py"
    finally:
        if browser is not None:
            browser.close()
        pw.stop()
        results["spawn_s_from_hub_log"] = spawn_times(hub)
        hub.stop()
        if args.keep_log is not None and hub.log_path.exists():
            shutil.copyfile(hub.log_path, args.keep_log)
        shutil.rmtree(hub.workdir, ignore_errors=True)
    results["load1_end"] = load1()
    rows, text = table(results)
    results["table"] = rows
    m = results["machine"]
    head = (f"speckle hub, CPU: {m.get('cpu_model', '?')}, {m.get('cpus_allowed')} cores, "
            f"{m.get('mem_total_gib', '?')} GiB, {m['user']}; load average (1 min) "
            f"{results['load1_start']} at the start, {results['load1_end']} at the end; spawns "
            f"(JupyterHub's log): {', '.join(f'{x:.1f}' for x in results['spawn_s_from_hub_log'])} s")
    print("\n" + head + "\n" + text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        tag = args.tag or f"{started:%Y%m%d}{'_login' if args.login_only else ''}"
        stem = RESULTS / f"hub_cpu_{tag}"
        stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        v = results.get("versions", {})
        md = ["# speckle hub benchmark (CPU)", "",
              f"Date: {results['date']}. Machine: {m.get('cpu_model', '?')}, "
              f"{m.get('cpus_allowed')} usable cores, {m.get('mem_total_gib', '?')} GiB, "
              f"{m['user']}. Load average (1 min): {results['load1_start']} at the start, "
              f"{results['load1_end']} at the end (shared machine: every figure carries its own "
              "in the JSON). Spawns as JupyterHub logged them: "
              f"{', '.join(f'{x:.1f}' for x in results['spawn_s_from_hub_log'])} s.", "",
              "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", "",
              "Command: `" + " ".join(["python benchmarks/bench_hub.py", *(argv or sys.argv[1:])]) + "`",
              "", text, "",
              "Login: from the click on the login form's submit button until the XPCS dashboard's "
              "Analyze button is visible and enabled, through the landing page's tile, clicked as "
              "soon as the landing page has loaded (the page starts the server itself). Analyze: "
              "from the click until the new g2 image is shown (the files are written after it). "
              "Upload: a sparse 1 GB .npy given to the dashboard's uploader by path; transfer "
              "until the progress bar reaches 100 %. The protocol alone: "
              "`benchmarks/bench_upload.py`.", ""]
        stem.with_suffix(".md").write_text("\n".join(md))
        print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
