"""Which CPU kernels the correlators run: the compiled ones (numba) or the numpy reference.

Compiled kernels come from the extension built ahead of time (:mod:`.kernel_ahead`) where it
was built for this machine, else from numba's cache (:mod:`.kernel_cache`); both are the same
functions, compiled once per install by :func:`warm`.

``SPECKLE_CPU_KERNELS`` chooses: ``auto`` (default: compiled where numba is installed),
``numba`` (an error where it is not) or ``numpy``. The correlators also take the choice as an
argument (``kernels=``), which the tests use to compare both. On a GPU neither applies: cupy
runs the numpy code.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import threading
from types import ModuleType

from ..errors import InvalidInputError
from . import kernel_ahead

__all__ = ["KERNEL_MODULES", "DeferredKernels", "compiled_kernels", "load_all", "preload",
           "use_compiled", "warm"]

_CHOICES = ("auto", "numba", "numpy")


def use_compiled(choice: str | None = None) -> bool:
    """Whether the compiled kernels are chosen and numba is installed (imports nothing).

    Parameters
    ----------
    choice : {"auto", "numba", "numpy"}, optional
        Default: ``SPECKLE_CPU_KERNELS``, else ``"auto"``.

    Raises
    ------
    InvalidInputError
        For an unknown choice, or ``"numba"`` where numba is not installed.
    """
    choice = (choice or os.environ.get("SPECKLE_CPU_KERNELS") or "auto").strip().lower()
    if choice not in _CHOICES:
        raise InvalidInputError(f"CPU kernels must be one of {', '.join(_CHOICES)}, "
                                f"not {choice!r} (SPECKLE_CPU_KERNELS)")
    available = importlib.util.find_spec("numba") is not None
    if choice == "numba" and not available:
        raise InvalidInputError("the compiled CPU kernels need numba, which is not installed "
                                "here: pip install numba, or choose the numpy kernels")
    return choice != "numpy" and available


#: Modules of compiled kernels: the correlators' (loaded for every analysis) and the two-time
#: maps' (loaded only for them).
KERNEL_MODULES = ("kernels", "pair_kernels")


def compiled_kernels(choice: str | None = None,
                     module: str = "kernels") -> ModuleType | kernel_ahead.AheadModule | None:
    """Return a module of compiled kernels when they are chosen, else None: the ones built
    ahead of time (:mod:`.kernel_ahead`, loaded in a millisecond) where they are built for this
    machine, else numba's (its cache loaded, 0.3-0.5 s).

    Parameters
    ----------
    choice : {"auto", "numba", "numpy"}, optional
        Default: ``SPECKLE_CPU_KERNELS``, else ``"auto"``.
    module : {"kernels", "pair_kernels"}
        :mod:`speckle.xpcs.kernels` (the correlators') or :mod:`speckle.xpcs.pair_kernels`
        (the two-time maps').
    """
    if module not in KERNEL_MODULES:
        raise ValueError(f"no kernel module {module!r}")
    if not use_compiled(choice):
        return None
    ahead = kernel_ahead.load(module)
    if ahead is not None:
        return ahead
    with _collector_paused():  # numba's start-up makes a million objects: two full
        return importlib.import_module(f"{__package__}.{module}")  # collections for nothing


class DeferredKernels:
    """A module of compiled kernels that loads at the first use of one of its functions, so
    that a correlator is built (its memory allocated) and the first frames are read while
    numba starts (0.3-0.5 s).

    Parameters
    ----------
    choice : {"auto", "numba", "numpy"}, optional
        As for :func:`compiled_kernels`; the caller has checked :func:`use_compiled`.
    module : {"kernels", "pair_kernels"}
    """

    def __init__(self, choice: str | None = None, module: str = "kernels"):
        self._choice, self._name, self._module = choice, module, None

    def __getattr__(self, name: str):
        if self._module is None:
            self._module = compiled_kernels(self._choice, self._name)
        return getattr(self._module, name)


def load_all(choice: str | None = None) -> int:
    """Load every module of compiled kernels (:data:`KERNEL_MODULES`) when they are chosen, so
    that no analysis waits for them later; return how many kernels were loaded (0: the numpy
    kernels are chosen)."""
    modules = [compiled_kernels(choice, module) for module in KERNEL_MODULES]
    return sum(len(m.__all__) for m in modules if m is not None)


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cyclic garbage collector for a ``with`` block (as it was, after)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def preload(choice: str | None = None, modules: tuple[str, ...] = ("kernels",)) -> None:
    """Start loading compiled kernels in a background thread (numba's start-up overlaps
    whatever the caller does next); a later :func:`compiled_kernels` waits for it.

    Parameters
    ----------
    choice : {"auto", "numba", "numpy"}, optional
        As for :func:`compiled_kernels`; nothing is loaded when the numpy kernels are chosen.
    modules : tuple of str
        Which of :data:`KERNEL_MODULES`, loaded in this order.
    """
    def load():
        try:
            for module in modules:
                compiled_kernels(choice, module)
        except Exception:  # noqa: BLE001 - the caller's own compiled_kernels() will say why
            pass

    if use_compiled(choice):
        threading.Thread(target=load, daemon=True, name="speckle-kernels").start()


def warm() -> str:
    """Compile the kernels into the install's shared cache and build them ahead of time (each
    when it is stale), open the folder to every user; return where it is. ``make setup`` runs
    this as ``python -m speckle.xpcs.engine``.
    """
    use_compiled("numba")  # a clear error where numba is missing
    with _collector_paused():  # numba's modules, compiled into its cache when it is stale
        count = sum(len(importlib.import_module(f"{__package__}.{m}").__all__)
                    for m in KERNEL_MODULES)
    from .kernel_cache import cache_dir, open_to_all  # noqa: PLC0415 - imports numba

    folder = cache_dir()
    try:
        if kernel_ahead.usable(folder) is None:
            kernel_ahead.build(folder)
        ahead = "built ahead of time too"
    except Exception as exc:  # noqa: BLE001 - numba's cache still serves every analysis
        ahead = (f"not built ahead of time ({type(exc).__name__}: {exc}): each process loads "
                 "numba's cache (0.3-0.5 s)")
    if folder.is_dir():
        open_to_all(folder)
    return f"speckle: compiled kernels ready ({count}, {ahead}), cache {folder}"


if __name__ == "__main__":  # pragma: no cover - python -m speckle.xpcs.engine
    print(warm())
