"""The compiled kernels built ahead of time: one extension module per install, loaded without
numba.

numba's cache spares the compiler, not numba: importing numba and loading the cached kernels
costs 0.3 s of CPU before the first product (0.5-0.7 s at the start of a ``speckle xpcs`` on two
busy cores), more than the whole multi-tau of 3000 x 256^2 frames. The same kernels, compiled
ahead of time by numba (``numba.pycc``, for this machine's CPU and its exact features, with the
interpreter lock released as the JIT kernels release it) into one CPython extension, load in
under a millisecond and never import numba.

:func:`build` writes the extension and a manifest into the kernels' cache folder
(:func:`~speckle.xpcs.kernel_interface.cache_dir`); ``make setup`` runs it through
:func:`speckle.xpcs.engine.warm`. :func:`load` uses it only when its manifest matches: the
kernels' sources it was built from, this Python, and a CPU with every feature of the one it was
built for; anything else (no C compiler at build time, a changed kernel, another CPU, another
Python) falls back to numba's cache, as does ``SPECKLE_AHEAD_KERNELS=0``. Each kernel's
overloads are chosen by the types of the arguments as numba's dispatcher chooses them, and
arguments no overload takes are refused with a TypeError, never passed on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import sys
import threading
from pathlib import Path

import numpy as np

from .kernel_interface import cache_dir

__all__ = ["MANIFEST", "build", "enabled", "load", "usable"]

#: The manifest of the built extension, in the cache folder.
MANIFEST = "kernels-ahead.json"
_EXTENSION = "_speckle_kernels_ahead"
#: Sources the extension is compiled from: a change to any of them makes it stale.
_SOURCES = ("kernels.py", "pair_kernels.py", "kernel_cache.py", "kernel_interface.py",
            "kernel_ahead.py")
_HERE = Path(__file__).resolve().parent


def enabled() -> bool:
    """Whether the ahead-of-time kernels may be used (``SPECKLE_AHEAD_KERNELS``, default on)."""
    return os.environ.get("SPECKLE_AHEAD_KERNELS", "1").strip().lower() not in ("0", "no",
                                                                                 "false", "off")


def _digest() -> str:
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (_HERE / name).read_bytes() + b"\0")
    return h.hexdigest()


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags as Linux reports them, or None where it does not."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def _python_tag() -> str:
    return f"{sys.implementation.cache_tag}{importlib.machinery.EXTENSION_SUFFIXES[0]}"


# --- choosing an overload by the arguments' types ------------------------------------------

_SCALARS = {"int64": (int, np.integer), "float64": (float, int, np.floating, np.integer),
            "float32": (float, int, np.floating, np.integer), "bool": (bool, np.bool_)}


def _accepts(spec, value) -> bool:
    if spec[0] == "array":
        _, dtype, ndim, layout, readonly = spec
        return (isinstance(value, np.ndarray) and value.dtype == np.dtype(dtype)
                and value.ndim == ndim and value.flags.aligned
                and (layout != "C" or value.flags.c_contiguous)
                and (readonly or value.flags.writeable))
    return isinstance(value, _SCALARS[spec[1]])


class _Kernel:
    """One kernel: its overloads (argument specs, extension function), tried in order."""

    def __init__(self, name: str, overloads: list):
        self.__name__ = name
        self._overloads = overloads

    def __call__(self, *args):
        for specs, function in self._overloads:
            if len(specs) == len(args) and all(map(_accepts, specs, args)):
                return function(*args)
        got = ", ".join(f"{a.dtype}[{a.ndim}d{'' if a.flags.c_contiguous else ' strided'}]"
                        if isinstance(a, np.ndarray) else type(a).__name__ for a in args)
        raise TypeError(f"{self.__name__}: no compiled overload takes ({got})")


class AheadModule:
    """A module of kernels from the extension: its kernels and constants by name, as the
    numba module of the same name has them."""

    def __init__(self, name: str, kernels: dict, constants: dict):
        self.__name__ = f"{__package__}.{name} (ahead of time)"
        self.__all__ = sorted([*kernels, *constants])
        for key, value in constants.items():
            setattr(self, key, tuple(value) if isinstance(value, list) else value)
        for key, kernel in kernels.items():
            setattr(self, key, kernel)

    def __repr__(self) -> str:
        return f"<{self.__name__}>"


_loaded: dict = {}
_lock = threading.Lock()
#: Every extension loaded by this process: never freed (each copy holds its own runtime, which
#: the arrays it made may still use).
_extensions: list = []


def usable(folder: Path) -> dict | None:
    """The manifest of the extension in ``folder`` when it may be used here (built from these
    sources, for this Python and a CPU with this one's features, intact), else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        flags = _cpu_flags()
        if (manifest["sources"] != _digest() or manifest["python"] != _python_tag()
                or manifest["machine"] != platform.machine() or flags is None
                or not set(manifest["cpu_flags"]) <= flags):
            return None
        name = manifest["extension"]
        if Path(name).name != name or not name.startswith(_EXTENSION):
            return None  # only a file of the folder itself
        data = (folder / name).read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest if hashlib.sha256(data).hexdigest() == manifest["sha256"] else None


def _load_extension(folder: Path) -> dict | None:
    """The extension's modules of kernels by name, or None where it may not be used here."""
    manifest = usable(folder)
    if manifest is None:
        return None
    path = folder / manifest["extension"]
    try:
        loader = importlib.machinery.ExtensionFileLoader(_EXTENSION, str(path))
        spec = importlib.util.spec_from_file_location(_EXTENSION, path, loader=loader)
        extension = importlib.util.module_from_spec(spec)
        loader.exec_module(extension)
    except (OSError, ImportError):
        return None
    _extensions.append(extension)
    modules = {}
    for name, content in manifest["modules"].items():
        kernels = {k: _Kernel(k, [([tuple(s) for s in specs], getattr(extension, symbol))
                                  for symbol, specs in overloads])
                   for k, overloads in content["kernels"].items()}
        modules[name] = AheadModule(name, kernels, content["constants"])
    return modules


def load(module: str) -> AheadModule | None:
    """The ahead-of-time form of a module of kernels (``"kernels"`` or ``"pair_kernels"``), or
    None when it is turned off, not built, or built for other sources, Python or CPU.

    Imports neither numba nor the kernels' numba modules; the extension loads once per process
    (from :func:`~speckle.xpcs.kernel_interface.cache_dir` as it is at that time).
    """
    if not enabled():
        return None
    with _lock:
        if "modules" not in _loaded:
            _loaded["modules"] = _load_extension(cache_dir())
    modules = _loaded["modules"]
    return None if modules is None else modules.get(module)


# --- building -------------------------------------------------------------------------------

def _spec(numba_type) -> list:
    from numba import types as nt  # noqa: PLC0415 - build only

    if isinstance(numba_type, nt.Array):
        return ["array", str(numba_type.dtype), numba_type.ndim, numba_type.layout,
                not numba_type.mutable]
    name = "bool" if numba_type == nt.boolean else str(numba_type)
    if name not in _SCALARS:
        raise TypeError(f"no ahead-of-time argument of type {numba_type}")
    return ["scalar", name]


@contextlib.contextmanager
def _as_the_jit_compiles(dispatchers: dict):
    """numba.pycc compiling each function with its dispatcher's options (pycc's own: the
    interpreter lock held, Python's error model, no fastmath) and for this CPU's exact features
    (pycc's: those its CPU model implies, which a virtual machine may not have).

    Parameters
    ----------
    dispatchers : dict
        The numba dispatcher of each exported Python function.
    """
    from numba.core import codegen  # noqa: PLC0415 - build only
    from numba.core.registry import cpu_target  # noqa: PLC0415
    from numba.pycc import compiler  # noqa: PLC0415

    real_compile, features = compiler.compile_extra, codegen.AOTCPUCodegen._customize_tm_features

    def compile_extra(typingctx, targetctx, func, args, return_type, flags, *rest, **kwargs):
        flags = cpu_target.options.parse_as_flags(flags.copy(), dispatchers[func].targetoptions)
        return real_compile(typingctx, targetctx, func, args, return_type, flags, *rest, **kwargs)

    compiler.compile_extra = compile_extra
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: self._get_host_cpu_features()
    try:
        yield
    finally:
        compiler.compile_extra = real_compile
        codegen.AOTCPUCodegen._customize_tm_features = features


def build(folder: Path | None = None) -> Path:
    """Compile every kernel (each overload of the numba modules) into the extension and write
    its manifest, replacing both atomically; return the manifest's path.

    Parameters
    ----------
    folder : Path, optional
        Default: :func:`~speckle.xpcs.kernel_interface.cache_dir`.

    Raises
    ------
    Exception
        Whatever stops the build (no C compiler, no ``numba.pycc``); nothing is replaced then.
    """
    import importlib  # noqa: PLC0415

    import warnings  # noqa: PLC0415

    import numba  # noqa: PLC0415
    from llvmlite import binding as llvm  # noqa: PLC0415

    with warnings.catch_warnings():  # pending deprecation since numba 0.57: when it goes, the
        warnings.simplefilter("ignore", numba.NumbaPendingDeprecationWarning)  # build fails
        from numba.pycc import CC  # noqa: PLC0415 - and numba's cache serves, as without a
                                   # C compiler

    folder = Path(folder or cache_dir())
    folder.mkdir(parents=True, exist_ok=True)
    cc = CC(_EXTENSION)
    cc.target_cpu = llvm.get_host_cpu_name()
    cc.verbose = False
    modules, dispatchers = {}, {}
    for name in ("kernels", "pair_kernels"):
        source = importlib.import_module(f"{__package__}.{name}")
        kernels, constants = {}, {}
        for key in source.__all__:
            value = getattr(source, key)
            if not isinstance(value, numba.core.registry.CPUDispatcher):
                constants[key] = value
                continue
            overloads = []
            dispatchers[value.py_func] = value
            for i, signature in enumerate(value.signatures):
                symbol = f"{name}__{key}__{i}"
                cres = value.overloads[signature]
                cc.export(symbol, cres.signature)(value.py_func)
                overloads.append([symbol, [_spec(t) for t in cres.signature.args]])
            kernels[key] = overloads
        modules[name] = {"kernels": kernels, "constants": constants}
    import tempfile  # noqa: PLC0415 - only a build needs it

    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        cc.output_dir = tmp
        with _as_the_jit_compiles(dispatchers):
            cc.compile()
        built = next(Path(tmp).glob(f"{_EXTENSION}*"))
        data = built.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        extension = folder / f"{_EXTENSION}-{sha[:16]}{built.name[len(_EXTENSION):]}"
        if not extension.exists():
            built.chmod(0o755)
            os.replace(built, extension)
        manifest = {"sources": _digest(), "python": _python_tag(),
                    "machine": platform.machine(), "cpu": cc.target_cpu,
                    "cpu_flags": sorted(_cpu_flags() or []), "numba": numba.__version__,
                    "extension": extension.name, "sha256": sha, "modules": modules}
        staged = Path(tmp) / MANIFEST
        staged.write_text(json.dumps(manifest, indent=1))
        staged.chmod(0o644)
        for old in folder.glob(f"{_EXTENSION}-*"):
            if old != extension:
                with contextlib.suppress(OSError):
                    old.unlink()  # a process that loaded it keeps its mapping
        os.replace(staged, folder / MANIFEST)
    return folder / MANIFEST
