"""Side-by-side XPCS benchmark (CPU): speckle vs boost_corr 0.1.7 vs scikit-beam 0.0.27.

Run from the repository root in the MAIN venv, after ``benchmarks/peers/setup.sh`` (which makes
the separate peer venv holding torch, boost_corr and scikit-beam)::

    .venv/bin/python benchmarks/bench_xpcs.py                      # 2000 frames, 256^2 and 512^2
    .venv/bin/python benchmarks/bench_xpcs.py --sizes 128 --frames 500   # a quick run

For each detector size it simulates uint16 Poisson speckle (``ou_speckle_chunks``; cached as a
``.npy`` in ``benchmarks/.cache/``), writes a q-map of concentric rings over the whole detector
(10 dynamic x 4 static by default, APS layout), then runs every engine in its own subprocess on
the same memory-mapped file:

* speckle multi-tau and two-time (``benchmarks/run_speckle.py``, this venv), and with
  ``--baseline DIR`` the same from another checkout of speckle (before / after, same rounds);
* boost_corr multi-tau and two-time (``peers/run_boost_corr.py``, peer venv);
* scikit-beam multi-tau on the first ``--skbeam-frames`` frames and its full two-time on the
  first ``--skbeam-twotime-frames`` only (it grows as frames squared; the time for the whole
  series is an extrapolation and is labelled so).

Each runner times one run after a warm-up: ``time`` is reading the file (from the page cache) +
correlation + normalisation, ``compute`` leaves the reading out. Peak memory is each
subprocess's peak resident set (``getrusage``), the mapped file's pages excluded.

It checks that the outputs agree (speckle vs boost_corr g2 at every common lag; speckle with one
static bin per ROI vs scikit-beam at the lags both compute from the same binning level; the
two-time maps), prints a table with the ratios and PASS/FAIL for the issues' floors (speckle
multi-tau >= 20x boost_corr and >= 30x scikit-beam in frames/s; speckle two-time >= 3x
boost_corr),
and writes ``benchmarks/results/xpcs_cpu_<date>_<host>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(ROOT))
from _runner_util import machine_info, ring_qmap, write_aps_qmap  # noqa: E402

CACHE = HERE / ".cache"
RESULTS = HERE / "results"
PEER_PY = HERE / "peers" / ".venv" / "bin" / "python"
MAIN_PY = Path(sys.executable)

FLOORS = [  # (name, numerator run, denominator run, minimum ratio of frames/s)
    ("speckle multi-tau >= 20x boost_corr (issue 13)", "speckle_multitau", "boost_multitau", 20.0),
    ("speckle multi-tau >= 30x scikit-beam (issue 2)", "speckle_multitau", "skbeam_multitau",
     30.0),
    ("speckle two-time >= 3x boost_corr (issue 13)", "speckle_twotime", "boost_twotime", 3.0),
]
GPU_FLOORS = [  # issue 2 on a GPU: at least boost_corr's frames/s on the same card
    ("speckle multi-tau (GPU) >= boost_corr (GPU)", "speckle_multitau", "boost_multitau", 1.0),
    ("speckle two-time (GPU) >= boost_corr (GPU)", "speckle_twotime", "boost_twotime", 1.0),
]
#: Set by --device and --peer-python.
SETUP = {"device": "cpu", "peer_py": PEER_PY}


# ----------------------------------------------------------------------------- inputs

def simulate_frames(path: Path, n_frames, shape, seed, beta, mean_counts, tau_map):
    """Write the simulated frames to ``path`` (.npy) chunk by chunk."""
    from speckle.xpcs.simulate import ou_speckle_chunks

    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint16, shape=(n_frames, *shape))
    done = 0
    for chunk in ou_speckle_chunks(n_frames, shape, tau_map, beta, mean_counts, seed=seed,
                                   chunk_frames=128, dtype=np.uint16):
        out[done:done + len(chunk)] = chunk
        done += len(chunk)
    out.flush()
    del out
    tmp.rename(path)


def prepare_inputs(size, args):
    """Frames (.npy, cached) and q-map (.h5) for one detector size; returns paths and maps."""
    shape = (size, size)
    CACHE.mkdir(parents=True, exist_ok=True)
    qm = ring_qmap(shape, args.n_dynamic, args.n_static, r_min=args.r_min)
    half = size / 2.0
    # correlation time falls as 1/q^2 (diffusion): tau0 frames at half the detector's width
    tau_map = np.clip(args.tau * (half / np.maximum(qm["radius"], 1.0)) ** 2, 2.0, 10.0 * args.tau)
    key = (f"ou_{args.frames}x{size}x{size}_seed{args.seed}_tau{args.tau:g}_beta{args.beta:g}"
           f"_I{args.mean_counts:g}")
    fpath = CACHE / f"{key}.npy"
    if not fpath.exists():
        t0 = time.perf_counter()
        print(f"  simulating {args.frames} frames of {size}x{size} -> {fpath.name} ...",
              flush=True)
        simulate_frames(fpath, args.frames, shape, args.seed, args.beta, args.mean_counts,
                        tau_map)
        print(f"  simulated in {time.perf_counter() - t0:.0f} s", flush=True)
    qpath = CACHE / f"qmap_{size}x{size}_{args.n_dynamic}x{args.n_static}_rmin{args.r_min:g}.h5"
    write_aps_qmap(qpath, qm["dynamic_map"], qm["static_map"], qm["mask"],
                   qm["dynamic_r"], qm["static_r"])
    return fpath, qpath


def warm_page_cache(path: Path):
    """Read the file once so that every engine reads it from memory, not from disk."""
    with open(path, "rb") as f:
        while f.read(64 * 2**20):
            pass


# ----------------------------------------------------------------------------- runs

def run(name, cmd, out: Path, timeout):
    """Run one engine in its own subprocess; return its JSON (or an error record)."""
    print(f"  [{name}] ...", end=" ", flush=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([str(c) for c in cmd] + ["--out", str(out)], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        print(f"timed out after {timeout} s")
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        print("FAILED\n    " + "\n    ".join(tail))
        return {"error": "\n".join(tail)}
    info = json.loads(out.with_suffix(".json").read_text())
    # other processes on a shared machine slow every engine: keep the load next to the timing
    info["loadavg_1min_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    out.with_suffix(".json").write_text(json.dumps(info, indent=2))
    print(f"{info['frames_per_s']:.1f} frames/s ({info['time_s']:.2f} s; wall with start-up "
          f"{time.perf_counter() - t0:.1f} s)", flush=True)
    return info


def load_npz(out: Path):
    with np.load(out.with_suffix(".npz")) as f:
        return {k: f[k] for k in f.files}


def level_boost(tau):
    """Binning level of each lag on boost_corr's / speckle's 8-buffer grid."""
    tau = np.asarray(tau, np.int64)
    out = np.zeros_like(tau)
    big = tau > 8
    out[big] = np.floor(np.log2((tau[big] - 1) / 4.0)).astype(np.int64)
    return out


def level_skbeam(tau):
    """Binning level of each lag on scikit-beam's 8-buffer grid (0..7, then (4..7) * 2**l)."""
    tau = np.asarray(tau, np.int64)
    out = np.zeros_like(tau)
    big = tau >= 8
    out[big] = np.floor(np.log2(tau[big] / 4.0)).astype(np.int64)
    return out


def max_rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b) & (b != 0)
    return float(np.max(np.abs(a[ok] / b[ok] - 1))) if ok.any() else float("nan")


def compare(outs, runs):
    """Agreement between engines (max relative differences)."""
    agree = {}
    if all(k in outs for k in ("speckle_multitau", "boost_multitau")):
        s, b = outs["speckle_multitau"], outs["boost_multitau"]
        common, i, j = np.intersect1d(s["tau"], b["tau"], return_indices=True)
        agree["multitau speckle vs boost_corr g2"] = {
            "max_rel": max_rel(s["g2"][i], b["g2"][j]), "lags": len(common),
            "note": "same definition (APS symmetric, static -> dynamic); boost_corr rounds "
                    "levels 0-4 to bfloat16"}
        agree["multitau speckle vs boost_corr g2_err"] = {
            "max_rel": max_rel(s["g2_err"][i], b["g2_err"][j]), "lags": len(common),
            "note": "boost_corr: std with ddof=1"}
    if all(k in outs for k in ("speckle_multitau_roi", "skbeam_multitau")):
        s, k = outs["speckle_multitau_roi"], outs["skbeam_multitau"]
        common, i, j = np.intersect1d(s["tau"], k["tau"], return_indices=True)
        same = (common > 0) & (level_boost(common) == level_skbeam(common))
        agree["multitau speckle (ROI norm.) vs scikit-beam g2, same-level lags"] = {
            "max_rel": max_rel(s["g2"][i][same], k["g2"][j][same]), "lags": int(same.sum()),
            "note": f"first {runs['skbeam_multitau'].get('n_frames')} frames"}
        other = (common > 0) & ~same
        if other.any():
            agree["multitau speckle (ROI norm.) vs scikit-beam g2, lags binned differently"] = {
                "max_rel": max_rel(s["g2"][i][other], k["g2"][j][other]),
                "lags": int(other.sum()),
                "note": "8*2^l: level l for speckle/boost_corr, level l+1 for scikit-beam"}
    if all(k in outs for k in ("speckle_twotime", "boost_twotime")):
        s, b = outs["speckle_twotime"], outs["boost_twotime"]
        if s["c2_g2"].shape == b["c2_g2"].shape:
            agree["two-time speckle vs boost_corr, diagonal averages"] = {
                "max_rel": max_rel(s["c2_g2"], b["c2_g2"]),
                "note": f"boost_corr smooth={runs['boost_twotime'].get('smooth')}"}
        for key in s:
            if key.startswith("c2_") and key[3:].isdigit() and key in b:
                iu = np.triu_indices(s[key].shape[0])
                agree[f"two-time speckle vs boost_corr, map of bin {key[3:]}"] = {
                    "max_rel": max_rel(s[key][iu], b[key][iu])}
    if all(k in outs for k in ("speckle_twotime_small", "skbeam_twotime")):
        s, k = outs["speckle_twotime_small"], outs["skbeam_twotime"]
        n = min(s["c2_1"].shape[0], k["c2_1"].shape[0])
        agree["two-time speckle vs scikit-beam, map of bin 1"] = {
            "max_rel": max_rel(s["c2_1"][:n, :n], k["c2_1"][:n, :n]),
            "note": f"first {n} frames"}
    return agree


def bench_size(size, args):
    print(f"\n== {size} x {size}, {args.frames} frames ==", flush=True)
    fpath, qpath = prepare_inputs(size, args)
    warm_page_cache(fpath)
    work = CACHE / f"runs_{size}"
    work.mkdir(exist_ok=True)
    common = ["--frames", fpath, "--qmap", qpath, "--repeat", args.repeat]
    sk_n = min(args.skbeam_frames, args.frames)
    sk_tt = min(args.skbeam_twotime_frames, args.frames)
    gpu = SETUP["device"] == "gpu"
    speckle_py = [MAIN_PY, HERE / "run_speckle.py", "--device", SETUP["device"]]
    boost_py = [SETUP["peer_py"], HERE / "peers" / "run_boost_corr.py",
                "--device", "cuda:0" if gpu else "cpu"]
    skbeam_py = [SETUP["peer_py"], HERE / "peers" / "run_skbeam.py"]
    plan = {
        "speckle_multitau": speckle_py + common + ["--mode", "multitau"],
        "boost_multitau": boost_py + common + ["--mode", "multitau",
                                              "--max-memory", args.boost_max_memory],
        "skbeam_multitau": skbeam_py + common + ["--mode", "multitau", "--n-frames", sk_n],
        "speckle_multitau_roi": speckle_py + common + ["--mode", "multitau", "--roi",
                                                       "--n-frames", sk_n],
        "speckle_twotime": speckle_py + common + ["--mode", "twotime", "--save-bins", "1"],
        "boost_twotime": boost_py + common + ["--mode", "twotime", "--save-bins", "1",
                                              "--smooth", args.boost_smooth],
        "skbeam_twotime": skbeam_py + common + ["--mode", "twotime", "--n-frames", sk_tt,
                                                "--estimate-for", args.frames, "--repeat", 1],
        "speckle_twotime_small": speckle_py + common + ["--mode", "twotime", "--n-frames",
                                                        sk_tt, "--save-bins", "1"],
    }
    if args.baseline:  # another checkout of speckle, in the same rounds (before / after)
        base_py = [MAIN_PY, args.baseline / "benchmarks" / "run_speckle.py",
                   "--device", SETUP["device"]]
        plan["baseline_multitau"] = base_py + common + ["--mode", "multitau"]
        plan["baseline_twotime"] = base_py + common + ["--mode", "twotime", "--save-bins", "1"]
    if gpu:  # scikit-beam has no GPU path: the GPU run compares with boost_corr on the same card
        plan = {k: v for k, v in plan.items() if k in ("speckle_multitau", "boost_multitau",
                                                      "speckle_twotime", "boost_twotime")}
    runs, outs = {}, {}
    todo = []
    for name in plan:
        selected = not args.only or any(name.startswith(o) for o in args.only)
        if not selected and not args.reuse:
            continue
        out = work / name
        if selected and args.reuse and args.only:
            out.with_suffix(".json").unlink(missing_ok=True)
        if args.reuse and out.with_suffix(".json").exists() and out.with_suffix(".npz").exists():
            runs[name] = json.loads(out.with_suffix(".json").read_text())
            runs[name]["reused"] = True
            outs[name] = load_npz(out)
            print(f"  [{name}] reused {out.with_suffix('.json').relative_to(ROOT)}")
        else:
            todo.append(name)
    # Rounds: every engine runs once per round, in turn, so that all of them see the same
    # (shared, varying) machine load; the fastest round of each engine is kept.
    for rnd in range(max(1, args.rounds)):
        if args.rounds > 1:
            print(f"  round {rnd + 1}/{args.rounds}")
        for name in todo:
            if rnd > 0 and name == "skbeam_twotime":
                continue  # one measurement is enough for an extrapolated number
            out = work / (name if rnd == 0 else f"{name}_round{rnd + 1}")
            info = run(name, plan[name], out, args.timeout)
            best = runs.get(name)
            if best is None or ("error" in best and "error" not in info) or (
                    "error" not in info and "error" not in best
                    and info["time_s"] < best["time_s"]):
                info["round"] = rnd + 1
                info["times_s_rounds"] = (best or {}).get("times_s_rounds", [])
                runs[name] = info
                if "error" not in info:
                    outs[name] = load_npz(out)
                    if out != work / name:  # keep the best round under the plain name
                        shutil.copyfile(out.with_suffix(".npz"), (work / name).with_suffix(".npz"))
            if "error" not in info:
                runs[name].setdefault("times_s_rounds", [])
                runs[name]["times_s_rounds"].append(round(info["time_s"], 3))
                (work / name).with_suffix(".json").write_text(json.dumps(runs[name], indent=2))
    agree = compare(outs, runs)
    floors = {}
    for title, num, den, minimum in (GPU_FLOORS if gpu else FLOORS):
        if num in runs and den in runs and "error" not in runs[num] and "error" not in runs[den]:
            ratio = runs[num]["frames_per_s"] / runs[den]["frames_per_s"]
            ratio_c = runs[num]["compute_frames_per_s"] / runs[den]["compute_frames_per_s"]
            floors[title] = {"ratio": ratio, "ratio_compute_only": ratio_c, "floor": minimum,
                             "pass": ratio >= minimum}
    return {"frames_file": str(fpath.relative_to(ROOT)), "qmap_file": str(qpath.relative_to(ROOT)),
            "runs": runs, "agreement": agree, "floors": floors}


# ----------------------------------------------------------------------------- report

ROWS = [  # (run, label)
    ("speckle_multitau", "speckle multi-tau"),
    ("baseline_multitau", "speckle multi-tau, --baseline checkout"),
    ("boost_multitau", "boost_corr multi-tau"),
    ("skbeam_multitau", "scikit-beam multi-tau"),
    ("speckle_twotime", "speckle two-time"),
    ("baseline_twotime", "speckle two-time, --baseline checkout"),
    ("boost_twotime", "boost_corr two-time"),
    ("skbeam_twotime", "scikit-beam two-time"),
]
RATIO_TO = {"speckle_multitau": None, "boost_multitau": "speckle_multitau",
            "skbeam_multitau": "speckle_multitau", "speckle_twotime": None,
            "boost_twotime": "speckle_twotime", "skbeam_twotime": "speckle_twotime",
            "baseline_multitau": "speckle_multitau", "baseline_twotime": "speckle_twotime"}


def table(size, res, n_frames):
    runs = res["runs"]
    lines = [f"### {size} x {size}, {n_frames} frames", "",
             "| engine | frames | time s | frames/s | compute-only frames/s | speckle / this "
             "| peak RSS MiB (net of start) | load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in ROWS:
        r = runs.get(key)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {label} | | | failed: {r['error'].splitlines()[-1][:60]} | | | | |")
            continue
        ref = RATIO_TO[key]
        ratio = ""
        if ref and ref in runs and "error" not in runs[ref]:
            ratio = f"{runs[ref]['frames_per_s'] / r['frames_per_s']:.1f}x"
        note = ""
        if "setup_s" in r:
            note = f" (+{r['setup_s']:.1f} setup, excluded)"
        if key == "skbeam_twotime" and "estimated_time_s_for" in r:
            est = r["estimated_time_s_for"]
            note = (f" (est. {est['time_s']:.0f} s for {est['n_frames']} frames, "
                    f"extrapolated as frames^2, not measured)")
            sp = runs.get("speckle_twotime")
            if sp and "error" not in sp:
                ratio = f"{est['time_s'] / sp['time_s']:.0f}x (est.)"
        n_best = max(len(r.get("times_s", [])), len(r.get("times_s_rounds", [])))
        if n_best > 1:
            note += f" (best of {n_best})"
        lines.append(
            f"| {label} | {r['n_frames']} | {r['time_s']:.2f}{note} | {r['frames_per_s']:.0f} "
            f"| {r['compute_frames_per_s']:.0f} | {ratio} | {r['peak_rss_mib']:.0f} "
            f"({r['peak_rss_mib'] - r['rss_before_mib']:.0f}) | "
            f"{'/'.join(f'{v:.1f}' for v in r.get('loadavg_1min_before_after', []))} |")
    lines += ["", "| agreement | max relative difference | note |", "|---|---:|---|"]
    for title, a in res["agreement"].items():
        lags = f" ({a['lags']} lags)" if "lags" in a else ""
        lines.append(f"| {title}{lags} | {a['max_rel']:.2e} | {a.get('note', '')} |")
    lines += ["", "| floor | ratio (frames/s) | compute-only ratio | result |",
              "|---|---:|---:|---|"]
    for title, f in res["floors"].items():
        lines.append(f"| {title} | {f['ratio']:.2f} | {f['ratio_compute_only']:.2f} | "
                     f"{'PASS' if f['pass'] else 'FAIL'} |")
    bw = res.get("bandwidth")
    if bw:
        lines += ["", f"speckle GPU multi-tau memory traffic, lower bound: {bw['lower_bound_gb_s']:.0f} GB/s "
                  f"= {100 * bw['fraction_of_peak']:.1f} % of the card's peak ({bw['pixel_frames_per_s']:.3g} "
                  "pixel-frames/s; 2 B in + 8 lags x 2 float32 reads per pixel-frame at level 0)"]
    return "\n".join(lines)


def gpu_card() -> dict:
    """The card cupy computes on: name and peak memory bandwidth (GB/s)."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    peak = 2 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8 / 1e9
    return {"name": name, "peak_gb_s": peak, "memory_gib": props["totalGlobalMem"] / 2**30}


def gpu_bandwidth(runs: dict, size: int, card: dict) -> dict:
    """Achieved memory traffic of speckle's GPU multi-tau as a fraction of the card's peak.

    A lower bound of the traffic: each level-0 lag product reads two float32 operands per
    pixel-frame (8 lags), and the frames arrive as uint16 (2 bytes per pixel-frame); higher
    levels add about half as much again, left out.
    """
    r = runs.get("speckle_multitau", {})
    if "frames_per_s" not in r:
        return {}
    pixel_frames = r["frames_per_s"] * size * size
    bytes_s = pixel_frames * (2 + 8 * 2 * 4)
    return {"pixel_frames_per_s": pixel_frames, "lower_bound_gb_s": bytes_s / 1e9,
            "fraction_of_peak": bytes_s / 1e9 / card["peak_gb_s"]}


def versions():
    out = {"numpy": np.__version__, "python": sys.version.split()[0]}
    try:
        import speckle
        out["speckle"] = getattr(speckle, "__version__", "?")
    except ImportError:
        pass
    if Path(SETUP["peer_py"]).exists():
        code = ("import importlib.metadata as m, json; print(json.dumps({k: m.version(k) for k in "
                "('torch', 'numpy', 'boost_corr', 'scikit-beam')}))")
        try:
            peer = json.loads(subprocess.run([str(SETUP["peer_py"]), "-c", code], capture_output=True,
                                             text=True, check=True).stdout)
            out.update({f"peer_{k}": v for k, v in peer.items()})
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            pass
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512", help="detector sizes (square), comma-separated")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--tau", type=float, default=20.0,
                   help="correlation time (frames) at half the detector width; ~1/r^2")
    p.add_argument("--beta", type=float, default=0.2)
    p.add_argument("--mean-counts", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--n-dynamic", type=int, default=10)
    p.add_argument("--n-static", type=int, default=4, help="static bins per dynamic bin")
    p.add_argument("--r-min", type=float, default=0.0, help="beam stop radius, pixels")
    p.add_argument("--skbeam-frames", type=int, default=1000,
                   help="scikit-beam multi-tau runs on the first N frames (frames/s is flat)")
    p.add_argument("--skbeam-twotime-frames", type=int, default=100,
                   help="scikit-beam two-time runs on the first N frames only")
    p.add_argument("--boost-max-memory", default="4",
                   help="boost_corr MultitauCorrelator max_memory, GB (its default 36 would "
                        "allocate 13 GB at 512x512x2000)")
    p.add_argument("--boost-smooth", default="dqmap", choices=["dqmap", "sqmap"],
                   help="boost_corr two-time smoothing (dqmap gives speckle's definition; "
                        "sqmap is its CLI default; same cost)")
    p.add_argument("--only", nargs="*", default=None,
                   help="run only these (prefixes of speckle_multitau, boost_twotime, ...)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every engine this many times, in turn (each after its warm-up); "
                        "the fastest round is reported (scikit-beam two-time: once)")
    p.add_argument("--repeat", type=int, default=1,
                   help="timed runs inside each engine's process per round (fastest kept)")
    p.add_argument("--timeout", type=int, default=1800, help="per run, seconds")
    p.add_argument("--reuse", action="store_true",
                   help="reuse the outputs of earlier runs in benchmarks/.cache/runs_<size>/ "
                        "(runs given to --only are run again)")
    p.add_argument("--tag", default=None, help="results file name tag (default: date_host)")
    p.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="gpu: speckle on cupy against boost_corr on torch's cuda:0, same card "
                        "(no scikit-beam); the card and its memory bandwidth are reported")
    p.add_argument("--peer-python", type=Path, default=PEER_PY,
                   help="python that has boost_corr (and scikit-beam) and torch")
    p.add_argument("--baseline", type=Path, default=None,
                   help="another speckle checkout (e.g. git archive COMMIT speckle benchmarks "
                        "| tar -x -C DIR) run in the same rounds: before / after")
    args = p.parse_args(argv)

    SETUP.update(device=args.device, peer_py=args.peer_python)
    if not args.peer_python.exists():
        sys.exit(f"no peer python at {args.peer_python}: run benchmarks/peers/setup.sh first")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    machine = machine_info()
    vers = versions()
    print(f"machine: {machine.get('cpu_model')} ({machine.get('cpus_allowed')} cores usable, "
          f"{machine.get('mem_total_gib')} GiB); {vers}")
    card = gpu_card() if args.device == "gpu" else None
    if card:
        print(f"GPU: {card}")
    results = {}
    for size in sizes:
        results[size] = bench_size(size, args)
    if card:
        for size in sizes:
            results[size]["bandwidth"] = gpu_bandwidth(results[size]["runs"], size, card)
    title = ("# XPCS GPU benchmark: speckle vs boost_corr, same card" if card else
             "# XPCS CPU benchmark: speckle vs boost_corr vs scikit-beam")
    md = [title, "", f"GPU: {card['name']}, peak memory bandwidth {card['peak_gb_s']:.0f} GB/s "
          "(memory clock x bus width x 2)." if card else "",
          "", f"Date: {_dt.datetime.now().isoformat(timespec='seconds')}. Machine: "
          f"{machine.get('cpu_model')}, {machine.get('cpus_allowed')} usable cores, "
          f"{machine.get('mem_total_gib')} GiB. Versions: "
          + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
          "", f"Simulation: `ou_speckle_chunks`, uint16 Poisson counts, mean "
          f"{args.mean_counts:g} per pixel per frame, beta {args.beta:g}, tau {args.tau:g} frames "
          f"at half width (~1/r^2), seed {args.seed}; q-map: {args.n_dynamic} dynamic x "
          f"{args.n_static} static rings over the whole detector. boost_corr: max_memory "
          f"{args.boost_max_memory} GB, two-time smooth={args.boost_smooth}. Times: one timed run "
          "after a warm-up, or the best of several where the table says so; frames/s include "
          "reading the "
          "memory-mapped file from the page cache, compute-only leaves it out (speckle reads "
          "inside its chunk loop: its compute-only is its full time); boost_corr's times leave "
          "out constructing its correlator (setup: allocating its zeroed buffers), speckle's "
          "include everything. 'load avg' is "
          "the machine's 1-minute load before/after the run (2 cores, shared with other "
          "developers: above ~0.5 the numbers are slowed). Command: `" + " ".join(
              ["python benchmarks/bench_xpcs.py"] + sys.argv[1:]) + "`", ""]
    for size in sizes:
        text = table(size, results[size], args.frames)
        print("\n" + text)
        md += [text, ""]
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        tag = args.tag or f"{_dt.date.today():%Y%m%d}_{machine.get('hostname', 'host')}"
        if args.tag is None and (args.frames != 2000 or sizes != [256, 512]):
            tag += f"_quick_{args.frames}x{'-'.join(map(str, sizes))}"
        base = RESULTS / f"xpcs_{args.device}_{tag}"
        doc = {"machine": machine, "versions": vers, "options": vars(args),
               "date": _dt.datetime.now().isoformat(timespec="seconds"),
               "sizes": {str(k): v for k, v in results.items()}}
        base.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str))
        base.with_suffix(".md").write_text("\n".join(md))
        print(f"\nwrote {base.with_suffix('.json')} and .md")
    failed = [t for r in results.values() for t, f in r["floors"].items() if not f["pass"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
