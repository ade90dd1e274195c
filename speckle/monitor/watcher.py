"""The beamtime monitor: every new dataset in the watched folders analysed once it is complete.

::

    watched folders --(watchdog: inotify, or polling on network file systems)--> events
        + a listing of every folder at start and every rescan_seconds (nothing is missed)
    -> Settling: the file stopped changing      (speckle.monitor.completeness)
    -> probe: no writer holds it, it opens cleanly, its last frame reads
    -> a Dask task: analyse_file(path, template, result folder)   (speckle.monitor.jobs)
    -> state.sqlite row, one index.jsonl line, one printed line, listeners told

Only the monitor's loop thread writes the state database and the index; watchdog's threads only
queue paths. On start the monitor reconciles what it was doing when it stopped (rows waiting,
queued or running) with the index, so a restart analyses nothing twice and loses nothing, and
lists every folder, so files that arrived while it was down are found.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInputError
from .cluster import Executor, open_executor
from .completeness import Settling, ignored_name, probe
from .config import MonitorConfig
from .index import append_index, iso_time, read_index
from .jobs import analyse_file
from .layout import ResultsLayout
from .state import StateDB
from .templates import TemplateStore

__all__ = ["Monitor", "NETWORK_FILESYSTEMS", "filesystem_type", "watch_mode"]

log = logging.getLogger("speckle.monitor")

#: File systems on which inotify does not see other machines' writes: watched by polling.
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph",
                       "beegfs", "glusterfs", "9p", "afs", "panfs", "wekafs", "ocfs2", "gfs2",
                       "virtiofs")
#: Seconds between two turns of the loop.
TICK = 0.1


def filesystem_type(folder) -> str:
    """The type of the file system holding ``folder`` (``"ext4"``, ``"nfs4"``...), or ""."""
    target = os.path.realpath(folder)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if "-" not in fields:
                    continue
                mount = fields[4].replace("\\040", " ")
                kind = fields[fields.index("-") + 1]
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, kind
    except OSError:
        pass
    return fstype


def watch_mode(folder, requested: str = "auto") -> str:
    """``"inotify"`` or ``"polling"`` for ``folder`` (``auto``: polling on network file systems)."""
    if requested != "auto":
        return requested
    kind = filesystem_type(folder)
    return "polling" if kind in NETWORK_FILESYSTEMS or kind.startswith("fuse") else "inotify"


@dataclass
class _Task:
    future: object
    key: str
    folder: str
    size: int
    mtime_ns: int
    completed_at: float
    submitted: float
    template: str
    started: bool = False


class Monitor:
    """Watch folders and analyse every complete dataset (see the module docstring).

    Parameters
    ----------
    config : MonitorConfig
    executor : Executor, optional
        Where analyses run; default :func:`~speckle.monitor.cluster.open_executor` of
        ``config.cluster`` (closed by :meth:`stop`; one given here is left open).
    report : callable, optional
        ``report(line)`` with one line of text per dataset analysed or refused (the command line
        prints them).
    redo : {"never", "template", "all"}
        Files analysed before (same size and time): ``never`` analysed again (watching),
        ``template`` again when the template that applies now differs from the one that made the
        result (reprocessing), ``all`` again (reprocessing with ``--force``). Never twice in one
        run.
    """

    def __init__(self, config: MonitorConfig, *, executor: Executor | None = None,
                 report: Callable[[str], None] | None = None, redo: str = "never"):
        if redo not in ("never", "template", "all"):
            raise ValueError(f"redo must be 'never', 'template' or 'all', not {redo!r}")
        self.redo = redo
        self._finished: set[str] = set()
        self.config = config
        self.layout = ResultsLayout(config.results, config.folders)
        self.templates = TemplateStore(self.layout.templates)
        self.report = report or (lambda line: log.info("%s", line))
        self.executor = executor
        self._own_executor = executor is None
        self.db: StateDB | None = None
        self.modes = {f: watch_mode(f, config.watch) for f in config.folders}
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._settling: dict[str, Settling] = {}
        self._probed: dict[str, float] = {}
        self._tasks: dict[str, _Task] = {}
        self._observers: list = []
        self._listeners: list[Callable[[dict], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_scan = 0.0
        self._next_running_check = 0.0
        self._n_submitted = 0
        self.started_at: float | None = None
        self._lock: int | None = None

    # ---------------------------------------------------------------- life cycle
    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(row)`` (from the monitor's thread) after every change of a row."""
        self._listeners.append(fn)

    def open(self) -> None:
        """Open the results folder and the engine, and pick up what the last run left.

        Raises
        ------
        InvalidInputError
            When another monitor is using the results folder.
        """
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._lock = _hold_lock(self.layout.root / ".monitor.lock")
        self.db = StateDB(self.layout.state)
        if self.executor is None:
            self.executor = open_executor(self.config.cluster, scratch=self.layout.root / ".monitor",
                                          log=log.info)
        self._recover()
        self.started_at = time.time()

    def start(self) -> None:
        """Open, start watching, and run the loop in a background thread."""
        self.open()
        self._start_observers()
        self._thread = threading.Thread(target=self._loop, name="speckle-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and the loop; close the engine if this monitor opened it."""
        self._stop.set()
        for obs in self._observers:
            obs.stop()
        for obs in self._observers:
            obs.join(timeout=5)
        self._observers = []
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        if self._own_executor and self.executor is not None:
            self.executor.close()
            self.executor = None
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def run_forever(self) -> None:
        """Watch in the foreground until interrupted (Ctrl-C or SIGTERM)."""
        self.start()
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def run_once(self, timeout: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> None:
        """Analyse what is in the folders now (waiting for files still being written), then stop.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait at most.
        progress : callable, optional
            ``progress(done, total)`` after every turn of the loop.

        Raises
        ------
        TimeoutError
            When it has not finished within ``timeout`` seconds.
        """
        self.open()
        end = None if timeout is None else time.monotonic() + timeout
        try:
            self.tick()
            while True:
                if progress is not None:
                    progress(len(self._finished), len(self._finished) + self.pending())
                if self.idle():
                    break
                if end is not None and time.monotonic() > end:
                    raise TimeoutError(f"not finished within {timeout:g} s")
                time.sleep(TICK)
                self.tick()
        finally:
            self.stop()

    def pending(self) -> int:
        """Files waiting to be complete, queued or running."""
        return len(self._settling) + len(self._tasks)

    def idle(self) -> bool:
        """True when nothing is waiting, queued or running."""
        return not self._settling and not self._tasks and self._events.empty()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the monitor must go on; the log says what broke
                log.exception("the monitor's loop failed; going on")
                self._stop.wait(1.0)
            self._stop.wait(TICK)

    # ---------------------------------------------------------------- watching
    def _start_observers(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.inotify import InotifyObserver
        from watchdog.observers.polling import PollingObserver

        queue_ = self._events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type in ("opened", "closed_no_write"):
                    return
                queue_.put(os.fsdecode(event.src_path))
                dest = getattr(event, "dest_path", "")
                if dest:
                    queue_.put(os.fsdecode(dest))

        for folder, mode in self.modes.items():
            if mode == "polling":
                obs = PollingObserver(timeout=self.config.poll_interval)
            else:
                obs = InotifyObserver()
            try:
                obs.schedule(Handler(), folder, recursive=True)
                obs.start()
            except OSError as exc:  # inotify limits (max_user_watches) reached
                log.warning("cannot watch %s with inotify (%s): polling it instead", folder, exc)
                self.modes[folder] = "polling"
                obs = PollingObserver(timeout=self.config.poll_interval)
                obs.schedule(Handler(), folder, recursive=True)
                obs.start()
            self._observers.append(obs)
        for folder, mode in self.modes.items():
            log.info("watching %s (%s)", folder, mode)

    # ---------------------------------------------------------------- the loop
    def tick(self) -> None:
        """One turn: take events, list folders when due, check settling files, collect results."""
        now = time.monotonic()
        seen = set()
        while True:
            try:
                path = self._events.get_nowait()
            except queue.Empty:
                break
            if path not in seen:
                seen.add(path)
                self._consider(path)
        if now >= self._next_scan:
            self._next_scan = now + self.config.rescan_seconds
            self._scan()
        self._check_settling()
        self._collect()
        if self._tasks and now >= self._next_running_check:
            self._next_running_check = now + 0.5
            self._mark_running()

    def _scan(self) -> None:
        """List every folder: files new or changed since the state says are considered."""
        known = self.db.stamps()
        for folder in self.config.folders:
            for path, st in _walk(folder):
                if path in self._settling or path in self._tasks or path in self._finished:
                    continue
                k = known.get(path)
                if k and k[:2] == (st.st_size, st.st_mtime_ns) and not self._redo(path, *k[2:]):
                    continue
                self._settling[path] = Settling.first(st)

    def _redo(self, path: str, state: str, digest: str | None) -> bool:
        """Whether a file seen before, unchanged since, is analysed again (see ``redo``)."""
        if state not in ("done", "failed", "ignored"):
            return True
        if state == "ignored" or self.redo == "never":
            return False
        return self.redo == "all" or digest != self._template(path).digest()

    def _consider(self, path: str) -> None:
        """A path an event named: a new or changed file, a folder moved in, or a removal."""
        if ignored_name(os.path.basename(path)) or self.layout.folder_of(path) is None:
            return
        if not _utf8(path):
            return
        try:
            st = os.lstat(path)  # links are not followed (as when listing): data are files
        except OSError:
            self._gone(path)
            return
        if stat.S_ISDIR(st.st_mode):
            for sub, sub_st in _walk(path):
                self._touch(sub, sub_st)
        elif stat.S_ISREG(st.st_mode):
            self._touch(path, st)

    def _touch(self, path: str, st: os.stat_result) -> None:
        settling = self._settling.get(path)
        if settling is not None:
            settling.look(st)
            return
        task = self._tasks.get(path)
        if task is not None and (task.size, task.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return
        row = self.db.get(path)
        if row and (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns) \
                and row["state"] in ("done", "failed", "ignored") and task is None:
            return
        self._settling[path] = Settling.first(st)
        self._settling[path].first_look = False  # an event: it is being written now

    def _gone(self, path: str) -> None:
        if self._settling.pop(path, None) is not None:
            row = self.db.get(path)
            if row is not None and row["state"] == "waiting":
                self._put(path, state="ignored", note="removed before it was complete")

    def _check_settling(self) -> None:
        now = time.monotonic()
        cfg = self.config
        for path, s in list(self._settling.items()):
            if path in self._tasks:
                continue  # rewritten while being analysed: its turn comes when that ends
            try:
                st = os.stat(path)
            except OSError:
                self._gone(path)
                continue
            if s.look(st, now) or not s.settled(cfg.settle_seconds, now):
                self._waiting(path, s, "being written (still changing)")
                continue
            if now - self._probed.get(path, -1e9) < max(0.5, min(cfg.settle_seconds, 2.0)):
                continue
            self._probed[path] = now
            tmpl = self._template(path)
            result = probe(path, dataset=tmpl.xpcs.dataset)
            if result.state == "complete":
                del self._settling[path]
                self._probed.pop(path, None)
                self._submit(path, s, tmpl)
            elif result.state == "not-data":
                del self._settling[path]
                self._probed.pop(path, None)
                self._put(path, folder=self.layout.folder_of(path), size=s.size,
                          mtime_ns=s.mtime_ns, state="ignored", note=result.reason)
            elif result.state == "writing" and s.quiet_for(now) < cfg.writer_timeout_seconds:
                self._waiting(path, s, f"being written: {result.reason}")
            elif result.state == "unreadable" and s.quiet_for(now) < cfg.give_up_seconds:
                reason = result.reason.removeprefix(f"{path}: ")
                self._waiting(path, s, f"not readable yet: {reason}")
            else:
                del self._settling[path]
                self._probed.pop(path, None)
                self._refuse(path, s, result.reason)

    def _waiting(self, path: str, s: Settling, note: str) -> None:
        row = self.db.get(path)
        if row is None or row["state"] != "waiting" or row["note"] != note \
                or (row["size"], row["mtime_ns"]) != (s.size, s.mtime_ns):
            self._put(path, folder=self.layout.folder_of(path), size=s.size, mtime_ns=s.mtime_ns,
                      state="waiting", note=note, error=None)

    def _template(self, path: str):
        return self.templates.for_path(path) or self.config.template

    def _submit(self, path: str, s: Settling, tmpl) -> None:
        now = time.time()
        self._n_submitted += 1
        digest = tmpl.digest()
        key = f"speckle-analyse-{abs(hash((path, s.size, s.mtime_ns)))}-{self._n_submitted}"
        result_dir = str(self.layout.result_folder(path))
        future = self.executor.submit(analyse_file, path, tmpl.to_dict(), result_dir,
                                      self.config.max_seconds, key=key, priority=int(now))
        self._tasks[path] = _Task(future, key, self.layout.folder_of(path), s.size, s.mtime_ns,
                                  now, time.monotonic(), digest)
        self._put(path, folder=self.layout.folder_of(path), size=s.size, mtime_ns=s.mtime_ns,
                  state="queued", completed_at=now, template=digest, note=None, error=None,
                  started_at=None, finished_at=None)

    def _mark_running(self) -> None:
        running = self.executor.running()
        for path, task in self._tasks.items():
            if not task.started and task.key in running:
                task.started = True
                self._put(path, state="running", started_at=time.time())

    def _collect(self) -> None:
        limit = self.config.max_seconds + 120
        for path, task in list(self._tasks.items()):
            if not task.future.done():
                if time.monotonic() - task.submitted > limit and task.started:
                    self.executor.cancel(task.future, task.key)
                    self._finish(path, task, {"path": path, "error": (
                        f"the analysis did not finish within {limit:g} s and was stopped")})
                continue
            try:
                outcome = task.future.result()
            except BaseException as exc:  # noqa: BLE001 - a worker that died, a cancelled task
                outcome = {"path": path, "error": _task_failure(exc)}
            self._finish(path, task, outcome)

    def _finish(self, path: str, task: _Task, outcome: dict) -> None:
        self._tasks.pop(path, None)
        self._finished.add(path)
        if outcome.get("error"):  # the entry names the file already
            outcome = {**outcome, "error": outcome["error"].removeprefix(f"{path}: ")}
        done = time.time()
        entry = {"path": path, "kind": outcome.get("kind")}
        if outcome.get("error"):
            entry["error"] = outcome["error"]
        else:
            entry.update({k: outcome.get(k) for k in ("verdict", "summary", "conclusion", "action")})
        entry.update(result=outcome.get("result"), completed_at=iso_time(task.completed_at),
                     finished_at=iso_time(done), size=task.size, mtime_ns=task.mtime_ns,
                     template=task.template)
        append_index(self.layout.index, entry)
        self._put(path, state="failed" if outcome.get("error") else "done",
                  kind=outcome.get("kind"), verdict=outcome.get("verdict"),
                  summary=outcome.get("summary"), conclusion=outcome.get("conclusion"),
                  action=outcome.get("action"), error=outcome.get("error"),
                  result=outcome.get("result"), finished_at=done,
                  attempts=(self.db.get(path) or {}).get("attempts", 0) + 1)
        self.report(_line(entry, self.layout.folder_of(path), outcome.get("elapsed_s")))

    def _refuse(self, path: str, s: Settling, reason: str) -> None:
        self._finished.add(path)
        reason = reason.removeprefix(f"{path}: ")
        now = time.time()
        entry = {"path": path, "kind": None, "error": reason, "result": None,
                 "completed_at": None, "finished_at": iso_time(now), "size": s.size,
                 "mtime_ns": s.mtime_ns}
        append_index(self.layout.index, entry)
        self._put(path, folder=self.layout.folder_of(path), size=s.size, mtime_ns=s.mtime_ns,
                  state="failed", error=reason, finished_at=now, note=None)
        self.report(_line(entry, self.layout.folder_of(path), None))

    def _put(self, path: str, **values) -> dict:
        row = self.db.put(path, **values)
        for fn in self._listeners:
            try:
                fn(row)
            except Exception:  # noqa: BLE001 - a listener's failure is not the monitor's
                log.exception("a monitor listener failed")
        return row

    # ---------------------------------------------------------------- restart
    def _recover(self) -> None:
        """Rows left waiting, queued or running by the last run: finished ones (their index line
        written) are marked done from the index; the others are looked at again."""
        pending = self.db.rows(states=("waiting", "queued", "running"))
        if not pending:
            return
        written = {}
        for entry in read_index(self.layout.index):
            key = (entry.get("path"), entry.get("size"), entry.get("mtime_ns"), entry.get("template"))
            written[key] = entry
        for row in pending:
            entry = written.get((row["path"], row["size"], row["mtime_ns"], row["template"]))
            if entry is not None and row["state"] != "waiting":
                failed = bool(entry.get("error"))
                self._put(row["path"], state="failed" if failed else "done",
                          kind=entry.get("kind"), verdict=entry.get("verdict"),
                          summary=entry.get("summary"), conclusion=entry.get("conclusion"),
                          action=entry.get("action"), error=entry.get("error"),
                          result=entry.get("result"), finished_at=time.time())
                continue
            try:
                st = os.stat(row["path"])
            except OSError:
                self._put(row["path"], state="ignored", note="removed while the monitor was down")
                continue
            self._settling[row["path"]] = Settling.first(st)

    # ---------------------------------------------------------------- what the page shows
    def status(self) -> dict:
        """Folders and how they are watched, queue counts, workers, template problems."""
        counts = self.db.counts() if self.db is not None else {}
        return {
            "folders": [{"path": f, "mode": m, "label": self.layout.labels[f]}
                        for f, m in self.modes.items()],
            "results": str(self.layout.root),
            "counts": counts,
            "settling": len(self._settling),
            "in_progress": len(self._tasks),
            "engine": getattr(self.executor, "description", ""),
            "workers": self.executor.workers() if self.executor is not None else [],
            "template_problems": self.templates.problems(),
            "started_at": iso_time(self.started_at),
        }


def _hold_lock(path) -> int:
    """Hold an exclusive lock on ``path`` for as long as the returned descriptor stays open."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise InvalidInputError(
            f"another monitor (pid {holder}) is using the results folder {os.path.dirname(path)}: "
            "stop it first, or give another --results folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _walk(folder: str):
    """(path, stat) of every regular file below ``folder``, hidden and temporary ones left out."""
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for e in entries:
            if ignored_name(e.name) or not _utf8(e.path):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    yield e.path, e.stat(follow_symlinks=False)
            except OSError:
                continue


def _utf8(path: str) -> bool:
    """Whether a path's name can be stored and shown (a name of bytes that are not UTF-8 cannot:
    it is left out, and said once in the log)."""
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        if path not in _NOT_UTF8:
            _NOT_UTF8.add(path)
            log.warning("left out, its name is not UTF-8 text: %r", path)
        return False


_NOT_UTF8: set[str] = set()


def _task_failure(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("the worker analysing it died (most often: out of memory); analyse it in a "
                "dashboard, or give the workers more memory (monitor.cluster.memory)")
    if name in ("CancelledError", "FutureCancelledError"):
        return "the analysis was cancelled (the cluster restarted or went away)"
    return f"the analysis failed on its worker ({name}: {' '.join(str(exc).split())})"


def _line(entry: dict, folder: str | None, elapsed) -> str:
    """One printed line per dataset."""
    when = time.strftime("%H:%M:%S")
    rel = os.path.relpath(entry["path"], folder) if folder else entry["path"]
    if entry.get("error"):
        return f"{when}  {'REFUSED':<8} {entry.get('kind') or '-':<4}  {rel}: {entry['error']}"
    took = f" ({elapsed:.1f} s)" if isinstance(elapsed, (int, float)) else ""
    text = entry.get("conclusion") or entry.get("summary") or ""
    action = f" -> {entry['action']}" if entry.get("action") else ""
    return (f"{when}  {(entry.get('verdict') or '?').upper():<8} {entry.get('kind'):<4}  {rel}: "
            f"{text}{action}{took}; result: {entry.get('result')}")

