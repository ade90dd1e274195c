"""Run speckle's multi-tau or two-time correlator on a frames file, timed (main venv).

The counterpart of ``peers/run_boost_corr.py`` and ``peers/run_skbeam.py``, with the same
inputs (a memory-mapped ``.npy`` and an APS q-map ``.h5``) and outputs (``OUT.json`` +
``OUT.npz``)::

    .venv/bin/python benchmarks/run_speckle.py --frames F.npy --qmap Q.h5 --mode multitau --out O

The timed run gives speckle an :class:`~speckle.io.dataset.ArrayDataset` over the memory-mapped
file (chunks are views of the mapping; the pages of chunks already consumed are released, so peak
memory is speckle's own plus at most two chunks of the file). Reading happens inside speckle's
chunk loop, so by default ``compute_s`` is ``time_s`` (reading included: conservative next to the
peers' compute-only times); ``--compute-only-run`` adds a second run on the frames already in
memory (the peak memory reported stays the first run's).
``--roi`` makes each dynamic bin its own static bin (one average per ROI, scikit-beam's
normalisation) for the cross-check with it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))
sys.path.insert(0, str(HERE.parent))
from _runner_util import (FrameReader, current_rss_mib, peak_rss_mib,  # noqa: E402
                          read_aps_qmap, ring_qmap, write_result)


def make_dataset(reader, n, keep_chunks=2):
    """An ArrayDataset over the memory-mapped frames (zero copy: chunks are views of the
    mapping). The mapped pages of chunks older than the last ``keep_chunks`` are released from
    this process as reading goes on, so peak memory counts at most a few chunks of the file."""
    from speckle.io.dataset import ArrayDataset

    class MappedDataset(ArrayDataset):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.ranges = []

        def _read(self, start, stop):
            self.ranges.append((start, stop))
            while len(self.ranges) > keep_chunks:
                reader.release(*self.ranges.pop(0))
            return super()._read(start, stop)

        def release_all(self):
            for r in self.ranges:
                reader.release(*r)
            self.ranges = []

    return MappedDataset(reader.frames[:n], source="benchmark frames (memory-mapped .npy)",
                         format="npy")


def make_partition(qmap_path, roi=False):
    from speckle.xpcs.partitions import Partition

    qm = read_aps_qmap(qmap_path)
    dyn = np.where(qm["mask"], qm["dynamic_map"], 0)
    sta = dyn.copy() if roi else np.where(qm["mask"], qm["static_map"], 0)
    n_dyn, n_sta = int(dyn.max()), int(sta.max())
    dq = qm.get("dynamic_q", np.full(n_dyn, np.nan))
    sq = dq if roi else qm.get("static_q", np.full(n_sta, np.nan))
    return Partition(dyn, sta, dq, sq, [f"ring {i + 1}" for i in range(n_dyn)], "qring")


def diagonal_average(c2):
    """Mean of a (T, T) map along each diagonal |t1 - t2| = lag, lags 0..T-1."""
    t = c2.shape[0]
    idx = np.abs(np.subtract.outer(np.arange(t), np.arange(t))).ravel()
    return np.bincount(idx, weights=np.asarray(c2, np.float64).ravel()) / np.bincount(idx)


def stream(args):
    """Multi-tau over a big detector's stream: ``--generate FRAMESxSIDE`` frames made on the fly
    (nothing read from disk), a q-map of 16 x 16 rings; prints progress, reports frames/s and
    the peak resident memory."""
    from speckle.io.dataset import Dataset, Metadata
    from speckle.xpcs.multitau import multitau_g2
    from speckle.xpcs.partitions import Partition

    n, side = (int(v) for v in args.generate.lower().split("x"))

    class PoolFrames(Dataset):
        """Frames drawn in turn from a pool of 16 Poisson frames (mean 1 count)."""

        def __init__(self):
            self.pool = np.random.default_rng(0).poisson(1.0, (16, side, side)).astype(np.uint16)
            self.shape, self.dtype = (n, side, side), self.pool.dtype
            self.metadata, self.source, self.format = Metadata(), "generated", "generated"

        def _read(self, start, stop):
            return self.pool[np.arange(start, stop) * 7 % len(self.pool)]

    qm = ring_qmap((side, side), 16, 16)
    part = Partition(qm["dynamic_map"], qm["static_map"], [np.nan] * 16, [np.nan] * 256,
                     [f"ring {i + 1}" for i in range(16)], "qring")
    rss0 = current_rss_mib()
    ds = PoolFrames()
    pool_mib = ds.pool.nbytes / 2**20
    t0 = time.perf_counter()
    shown = [0]

    def progress(done, total):
        if done * 10 // total > shown[0] or done == total:
            shown[0] = done * 10 // total
            print(f"  {done}/{total} frames, {done / (time.perf_counter() - t0):.0f} frames/s, "
                  f"RSS {current_rss_mib():.0f} MiB", file=sys.stderr, flush=True)

    res = multitau_g2(ds, part, chunk_frames=args.chunk_frames, threads=args.threads,
                      progress=progress, device=args.device)
    total = time.perf_counter() - t0
    info = {"engine": f"speckle multitau (generated stream, {args.device})", "mode": "stream",
            "device": args.device, "n_frames": n,
            "frame_shape": [side, side], "time_s": total, "compute_s": total,
            "frames_per_s": n / total, "compute_frames_per_s": n / total,
            "rss_before_mib": round(rss0, 1), "pool_mib": round(pool_mib, 1)}
    write_result(args.out, info, {"tau": np.asarray(res.tau_frames), "g2": res.g2})
    print(f"{info['engine']}: {n} frames {side}x{side} in {total:.1f} s "
          f"({info['frames_per_s']:.0f} frames/s)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", help="frames (.npy, memory-mapped)")
    p.add_argument("--qmap", help="APS q-map (.h5)")
    p.add_argument("--generate", metavar="FRAMESxSIDE",
                   help="instead of --frames/--qmap: stream this many generated frames of "
                        "SIDE x SIDE through multi-tau (big detectors; progress on stderr)")
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["multitau", "twotime"], default="multitau")
    p.add_argument("--n-frames", type=int, default=None, help="use only the first N frames")
    p.add_argument("--roi", action="store_true",
                   help="one static bin per dynamic bin (scikit-beam's normalisation)")
    p.add_argument("--chunk-frames", type=int, default=None)
    p.add_argument("--warmup-frames", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="multi-tau worker threads")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest is reported")
    p.add_argument("--save-bins", default="1", help="two-time: comma-separated bins to save")
    p.add_argument("--compute-only-run", action="store_true",
                   help="also time a second run on the frames already in memory (compute only); "
                        "by default compute_s = time_s (reading is inside the correlator's "
                        "chunk loop and is not separated)")
    args = p.parse_args(argv)
    if args.generate:
        return stream(args)
    if not (args.frames and args.qmap):
        p.error("give --frames and --qmap (or --generate)")

    import speckle
    from speckle.xpcs.multitau import multitau_g2
    from speckle.xpcs.twotime import twotime_maps

    reader = FrameReader(args.frames)
    n = len(reader) if args.n_frames is None else min(args.n_frames, len(reader))
    save_bins = {int(v) for v in args.save_bins.split(",") if v.strip()}
    rss0 = current_rss_mib()

    def once(data):
        t0 = time.perf_counter()
        part = make_partition(args.qmap, args.roi)
        if args.mode == "multitau":
            res = multitau_g2(data, part, buffers=8, chunk_frames=args.chunk_frames,
                              device=args.device, threads=args.threads)
        else:
            res = twotime_maps(data, part, chunk_frames=args.chunk_frames, device=args.device)
        return time.perf_counter() - t0, res

    if args.warmup_frames:
        once(make_dataset(reader, min(args.warmup_frames, n)))
    # 1) the timed run, reading the memory-mapped file (from the page cache)
    times = []
    for _ in range(max(1, args.repeat)):
        ds = make_dataset(reader, n)
        t, r = once(ds)
        ds.release_all()
        times.append(t)
        if t == min(times):
            total, res = t, r
        del r
    peak = peak_rss_mib()
    # 2) compute only: the same run on frames already in memory (after the peak was taken)
    compute_s = None
    if args.compute_only_run:
        t0 = time.perf_counter()
        frames = np.empty((n, *reader.shape[1:]), reader.dtype)
        step = 256
        for a in range(0, n, step):
            frames[a:a + step] = reader.read(a, min(a + step, n))
        load_s = time.perf_counter() - t0
        from speckle.io.dataset import ArrayDataset
        compute_s, _ = once(ArrayDataset(frames))
        del frames
    info = {"time_s": total, "compute_s": compute_s if compute_s is not None else total,
            "load_s": load_s if compute_s is not None else None,
            "compute_only_measured": compute_s is not None, "peak_rss_mib_timed_run": peak,
            "times_s": times}
    if args.mode == "multitau":
        arrays = {"tau": np.asarray(res.tau_frames, np.int64),
                  "g2": np.asarray(res.g2, np.float64),
                  "g2_err": np.asarray(res.g2_err, np.float64),
                  "n_pairs": np.asarray(res.n_pairs)}
    else:
        bins = sorted(res)
        arrays = {"c2_g2": np.stack([diagonal_average(res[b]) for b in bins]),
                  "c2_bins": np.array([b for b in bins if b in save_bins], np.int64)}
        arrays.update({f"c2_{b}": np.asarray(res[b], np.float32) for b in bins if b in save_bins})
        info["map_steps"] = int(res[bins[0]].shape[0])
    info.update({
        "engine": f"speckle {getattr(speckle, '__version__', '?')} {args.mode}"
                  + (" (ROI normalisation)" if args.roi else ""),
        "mode": args.mode, "n_frames": n, "frame_shape": list(reader.shape[1:]),
        "frames_per_s": n / info["time_s"], "compute_frames_per_s": n / info["compute_s"],
        "rss_before_mib": round(rss0, 1), "warmup_frames": min(args.warmup_frames, n),
        "roi_normalisation": bool(args.roi), "device": args.device,
    })
    write_result(args.out, info, arrays)
    if info["compute_only_measured"]:  # the in-memory run came after: report the timed run's peak
        path = Path(args.out).with_suffix(".json")
        doc = json.loads(path.read_text())
        doc["peak_rss_mib_with_compute_only_run"] = doc["peak_rss_mib"]
        doc["peak_rss_mib"] = round(peak, 1)
        path.write_text(json.dumps(doc, indent=2))
    print(f"{info['engine']}: {n} frames {tuple(reader.shape[1:])} in {info['time_s']:.3f} s "
          f"({info['frames_per_s']:.0f} frames/s; compute only {info['compute_s']:.3f} s)")


if __name__ == "__main__":
    main()
