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


def test_the_command_freezes_its_objects_before_the_process_ends(tmp_path):
    """``speckle xpcs`` as a process: the objects are frozen once the command is done (the
    interpreter's last collections skip them); main() called with arguments (as from Python
    or these tests) leaves the collector alone."""
    import numpy as np

    frames = tmp_path / "frames.npy"
    np.save(frames, np.random.default_rng(0).poisson(2, (64, 8, 8)).astype(np.uint16))
    argv = ["xpcs", str(frames), "--roi", "0:8,0:8", "--out", str(tmp_path / "r.h5"),
            "--no-twotime", "--json"]
    code = ("import gc, sys; from speckle.cli import main; "
            f"sys.argv = ['speckle', *{argv!r}]; a = gc.get_freeze_count(); "
            f"main({argv!r}); b = gc.get_freeze_count(); "
            "main(); print(a, b, gc.get_freeze_count() > 0, gc.isenabled(), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "0 0 True True"


def test_loading_the_kernels_leaves_the_collector_as_it_was():
    import gc

    from speckle.xpcs.engine import compiled_kernels

    try:
        for enabled in (False, True):
            (gc.enable if enabled else gc.disable)()
            compiled_kernels()
            assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_a_whole_run_loads_only_what_its_data_need(tmp_path):
    """An uncompressed file needs no compression plugins; OpenBLAS's idle workers are told not
    to spin through the start (read when numpy loads)."""
    import h5py
    import numpy as np

    frames = tmp_path / "frames.h5"
    with h5py.File(frames, "w") as f:
        f.create_dataset("/entry/data/data", chunks=(1, 16, 16),
                         data=np.random.default_rng(1).poisson(2, (200, 16, 16)).astype("u2"))
    argv = ["xpcs", str(frames), "--roi", "0:8,0:16", "--roi", "8:16,0:16", "--out",
            str(tmp_path / "r.h5"), "--json"]
    code = ("import os, sys; from speckle.cli import main; "
            f"status = main({argv!r}); "
            "print(status, 'hdf5plugin' in sys.modules, "
            "os.environ.get('OPENBLAS_THREAD_TIMEOUT'), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in __import__("os").environ.items()
                                            if k != "OPENBLAS_THREAD_TIMEOUT"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "0 False 4"
