"""The one place that chooses numpy or cupy.

Library functions ask their *input* which array module it belongs to (:func:`array_module`) and
use that module, so the same code runs on numpy arrays (CPU) and cupy arrays (GPU). Only this
module imports cupy. A cupy that imports but finds no usable device (no driver, no GPU) counts
as "no GPU".
"""

from __future__ import annotations

import functools
import os
from types import ModuleType

import numpy as np

__all__ = [
    "array_module",
    "asnumpy",
    "device_description",
    "get_xp",
    "gpu_available",
]


@functools.lru_cache(maxsize=1)
def _cupy() -> ModuleType | None:
    """Return the cupy module when it imports *and* sees a working device, else None."""
    if os.environ.get("SPECKLE_DISABLE_GPU"):
        return None
    try:
        import cupy  # noqa: PLC0415 - the only cupy import in the project
    except Exception:  # ImportError, or a broken CUDA installation raising at import
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        cupy.zeros(1)  # an allocation proves the driver works (FIELD-NOTES: it may not)
    except Exception:
        return None
    return cupy


def gpu_available() -> bool:
    """Return True when cupy is installed and a CUDA device is usable."""
    return _cupy() is not None


def get_xp(device: str = "auto") -> ModuleType:
    """Return the array module for a device choice.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        ``"auto"`` picks cupy when a GPU is usable, numpy otherwise; ``"gpu"`` raises when none is.

    Returns
    -------
    module
        ``numpy`` or ``cupy``.
    """
    if device == "cpu":
        return np
    cp = _cupy()
    if device == "gpu":
        if cp is None:
            from .errors import InvalidInputError

            raise InvalidInputError(
                "a GPU was requested but none is usable here (no cupy or no CUDA device); "
                "choose the CPU"
            )
        return cp
    if device != "auto":
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', not {device!r}")
    return cp if cp is not None else np


def array_module(*arrays) -> ModuleType:
    """Return the array module (numpy or cupy) that the given arrays belong to.

    Non-array arguments (None, Python scalars) are ignored; with no array at all, numpy.
    """
    for a in arrays:
        if a is None or isinstance(a, (np.ndarray, np.generic, int, float, complex)):
            continue
        mod = type(a).__module__.split(".")[0]
        if mod == "cupy":
            return _cupy() or np
    return np


def asnumpy(a):
    """Return ``a`` as a numpy array (copies from the GPU when needed)."""
    if array_module(a) is np:
        return np.asarray(a)
    return a.get()


def device_description() -> str:
    """Describe where computations run, e.g. ``"NVIDIA H100 80GB HBM3"`` or a CPU message."""
    cp = _cupy()
    if cp is None:
        return "CPU: this server has no GPU"
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)
