"""The ``speckle`` command line.

One module per family of subcommands, each with an ``add_parsers(sub)`` that registers its
subparsers and sets ``run`` (a function of the parsed arguments returning the exit status):

- :mod:`speckle.cli.xpcs`: ``speckle xpcs``, ``speckle demo``
- :mod:`speckle.cli.fth`: ``speckle fth``, ``speckle propagate``
- :mod:`speckle.cli.cdi`: ``speckle cdi``
- :mod:`speckle.cli.monitor`: ``speckle watch``, ``speckle reprocess``

Bad input exits with status 2 and one line on stderr; no result file is left half-written
(every writer replaces its target atomically).

Quantities may carry a unit: ``2230mm``, ``108um``, ``1.3ms``, ``8keV``, ``0.0016/A``; without
one they are SI (m, s, eV) and q is in 1/Å.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

# OpenBLAS's worker threads, started when numpy loads, spin for about 0.1 s of a core each
# before they sleep (2**28 cycles): a whole core of a 2-core machine while the command starts.
# A short wait (2**4 cycles) keeps multi-threaded BLAS where a command uses it. Read when the
# library loads, so it is set before anything imports numpy.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from .. import __version__  # noqa: E402
from ..errors import SpeckleError  # noqa: E402
from . import cdi, fth, monitor, xpcs  # noqa: E402
from .common import parse_quantity  # noqa: E402

__all__ = ["build_parser", "main", "parse_quantity"]

#: Modules that add subcommands, in the order of ``speckle --help``.
COMMAND_MODULES = (xpcs, fth, cdi, monitor)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``speckle`` command.

    With ``command``, only the module that declares it in its ``COMMANDS`` adds its parsers
    (start-up time: another module's parsers may import heavy modules); all of them otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="speckle", description="Coherent X-ray scattering analysis (speckle hub).")
    parser.add_argument("--version", action="version", version=f"speckle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    owners = [m for m in COMMAND_MODULES if command in getattr(m, "COMMANDS", ())]
    for module in owners or COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``speckle`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; default the process's own (``sys.argv[1:]``), for the ``speckle``
        command, whose process ends when this returns: its objects are then frozen
        (:func:`gc.freeze`), so that the interpreter's last collections skip them (0.3 s after
        an analysis, whose compiled kernels leave a million objects).
    """
    process_exits = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        status = args.run(args)
        if process_exits:
            gc.freeze()
        return status
    except SpeckleError as exc:
        print(f"speckle: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"speckle: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 2
    except MemoryError:
        print("speckle: error: not enough memory for this analysis: use fewer frames or a "
              "smaller region", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
