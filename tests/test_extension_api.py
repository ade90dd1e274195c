"""The speckle_jupyter server extension, driven over HTTP on a real jupyter-server process.

One server is started for the module (about 4 s) with its upload folder, beamline folder and
quota in a scratch folder; every test talks to it with ``requests`` as a browser or the
dashboard's uploader would.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

requests = pytest.importorskip("requests")
pytest.importorskip("jupyter_server")

from speckle_jupyter.testing import NpyStream, UploadClient, jupyter_server  # noqa: E402
from speckle.site import DEFAULT_UPLOAD_CHUNK_BYTES as DEFAULT_CHUNK_BYTES  # noqa: E402

QUOTA = 300_000_000
MiB = 2**20


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("speckle_ext")
    data = base / "beamline"
    data.mkdir()
    return {"base": base, "upload": base / "uploads", "data": data}


@pytest.fixture(scope="module")
def server(env):
    variables = {
        "SPECKLE_UPLOAD_DIR": str(env["upload"]),
        "SPECKLE_DATA_DIRS": str(env["data"]),
        "SPECKLE_UPLOAD_QUOTA_BYTES": str(QUOTA),
        "CUDA_VISIBLE_DEVICES": "",
    }
    with jupyter_server(env["base"] / "server", variables) as srv:
        yield srv


@pytest.fixture()
def client(server):
    return UploadClient(server.api, server.token)


def npy_bytes(shape=(40, 128, 128), seed=1) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    np.save(buf, rng.integers(0, 4000, shape, dtype=np.uint16))
    return buf.getvalue()


def all_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def partial_files(env, upload_id: str) -> list[Path]:
    return list((env["upload"] / ".partial").glob(upload_id + "*"))


def upload_in_chunks(client, name: str, data: bytes, chunk: int = MiB) -> dict:
    r = client.create(name, len(data))
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    offset = client.send(uid, lambda o, n: data[o:o + n], len(data), chunk_size=chunk)
    assert offset == len(data)
    r = client.finish(uid)
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------- authentication
def test_unauthenticated_requests_are_refused(server):
    api = server.api
    for method, url, kwargs in [
        ("get", api + "status", {}),
        ("get", api + "data", {}),
        ("get", api + "data?root=uploads", {}),
        ("post", api + "uploads", {"json": {"name": "a.npy", "size": 10}}),
        ("get", api + "uploads/" + "0" * 32, {}),
        ("put", api + "uploads/" + "0" * 32 + "?offset=0", {"data": b"abc"}),
        ("delete", api + "uploads/" + "0" * 32, {}),
        ("post", api + "uploads/" + "0" * 32 + "/finish", {}),
    ]:
        for headers in ({}, {"Authorization": "token not-the-token"}):
            r = requests.request(method, url, headers=headers, allow_redirects=False,
                                 timeout=10, **kwargs)
            assert r.status_code in (401, 403) or 300 <= r.status_code < 400, (method, url)


def test_cookie_session_needs_the_xsrf_token(server, env):
    session = requests.Session()
    r = session.get(server.url + "login", params={"token": server.token}, timeout=10)
    assert r.status_code == 200
    assert "_xsrf" in session.cookies
    # The cookie alone authenticates reads...
    r = session.get(server.api + "status", timeout=10)
    assert r.status_code == 200
    # ...but a POST without the _xsrf token is refused, and nothing is created.
    before = all_files(env["upload"])
    r = session.post(server.api + "uploads", json={"name": "x.npy", "size": 1000}, timeout=10)
    assert r.status_code == 403
    assert "_xsrf" in r.json()["message"]
    r = session.put(server.api + "uploads/" + "0" * 32, params={"offset": 0}, data=b"x" * 100,
                    timeout=10)
    assert r.status_code == 403
    assert all_files(env["upload"]) == before
    # The status endpoint hands out the _xsrf cookie to a page that has none.
    del session.cookies["_xsrf"]
    assert "_xsrf" not in session.cookies
    r = session.get(server.api + "status", timeout=10)
    assert r.status_code == 200 and "_xsrf" in session.cookies
    # With the token from the _xsrf cookie in the header, the same request is accepted.
    headers = {"X-XSRFToken": session.cookies["_xsrf"]}
    r = session.post(server.api + "uploads", json={"name": "x.npy", "size": 1000},
                     headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert session.delete(server.api + "uploads/" + uid, timeout=10).status_code == 403
    assert session.delete(server.api + "uploads/" + uid, headers=headers,
                          timeout=10).status_code == 204
    assert partial_files(env, uid) == []


# --------------------------------------------------------------------------- uploads
def test_full_chunked_upload(client, env):
    data = npy_bytes((60, 128, 128))  # about 2 MB, 3 chunks of 768 KiB
    r = client.create("stack_full.npy", len(data))
    assert r.status_code == 201
    info = r.json()
    assert info["offset"] == 0 and info["chunk_size"] == DEFAULT_CHUNK_BYTES
    uid = info["id"]
    assert len(uid) == 32
    assert partial_files(env, uid)  # hidden while in progress
    assert not (env["upload"] / "stack_full.npy").exists()
    offset = 0
    n_chunks = 0
    while offset < len(data):
        r = client.put(uid, offset, data[offset:offset + 768 * 1024])
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
        n_chunks += 1
    assert n_chunks == 3
    state = client.state(uid).json()
    assert state["offset"] == state["size"] == len(data)
    assert state["state"] == "complete" and state["name"] == "stack_full.npy"
    assert not (env["upload"] / "stack_full.npy").exists()  # not visible before finish
    r = client.finish(uid)
    assert r.status_code == 200, r.text
    out = r.json()
    target = env["upload"] / "stack_full.npy"
    assert out == {"path": str(target), "name": "stack_full.npy", "format": "npy",
                   "shape": [60, 128, 128], "dtype": "uint16"}
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not list((env["upload"] / ".partial").glob(uid + ".part"))
    # A repeated finish (the answer was lost) gives the same answer, and state says "done".
    assert client.finish(uid).json() == out
    assert client.state(uid).json()["state"] == "done"
    # The same name again never overwrites: a numeric suffix is added.
    again = upload_in_chunks(client, "stack_full.npy", npy_bytes((5, 16, 16), seed=2))
    assert again["name"] == "stack_full-1.npy"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_resume_after_interruption(server, env):
    data = npy_bytes((100, 128, 128), seed=3)  # about 3.3 MB
    first = UploadClient(server.api, server.token)
    r = first.create("resumed.npy", len(data))
    uid = r.json()["id"]
    read = lambda o, n: data[o:o + n]  # noqa: E731
    offset = first.send(uid, read, len(data), chunk_size=MiB, max_chunks=2)
    assert offset == 2 * MiB
    first.session.close()  # the page is reloaded / the network dropped
    second = UploadClient(server.api, server.token)
    state = second.state(uid).json()
    assert state == {"id": uid, "offset": 2 * MiB, "size": len(data), "name": "resumed.npy",
                     "state": "uploading", "chunk_size": DEFAULT_CHUNK_BYTES}
    offset = second.send(uid, read, len(data), offset=state["offset"], chunk_size=MiB)
    assert offset == len(data)
    r = second.finish(uid)
    assert r.status_code == 200
    assert Path(r.json()["path"]).read_bytes() == data


def test_a_dropped_chunk_is_undone(server, client, env):
    r = client.create("dropped.npy", 3 * MiB)
    uid = r.json()["id"]
    assert client.put(uid, 0, b"\x93NUMPY" + b"\0" * (MiB - 6)).json() == {"offset": MiB}
    # Send half of a chunk, then drop the connection.
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"PUT /speckle/api/uploads/{uid}?offset={MiB} HTTP/1.1\r\n"
                      f"Host: {host}:{port}\r\nAuthorization: token {server.token}\r\n"
                      f"Content-Length: {MiB}\r\n\r\n").encode() + b"\1" * (MiB // 2))
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (env["upload"] / ".partial" / f"{uid}.part").stat().st_size == MiB:
            break
        time.sleep(0.05)
    assert (env["upload"] / ".partial" / f"{uid}.part").stat().st_size == MiB
    assert client.state(uid).json()["offset"] == MiB
    assert client.put(uid, MiB, b"\2" * MiB).json() == {"offset": 2 * MiB}
    assert client.abort(uid).status_code == 204


def test_concurrent_chunk_and_abort_during_a_chunk(server, client, env):
    r = client.create("busy.npy", 2 * MiB)
    uid = r.json()["id"]
    part = env["upload"] / ".partial" / f"{uid}.part"
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"PUT /speckle/api/uploads/{uid}?offset=0 HTTP/1.1\r\n"
                      f"Host: {host}:{port}\r\nAuthorization: token {server.token}\r\n"
                      f"Content-Length: {MiB}\r\n\r\n").encode() + b"\1" * (MiB // 2))
        deadline = time.monotonic() + 5
        while part.stat().st_size < MiB // 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # A second writer of the same upload is told to wait and where the upload stands.
        r = client.put(uid, 0, b"\2" * 1000)
        assert r.status_code == 409 and r.json()["offset"] == 0
        # Aborting removes everything at once; the unfinished chunk is answered 410.
        assert client.abort(uid).status_code == 204
        assert partial_files(env, uid) == []
        sock.sendall(b"\1" * (MiB // 2))
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 410"), answer
    assert client.state(uid).status_code == 404
    assert partial_files(env, uid) == []


def test_wrong_offset_past_size_and_big_chunks(server, client, env):
    r = client.create("offsets.npy", 2 * MiB)
    uid = r.json()["id"]
    assert client.put(uid, 0, b"a" * 1000).json() == {"offset": 1000}
    for wrong in (0, 500, 5000):
        r = client.put(uid, wrong, b"b" * 1000)
        assert r.status_code == 409
        assert r.json()["offset"] == 1000
    r = client.put(uid, 1000, b"c" * (2 * MiB))  # would end past the declared size
    assert r.status_code == 400
    assert "past the declared size" in r.json()["message"]
    r = client.put(uid, 1000, b"")
    assert r.status_code == 200 and r.json() == {"offset": 1000}
    r = client.finish(uid)  # incomplete
    assert r.status_code == 409 and r.json()["offset"] == 1000
    # A chunk larger than chunk_size is refused from its headers, before its body is read.
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"PUT /speckle/api/uploads/{uid}?offset=1000 HTTP/1.1\r\n"
                      f"Host: {host}:{port}\r\nAuthorization: token {server.token}\r\n"
                      f"Content-Length: {DEFAULT_CHUNK_BYTES + 1}\r\n\r\n").encode())
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert client.state(uid).json()["offset"] == 1000
    assert (env["upload"] / ".partial" / f"{uid}.part").stat().st_size == 1000
    assert client.put("f" * 32, 0, b"x").status_code == 404
    assert client.abort(uid).status_code == 204
    assert partial_files(env, uid) == []
    assert client.abort(uid).status_code == 404


def test_quota(server, client, env):
    status = client.session.get(server.api + "status").json()
    left = QUOTA - status["used_bytes"]
    r = client.create("huge.h5", 10**9)
    assert r.status_code == 413
    message = r.json()["message"]
    assert "huge.h5" in message and "quota" in message
    # Uploads in progress count: two that fit one at a time do not fit together.
    r = client.create("first.h5", left - 1000)
    assert r.status_code == 201, r.text
    first = r.json()["id"]
    assert client.session.get(server.api + "status").json()["used_bytes"] == QUOTA - 1000
    r = client.create("second.h5", 2000)
    assert r.status_code == 413
    assert client.abort(first).status_code == 204
    r = client.create("second.h5", 2000)
    assert r.status_code == 201
    assert client.abort(r.json()["id"]).status_code == 204


@pytest.mark.parametrize("name, content, expected", [
    ("notes.h5", b"temperature,pressure\n1,2\n3,4\n", "unsupported content"),
    ("truncated.npy", npy_bytes((20, 64, 64))[:50000], "damaged or truncated"),
])
def test_bad_files_are_refused_and_removed(client, env, name, content, expected):
    before = all_files(env["upload"])
    r = client.create(name, len(content))
    uid = r.json()["id"]
    assert client.put(uid, 0, content).status_code == 200
    r = client.finish(uid)
    assert r.status_code == 422
    message = r.json()["message"]
    assert expected in message
    assert message.startswith(name + ":")
    assert ".partial" not in message and "\n" not in message
    assert all_files(env["upload"]) == before  # neither visible nor partial
    assert partial_files(env, uid) == []
    assert client.state(uid).status_code == 404


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", ".bashrc", "a/b.npy", "a\\b.npy",
                                  "scan..h5", "", "x" * 300, "rm -rf *.h5", "naïve.h5", 42, None])
def test_bad_names_are_refused(client, env, name):
    before = all_files(env["upload"])
    r = client.session.post(client.api + "uploads", json={"name": name, "size": 100})
    assert r.status_code == 400
    assert r.json()["message"]
    assert all_files(env["upload"]) == before


def test_bad_requests(client):
    assert client.session.post(client.api + "uploads", data=b"{not json").status_code == 400
    for size in (-1, 0, "100", 1.5, True, None):
        r = client.session.post(client.api + "uploads", json={"name": "ok.h5", "size": size})
        assert r.status_code == 400, size


def test_upload_throughput_200mb(client, env):
    stream = NpyStream((1600, 256, 256))  # 210 MB of uint16 frames
    t0 = time.perf_counter()
    r = client.create("throughput.npy", stream.size)
    info = r.json()
    offset = client.send(info["id"], stream.read, stream.size, chunk_size=info["chunk_size"])
    t1 = time.perf_counter()
    r = client.finish(info["id"])
    t2 = time.perf_counter()
    assert offset == stream.size and r.status_code == 200, r.text
    print(f"\nupload of {stream.size / 1e6:.0f} MB in {info['chunk_size'] >> 20} MiB chunks on loopback: "
          f"{stream.size / 1e6 / (t1 - t0):.0f} MB/s (finish, validation included: "
          f"{stream.size / 1e6 / (t2 - t0):.0f} MB/s)")
    path = Path(r.json()["path"])
    assert path.stat().st_size == stream.size
    assert r.json()["shape"] == [1600, 256, 256]
    path.unlink()  # give the quota back to the other tests


# --------------------------------------------------------------------------- data browser
@pytest.fixture(scope="module")
def beamline(env):
    d = env["data"]
    np.save(d / "new.npy", np.zeros((2, 4, 4), np.uint16))
    (d / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    (d / "mid.tif").write_bytes(b"II*\x00" + b"\0" * 100)
    (d / "notes.txt").write_text("not data")
    (d / "misnamed.h5").write_text("text in disguise")
    (d / ".hidden.npy").write_bytes((d / "new.npy").read_bytes())
    (d / "sub").mkdir()
    (d / "sub" / "inner.fits").write_bytes(b"SIMPLE  =" + b" " * 100)
    (d / "latest").symlink_to(d / "sub")
    (d / "etc_link").symlink_to("/etc")
    (d / "passwd.h5").symlink_to("/etc/passwd")
    for name, t in [("old.h5", 1000), ("mid.tif", 2000), ("new.npy", 3000), ("notes.txt", 4000),
                    ("misnamed.h5", 5000), ("sub", 500)]:
        os.utime(d / name, (t, t))
    return d


def test_data_roots(client, env, beamline):
    r = client.session.get(client.api + "data")
    assert r.status_code == 200
    roots = r.json()
    assert [(x["key"], x["kind"]) for x in roots] == [("data1", "beamline"),
                                                      ("uploads", "uploads"), ("demo", "demo")]
    assert roots[0]["path"] == str(env["data"])
    assert roots[1]["path"] == str(env["upload"])


def test_data_listing_newest_first_datasets_only(client, beamline):
    r = client.session.get(client.api + "data", params={"root": "data1"})
    assert r.status_code == 200
    entries = r.json()
    assert [(e["name"], e["kind"], e["format"]) for e in entries] == [
        ("new.npy", "dataset", "npy"), ("mid.tif", "dataset", "tiff"),
        ("old.h5", "dataset", "hdf5"), ("latest", "dir", None), ("sub", "dir", None)]
    assert entries[0]["size"] == (beamline / "new.npy").stat().st_size
    assert entries[0]["mtime"] == 3000
    inner = client.session.get(client.api + "data", params={"root": "data1", "path": "sub"})
    assert [e["name"] for e in inner.json()] == ["inner.fits"]
    demo = client.session.get(client.api + "data", params={"root": "demo"}).json()
    assert sorted(e["name"] for e in demo) == ["cdi.fits", "fth.fits",
                                               "xpcs_img_stack5301_5401.npy.zip"]


@pytest.mark.parametrize("path", ["..", "../..", "sub/../..", "/etc", "etc_link", "etc_link/",
                                  "passwd.h5", "sub/../../beamline"])
def test_data_escapes_are_forbidden(client, beamline, path):
    r = client.session.get(client.api + "data", params={"root": "data1", "path": path})
    assert r.status_code == 403, (path, r.text)
    assert "passwd" not in r.text or path == "passwd.h5"


def test_data_errors(client, beamline):
    get = client.session.get
    assert get(client.api + "data", params={"root": "nope"}).status_code == 404
    assert get(client.api + "data", params={"root": "data1", "path": "missing"}).status_code \
        == 404
    assert get(client.api + "data", params={"root": "data1", "path": "new.npy"}).status_code \
        == 400


def test_data_browser_is_read_only(client, beamline):
    for method in ("post", "put", "delete"):
        r = client.session.request(method, client.api + "data", params={"root": "data1"})
        assert r.status_code == 405


# --------------------------------------------------------------------------- status
def test_status(server, client, env):
    r = client.session.get(server.api + "status")
    assert r.status_code == 200
    status = r.json()
    visible = sum(p.stat().st_size for p in env["upload"].rglob("*")
                  if p.is_file() and ".partial" not in p.parts)
    reserved = sum(json.loads(p.read_text())["size"]
                   for p in (env["upload"] / ".partial").glob("*.json")
                   if json.loads(p.read_text())["state"] != "done")
    assert status == {"device": "CPU: this server has no GPU", "quota_bytes": QUOTA,
                      "used_bytes": visible + reserved, "upload_dir": str(env["upload"])}
