"""Run cohere-core's phase retrieval (numpy, CPU) on a 2D pattern, timed.

Runs INSIDE the peer venv (benchmarks/peers/.venv, see setup.sh)::

    benchmarks/peers/.venv/bin/python benchmarks/peers/run_cohere.py \
        --data AMPLITUDES.npy --out OUT --sequence "5*(99*HIO+1*ER)" --beta 0.9 \
        --support-fraction 0.5 --shrink-wrap 100,100 --sigma 1.0 --threshold 0.1

``AMPLITUDES.npy`` holds the *centred modulus* ``sqrt(I)``: cohere's modulus projection uses
the data file as amplitudes (its own preprocessing takes the square root before writing it),
with the zero frequency in the middle (it fftshifts on loading).

Writes OUT.json (``time_s`` = wall time of ``iterate()``, iterations, ``iterations_per_s``,
``fourier_error`` = cohere's last error, and the parameters) and OUT.npz (``image``: cohere's
result after ``save_res``, centred and normalised to a maximum of 1).

cohere's twin removal is not configured: in cohere-core 4.5.4 it indexes three axes and fails
on 2D data (IndexError).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _iterations(sequence: str) -> int:
    """Total iterations of a cohere algorithm_sequence (its own parser)."""
    import cohere_core.controller.op_flow as op_flow  # noqa: PLC0415

    return int(op_flow.get_alg_rows(sequence, None)[2])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help=".npy of centred amplitudes sqrt(I)")
    ap.add_argument("--out", required=True, help="output prefix (OUT.json, OUT.npz)")
    ap.add_argument("--sequence", default="5*(99*HIO+1*ER)",
                    help="cohere algorithm_sequence")
    ap.add_argument("--beta", type=float, default=0.9, help="HIO beta")
    ap.add_argument("--support-fraction", type=float, default=0.5,
                    help="initial support: a centred box of this fraction of each side")
    ap.add_argument("--shrink-wrap", default="100,100",
                    help="shrink_wrap_trigger START,STEP (empty: none)")
    ap.add_argument("--sigma", type=float, default=1.0, help="shrink-wrap Gaussian sigma")
    ap.add_argument("--threshold", type=float, default=0.1, help="shrink-wrap threshold")
    ap.add_argument("--average-last", type=int, default=0, metavar="N",
                    help="cohere's average_trigger over the last N iterations (its amplitude "
                         "averaging; 0: none)")
    args = ap.parse_args(argv)

    import cohere_core.controller.phasing as phasing  # noqa: PLC0415
    from importlib.metadata import version  # noqa: PLC0415

    data = np.load(args.data)
    params = {
        "algorithm_sequence": args.sequence,
        "hio_beta": args.beta,
        "initial_support_area": (args.support_fraction,) * data.ndim,
    }
    if args.shrink_wrap:
        start, step = (int(v) for v in args.shrink_wrap.split(","))
        params.update(shrink_wrap_trigger=[start, step], shrink_wrap_type="GAUSS",
                      shrink_wrap_threshold=args.threshold,
                      shrink_wrap_gauss_sigma=args.sigma)
    if args.average_last:
        total = _iterations(args.sequence)
        params["average_trigger"] = [total - args.average_last, 1]
    chatter = io.StringIO()  # cohere prints per-call messages; keep stdout for our JSON
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(chatter):
            rec = phasing.create_rec(dict(params), args.data, "np", -1, debug=True)
            if rec is None:
                print(chatter.getvalue(), file=sys.stderr)
                raise SystemExit("cohere could not create the reconstruction")
            t0 = time.perf_counter()
            status = rec.iterate()
            elapsed = time.perf_counter() - t0
            rec.save_res(tmp)
        if status != 0:
            print(chatter.getvalue(), file=sys.stderr)
            raise SystemExit("cohere's iterate() failed")
        image = np.load(Path(tmp) / "image.npy")
    n_iter = len(rec.errs)
    info = {
        "engine": "cohere_core", "version": version("cohere_core"),
        "numpy": np.__version__, "params": params, "shape": list(data.shape),
        "iterations": n_iter, "time_s": elapsed,
        "iterations_per_s": n_iter / elapsed if elapsed > 0 else None,
        "fourier_error": float(rec.errs[-1]) if n_iter else None,
        "dtype": str(np.asarray(rec.ds_image).dtype),
    }
    Path(args.out + ".json").write_text(json.dumps(info, indent=2))
    np.savez(args.out + ".npz", image=image, errors=np.asarray(rec.errs, float))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
