"""``speckle xpcs`` starts fast (what its start-up imports and what it leaves for later) and
shows its progress on a terminal."""

import io
import subprocess
import sys

from speckle.cli import build_parser
from speckle.cli.xpcs import progress_bar

HEAVY = ("numba", "scipy", "h5py", "hdf5plugin", "matplotlib", "speckle.imaging.phasing",
         "speckle.xpcs.analysis", "speckle.xpcs.kernels")


def subcommands(parser):
    return set(parser._subparsers._group_actions[0].choices)


def test_the_xpcs_command_builds_only_its_own_parsers():
    assert subcommands(build_parser("xpcs")) == {"xpcs", "demo"}
    every = subcommands(build_parser())
    assert {"xpcs", "demo", "fth", "propagate", "cdi"} <= every
    assert subcommands(build_parser("no-such-command")) == every  # argparse says what exists


def test_starting_speckle_xpcs_imports_nothing_heavy():
    code = ("import sys; from speckle.cli import build_parser; build_parser('xpcs'); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_progress_bar_is_drawn_on_a_terminal_only():
    assert progress_bar(io.StringIO()) is None  # a pipe or a log: nothing drawn
    screen = Terminal()
    show = progress_bar(screen)
    show(0.5, "correlating")
    assert screen.getvalue() == "\rcorrelating  [" + "#" * 15 + "." * 15 + "]  50%"
    show(1.0, "done")
    assert screen.getvalue().endswith("\r" + " " * 60 + "\r")
