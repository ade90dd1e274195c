"""Resumable uploads on disk: state, quota, validation and atomic placement (no Tornado here).

Layout inside the upload folder (``SPECKLE_UPLOAD_DIR``, default ``~/speckle-uploads``)::

    ~/speckle-uploads/               visible, validated files only
    ~/speckle-uploads/.partial/      hidden, mode 700
        <id>.part                    the bytes received so far
        <id>.json                    {"id", "name", "size", "offset", "state", ...}

A record's ``offset`` advances only when a whole chunk has been written, and the ``.part`` file
is reconciled with it whenever a record is loaded (a crash can leave a longer file, which is
cut back, or a shorter one, which moves the offset back), so a client can always resume from
the offset the server reports. A finished upload is validated with
:func:`speckle.io.open_dataset` (content-based, one frame read) and only then linked into the
upload folder under a name that does not exist yet (``scan.h5``, ``scan-1.h5``, ...).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speckle.errors import InvalidInputError
from speckle.io import open_dataset
from speckle.io.atomic import fsync_file
from speckle.io.limits import human_bytes, one_line
from speckle.site import DEFAULT_UPLOAD_CHUNK_BYTES, site

__all__ = [
    "Refusal",
    "UploadRecord",
    "UploadStore",
    "check_name",
]

log = logging.getLogger(__name__)

MAX_NAME_BYTES = 200
#: Uploads started and not finished at once: more wait (each holds a file and a reservation).
MAX_UNFINISHED = 20
#: Incomplete uploads untouched for this long are removed (and stop counting against the quota).
PARTIAL_TTL_S = 7 * 86400
#: Records of finished uploads are kept this long, so a repeated finish gets the same answer.
DONE_TTL_S = 86400
#: An upload must leave this much free space on the disk.
DISK_MARGIN_BYTES = 256 * 2**20

ID_PATTERN = r"[0-9a-f]{32}"
_ID_RE = re.compile(ID_PATTERN)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+()\-]*")
_NAME_RULE = ("letters, digits, spaces and . _ - + ( ), starting with a letter or digit, at most "
              f"{MAX_NAME_BYTES} characters")


class Refusal(Exception):
    """A request the store refuses: an HTTP status and a JSON body with a ``message``."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.body = {"message": message, **extra}


@dataclass
class UploadRecord:
    """The persistent state of one upload (``<id>.json``)."""

    id: str
    name: str
    size: int
    offset: int = 0
    state: str = "uploading"  # "uploading" | "complete" | "done"
    chunk_size: int = DEFAULT_UPLOAD_CHUNK_BYTES
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    result: dict | None = None  # the finish answer, once "done"

    def public(self) -> dict:
        """The answer of ``GET uploads/{id}``."""
        out = {"id": self.id, "offset": self.offset, "size": self.size, "name": self.name,
               "state": self.state, "chunk_size": self.chunk_size}
        if self.result is not None:
            out["result"] = self.result
        return out


def check_name(name) -> str:
    """Return ``name`` if it is an acceptable file name for an upload, else raise a 400 Refusal.

    Only a plain base name is accepted: no folder part, no ``..``, not hidden, a limited set of
    characters (:data:`_NAME_RULE`) and length. Names are refused rather than silently changed
    so that the user sees the rule.
    """
    if not isinstance(name, str) or not name:
        raise Refusal(400, "the upload needs a file name")
    shown = name if len(name) <= 80 else name[:77] + "..."
    if "/" in name or "\\" in name:
        raise Refusal(400, f"{shown!r}: give the file's name only, without folders")
    if ".." in name:
        raise Refusal(400, f"{shown!r}: a file name may not contain '..'")
    if name.startswith("."):
        raise Refusal(400, f"{shown!r}: hidden file names (starting with '.') are refused")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES or not _NAME_RE.fullmatch(name) \
            or name.endswith((" ", ".")):
        raise Refusal(400, f"{shown!r}: rename the file using {_NAME_RULE}")
    return name


class UploadStore:
    """All upload state of one user server.

    Parameters
    ----------
    upload_dir : path, optional
        Default: the site's (:mod:`speckle.site`, ``~/speckle-uploads``); created (mode 700) if
        missing.
    quota_bytes : int, optional
        Default: the site's (50 GB).
    chunk_size : int, optional
        Largest ``PUT`` body. Default: the site's (64 MiB).

    Notes
    -----
    Methods are called from one event-loop thread; :meth:`validate_and_place` (slow: it reads
    the file) runs in a worker thread while the record is marked busy, so no other request
    touches that upload meanwhile.
    """

    def __init__(self, upload_dir=None, quota_bytes=None, chunk_size=None, environ=None):
        config = site(environ)
        self.upload_dir = (Path(upload_dir).expanduser().absolute() if upload_dir
                           else config.upload_dir)
        self.partial_dir = self.upload_dir / ".partial"
        self.quota_bytes = int(quota_bytes) if quota_bytes is not None else config.upload_quota_bytes
        self.chunk_size = int(chunk_size) if chunk_size is not None else config.upload_chunk_bytes
        self.busy: dict[str, str] = {}  # id -> what holds it ("write" | "finish")
        self.aborted: set[str] = set()

    # ------------------------------------------------------------------ files and records
    def ensure_dirs(self) -> None:
        """Create the upload folder and its hidden partial folder (owner-only)."""
        self.upload_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.partial_dir.mkdir(mode=0o700, exist_ok=True)

    def part_path(self, upload_id: str) -> Path:
        return self.partial_dir / f"{upload_id}.part"

    def record_path(self, upload_id: str) -> Path:
        return self.partial_dir / f"{upload_id}.json"

    def _save(self, rec: UploadRecord) -> None:
        rec.updated = time.time()
        path = self.record_path(rec.id)
        tmp = path.with_name(f".{rec.id}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(asdict(rec), fh)
            os.replace(tmp, path)
        except BaseException:  # a full disk: the record on disk stays as it was
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise

    def _remove(self, upload_id: str) -> None:
        for path in (self.part_path(upload_id), self.record_path(upload_id)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def _read_record(self, upload_id: str) -> UploadRecord | None:
        try:
            with open(self.record_path(upload_id)) as fh:
                data = json.load(fh)
            return UploadRecord(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, OSError) as exc:
            log.warning("speckle_jupyter: unreadable upload record %s (%s): removed",
                        upload_id, exc)
            self._remove(upload_id)
            return None

    def load(self, upload_id: str) -> UploadRecord | None:
        """Return the record of ``upload_id`` reconciled with its data file, or None."""
        if not _ID_RE.fullmatch(upload_id or ""):
            return None
        rec = self._read_record(upload_id)
        if rec is None or rec.state == "done" or self.busy.get(upload_id) is not None:
            return rec
        part = self.part_path(upload_id)
        try:
            on_disk = part.stat().st_size
        except FileNotFoundError:
            log.warning("speckle_jupyter: upload %s lost its data file: removed", upload_id)
            self._remove(upload_id)
            return None
        changed = False
        if on_disk > rec.offset:  # a chunk was cut short (crash): drop its partial bytes
            os.truncate(part, rec.offset)
        elif on_disk < rec.offset:  # bytes lost in a crash: resume from what is really there
            rec.offset = on_disk
            changed = True
        state = "complete" if rec.offset == rec.size else "uploading"
        if state != rec.state:
            rec.state = state
            changed = True
        if changed:
            self._save(rec)
        return rec

    def records(self) -> list[UploadRecord]:
        """Every record in the partial folder (not reconciled)."""
        out = []
        if not self.partial_dir.is_dir():
            return out
        for path in self.partial_dir.glob("*.json"):
            rec = self._read_record(path.stem) if _ID_RE.fullmatch(path.stem) else None
            if rec is not None:
                out.append(rec)
        return out

    def cleanup(self, now: float | None = None) -> None:
        """Remove stale incomplete uploads, old finished records and orphan files."""
        if not self.partial_dir.is_dir():
            return
        now = time.time() if now is None else now
        for rec in self.records():
            if rec.id in self.busy:
                continue
            ttl = DONE_TTL_S if rec.state == "done" else PARTIAL_TTL_S
            if now - rec.updated > ttl:
                log.info("speckle_jupyter: removing stale upload %s (%s)", rec.id, rec.name)
                self._remove(rec.id)
        for path in self.partial_dir.iterdir():
            upload_id = path.name.split(".")[0] if not path.name.startswith(".") else None
            try:
                age = now - path.lstat().st_mtime
            except FileNotFoundError:
                continue
            if path.suffix == ".part" and upload_id and not self.record_path(upload_id).exists() \
                    and upload_id not in self.busy and age > 3600:
                path.unlink(missing_ok=True)
            elif path.name.startswith(".") and path.name.endswith(".tmp") and age > 3600:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------------ quota
    def visible_bytes(self) -> int:
        """Bytes of the files in the upload folder (the partial folder excepted)."""
        total = 0
        stack = [self.upload_dir]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    for item in it:
                        if folder == self.upload_dir and item.name == ".partial":
                            continue
                        try:
                            st = item.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        if stat.S_ISDIR(st.st_mode):
                            stack.append(Path(item.path))
                        elif stat.S_ISREG(st.st_mode):
                            total += st.st_size
            except OSError:
                continue
        return total

    def reserved_bytes(self) -> int:
        """Declared sizes of the uploads in progress (they count against the quota)."""
        return sum(rec.size for rec in self.records() if rec.state != "done")

    def used_bytes(self) -> int:
        """What counts against the quota: visible files plus uploads in progress."""
        return self.visible_bytes() + self.reserved_bytes()

    # ------------------------------------------------------------------ protocol steps
    def create(self, name, size) -> UploadRecord:
        """Start an upload (``POST uploads``); raise :class:`Refusal` (400, 413, 429, 507)."""
        name = check_name(name)
        if isinstance(size, bool) or not isinstance(size, int):
            raise Refusal(400, "the upload needs its size in bytes (an integer)")
        if size < 1:
            raise Refusal(400, f"{name}: the file is empty (0 bytes): choose a data file")
        self.ensure_dirs()
        self.cleanup()
        unfinished = sum(1 for rec in self.records() if rec.state != "done")
        if unfinished >= MAX_UNFINISHED:
            raise Refusal(429, f"{name}: {unfinished} uploads are unfinished already: finish or "
                               "cancel some before starting another")
        used = self.used_bytes()
        if size + used > self.quota_bytes:
            left = max(self.quota_bytes - used, 0)
            raise Refusal(
                413, f"{name} ({human_bytes(size)}) does not fit in your upload quota: "
                f"{human_bytes(used)} of {human_bytes(self.quota_bytes)} used, "
                f"{human_bytes(left)} left; delete files in {self.upload_dir} or ask the "
                "beamline staff for a larger quota",
                quota_bytes=self.quota_bytes, used_bytes=used)
        free = shutil.disk_usage(self.upload_dir).free
        if size + DISK_MARGIN_BYTES > free:
            raise Refusal(507, f"{name} ({human_bytes(size)}) does not fit on the disk "
                          f"({human_bytes(free)} free): tell the beamline staff")
        upload_id = secrets.token_hex(16)
        fd = os.open(self.part_path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        rec = UploadRecord(id=upload_id, name=name, size=size, chunk_size=self.chunk_size)
        self._save(rec)
        return rec

    def advance(self, rec: UploadRecord, new_offset: int) -> None:
        """Record that the bytes up to ``new_offset`` are written."""
        rec.offset = new_offset
        rec.state = "complete" if new_offset == rec.size else "uploading"
        self._save(rec)

    def truncate(self, upload_id: str, offset: int) -> None:
        """Cut the data file back to ``offset`` (after a failed or interrupted chunk)."""
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.part_path(upload_id), offset)

    def abort(self, upload_id: str) -> bool:
        """Remove an upload's data and record (``DELETE``); False if there was none."""
        rec = self._read_record(upload_id) if _ID_RE.fullmatch(upload_id or "") else None
        if rec is None:
            return False
        if self.busy.get(upload_id) == "write":
            self.aborted.add(upload_id)  # the writing request stops and answers 410
        self._remove(upload_id)
        return True

    def mark_done(self, rec: UploadRecord, result: dict) -> None:
        rec.state = "done"
        rec.result = result
        self._save(rec)

    def validate_and_place(self, rec: UploadRecord) -> dict:
        """Validate the complete data file and move it into the upload folder (worker thread).

        Returns the answer of ``finish``: ``{"path", "name", "format", "shape", "dtype"}``.
        On refusal, removes the data and the record and raises :class:`Refusal` (422) with the
        speckle error's one-line message (the hidden partial path replaced by the file's name).
        """
        part = self.part_path(rec.id)
        try:
            fsync_file(part)
            info = _validate(part)
        except InvalidInputError as exc:
            self._remove(rec.id)
            raise Refusal(422, one_line(str(exc)).replace(str(part), rec.name)) from None
        except Exception as exc:  # noqa: BLE001 - a reader crashed on this content
            log.exception("speckle_jupyter: validating upload %s (%s) failed", rec.id, rec.name)
            self._remove(rec.id)
            raise Refusal(422, f"{rec.name}: speckle cannot read this file "
                          f"({type(exc).__name__}: {one_line(str(exc))[:200]})") from None
        dest = _place(part, self.upload_dir, rec.name)
        return {"path": str(dest), "name": dest.name, **info}


def _validate(path: Path) -> dict:
    """Open the file with speckle and read its first and last frames."""
    from speckle.io.read_numpy import ZipStreamDataset  # noqa: PLC0415

    with open_dataset(path) as ds:
        ds.frame(0)
        # The last frame proves the data are all there, except in a compressed ZIP member,
        # where reaching it means decompressing everything (its size is checked when opened).
        if ds.n_frames > 1 and not isinstance(ds, ZipStreamDataset):
            ds.frame(ds.n_frames - 1)
        return {"format": ds.format, "shape": [int(s) for s in ds.shape],
                "dtype": np.dtype(ds.dtype).name}


def _candidates(name: str):
    yield name
    p = Path(name)
    stem, suffix = p.stem, p.suffix
    for i in range(1, 100000):
        yield f"{stem}-{i}{suffix}"


def _place(part: Path, folder: Path, name: str) -> Path:
    """Give ``part`` its final name in ``folder`` atomically, never replacing an existing file.

    A hard link claims the first free name in one step (``scan.h5``, ``scan-1.h5``, ...);
    where the file system has no hard links, an empty placeholder is created exclusively and
    atomically replaced (``os.replace``) by the data.
    """
    for candidate in _candidates(name):
        dest = folder / candidate
        try:
            os.link(part, dest)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK,
                                 errno.EXDEV, errno.ENOSYS):
                raise
            try:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            os.replace(part, dest)
        else:
            os.unlink(part)
        _fsync_dir(folder)
        return dest
    raise Refusal(409, f"{name}: too many files of this name in {folder}")  # pragma: no cover


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
