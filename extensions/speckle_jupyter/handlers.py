"""HTTP handlers of ``{base_url}speckle/api/`` (protocol: extensions/README.md).

Every handler is a jupyter_server ``APIHandler``: the user is authenticated (token, or the
hub's cookie) and, for cookie-authenticated requests, every non-GET request must carry the
``_xsrf`` token (``X-XSRFToken`` header); jupyter_server checks both in ``prepare``, before a
single byte of an upload body is read. Methods are also wrapped in jupyter_server's
``authorized`` decorator (resource ``contents``: uploads write files, the browser reads them).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.routing import PathMatches, Rule

from speckle.errors import DatasetNotFoundError, InvalidInputError
from speckle.io.browse import PathEscapeError, list_entries, list_roots
from speckle.site import site

from .uploads import ID_PATTERN, Refusal, UploadStore

AUTH_RESOURCE = "contents"
_CPU_TEXT = "CPU: this server has no GPU"


class SpeckleAPIHandler(APIHandler):
    """Common helpers: JSON answers and the shared :class:`UploadStore`."""

    auth_resource = AUTH_RESOURCE

    @property
    def store(self) -> UploadStore:
        return self.settings["speckle_upload_store"]

    def reply(self, status: int, body) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise Refusal(400, "the request body must be JSON") from None
        if not isinstance(body, dict):
            raise Refusal(400, "the request body must be a JSON object")
        return body


class UploadsHandler(SpeckleAPIHandler):
    """``POST speckle/api/uploads`` {"name", "size"} -> 201 {"id", "offset", "chunk_size"}."""

    @web.authenticated
    @authorized
    async def post(self):
        try:
            body = self.json_body()
            rec = self.store.create(body.get("name"), body.get("size"))
        except Refusal as r:
            return self.reply(r.status, r.body)
        self.set_header("Location", url_path_join(self.request.path, rec.id))
        self.log.info("speckle upload %s started: %s, %d bytes", rec.id, rec.name, rec.size)
        self.reply(201, {"id": rec.id, "offset": rec.offset, "chunk_size": rec.chunk_size,
                         "name": rec.name, "size": rec.size})


class UploadHandler(SpeckleAPIHandler):
    """``GET speckle/api/uploads/{id}`` (the state) and ``DELETE`` (abort)."""

    @web.authenticated
    @authorized
    async def get(self, upload_id):
        rec = self.store.load(upload_id)
        if rec is None:
            return self.reply(404, {"message": "no such upload (finished, refused or aborted)"})
        body = rec.public()
        if self.store.busy.get(upload_id) == "finish":
            body["state"] = "validating"
        self.reply(200, body)

    @web.authenticated
    @authorized
    async def delete(self, upload_id):
        if self.store.busy.get(upload_id) == "finish":
            return self.reply(409, {"message": "the upload is being validated; wait for it"})
        if not self.store.abort(upload_id):
            return self.reply(404, {"message": "no such upload"})
        self.log.info("speckle upload %s aborted", upload_id)
        self.set_status(204)
        self.finish()


@web.stream_request_body
class UploadChunkHandler(SpeckleAPIHandler):
    """``PUT speckle/api/uploads/{id}?offset=N`` with at most ``chunk_size`` raw bytes.

    Only PUT is routed here (see :class:`_MethodMatches`): Tornado closes the connection after
    any answer given before a streamed body was read, which a keep-alive client would see as a
    reset on its next request.

    The body is streamed to the data file as it arrives (64 KiB at a time): nothing big is held
    in memory. A chunk is accepted whole or not at all: if the connection drops, the bytes of
    the unfinished chunk are cut off again and the offset stays where it was. A refused chunk
    (wrong offset, past the declared size) is read and dropped before the answer is sent, so
    that clients see the answer rather than a reset connection.
    """

    _fd = None
    _refusal = None
    _upload_id = None
    _rec = None
    _start = 0
    _expected = 0
    _written = 0
    _error = None
    _deferred_error = None

    async def prepare(self):
        store = self.store
        length_text = self.request.headers.get("Content-Length")
        if length_text is None or "Transfer-Encoding" in self.request.headers:
            raise web.HTTPError(411, "send each chunk with a Content-Length")
        try:
            length = int(length_text)
        except ValueError:
            raise web.HTTPError(400, "bad Content-Length") from None
        if length > store.chunk_size:
            # Refused from the headers: the body is never read (the connection is closed).
            self.request.connection.set_max_body_size(store.chunk_size)
            raise web.HTTPError(413, f"a chunk holds at most {store.chunk_size} bytes")
        self.request.connection.set_max_body_size(max(length, 1))
        self._expected = length
        # Authentication, the XSRF check and the origin check, before any body byte is kept.
        # A refusal is answered once the (small) body has been read and dropped: closing the
        # connection on unread data resets it, and the client would never see the answer.
        try:
            await super().prepare()
            if not self.current_user:
                raise web.HTTPError(403)
            allowed = await ensure_async(
                self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE))
            if not allowed:
                raise web.HTTPError(403, "not authorized to upload")
        except web.HTTPError as exc:
            self._deferred_error = exc
            return
        upload_id = self.path_kwargs.get("upload_id") or self.path_args[0]
        try:
            offset = int(self.get_query_argument("offset"))
            if offset < 0:
                raise ValueError
        except (web.MissingArgumentError, ValueError):
            return self._refuse(400, {"message": "give ?offset=N (bytes already sent)"})
        if store.busy.get(upload_id):
            rec = store._read_record(upload_id)
            return self._refuse(409, {"offset": rec.offset if rec else 0,
                                      "message": "another request is using this upload"})
        rec = store.load(upload_id)
        if rec is None:
            return self._refuse(404, {"message": "no such upload (finished, refused or "
                                                 "aborted): start it again"})
        if rec.state == "done":
            return self._refuse(409, {"offset": rec.offset, "message": "already finished"})
        if offset != rec.offset:
            return self._refuse(409, {"offset": rec.offset,
                                      "message": f"expected offset {rec.offset}"})
        if offset + length > rec.size:
            return self._refuse(400, {"message": f"{rec.name}: the chunk ends at byte "
                                                 f"{offset + length}, past the declared size "
                                                 f"{rec.size}"})
        self._fd = os.open(store.part_path(upload_id), os.O_WRONLY)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._upload_id, self._rec, self._start = upload_id, rec, offset
        store.busy[upload_id] = "write"

    def _refuse(self, status, body):
        self._refusal = (status, body)

    def data_received(self, chunk: bytes) -> None:
        if self._fd is None or self._error is not None:
            return  # refused or failed: the rest of the body is dropped
        if self._upload_id in self.store.aborted:
            self._error = (410, {"message": "the upload was aborted"})
            return
        view = memoryview(chunk)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self._written += n
        except OSError as exc:
            self._error = self._write_failed(exc)

    def _write_failed(self, exc: OSError) -> tuple[int, dict]:
        """The answer to a failed write of this chunk (the disk full: 507, in words)."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return 507, {"message": "the disk is full: tell the beamline staff", "offset": self._start}
        self.log.error("speckle upload %s: write failed: %s", self._upload_id, exc)
        return 500, {"message": f"writing the upload failed ({exc.strerror})", "offset": self._start}

    @web.authenticated
    @authorized
    async def put(self, upload_id):
        # (authentication and authorization were checked in prepare, before the body; the
        # decorators repeat them)
        if self._deferred_error is not None:
            raise self._deferred_error
        if self._refusal is not None:
            return self.reply(*self._refusal)
        store, rec = self.store, self._rec
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
            if upload_id in store.aborted:
                return self.reply(410, {"message": "the upload was aborted"})
            error = self._error
            if error is None and self._written != self._expected:
                error = (400, {"message": "the chunk arrived incomplete", "offset": self._start})
            if error is None:
                try:
                    store.advance(rec, self._start + self._written)
                except OSError as exc:  # the record could not be written (a full disk)
                    rec.offset = self._start
                    error = self._write_failed(exc)
            if error is not None:
                store.truncate(upload_id, self._start)
                return self.reply(*error)
        finally:
            store.aborted.discard(upload_id)
            store.busy.pop(upload_id, None)
        self.reply(200, {"offset": rec.offset})

    def _release(self) -> None:
        """Undo an unfinished chunk (client gone, handler error)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            store = self.store
            if self._upload_id not in store.aborted:
                store.truncate(self._upload_id, self._start)
            store.aborted.discard(self._upload_id)
            store.busy.pop(self._upload_id, None)

    def on_connection_close(self) -> None:
        self._release()
        super().on_connection_close()

    def on_finish(self) -> None:
        self._release()
        super().on_finish()


class FinishHandler(SpeckleAPIHandler):
    """``POST speckle/api/uploads/{id}/finish``: validate, then place the file atomically."""

    @web.authenticated
    @authorized
    async def post(self, upload_id):
        store = self.store
        if store.busy.get(upload_id):
            return self.reply(409, {"message": "the upload is busy (a chunk or a finish is "
                                               "running)"})
        rec = store.load(upload_id)
        if rec is None:
            return self.reply(404, {"message": "no such upload (refused, aborted or expired)"})
        if rec.state == "done":
            return self.reply(200, rec.result)
        if rec.offset != rec.size:
            return self.reply(409, {"offset": rec.offset,
                                    "message": f"{rec.name}: incomplete, {rec.offset} of "
                                               f"{rec.size} bytes received"})
        store.busy[upload_id] = "finish"
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, store.validate_and_place, rec)
            store.mark_done(rec, result)
        except Refusal as r:
            self.log.info("speckle upload %s refused: %s", upload_id, r.body["message"])
            return self.reply(r.status, r.body)
        finally:
            store.busy.pop(upload_id, None)
        self.log.info("speckle upload %s placed at %s", upload_id, result["path"])
        self.reply(200, result)


class DataHandler(SpeckleAPIHandler):
    """``GET speckle/api/data`` (the roots) and ``?root=K&path=REL`` (one folder, read-only)."""

    @web.authenticated
    @authorized
    async def get(self):
        roots = list_roots()
        key = self.get_query_argument("root", None)
        if key is None:
            return self.reply(200, [r.to_dict() for r in roots])
        root = next((r for r in roots if r.key == key), None)
        if root is None:
            return self.reply(404, {"message": f"no data folder {key!r}"})
        rel = self.get_query_argument("path", "")
        try:
            limit = int(self.get_query_argument("limit", "1000"))
        except ValueError:
            return self.reply(400, {"message": "limit must be an integer"})
        limit = min(max(limit, 1), 10000)
        try:
            entries = await asyncio.get_running_loop().run_in_executor(
                None, lambda: list_entries(root.path, rel, limit=limit))
        except PathEscapeError as exc:
            return self.reply(403, {"message": str(exc)})
        except DatasetNotFoundError as exc:
            return self.reply(404, {"message": str(exc)})
        except InvalidInputError as exc:
            return self.reply(400, {"message": str(exc)})
        self.reply(200, [e.to_dict() for e in entries])


class StatusHandler(SpeckleAPIHandler):
    """``GET speckle/api/status`` -> {"device", "quota_bytes", "used_bytes", "upload_dir"}."""

    @web.authenticated
    @authorized
    async def get(self):
        store = self.store
        # Reading the token sets the _xsrf cookie when the page has none yet: a page that asks
        # for the status first can then send the token with its uploads.
        self.xsrf_token  # noqa: B018
        device = await device_text(self.settings)
        used = await asyncio.get_running_loop().run_in_executor(None, store.used_bytes)
        self.reply(200, {"device": device, "quota_bytes": store.quota_bytes,
                         "used_bytes": used, "upload_dir": str(store.upload_dir)})


class KernelEndHandler(SpeckleAPIHandler):
    """``GET speckle/api/kernels/{id}/end`` -> why that dashboard kernel died (kernel_end.py)."""

    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def get(self, kernel_id):
        ends = getattr(self.kernel_manager, "kernel_ends", None)
        found = ends.get(kernel_id) if ends is not None else None
        if found is None:
            return self.reply(404, {"message": "this kernel did not die here (it may have been "
                                               "shut down or culled)"})
        self.reply(200, found)


async def device_text(settings) -> str:
    """What computes for this server: the GPU the hub assigned (:mod:`speckle.site`), else
    speckle's own detection.

    The detection (:func:`speckle.backend.device_description`) runs once, in a child process:
    importing cupy in the server process would hold a CUDA context (GPU memory) for its whole
    life.
    """
    cached = settings.get("speckle_device_text")
    if cached:
        return cached
    config = site()
    if config.gpu_name:
        text = config.gpu_name
    elif config.gpu_hidden:
        text = _CPU_TEXT
    else:
        text = await asyncio.get_running_loop().run_in_executor(None, _detect_device)
    settings["speckle_device_text"] = text
    return text


def _detect_device() -> str:
    try:
        out = subprocess.run(
            [sys.executable, "-c",
             "from speckle.backend import device_description as d; print(d())"],
            capture_output=True, text=True, timeout=120, check=True)
        return out.stdout.strip().splitlines()[-1] or _CPU_TEXT
    except (OSError, subprocess.SubprocessError, IndexError):
        return _CPU_TEXT


def handlers(base_url: str) -> list:
    """The (pattern, handler) list, under ``{base_url}speckle/api/``."""
    api = url_path_join(base_url, "speckle", "api")
    one = rf"/uploads/(?P<upload_id>{ID_PATTERN})"
    return [
        (api + r"/uploads/?", UploadsHandler),
        (api + one + r"/finish/?", FinishHandler),
        Rule(_MethodMatches(api + one + r"/?$", {"PUT"}), UploadChunkHandler),
        (api + one + r"/?", UploadHandler),
        (api + r"/data/?", DataHandler),
        (api + r"/status/?", StatusHandler),
        (api + r"/kernels/(?P<kernel_id>[0-9a-f-]{1,64})/end/?", KernelEndHandler),
    ]


class _MethodMatches(PathMatches):
    """A path rule that matches only some HTTP methods."""

    def __init__(self, path_pattern, methods):
        super().__init__(path_pattern)
        self.methods = frozenset(methods)

    def match(self, request):
        if request.method not in self.methods:
            return None
        return super().match(request)
