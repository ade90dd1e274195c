"""One compiled-kernel cache per install, written once and read by every user.

numba caches compiled functions beside their source only where the current user may write, so
user servers running as other unix accounts would each compile the kernels again (seconds) on
their first analysis. Here the cache of :mod:`speckle.xpcs.kernels` is a folder of the install
(``speckle/xpcs/__pycache__``, or ``SPECKLE_KERNEL_CACHE``): whoever may write it (the one who
installed speckle; ``make setup`` runs :func:`speckle.xpcs.engine.warm`) fills it, everyone else
only reads it. A cache that is stale and not writable is not an error: the kernels are compiled
in memory and a warning says how to refresh the cache.

It imports numba: only the modules of compiled kernels and :func:`~speckle.xpcs.engine.warm`
import it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numba
from numba.core.caching import (CompileResultCacheImpl, FunctionCache, InTreeCacheLocator,
                                UserWideCacheLocator)

from .kernel_interface import cache_dir


def _load_array_math_without_scipy() -> None:
    """Load numba's array-math implementations without their BLAS probe importing scipy.linalg.

    When numba first loads a function (cached or not) it loads ``numba.np.arraymath``, which
    asks whether BLAS is there by importing ``scipy.linalg.cython_blas``: 0.13-0.2 s of
    scipy.linalg on the way to the kernels, none of which use BLAS. Here the probe answers from
    the installed packages instead (scipy there or not, as numba's own answer would be), and
    numba's real probe is put back at once, so that whatever compiles BLAS calls later (np.dot
    in someone's own function) imports scipy and checks it as numba always does.
    """
    if "numba.np.arraymath" in sys.modules:
        return
    from numba.np import linalg

    def probe():
        if importlib.util.find_spec("scipy") is None:
            raise ImportError("scipy 0.16+ is required for linear algebra")

    real = linalg.ensure_blas
    linalg.ensure_blas = probe
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        linalg.ensure_blas = real


_load_array_math_without_scipy()

__all__ = ["OPTIONS", "cache_dir", "compiled", "open_to_all"]

#: numba options of the kernels: run on threads without the interpreter lock, no bounds checks,
#: fused multiply-adds, numpy's floating-point errors (inf / nan, no exceptions).
OPTIONS = dict(nogil=True, boundscheck=False, fastmath={"contract"}, error_model="numpy")


class _SharedLocator(InTreeCacheLocator):
    """The install's cache folder, used when it can be written *or* read."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = str(cache_dir())

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.exists(py_file):
            return None
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:
            if not os.access(self._cache_path, os.R_OK | os.X_OK):
                return None  # numba falls back to the user's own cache
        return self


class _SharedImpl(CompileResultCacheImpl):
    _locator_classes = [_SharedLocator, UserWideCacheLocator]


class _SharedCache(FunctionCache):
    """A function cache in the shared folder that tolerates not being allowed to write it."""

    _impl_class = _SharedImpl

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as exc:
            warnings.warn(f"speckle: the compiled-kernel cache {self.cache_path} is out of date "
                          f"and not writable here ({exc.strerror}); kernels are compiled in "
                          "memory for this process. Refresh it as its owner: make kernels, or "
                          "python -m speckle.xpcs.engine", RuntimeWarning, stacklevel=2)
            self.disable()


def compiled(signatures, options: dict):
    """Decorator: compile a function with numba for ``signatures`` now, through the shared
    cache (a warm cache only loads them); calls with other types are refused, not compiled.

    Parameters
    ----------
    signatures : str or sequence of str
        numba signatures, e.g. ``"void(float64[:, ::1], int64)"``.
    options : dict
        Options of ``numba.njit`` (``nogil=True`` for kernels run on threads).
    """
    signatures = [signatures] if isinstance(signatures, str) else list(signatures)

    def decorate(func):
        dispatcher = numba.njit(**options)(func)
        dispatcher._cache = _SharedCache(dispatcher.py_func)  # in place of cache=True
        for signature in signatures:
            dispatcher.compile(signature)
        dispatcher.disable_compile()
        return dispatcher
    return decorate


def open_to_all(folder: Path) -> None:
    """Make the cache readable by every user whatever the umask of whoever wrote it.

    Parameters
    ----------
    folder : Path
        The cache folder (:func:`cache_dir`); other users' files in it are left as they are.
    """
    for path in [folder, *folder.iterdir()]:
        mode = 0o755 if path.is_dir() else 0o644
        try:
            if path.is_dir() or path.suffix in (".nbi", ".nbc"):
                path.chmod(path.stat().st_mode | mode)
        except OSError:
            pass  # another user's file: its owner made it
