"""Running the ``speckle`` command in-process for the imaging command tests."""

from speckle.cli import main


def run(argv, capsys):
    """``speckle ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusals
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(argv, capsys, folder):
    """The command exits 2 with one line on stderr and leaves ``folder`` as it was."""
    before = sorted(p.name for p in folder.iterdir())
    rc, out, err = run(argv, capsys)
    assert rc == 2, (argv, out, err)
    assert err.strip().count("\n") == 0 or err.startswith("usage:"), err
    assert err.strip().splitlines()[-1].startswith("speckle")
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written, no temp file
