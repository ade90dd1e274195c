"""Multi-tau on a q-map with a beam stop and module gaps (97 % of the pixels used): the compiled
correlator taking whole frames (the unused pixels binned nowhere) against gathering the used
pixels out of every chunk. The q-maps of ``bench_xpcs.py`` cover every pixel, so they never
gather::

    .venv/bin/python benchmarks/bench_masked_multitau.py            # both, alternating

Needs the 2000 x 512^2 frames that ``bench_xpcs.py --sizes 512`` caches in benchmarks/.cache/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from speckle.xpcs import multitau  # noqa: E402
from speckle.xpcs.engine import compiled_kernels  # noqa: E402
from speckle.xpcs.partitions import Partition  # noqa: E402

FRAMES = HERE / ".cache" / "ou_2000x512x512_seed1_tau20_beta0.2_I1.npy"


def masked_rings(shape):
    """10 x 4 rings around the centre, a beam stop of radius 30 and two module gaps."""
    y, x = np.indices(shape)
    r = np.hypot(y - shape[0] / 2, x - shape[1] / 2)
    sta = np.digitize(r, np.linspace(30, 360, 41)).astype(np.int32)
    sta[(r < 30) | (r >= 360)] = 0
    sta[:, 255:260] = 0
    sta[300:304, :] = 0
    dyn = np.where(sta > 0, (sta - 1) // 4 + 1, 0).astype(np.int32)
    return Partition(dyn, sta, [np.nan] * 10, [np.nan] * 40, [f"ring {i}" for i in range(10)],
                     "qring")


def main(rounds: int = 3) -> None:
    frames = np.load(FRAMES, mmap_mode="r")
    part = masked_rings(frames.shape[1:])
    compiled_kernels()
    print(f"{len(frames)} frames of {frames.shape[1]}x{frames.shape[2]}, "
          f"{100 * part.mask.mean():.1f} % of the pixels used")
    default = multitau._GATHER_BELOW
    times = {"whole frames": [], "gathered": []}
    for _ in range(rounds):
        for name, threshold in (("whole frames", default), ("gathered", 1.01)):
            multitau._GATHER_BELOW = threshold
            t = time.perf_counter()
            multitau.multitau_g2(frames, part, device="cpu")
            times[name].append(time.perf_counter() - t)
    multitau._GATHER_BELOW = default
    for name, t in times.items():
        print(f"{name:>12}: " + " / ".join(f"{v:.2f}" for v in t) + " s")
    print(f"gathered / whole frames, best: {min(times['gathered']) / min(times['whole frames']):.2f}x")


if __name__ == "__main__":
    main()
