"""speckle_jupyter.uploads: the upload state on disk, without a server."""

from __future__ import annotations

import errno
import io
import json
import os
import time

import numpy as np
import pytest

from speckle_jupyter import uploads
from speckle.site import DEFAULT_UPLOAD_CHUNK_BYTES, DEFAULT_UPLOAD_QUOTA_BYTES
from speckle_jupyter.uploads import Refusal, UploadStore, check_name


def npy(shape=(4, 8, 8)) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(np.prod(shape), dtype=np.uint16).reshape(shape))
    return buf.getvalue()


@pytest.fixture()
def store(tmp_path):
    s = UploadStore(upload_dir=tmp_path / "up", quota_bytes=10**6, chunk_size=2**16)
    s.ensure_dirs()
    return s


def write_all(store, rec, data: bytes):
    with open(store.part_path(rec.id), "r+b") as fh:
        fh.write(data)
    store.advance(rec, len(data))


@pytest.mark.parametrize("name", ["scan.h5", "Scan 001 (copy).h5", "a+b_c-d.npy.zip", "x",
                                  "2024-05-01_run7.tif", "A" * 200])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../x.h5", "..", "a..b", ".h5", "dir/x.h5", "c:\\x.h5",
                                  "-rf.h5", "x.h5 ", "x.", "a" * 201, "tab\tname", "é.h5",
                                  "x;rm.h5", "x\x00.h5", None, 5])
def test_bad_names(name):
    with pytest.raises(Refusal) as info:
        check_name(name)
    assert info.value.status == 400 and info.value.body["message"]


def test_defaults_from_the_environment(tmp_path, caplog):
    s = UploadStore(environ={"HOME": str(tmp_path)})
    assert s.quota_bytes == DEFAULT_UPLOAD_QUOTA_BYTES == 50 * 10**9  # the one default (speckle.site)
    assert s.chunk_size == DEFAULT_UPLOAD_CHUNK_BYTES == 64 * 2**20
    s = UploadStore(environ={"SPECKLE_UPLOAD_DIR": str(tmp_path / "u"),
                             "SPECKLE_UPLOAD_QUOTA_BYTES": "12345",
                             "SPECKLE_UPLOAD_CHUNK_BYTES": "1048576"})
    assert (s.upload_dir, s.quota_bytes, s.chunk_size) == (tmp_path / "u", 12345, 2**20)
    s = UploadStore(environ={"SPECKLE_UPLOAD_QUOTA_BYTES": "20GB"})
    assert s.quota_bytes == DEFAULT_UPLOAD_QUOTA_BYTES
    assert "not a number of bytes" in caplog.text


def test_upload_folder_is_private(store):
    assert store.upload_dir.stat().st_mode & 0o777 == 0o700
    assert store.partial_dir.stat().st_mode & 0o777 == 0o700


def test_create_validate_and_place(store):
    data = npy()
    rec = store.create("frames.npy", len(data))
    assert store.part_path(rec.id).stat().st_mode & 0o777 == 0o600
    assert json.loads(store.record_path(rec.id).read_text())["name"] == "frames.npy"
    write_all(store, rec, data)
    assert store.load(rec.id).state == "complete"
    result = store.validate_and_place(rec)
    assert result == {"path": str(store.upload_dir / "frames.npy"), "name": "frames.npy",
                      "format": "npy", "shape": [4, 8, 8], "dtype": "uint16"}
    assert (store.upload_dir / "frames.npy").read_bytes() == data
    assert not store.part_path(rec.id).exists()


def test_never_overwrites(store):
    (store.upload_dir / "frames.npy").write_bytes(b"older file")
    (store.upload_dir / "frames-1.npy").write_bytes(b"older file")
    data = npy()
    rec = store.create("frames.npy", len(data))
    write_all(store, rec, data)
    assert store.validate_and_place(rec)["name"] == "frames-2.npy"
    assert (store.upload_dir / "frames.npy").read_bytes() == b"older file"


def test_placement_without_hard_links(store, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(uploads.os, "link", no_link)
    (store.upload_dir / "frames.npy").write_bytes(b"older file")
    data = npy()
    rec = store.create("frames.npy", len(data))
    write_all(store, rec, data)
    assert store.validate_and_place(rec)["name"] == "frames-1.npy"
    assert (store.upload_dir / "frames-1.npy").read_bytes() == data
    assert (store.upload_dir / "frames.npy").read_bytes() == b"older file"


def test_refusal_message_names_the_file_not_the_partial_path(store):
    data = b"just some text\n"
    rec = store.create("data.h5", len(data))
    write_all(store, rec, data)
    with pytest.raises(Refusal) as info:
        store.validate_and_place(rec)
    assert info.value.status == 422
    message = info.value.body["message"]
    assert message.startswith("data.h5: unsupported content")
    assert str(store.partial_dir) not in message
    assert list(store.partial_dir.iterdir()) == []
    assert list(store.upload_dir.iterdir()) == [store.partial_dir]


def test_crash_recovery(store):
    rec = store.create("x.npy", 1000)
    with open(store.part_path(rec.id), "r+b") as fh:
        fh.write(b"a" * 300)
    store.advance(rec, 200)  # the record says 200: bytes 200..300 belong to a cut chunk
    assert store.load(rec.id).offset == 200
    assert store.part_path(rec.id).stat().st_size == 200
    os.truncate(store.part_path(rec.id), 150)  # bytes lost in a crash
    assert store.load(rec.id).offset == 150
    assert json.loads(store.record_path(rec.id).read_text())["offset"] == 150
    store.part_path(rec.id).unlink()  # data file gone: the record goes too
    assert store.load(rec.id) is None
    assert not store.record_path(rec.id).exists()
    store.record_path("0" * 32).write_text("{not json")
    assert store.load("0" * 32) is None
    assert store.load("../../etc/passwd") is None


def test_quota_counts_files_and_uploads_in_progress(store):
    (store.upload_dir / "sub").mkdir()
    (store.upload_dir / "sub" / "old.h5").write_bytes(b"x" * 1000)
    (store.upload_dir / "link").symlink_to("/etc/passwd")  # a link counts as nothing
    rec = store.create("a.h5", 5000)
    assert store.used_bytes() == 6000
    with pytest.raises(Refusal) as info:
        store.create("b.h5", 10**6 - 5999)
    assert info.value.status == 413
    assert info.value.body["used_bytes"] == 6000 and info.value.body["quota_bytes"] == 10**6
    assert store.create("b.h5", 10**6 - 6000).size == 10**6 - 6000
    assert store.abort(rec.id)
    assert not store.part_path(rec.id).exists()
    assert not store.abort(rec.id)


def test_cleanup_of_stale_uploads(store):
    old = store.create("old.h5", 100)
    new = store.create("new.h5", 100)
    done = store.create("done.h5", 100)
    store.mark_done(done, {"name": "done.h5"})
    store.part_path(done.id).unlink()
    orphan = store.partial_dir / ("a" * 32 + ".part")
    orphan.write_bytes(b"x")
    os.utime(orphan, (time.time() - 7200,) * 2)
    later = time.time() + 2 * 86400
    rec = json.loads(store.record_path(old.id).read_text())
    rec["updated"] = time.time() - 8 * 86400
    store.record_path(old.id).write_text(json.dumps(rec))
    store.cleanup(now=later)
    assert not store.record_path(old.id).exists() and not store.part_path(old.id).exists()
    assert store.record_path(new.id).exists()
    assert not store.record_path(done.id).exists()  # done records live one day
    assert not orphan.exists()


def test_disk_full_is_refused(store, monkeypatch):
    class Usage:
        free = 1000

    monkeypatch.setattr(uploads.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(Refusal) as info:
        store.create("a.h5", 500)
    assert info.value.status == 507


def _hdf5_bytes(tmp_path) -> bytes:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "src.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=np.ones((3, 16, 16), np.uint32),
                         chunks=(1, 16, 16), compression="gzip")
    return path.read_bytes()


def _tiff_bytes(tmp_path) -> bytes:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "src.tif"
    tifffile.imwrite(path, np.ones((5, 8, 8), np.uint16))
    return path.read_bytes()


@pytest.mark.parametrize("make, name, fmt, shape", [
    (_hdf5_bytes, "scan.h5", "hdf5", [3, 16, 16]),
    (_tiff_bytes, "frames.tif", "tiff", [5, 8, 8]),
])
def test_other_formats_validate_from_the_partial_file(store, tmp_path, make, name, fmt, shape):
    data = make(tmp_path)
    rec = store.create(name, len(data))
    write_all(store, rec, data)
    result = store.validate_and_place(rec)
    assert (result["name"], result["format"], result["shape"]) == (name, fmt, shape)


def test_truncated_hdf5_is_refused(store, tmp_path):
    data = _hdf5_bytes(tmp_path)[:-700]
    rec = store.create("cut.h5", len(data))
    write_all(store, rec, data)
    with pytest.raises(Refusal) as info:
        store.validate_and_place(rec)
    assert info.value.status == 422 and info.value.body["message"].startswith("cut.h5: ")
    assert list(store.partial_dir.iterdir()) == []


def test_device_text(monkeypatch):
    import asyncio

    from speckle_jupyter import handlers

    monkeypatch.setenv("SPECKLE_GPU_NAME", "NVIDIA H100 80GB HBM3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    settings = {}
    assert asyncio.run(handlers.device_text(settings)) == "NVIDIA H100 80GB HBM3"
    assert settings["speckle_device_text"] == "NVIDIA H100 80GB HBM3"  # cached
    monkeypatch.setenv("SPECKLE_GPU_NAME", "CPU")  # what the hub sets without a GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert asyncio.run(handlers.device_text({})) == "CPU: this server has no GPU"
    monkeypatch.delenv("SPECKLE_GPU_NAME")
    assert asyncio.run(handlers.device_text({})) == "CPU: this server has no GPU"
    # Neither: speckle's own detection, in a child process.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("SPECKLE_DISABLE_GPU", "1")
    assert asyncio.run(handlers.device_text({})) == "CPU: this server has no GPU"
