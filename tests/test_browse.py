"""speckle.io.browse: roots, listings newest first, and no way out of a root."""

from __future__ import annotations

import os

import numpy as np
import pytest

from speckle.errors import DatasetNotFoundError, InvalidInputError, SpeckleError
from speckle.io.browse import (Entry, PathEscapeError, demo_dir, entry_path, list_entries,
                               list_roots, safe_join)
from speckle.site import site


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    np.save(root / "a.npy", np.zeros((2, 3, 3), np.uint8))
    (root / "b.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    (root / "userblock.h5").write_bytes(b"\0" * 512 + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    (root / "c.fits").write_bytes(b"SIMPLE  =" + b" " * 71)
    (root / "d.tiff").write_bytes(b"MM\x00*" + b"\0" * 16)
    (root / "e.npz").write_bytes(b"PK\x03\x04" + b"\0" * 26)
    (root / "log.txt").write_text("hello")
    (root / "scan.h5").write_text("a text file named .h5")
    (root / "empty.npy").write_bytes(b"")
    (root / ".hidden.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (root / ".hiddendir").mkdir()
    (root / "__pycache__").mkdir()
    (root / "series").mkdir()
    (root / "series" / "img_001.tif").write_bytes(b"II*\x00" + b"\0" * 16)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (root / "out_dir").symlink_to(outside)
    (root / "out_file.h5").symlink_to(outside / "secret.h5")
    (root / "in_link.npy").symlink_to(root / "a.npy")
    (root / "broken.h5").symlink_to(root / "nothing-here")
    os.mkfifo(root / "pipe.h5")
    times = {"a.npy": 600, "b.h5": 500, "userblock.h5": 450, "c.fits": 400, "d.tiff": 300,
             "e.npz": 200, "series": 100, "log.txt": 900, "scan.h5": 950}
    for name, t in times.items():
        os.utime(root / name, (t, t))
    return root


def test_listing_is_newest_first_and_only_datasets(tree):
    entries = list_entries(tree)
    assert all(isinstance(e, Entry) for e in entries)
    names = [e.name for e in entries]
    # in_link.npy is a link inside the root to a.npy: same target, same mtime, listed too.
    assert names == ["a.npy", "in_link.npy", "b.h5", "userblock.h5", "c.fits", "d.tiff",
                     "e.npz", "series"]
    formats = {e.name: e.format for e in entries}
    assert formats == {"a.npy": "npy", "in_link.npy": "npy", "b.h5": "hdf5",
                       "userblock.h5": "hdf5", "c.fits": "fits", "d.tiff": "tiff",
                       "e.npz": "zip", "series": None}
    series = entries[-1]
    assert series.kind == "dir" and series.size is None and series.mtime == 100
    first = entries[0]
    assert first.kind == "dataset" and first.size == (tree / "a.npy").stat().st_size
    assert first.to_dict() == {"name": "a.npy", "kind": "dataset", "size": first.size,
                               "mtime": 600.0, "format": "npy"}


def test_listing_limit_keeps_the_newest(tree):
    assert [e.name for e in list_entries(tree, limit=3)] == ["a.npy", "in_link.npy", "b.h5"]
    with pytest.raises(InvalidInputError):
        list_entries(tree, limit=0)


def test_listing_a_subfolder(tree):
    assert [e.name for e in list_entries(tree, "series")] == ["img_001.tif"]
    assert [e.name for e in list_entries(tree, "series/")] == ["img_001.tif"]
    assert [e.name for e in list_entries(tree, "./series")] == ["img_001.tif"]


@pytest.mark.parametrize("rel", ["..", "../outside", "series/../..", "/etc", "/", "out_dir",
                                 "out_dir/", "out_file.h5", "..\\outside", "a\x00b"])
def test_escapes_are_refused(tree, rel):
    with pytest.raises(PathEscapeError) as info:
        safe_join(tree, rel)
    assert isinstance(info.value, SpeckleError) and isinstance(info.value, InvalidInputError)
    assert "\n" not in str(info.value)
    with pytest.raises(PathEscapeError):
        list_entries(tree, rel)


def test_safe_join_inside(tree):
    assert safe_join(tree) == tree.resolve()
    assert safe_join(tree, "a.npy") == (tree / "a.npy").resolve()
    assert safe_join(tree, "in_link.npy") == (tree / "a.npy").resolve()
    assert safe_join(tree, "series/img_001.tif") == (tree / "series" / "img_001.tif").resolve()
    with pytest.raises(DatasetNotFoundError):
        safe_join(tree, "missing.h5")
    with pytest.raises(DatasetNotFoundError):
        safe_join(tree / "no-root", "")
    with pytest.raises(InvalidInputError):
        list_entries(tree, "a.npy")  # a file, not a folder


def test_a_root_that_is_a_link(tree, tmp_path):
    link = tmp_path / "beamline"
    link.symlink_to(tree)
    assert [e.name for e in list_entries(link, "series")] == ["img_001.tif"]
    with pytest.raises(PathEscapeError):
        safe_join(link, "out_dir")


def test_list_roots(tmp_path):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    d1.mkdir()
    d2.mkdir()
    env = {"SPECKLE_DATA_DIRS": f"{d1}:{tmp_path / 'missing'}::{d2}:{d1}",
           "SPECKLE_UPLOAD_DIR": str(tmp_path / "up")}
    roots = list_roots(env)
    assert [(r.key, r.kind, r.path) for r in roots] == [
        ("data1", "beamline", d1), ("data3", "beamline", d2),
        ("uploads", "uploads", tmp_path / "up"), ("demo", "demo", demo_dir())]
    assert roots[0].to_dict() == {"key": "data1", "label": str(d1), "path": str(d1),
                                  "kind": "beamline"}
    assert not (tmp_path / "up").exists()  # listing roots creates nothing


def test_roots_without_configuration(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    roots = list_roots({})
    assert [r.key for r in roots] == ["uploads", "demo"]
    assert roots[0].path == tmp_path / "speckle-uploads"
    assert site({}).upload_dir == tmp_path / "speckle-uploads"


def test_demo_folder_lists_the_demo_dataset():
    entries = list_entries(demo_dir())
    assert sorted((e.name, e.format) for e in entries) == [
        ("cdi.fits", "fits"), ("fth.fits", "fits"), ("xpcs_img_stack5301_5401.npy.zip", "zip")]
