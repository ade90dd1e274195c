"""Run boost_corr 0.1.7 (APS, PyTorch) on a frames file: multi-tau or two-time, timed.

Runs INSIDE the peer venv (benchmarks/peers/.venv, see setup.sh)::

    benchmarks/peers/.venv/bin/python benchmarks/peers/run_boost_corr.py \
        --frames F.npy --qmap Q.h5 --mode multitau --out OUT

writes OUT.json (timings, peak memory, options) and OUT.npz:

* multitau: ``tau`` (frames), ``g2`` and ``g2_err`` (tau x dynamic bins) from
  ``XpcsQPartitionMap.normalize_multitau`` (APS symmetric normalisation), ``G2IPIF`` is not saved.
* twotime: ``c2_g2`` (dynamic bins x lags 0..N-1, diagonal averages of each map), ``c2_bins``
  and ``c2_<bin>`` (the upper-triangular maps of the bins asked for with ``--save-bins``).

The correlators are driven the way boost_corr's own command line drives them
(``gpu_corr_multitau.solve_multitau_base`` / ``gpu_corr_twotime.solve_twotime_base``): frames
are fed as int32 tensors of (batch, pixels) (its HDF reader casts uint16 to int32),
``normalize_frame=False`` (the Python API's default; the command line defaults to True), and
two-time uses ``--smooth`` (``sqmap``, the CLI's default, divides each pixel by its static bin's
mean in each frame; ``dqmap`` by its dynamic bin's, which makes the map exactly
``<I I>_p / (<I>_p <I>_p)`` over the dynamic bin).

Timing: a warm-up run on the first frames, then one timed run (``--repeat``: the fastest);
``time_s`` is reading + correlation + normalisation, ``compute_s`` leaves out the reading; both
leave out constructing the correlator (``setup_s``: reading the q-map and allocating boost_corr's
zeroed buffers, about 3 GB for multi-tau here; ``time_with_setup_s`` includes it), as boost_corr's
own "frequency" does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runner_util import Timer, current_rss_mib, open_frames, write_result  # noqa: E402


def _np(value):
    """A numpy array of a result (torch tensors on the GPU are copied to the host)."""
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _sync(device, torch):
    """Wait for the GPU's queued work, so that a timer covers it (nothing on the CPU)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _batches(n, batch):
    for a in range(0, n, batch):
        yield a, min(a + batch, n)


def run_multitau(reader, qmap, n_frames, batch, max_memory, torch, device="cpu"):
    from boost_corr import MultitauCorrelator
    from boost_corr.xpcs_aps_8idi.xpcs_qpartitionmap import XpcsQPartitionMap

    t_load, t_proc, t_post, t_setup = Timer(), Timer(), Timer(), Timer()
    t0 = time.perf_counter()
    with t_setup:  # reading the q-map, allocating the (zeroed) buffers
        qpm = XpcsQPartitionMap(qmap, device=device)  # crop_ratio_threshold=0.5 as in the CLI
        rows, cols = reader.shape[1:]
        xb = MultitauCorrelator(det_size=(rows, cols), frame_num=n_frames, device=device,
                                queue_size=8, auto_queue=True, mask_crop=qpm.mask_crop,
                                normalize_frame=False, max_memory=max_memory)
    crop = None if qpm.mask_crop is None else _np(qpm.mask_crop)
    # a batch must fill the level-0 queue exactly (boost_corr flushes when it is full)
    batch = int(min(batch, xb.tau_all[0] - xb.tau_rev))
    for a, b in _batches(n_frames, batch):
        with t_load:
            x = reader.read(a, b).reshape(b - a, -1)
            if crop is not None:
                x = x[:, crop]
            x = torch.from_numpy(x.astype(np.int32)).to(device)
        with t_proc:
            xb.process(x)
            _sync(device, torch)
    with t_post:
        xb.post_process()
        _, out_mt = xb.get_results()
        res = qpm.normalize_multitau(out_mt, save_G2=False)
        _sync(device, torch)
    wall = time.perf_counter() - t0
    total = wall - t_setup.total
    info = {"time_s": total, "compute_s": total - t_load.total, "load_s": t_load.total,
            "setup_s": t_setup.total, "time_with_setup_s": wall,
            "process_s": t_proc.total, "post_s": t_post.total,
            "batch": batch, "queue": [int(q) - int(xb.tau_rev) for q in xb.tau_all],
            "level_dtypes": [str(d[0]) for d in xb.dtype_list],
            "mask_crop": crop is not None}
    arrays = {"tau": _np(res["delay_list"]).astype(np.int64),
              "g2": _np(res["g2"]).astype(np.float64),
              "g2_err": _np(res["g2_err"]).astype(np.float64)}
    return info, arrays


def run_twotime(reader, qmap, n_frames, batch, save_bins, smooth, torch, device="cpu"):
    from boost_corr import TwotimeCorrelator
    from boost_corr.xpcs_aps_8idi.xpcs_qpartitionmap import XpcsQPartitionMap

    t_load, t_proc, t_post, t_setup = Timer(), Timer(), Timer(), Timer()
    t0 = time.perf_counter()
    with t_setup:
        # crop_ratio_threshold > 1 forces the cropped, bin-sorted pixel order that the two-time
        # correlator's slices index (with the CLI's 0.5 and a q-map covering at least half the
        # detector, boost_corr 0.1.7 feeds raster-ordered pixels to slices of the sorted order
        # and its maps are wrong).
        qpm = XpcsQPartitionMap(qmap, device=device, flag_sort=True, crop_ratio_threshold=1.01)
        rows, cols = reader.shape[1:]
        crop = _np(qpm.mask_crop)
        tc = TwotimeCorrelator(qpm.qinfo, frame_num=n_frames, det_size=(rows, cols),
                               method="normal", mask_crop=qpm.mask_crop, window=1024,
                               device=device)
    for a, b in _batches(n_frames, batch):
        with t_load:
            x = reader.read(a, b).reshape(b - a, -1)[:, crop]
            x = torch.from_numpy(x.astype(np.int32)).to(device)
        with t_proc:
            tc.process(x)
            _sync(device, torch)
    maps, c2_g2 = {}, None
    bins = [int(v) for v in _np(tc.dq_idx)]
    with t_post:
        tc.post_processing(smooth_method=smooth)
        k = 0
        for item in tc.get_twotime_generator():
            for key, value in item.items():
                if key.startswith("correlation_map/c2_"):
                    if bins[k] in save_bins:
                        maps[bins[k]] = _np(value).astype(np.float32)
                    k += 1
                elif key == "c2_g2":
                    c2_g2 = _np(value).astype(np.float64).T  # (bins, lags)
    wall = time.perf_counter() - t0
    total = wall - t_setup.total
    info = {"time_s": total, "compute_s": total - t_load.total, "load_s": t_load.total,
            "setup_s": t_setup.total, "time_with_setup_s": wall,
            "process_s": t_proc.total, "post_s": t_post.total, "batch": batch,
            "smooth": smooth, "bins": bins}
    arrays = {"c2_g2": c2_g2 if c2_g2 is not None else np.empty(0),
              "c2_bins": np.array(sorted(maps), np.int64)}
    arrays.update({f"c2_{k}": v for k, v in maps.items()})
    return info, arrays


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", required=True,
                   help=".npy frames (n, rows, cols), memory-mapped, or an HDF5 file "
                        "(/entry/data/data, read with h5py as boost_corr's reader does)")
    p.add_argument("--qmap", required=True, help="APS q-map .h5")
    p.add_argument("--out", required=True, help="output prefix (writes .json and .npz)")
    p.add_argument("--mode", choices=["multitau", "twotime"], default="multitau")
    p.add_argument("--n-frames", type=int, default=None, help="use only the first N frames")
    p.add_argument("--batch", type=int, default=128, help="frames per process() call")
    p.add_argument("--max-memory", type=float, default=36.0,
                   help="MultitauCorrelator max_memory, GB (boost_corr's default: 36)")
    p.add_argument("--warmup-frames", type=int, default=128,
                   help="frames of the untimed warm-up run (0: none)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda:0 (the GPU run)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest is reported")
    p.add_argument("--save-bins", default="1", help="two-time: comma-separated bins to save")
    p.add_argument("--smooth", choices=["sqmap", "dqmap"], default="sqmap",
                   help="two-time: divide each pixel by its static (sqmap, the CLI's default) or "
                        "dynamic (dqmap) bin's mean of each frame first")
    args = p.parse_args(argv)

    import boost_corr
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    reader = open_frames(args.frames)
    n = len(reader) if args.n_frames is None else min(args.n_frames, len(reader))
    save_bins = {int(v) for v in args.save_bins.split(",") if v.strip()}
    rss0 = current_rss_mib()

    def once(n_use):
        if args.mode == "multitau":
            return run_multitau(reader, args.qmap, n_use, args.batch, args.max_memory, torch,
                                args.device)
        return run_twotime(reader, args.qmap, n_use, args.batch, save_bins, args.smooth,
                           torch, args.device)

    if args.warmup_frames:
        once(min(args.warmup_frames, n))
    tries = [once(n) for _ in range(max(1, args.repeat))]
    info, arrays = min(tries, key=lambda t: t[0]["time_s"])  # best of the repeats
    info["times_s"] = [t[0]["time_s"] for t in tries]
    del tries
    info.update({
        "engine": f"boost_corr {boost_corr.__version__} {args.mode}", "mode": args.mode,
        "n_frames": n, "frame_shape": list(reader.shape[1:]),
        "frames_per_s": n / info["time_s"], "compute_frames_per_s": n / info["compute_s"],
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "max_memory_gb": args.max_memory, "rss_before_mib": round(rss0, 1), "device": args.device,
        "warmup_frames": min(args.warmup_frames, n),
    })
    write_result(args.out, info, arrays)
    print(f"{info['engine']}: {n} frames {tuple(reader.shape[1:])} in {info['time_s']:.3f} s "
          f"({info['frames_per_s']:.0f} frames/s; compute only {info['compute_s']:.3f} s)")


if __name__ == "__main__":
    main()
