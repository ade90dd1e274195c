"""Helpers for tests and benchmarks: a real jupyter server, a protocol client, test data.

Not used by the extension itself; ``requests`` is imported only by :class:`UploadClient`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["NpyStream", "RunningServer", "UploadClient", "free_port", "jupyter_server"]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str  # http://127.0.0.1:PORT/  (base_url included, ends with "/")
    token: str
    process: subprocess.Popen
    log_path: Path

    @property
    def api(self) -> str:
        return self.url + "speckle/api/"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _server_command() -> list[str]:
    script = Path(sys.executable).parent / "jupyter-server"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_server"]


@contextlib.contextmanager
def jupyter_server(workdir, env: dict | None = None, *, token: str | None = None,
                   extra_args=(), startup_timeout: float = 60.0) -> Iterator[RunningServer]:
    """Run ``jupyter-server`` with the speckle extension on a free loopback port.

    Parameters
    ----------
    workdir : path
        Scratch folder: the server's ``root_dir`` (``workdir/root``), its runtime and config
        folders and its log (``workdir/server.log``).
    env : dict, optional
        Variables added to the environment (``SPECKLE_UPLOAD_DIR``...).
    token : str, optional
        The server's token (default: random).
    """
    workdir = Path(workdir)
    for sub in ("root", "runtime", "config"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    token = token or secrets.token_hex(16)
    port = free_port()
    log_path = workdir / "server.log"
    full_env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
                "JUPYTER_CONFIG_DIR": str(workdir / "config"), **(env or {})}
    cmd = [*_server_command(), "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={workdir / 'root'}",
           # traitlets' command-line form of a dict (the JSON form is refused)
           "--ServerApp.jpserver_extensions=speckle_jupyter=True", *extra_args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                cwd=workdir, start_new_session=True)
    server = RunningServer(f"http://127.0.0.1:{port}/", token, proc, log_path)
    try:
        _wait_ready(server, startup_timeout)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: RunningServer, timeout: float) -> None:
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    request = urllib.request.Request(server.api + "status",
                                     headers={"Authorization": f"token {server.token}"})
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter-server exited ({server.process.returncode}):\n"
                               + server.log_text()[-3000:])
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError("jupyter-server did not answer in time:\n" + server.log_text()[-3000:])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class NpyStream:
    """The bytes of a valid ``.npy`` stack, produced chunk by chunk (never all in memory).

    The frames repeat a block of random bytes, so a GB-sized file costs one block of memory.
    """

    def __init__(self, shape, dtype="<u2", *, seed: int = 0, block_bytes: int = 4 * 2**20):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": np.dtype(dtype).str, "fortran_order": False,
                     "shape": tuple(int(s) for s in shape)})
        self.header = header.getvalue()
        self.data_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.size = len(self.header) + self.data_bytes
        block = np.random.default_rng(seed).integers(0, 256, block_bytes, np.uint8).tobytes()
        self._double = block + block
        self._block = len(block)

    def read(self, offset: int, n: int) -> bytes:
        """Bytes ``offset:offset+n`` of the file (clipped to its size)."""
        n = max(0, min(n, self.size - offset))
        out = bytearray()
        if offset < len(self.header):
            out += self.header[offset:offset + n]
            offset += len(out)
            n -= len(out)
        d = offset - len(self.header)
        while n > 0:
            start = d % self._block
            take = min(n, self._block)
            out += self._double[start:start + take]
            d += take
            n -= take
        return bytes(out)

    def sha256(self, chunk: int = 16 * 2**20) -> str:
        h = hashlib.sha256()
        for off in range(0, self.size, chunk):
            h.update(self.read(off, chunk))
        return h.hexdigest()


class UploadClient:
    """A client of the ``speckle/api/uploads`` protocol (what the dashboard's JS does)."""

    def __init__(self, api: str, token: str | None = None, session=None):
        import requests  # noqa: PLC0415

        self.api = api
        self.session = session or requests.Session()
        if token:
            self.session.headers["Authorization"] = f"token {token}"

    def create(self, name: str, size: int):
        return self.session.post(self.api + "uploads", json={"name": name, "size": size})

    def put(self, upload_id: str, offset: int, data: bytes):
        return self.session.put(f"{self.api}uploads/{upload_id}", params={"offset": offset},
                                data=data)

    def state(self, upload_id: str):
        return self.session.get(f"{self.api}uploads/{upload_id}")

    def finish(self, upload_id: str):
        return self.session.post(f"{self.api}uploads/{upload_id}/finish")

    def abort(self, upload_id: str):
        return self.session.delete(f"{self.api}uploads/{upload_id}")

    def send(self, upload_id: str, read, size: int, *, offset: int = 0, chunk_size: int,
             max_chunks: int | None = None) -> int:
        """PUT chunks from ``offset`` (``read(offset, n) -> bytes``); return the new offset."""
        sent = 0
        while offset < size and (max_chunks is None or sent < max_chunks):
            r = self.put(upload_id, offset, read(offset, chunk_size))
            if r.status_code == 409:  # the server knows better: resume where it says
                offset = r.json()["offset"]
                continue
            r.raise_for_status()
            offset = r.json()["offset"]
            sent += 1
        return offset

    def upload(self, name: str, read, size: int) -> dict:
        """The whole protocol: create, send every chunk, finish; return the finish answer."""
        r = self.create(name, size)
        r.raise_for_status()
        info = r.json()
        self.send(info["id"], read, size, chunk_size=info["chunk_size"])
        r = self.finish(info["id"])
        r.raise_for_status()
        return r.json()


def remove_tree(path) -> None:
    shutil.rmtree(path, ignore_errors=True)
