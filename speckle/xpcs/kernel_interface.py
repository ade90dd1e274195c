"""What the compiled correlator kernels take and where they are kept, without importing numba:
the columns of the multi-tau plan, the frame dtypes they are compiled for (:mod:`.kernels`
compiles for these) and the folder of their compiled forms, so that a correlator is built and
frames are read while the kernels still load."""

import os
from pathlib import Path

__all__ = ["CASCADE_FRAME_TYPES", "FRAME_SUM_TYPES", "PLAN_COLUMNS", "cache_dir"]

#: Columns of the plan that :func:`speckle.xpcs.kernels.multitau_levels` follows, one row per
#: level (the block's Python code fills it: every quantity that is the same for all pixels).
PLAN_COLUMNS = ("run", "h", "q", "n_in", "first", "pairs", "n_head", "row", "first_lag",
                "n_lags", "lag_row")
#: Frame dtypes that multitau_levels reads directly (others are converted to float32 first).
CASCADE_FRAME_TYPES = ("uint8", "uint16", "uint32", "float32")
#: Frame dtypes :func:`speckle.xpcs.kernels.frame_sums` is compiled for, with the type its sums
#: are kept in (exact for integers); other dtypes use the numpy reference.
FRAME_SUM_TYPES = {"uint8": "int64", "uint16": "int64", "uint32": "int64", "int16": "int64",
                   "int32": "int64", "float32": "float64", "float64": "float64"}


def cache_dir() -> Path:
    """The folder that holds the compiled kernels, numba's cache and the ahead-of-time
    extension (``SPECKLE_KERNEL_CACHE`` overrides it)."""
    chosen = os.environ.get("SPECKLE_KERNEL_CACHE")
    return Path(chosen) if chosen else Path(__file__).resolve().parent / "__pycache__"
