"""Regenerate tests/data/boost_corr_reference.npz: boost_corr 0.1.7's multi-tau g2 on a small
seeded simulation, the cross-check that tests/test_boost_corr_reference.py runs without torch.

Run from the repository root in the MAIN venv (it needs ``speckle`` for the simulation and runs
boost_corr in the peer venv, which ``benchmarks/peers/setup.sh`` creates)::

    .venv/bin/python benchmarks/peers/make_boost_corr_reference.py

The file holds the generator parameters (not the frames: the test regenerates them from the seed
and checks their SHA-256), the q-map, and boost_corr's ``tau``, ``normalized_g2`` and
``normalized_g2_err``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from _runner_util import ring_qmap, write_aps_qmap  # noqa: E402

PEER_PY = HERE / ".venv" / "bin" / "python"
DEFAULT_OUT = ROOT / "tests" / "data" / "boost_corr_reference.npz"

# The simulation: 400 frames of 32 x 48 uint16 photon counts, 2 dynamic x 3 static rings.
PARAMS = {
    "seed": 20240607,
    "n_frames": 400,
    "shape": (32, 48),
    "beta": 0.3,
    "chunk_frames": 256,  # the generator's draws depend on the chunking: keep it fixed
    "n_dynamic": 2,
    "n_static_per_dynamic": 3,
    "r_min": 3.0,   # beam stop: pixels closer than this to the centre are unused
    "r_max": 22.0,  # the corners are unused too
}


def pixel_parameters(shape, radius):
    """Per-pixel correlation time (frames) and mean counts: both vary inside each ring."""
    r = np.maximum(radius, 1.0)
    tau = np.clip(2000.0 / r**2, 3.0, 200.0)
    mean_counts = (3.0 * np.exp(-r / 15.0) + 0.5).astype(np.float32)
    return tau, mean_counts


def simulate(params, tau, mean_counts) -> np.ndarray:
    """The frames, exactly as the test regenerates them."""
    from speckle.xpcs.simulate import ou_speckle_chunks

    return np.concatenate(list(ou_speckle_chunks(
        params["n_frames"], tuple(params["shape"]), tau, params["beta"], mean_counts,
        seed=params["seed"], chunk_frames=params["chunk_frames"], dtype=np.uint16)))


def boost_levels(tau):
    """boost_corr's level of each lag: 1..8 at level 0, then (5..8) * 2**l at level l."""
    tau = np.asarray(tau, np.int64)
    level = np.zeros_like(tau)
    big = tau > 8
    level[big] = np.floor(np.log2((tau[big] - 1) / 4.0)).astype(np.int64)
    return level


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".cache" / "reference")
    args = p.parse_args(argv)
    if not PEER_PY.exists():
        sys.exit(f"no peer venv at {PEER_PY}: run benchmarks/peers/setup.sh first")

    prm = dict(PARAMS)
    qm = ring_qmap(prm["shape"], prm["n_dynamic"], prm["n_static_per_dynamic"],
                   r_min=prm["r_min"], r_max=prm["r_max"])
    tau_px, mean_counts = pixel_parameters(prm["shape"], qm["radius"])
    frames = simulate(prm, tau_px, mean_counts)
    sha = hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()
    # q of each ring: radius in pixels, used as a stand-in (the test does not need units)
    dynamic_q, static_q = qm["dynamic_r"], qm["static_r"]

    args.work.mkdir(parents=True, exist_ok=True)
    fpath, qpath, opath = args.work / "frames.npy", args.work / "qmap.h5", args.work / "boost"
    np.save(fpath, frames)
    write_aps_qmap(qpath, qm["dynamic_map"], qm["static_map"], qm["mask"], dynamic_q, static_q)
    subprocess.run([str(PEER_PY), str(HERE / "run_boost_corr.py"), "--frames", str(fpath),
                    "--qmap", str(qpath), "--out", str(opath), "--mode", "multitau",
                    "--warmup-frames", "0"], check=True)
    info = json.loads(opath.with_suffix(".json").read_text())
    res = np.load(opath.with_suffix(".npz"))
    tau = res["tau"]
    level = boost_levels(tau)
    versions = subprocess.run(
        [str(PEER_PY), "-c", "import boost_corr, torch; print(boost_corr.__version__, "
         "torch.__version__)"], check=True, capture_output=True, text=True).stdout.split()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        seed=np.int64(prm["seed"]), n_frames=np.int64(prm["n_frames"]),
        shape=np.array(prm["shape"], np.int64), beta=np.float64(prm["beta"]),
        chunk_frames=np.int64(prm["chunk_frames"]), dtype=np.array("uint16"),
        tau_frames_map=tau_px.astype(np.float64), mean_counts_map=mean_counts,
        frames_sha256=np.array(sha),
        dynamic_map=qm["dynamic_map"], static_map=qm["static_map"],
        mask=qm["mask"].astype(np.uint8), dynamic_q=dynamic_q, static_q=static_q,
        tau=tau, tau_level=level,
        normalized_g2=res["g2"], normalized_g2_err=res["g2_err"],
        boost_corr_version=np.array(versions[0]), torch_version=np.array(versions[1]),
    )
    print(f"wrote {args.out}: {len(tau)} lags {tau.min()}..{tau.max()}, "
          f"g2 shape {res['g2'].shape}, frames sha256 {sha[:12]}..., "
          f"boost_corr {versions[0]} (torch {versions[1]}), level dtypes {info['level_dtypes']}")


if __name__ == "__main__":
    main()
