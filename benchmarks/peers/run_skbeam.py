"""Run scikit-beam's correlators on a frames file: multi-tau or two-time, timed.

Runs INSIDE the peer venv (benchmarks/peers/.venv, see setup.sh)::

    benchmarks/peers/.venv/bin/python benchmarks/peers/run_skbeam.py \
        --frames F.npy --qmap Q.h5 --mode multitau --out OUT

writes OUT.json (timings, peak memory, options) and OUT.npz:

* multitau: ``skbeam.core.correlation.multi_tau_auto_corr`` with 8 buffers and enough levels to
  cover the series; labels are the q-map's dynamic bins (its normalisation is one average per
  ROI: ``g2 = <mean_p I(t) I(t+k)>_t / (<mean_p I(t)>_t <mean_p I(t+k)>_t)``, no static bins).
  ``tau`` (frames, lag 0 included as skbeam returns it) and ``g2`` (tau x bins).
* twotime: ``two_time_corr`` (one level, as many buffers as frames: the full map) on the first
  ``--n-frames`` frames only; its cost grows as frames squared, so the JSON also gives
  ``estimated_time_s_for`` a longer series (an extrapolation, labelled as such).

Timing: a warm-up on the first frames, then one timed run; ``time_s`` is reading + correlation,
``compute_s`` leaves out the reading.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner_util import (FrameReader, Timer, current_rss_mib, read_aps_qmap,  # noqa: E402
                          write_result)


def _frames(reader, n, t_load, batch=64):
    for a in range(0, n, batch):
        with t_load:
            block = reader.read(a, min(a + batch, n))
        yield from block


def skbeam_levels(n_frames, buffers=8):
    """Levels whose first lag, ``buffers/2 * 2**l``, still fits in the series."""
    levels = 1
    while (buffers // 2) * 2 ** levels < n_frames // 2 ** levels * 2 ** levels:
        levels += 1
    return levels


def run_multitau(reader, labels, n, buffers):
    from skbeam.core.correlation import multi_tau_auto_corr

    levels = skbeam_levels(n, buffers)
    t_load = Timer()
    t0 = time.perf_counter()
    g2, lags = multi_tau_auto_corr(levels, buffers, labels, _frames(reader, n, t_load))
    total = time.perf_counter() - t0
    info = {"time_s": total, "compute_s": total - t_load.total, "load_s": t_load.total,
            "num_levels": levels, "num_bufs": buffers}
    return info, {"tau": np.asarray(lags, np.int64), "g2": np.asarray(g2, np.float64)}


def run_twotime(reader, labels, n):
    from skbeam.core.correlation import two_time_corr

    n = n - n % 2  # an even number of buffers
    t_load = Timer()
    t0 = time.perf_counter()
    res = two_time_corr(labels, _frames(reader, n, t_load), n, n, 1)
    total = time.perf_counter() - t0
    info = {"time_s": total, "compute_s": total - t_load.total, "load_s": t_load.total,
            "num_levels": 1, "num_bufs": n}
    return info, {"c2_1": np.asarray(res.g2[0], np.float32)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", required=True, help=".npy frames (n, rows, cols), memory-mapped")
    p.add_argument("--qmap", required=True, help="APS q-map .h5 (its dynamic bins are the ROIs)")
    p.add_argument("--out", required=True, help="output prefix (writes .json and .npz)")
    p.add_argument("--mode", choices=["multitau", "twotime"], default="multitau")
    p.add_argument("--n-frames", type=int, default=None, help="use only the first N frames")
    p.add_argument("--buffers", type=int, default=8)
    p.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest is reported")
    p.add_argument("--warmup-frames", type=int, default=32,
                   help="frames of the untimed warm-up run (0: none)")
    p.add_argument("--estimate-for", type=int, default=None,
                   help="two-time: also extrapolate the time to this many frames (x frames^2)")
    args = p.parse_args(argv)

    import skbeam

    reader = FrameReader(args.frames)
    n = len(reader) if args.n_frames is None else min(args.n_frames, len(reader))
    qm = read_aps_qmap(args.qmap)
    labels = np.where(qm["mask"], qm["dynamic_map"], 0).astype(np.int64)
    rss0 = current_rss_mib()

    def once(n_use):
        if args.mode == "multitau":
            return run_multitau(reader, labels, n_use, args.buffers)
        return run_twotime(reader, labels, n_use)

    if args.warmup_frames:
        once(max(4, min(args.warmup_frames, n)))
    tries = [once(n) for _ in range(max(1, args.repeat))]
    info, arrays = min(tries, key=lambda t: t[0]["time_s"])  # best of the repeats
    info["times_s"] = [t[0]["time_s"] for t in tries]
    del tries
    n_done = info.get("num_bufs", n) if args.mode == "twotime" else n
    info.update({
        "engine": f"scikit-beam {skbeam.__version__} {args.mode}", "mode": args.mode,
        "n_frames": n_done, "frame_shape": list(reader.shape[1:]),
        "frames_per_s": n_done / info["time_s"],
        "compute_frames_per_s": n_done / info["compute_s"],
        "rss_before_mib": round(rss0, 1), "warmup_frames": args.warmup_frames,
    })
    if args.mode == "twotime" and args.estimate_for:
        scale = (args.estimate_for / n_done) ** 2
        info["estimated_time_s_for"] = {
            "n_frames": args.estimate_for, "time_s": info["time_s"] * scale,
            "note": f"extrapolated from {n_done} frames as (frames ratio)^2; not measured"}
    write_result(args.out, info, arrays)
    print(f"{info['engine']}: {n_done} frames {tuple(reader.shape[1:])} in {info['time_s']:.3f} s "
          f"({info['frames_per_s']:.1f} frames/s)")


if __name__ == "__main__":
    main()
