"""Prepare a user's home before their server starts; runs *as that user* (standard library only).

- ``~/dashboards``: a fresh read-only copy of the project's dashboards at every start (a folder of
  that name that this script did not make is moved aside, never deleted);
- ``~/speckle-examples``: the example notebooks, copied once; later starts only add new ones, so
  the user's changes stay;
- ``~/speckle-uploads`` (the upload folder): exists, mode 700;
- ``~/beamline-data``: one link per configured beamline folder, so that JupyterLab's file browser
  shows them (what a user may read is still decided by the folders' own permissions).
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import time
from pathlib import Path

MARKER = ".speckle-managed"
SKIP = {".gitkeep", ".ipynb_checkpoints", "__pycache__", ".DS_Store"}


def _ignore(_dir, names):
    return [n for n in names if n in SKIP]


def _make_writable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o644)


def _make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, 0o444)
        os.chmod(dirpath, 0o555)


def refresh_read_only(src: Path, dest: Path) -> None:
    """Replace ``dest`` by a read-only copy of ``src`` (atomically: copy beside, then swap)."""
    if dest.is_symlink() or (dest.exists() and not (dest / MARKER).exists()):
        aside = dest.with_name(f"{dest.name}.moved-{time.strftime('%Y%m%d-%H%M%S')}")
        os.rename(dest, aside)
        print(f"moved your own {dest} aside to {aside}", file=sys.stderr)
    tmp = dest.with_name(f".{dest.name}.new")
    if tmp.exists():
        _make_writable(tmp)
        shutil.rmtree(tmp)
    if src.is_dir():
        shutil.copytree(src, tmp, ignore=_ignore, symlinks=False)
    else:
        tmp.mkdir()
    (tmp / MARKER).write_text("Made by the speckle hub at every server start: edits here are lost.\n")
    _make_read_only(tmp)
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old.exists():
        _make_writable(old)
        shutil.rmtree(old)


def copy_missing(src: Path, dest: Path) -> None:
    """Copy files of ``src`` that ``dest`` lacks (the user's own changes are kept)."""
    if not src.is_dir():
        dest.mkdir(exist_ok=True)
        return
    if dest.is_symlink():
        return
    dest.mkdir(exist_ok=True)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part in SKIP for part in rel.parts):
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(exist_ok=True)
        elif not target.exists() and not target.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            os.chmod(target, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP)


def link_beamline_dirs(dirs: list[str], dest: Path) -> None:
    """``dest``/<folder name> -> each beamline folder; stale links removed; a user's own folder of
    that name is left alone."""
    if dest.is_symlink() or (dest.exists() and not (dest / MARKER).exists()):
        return
    dest.mkdir(exist_ok=True)
    (dest / MARKER).write_text("Links to the beamline folders, remade at every server start.\n")
    for entry in dest.iterdir():
        if entry.is_symlink():
            entry.unlink()
    used = set()
    for folder in dirs:
        name = Path(folder).name or "data"
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        os.symlink(folder, dest / name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--home", required=True)
    p.add_argument("--dashboards-src", required=True)
    p.add_argument("--dashboards", default="dashboards")
    p.add_argument("--examples-src", required=True)
    p.add_argument("--examples", default="speckle-examples")
    p.add_argument("--uploads", default="speckle-uploads")
    p.add_argument("--beamline-links", default="beamline-data")
    p.add_argument("--beamline-dir", action="append", default=[])
    a = p.parse_args(argv)
    os.umask(0o077)
    home = Path(a.home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    refresh_read_only(Path(a.dashboards_src), home / a.dashboards)
    copy_missing(Path(a.examples_src), home / a.examples)
    uploads = home / a.uploads
    uploads.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(uploads, 0o700)
    link_beamline_dirs(a.beamline_dir, home / a.beamline_links)
    return 0


if __name__ == "__main__":
    sys.exit(main())
