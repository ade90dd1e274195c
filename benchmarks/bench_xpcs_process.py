"""XPCS as a user runs it (CPU): the whole ``speckle xpcs`` process against boost_corr's read and
multi-tau of the same HDF5 file, side by side in one run; and big detectors streamed.

Run from the repository root in the main venv, after ``benchmarks/peers/setup.sh``::

    .venv/bin/python benchmarks/bench_xpcs_process.py                       # 3000x256^2, 2000x512^2
    .venv/bin/python benchmarks/bench_xpcs_process.py --cases 256x1000 --rounds 1 --stream ""
    .venv/bin/python benchmarks/bench_xpcs_process.py --cases "" --stream 1024x10000,2048x10000

For each case it simulates uint16 Poisson speckle (cached in ``benchmarks/.cache/``), writes it
as ``/entry/data/data`` of an HDF5 file (one frame per chunk; ``--compression bslz4`` for the
Eiger's bitshuffle/LZ4) and a q-map of 16 dynamic x 16 static rings, then per round runs, each
in its own process, in turn:

* ``speckle xpcs FILE --qmap Q --no-twotime --out R.h5``: the whole process (start-up, reading,
  correlation, fits, verdict, writing the result file), timed from outside;
* ``peers/run_boost_corr.py --frames FILE``: boost_corr 0.1.7 reading the file with h5py in
  batches (as its HDF reader does) and running its multi-tau and normalisation; its own timer
  leaves out its start-up, building its correlator and a warm-up run on the first 128 frames.

The ratio of the issue (whole process >= 10x boost_corr's read + multi-tau) divides boost_corr's
timed read + multi-tau by speckle's whole process, the fastest round of each; the ratio of the
two processes' wall times is shown too. It checks that the g2 in speckle's result file agrees
with boost_corr's (same definition) and writes ``benchmarks/results/xpcs_process_cpu_<tag>.md``
and ``.json`` with the machine's load.

``--stream`` runs ``run_speckle.py --generate`` (frames made on the fly from a pool, nothing
read from disk) for big detectors: frames/s, peak resident memory, progress.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(HERE))
from _runner_util import machine_info, ring_qmap, write_aps_qmap  # noqa: E402
from bench_xpcs import PEER_PY, RESULTS, max_rel, simulate_frames  # noqa: E402

CACHE = HERE / ".cache"
SPECKLE = Path(sys.executable).parent / "speckle"
FLOOR = 10.0


def prepare(side: int, n_frames: int, compression: str):
    """Frames (HDF5, cached) and the 16 x 16 ring q-map for one case."""
    import h5py
    import hdf5plugin

    CACHE.mkdir(parents=True, exist_ok=True)
    qm = ring_qmap((side, side), 16, 16)
    tau = np.clip(20.0 * (side / 2 / np.maximum(qm["radius"], 1.0)) ** 2, 2.0, 200.0)
    npy = CACHE / f"process_{n_frames}x{side}x{side}.npy"
    if not npy.exists():
        print(f"  simulating {n_frames} frames of {side}x{side} ...", flush=True)
        simulate_frames(npy, n_frames, (side, side), 1, 0.2, 1.0, tau)
    h5 = CACHE / f"process_{n_frames}x{side}x{side}_{compression}.h5"
    if not h5.exists():
        frames = np.load(npy, mmap_mode="r")
        filters = hdf5plugin.Bitshuffle(cname="lz4") if compression == "bslz4" else {}
        tmp = h5.with_suffix(".tmp.h5")
        with h5py.File(tmp, "w") as f:
            d = f.create_dataset("/entry/data/data", frames.shape, frames.dtype,
                                 chunks=(1, side, side), **filters)
            for a in range(0, n_frames, 256):
                d[a:a + 256] = frames[a:a + 256]
        tmp.rename(h5)
    qpath = CACHE / f"process_qmap_{side}_16x16.h5"
    write_aps_qmap(qpath, qm["dynamic_map"], qm["static_map"], qm["mask"], qm["dynamic_r"],
                   qm["static_r"])
    with open(h5, "rb") as f:  # into the page cache: every engine reads it from memory
        while f.read(64 * 2**20):
            pass
    return h5, qpath


def timed(cmd, timeout):
    """Run ``cmd``; return wall seconds, CPU seconds and peak RSS (MiB) of the process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {err.strip().splitlines()[-1:]}")
    return wall


def child_usage():
    import resource

    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run_case(side, n_frames, args, work: Path):
    h5, qmap = prepare(side, n_frames, args.compression)
    out = work / f"speckle_{side}.h5"
    speckle_cmd = [SPECKLE, "xpcs", h5, "--qmap", qmap, "--no-twotime", "--out", out,
                   "--frame-time", "1ms"]
    base_out = work / f"baseline_{side}.h5"
    base_cmd = None if args.baseline is None else [
        sys.executable, "-c", f"import sys; sys.path.insert(0, {str(args.baseline)!r}); "
        "from speckle.cli import main; sys.exit(main())", *speckle_cmd[1:-4], "--out", base_out,
        "--frame-time", "1ms"]
    if base_cmd:
        timed(base_cmd, args.timeout)  # its first run compiles its kernels
    boost_out = work / f"boost_{side}"
    boost_cmd = [args.peer_python, HERE / "peers" / "run_boost_corr.py", "--frames", h5,
                 "--qmap", qmap, "--mode", "multitau", "--out", boost_out,
                 "--max-memory", args.boost_max_memory]
    rounds = []
    for rnd in range(args.rounds):
        load = os.getloadavg()[0]
        cpu0 = child_usage()
        s_wall = timed(speckle_cmd, args.timeout)
        s_cpu = child_usage() - cpu0
        b_wall = timed(boost_cmd, args.timeout)
        boost = json.loads(boost_out.with_suffix(".json").read_text())
        rounds.append({"speckle_wall_s": s_wall, "speckle_cpu_s": s_cpu,
                       "boost_process_wall_s": b_wall, "boost_read_multitau_s": boost["time_s"],
                       "boost_read_s": boost["load_s"], "loadavg_1min": round(load, 2)})
        base = ""
        if base_cmd:
            cpu0 = child_usage()
            rounds[-1]["baseline_wall_s"] = timed(base_cmd, args.timeout)
            rounds[-1]["baseline_cpu_s"] = child_usage() - cpu0
            base = (f", baseline checkout {rounds[-1]['baseline_wall_s']:.2f} s (CPU "
                    f"{rounds[-1]['baseline_cpu_s']:.2f} s)")
        print(f"  round {rnd + 1}: speckle xpcs {s_wall:.2f} s (CPU {s_cpu:.2f} s), boost_corr "
              f"read + multi-tau {boost['time_s']:.2f} s (process {b_wall:.1f} s){base}, load "
              f"{load:.1f}", flush=True)
    best_s = min(r["speckle_wall_s"] for r in rounds)
    best_b = min(r["boost_read_multitau_s"] for r in rounds)
    best_bp = min(r["boost_process_wall_s"] for r in rounds)
    import h5py

    with h5py.File(out, "r") as f:
        g2 = f["/xpcs/multitau/normalized_g2"][()]
        tau = f["/xpcs/multitau/delay_list"][()].astype(np.int64).ravel()
    with np.load(boost_out.with_suffix(".npz")) as b:
        common, i, j = np.intersect1d(tau, b["tau"], return_indices=True)
        agree = max_rel(g2[i], b["g2"][j])
    per_round = [r["boost_read_multitau_s"] / r["speckle_wall_s"] for r in rounds]
    baseline = {} if base_cmd is None else {
        "baseline": str(args.baseline),
        "baseline_wall_s": min(r["baseline_wall_s"] for r in rounds),
        "baseline_ratio_per_round": [r["boost_read_multitau_s"] / r["baseline_wall_s"]
                                     for r in rounds]}
    return {**baseline, "side": side, "frames": n_frames, "compression": args.compression,
            "rounds": rounds, "ratio_per_round": per_round,
            "ratio_median_of_rounds": float(np.median(per_round)),
            "speckle_wall_s": best_s, "boost_read_multitau_s": best_b,
            "boost_process_wall_s": best_bp, "ratio": best_b / best_s,
            "ratio_processes": best_bp / best_s, "pass": best_b / best_s >= FLOOR,
            "g2_max_rel_vs_boost": agree, "common_lags": len(common)}


def run_stream(spec, args, work: Path):
    side, n = (int(v) for v in spec.lower().split("x"))
    out = work / f"stream_{side}"
    load = os.getloadavg()[0]
    subprocess.run([sys.executable, HERE / "run_speckle.py", "--generate", f"{n}x{side}",
                    "--out", out], check=True, cwd=ROOT, timeout=args.timeout)
    info = json.loads(out.with_suffix(".json").read_text())
    info["loadavg_1min_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return info


def report(cases, streams, args, machine):
    lines = ["# XPCS as a user runs it: speckle xpcs vs boost_corr (CPU)", "",
             f"Date: {_dt.datetime.now().isoformat(timespec='seconds')}. Machine: "
             f"{machine.get('cpu_model')}, {machine.get('cpus_allowed')} usable cores, "
             f"{machine.get('mem_total_gib')} GiB, shared with other developers (load = the "
             "1-minute load average before each round; above ~0.5 every number is slowed). "
             "Command: `python benchmarks/bench_xpcs_process.py " + " ".join(sys.argv[1:]) + "`",
             "", "Simulated uint16 Poisson speckle (mean 1 count, beta 0.2), one frame per HDF5 "
             f"chunk ({args.compression}), q-map of 16 dynamic x 16 static rings. speckle: the "
             "whole `speckle xpcs --no-twotime` process (start-up, read, multi-tau, fits, verdict, "
             "result file). boost_corr 0.1.7: its read (h5py) + multi-tau + normalisation, timed "
             "inside its process after a warm-up, leaving out its start-up and its correlator's "
             "construction; and its whole process. Fastest of "
             f"{args.rounds} interleaved rounds.", ""]
    if cases:
        lines += ["| frames | speckle xpcs, whole process s | boost_corr read + multi-tau s "
                  "| ratio (floor 10x) | same-round ratios | boost_corr whole process s | "
                  "process ratio | g2 vs boost_corr | loads |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---|"]
        for c in cases:
            lines.append(
                f"| {c['frames']} x {c['side']}² | {c['speckle_wall_s']:.2f} | "
                f"{c['boost_read_multitau_s']:.2f} | **{c['ratio']:.1f}x** "
                f"{'PASS' if c['pass'] else 'FAIL'} | "
                f"{' / '.join(f'{r:.1f}' for r in c['ratio_per_round'])} | "
                f"{c['boost_process_wall_s']:.1f} | "
                f"{c['ratio_processes']:.1f}x | {c['g2_max_rel_vs_boost']:.1e} "
                f"({c['common_lags']} lags) | "
                f"{'/'.join(str(r['loadavg_1min']) for r in c['rounds'])} |")
        for c in [c for c in cases if "baseline" in c]:
            lines += ["", f"Same rounds, `speckle xpcs` of the checkout {c['baseline']} "
                      f"({c['frames']} x {c['side']}²): {c['baseline_wall_s']:.2f} s (this one "
                      f"{c['speckle_wall_s']:.2f} s); its same-round ratios to boost_corr "
                      + " / ".join(f"{r:.1f}" for r in c["baseline_ratio_per_round"]) + "."]
    if streams:
        lines += ["", "Big detectors streamed (`run_speckle.py --generate`: frames drawn from a "
                  "pool of 16 Poisson frames, nothing read from disk; multi-tau with the 16 x 16 "
                  "ring q-map; the pool is counted in the memory):", "",
                  "| detector | frames | time s | frames/s | pixel-frames/s | peak RSS MiB | "
                  "load |", "|---|---:|---:|---:|---:|---:|---|"]
        for s in streams:
            side = s["frame_shape"][0]
            lines.append(f"| {side}² | {s['n_frames']} | {s['time_s']:.1f} | "
                         f"{s['frames_per_s']:.0f} | {s['frames_per_s'] * side * side:.3g} | "
                         f"{s['peak_rss_mib']:.0f} | "
                         f"{'/'.join(map(str, s['loadavg_1min_before_after']))} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="256x3000,512x2000", help="SIDExFRAMES, comma-separated")
    p.add_argument("--stream", default="1024x10000,2048x10000",
                   help="big detectors streamed, SIDExFRAMES, comma-separated ('' for none)")
    p.add_argument("--compression", choices=["none", "bslz4"], default="none")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--boost-max-memory", default="4")
    p.add_argument("--peer-python", type=Path, default=PEER_PY)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--tag", default=None)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--baseline", type=Path, default=None,
                   help="another speckle checkout (e.g. git archive COMMIT speckle | tar -x -C "
                        "DIR) whose speckle xpcs runs in the same rounds: before / after")
    args = p.parse_args(argv)
    cases = [tuple(int(v) for v in c.lower().split("x")) for c in args.cases.split(",") if c]
    if cases and not args.peer_python.exists():
        sys.exit(f"no peer python at {args.peer_python}: run benchmarks/peers/setup.sh first")
    machine = machine_info()
    work = CACHE / "process_runs"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for side, n in cases:
        print(f"== {n} frames of {side}x{side} ==", flush=True)
        results.append(run_case(side, n, args, work))
    streams = []
    for spec in [s for s in args.stream.split(",") if s]:
        print(f"== stream {spec} ==", flush=True)
        streams.append(run_stream(spec, args, work))
    text = report(results, streams, args, machine)
    print("\n" + text)
    if not args.no_write:
        tag = args.tag or f"{_dt.date.today():%Y%m%d}_{machine.get('hostname', 'host')}"
        base = RESULTS / f"xpcs_process_cpu_{tag}"
        base.with_suffix(".md").write_text(text)
        base.with_suffix(".json").write_text(json.dumps(
            {"machine": machine, "options": vars(args), "cases": results, "streams": streams},
            indent=2, default=str))
        print(f"wrote {base.with_suffix('.md')}")
    return 0 if all(c["pass"] for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
