"""Uploads under abuse, on a real jupyter-server with the speckle extension: many unfinished
uploads, two uploads of one name at once, and a disk that really fills up (a small tmpfs, as
root). Nothing that was there before is lost, nothing half-written becomes visible."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from speckle_jupyter.testing import UploadClient, jupyter_server
from speckle_jupyter.uploads import MAX_UNFINISHED

MiB = 2**20


def npy_bytes(frames: int, side: int = 128, seed: int = 1) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).integers(0, 4000, (frames, side, side), dtype=np.uint16))
    return buf.getvalue()


def visible(folder: Path) -> dict[str, str]:
    """The files a user sees in the upload folder, with their sha256."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory):
    """The upload folder on a 320 MiB tmpfs when root (a disk that really fills), else a folder."""
    folder = tmp_path_factory.mktemp("abuse") / "uploads"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320m,mode=0700", "tmpfs", str(folder)],
        capture_output=True).returncode == 0
    try:
        yield folder, mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def client(upload_dir, tmp_path_factory):
    folder, _ = upload_dir
    with jupyter_server(tmp_path_factory.mktemp("abuse-server"),
                        {"SPECKLE_UPLOAD_DIR": str(folder), "CUDA_VISIBLE_DEVICES": ""}) as server:
        yield UploadClient(server.api, server.token)


def test_unfinished_uploads_are_capped(client, upload_dir):
    ids = []
    try:
        for i in range(MAX_UNFINISHED):
            r = client.create(f"one{i}.npy", 1)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        r = client.create("onetoomany.npy", 1)
        assert r.status_code == 429 and "unfinished" in r.json()["message"]
        assert client.abort(ids.pop()).status_code == 204
        r = client.create("nowfits.npy", 1)
        assert r.status_code == 201
        ids.append(r.json()["id"])
    finally:
        for upload_id in ids:
            client.abort(upload_id)
    assert visible(upload_dir[0]) == {}


def test_two_uploads_of_one_name_at_once_both_arrive_whole(client, upload_dir):
    folder = upload_dir[0]
    first, second = npy_bytes(20, seed=1), npy_bytes(20, seed=2)
    ids = [client.create("scan.npy", len(data)).json()["id"] for data in (first, second)]
    for offset in range(0, len(first), MiB):  # interleaved chunks
        for upload_id, data in zip(ids, (first, second)):
            assert client.put(upload_id, offset, data[offset:offset + MiB]).status_code == 200
    paths = [Path(client.finish(upload_id).json()["path"]) for upload_id in ids]
    assert paths[0] != paths[1] and {p.parent for p in paths} == {folder}
    assert [hashlib.sha256(p.read_bytes()).digest() for p in paths] == [
        hashlib.sha256(d).digest() for d in (first, second)]
    for p in paths:
        p.unlink()


def test_a_disk_that_fills_keeps_what_was_there(client, upload_dir, tmp_path):
    folder, mounted = upload_dir
    if not mounted:
        pytest.skip("a size-limited folder needs root (mount tmpfs): CI runs as root")
    kept = npy_bytes(40, seed=3)  # 1.3 MB placed before
    (folder / "kept.npy").write_bytes(kept)
    before = visible(folder)
    big = npy_bytes(300, seed=4)  # 9.8 MB
    r = client.create("big.npy", len(big))
    assert r.status_code == 201, r.text
    upload_id = r.json()["id"]
    assert client.put(upload_id, 0, big[:MiB]).status_code == 200
    # something else fills the disk while the upload goes on
    filler = folder / ".filler"
    with open(filler, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - MiB)
    statuses = [client.put(upload_id, offset, big[offset:offset + MiB]).status_code
                for offset in range(MiB, 4 * MiB, MiB)]
    assert 507 in statuses, statuses  # "the disk is full", in words
    assert visible(folder) == before  # nothing half-written shows, nothing lost
    offset = client.state(upload_id).json()["offset"]
    assert 0 < offset < len(big)
    filler.unlink()  # space again: the same upload resumes where the disk stopped it
    assert client.send(upload_id, lambda o, n: big[o:o + n], len(big), offset=offset,
                       chunk_size=MiB) == len(big)
    done = client.finish(upload_id).json()
    assert hashlib.sha256(Path(done["path"]).read_bytes()).digest() == hashlib.sha256(big).digest()
    assert visible(folder)["kept.npy"] == before["kept.npy"]
