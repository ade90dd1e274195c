"""The Beamtime service: the monitor running, and its live page for hub users.

Routes (under the service prefix, ``/services/beamtime/``), every one for logged-in hub users
only (the hub's OAuth; API calls may also carry a hub token, as the dashboards' kernels do):

``GET  ./``                     the page (``page.html``, ``beamtime.js``, ``beamtime.css``)
``GET  api/datasets?since=N&wait=S``  rows changed after ``seq`` N, waiting up to S s for one
                                (the page's live updates: a long poll, answered within a moment
                                of a change); with the monitor's status (queue, workers, folders)
``GET  api/file?path=P&name=F`` a file of P's result folder (thumbnail, small g2, downloads)
``GET  api/templates?folder=D`` the template that applies to D
``POST api/templates``          ``{"folder": D, "template": {...}}``: D's template from now on
                                (the dashboards' "Use for new files in this folder")

The monitor runs in this process (a thread; the analyses on Dask workers). Rows are read from
its state database through a connection of the page's own.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
import signal
import threading
import time
from pathlib import Path

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.locks import Condition

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join

from ..lifetime import die_with_parent
from . import DASHBOARD_FOR

log = logging.getLogger("speckle.beamtime")
HERE = Path(__file__).resolve().parent
#: Files of a result folder the page may serve.
SERVED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.(png|json|h5|csv|zip|yaml)$")
#: Longest wait of one long poll (s): under the proxy's and browsers' idle timeouts.
LONGEST_WAIT = 25.0
#: Rows sent on a page's first load (the newest).
FIRST_ROWS = 2000


class Live:
    """The monitor, its state as the page reads it, and a condition the page's polls wait on."""

    def __init__(self, config: dict, loop: IOLoop):
        from speckle.monitor import Monitor, MonitorConfig
        from speckle.monitor.state import StateDB

        self.loop = loop
        self.changed = Condition()
        self.error = ""
        self.monitor = None
        self.db = None
        self.demo = bool(os.environ.get("SPECKLE_MONITOR_DEMO"))
        try:
            self.config = MonitorConfig.from_dict(config)
            self.monitor = Monitor(self.config, report=lambda line: log.info("%s", line))
        except Exception as exc:  # noqa: BLE001 - the page says why instead of the service dying
            self.error = f"The monitor cannot start: {' '.join(str(exc).split())}"
            log.error("%s", self.error)
            return
        self.monitor.add_listener(lambda _row: loop.add_callback(self.changed.notify_all))
        self._state_path = self.monitor.layout.state
        self._summaries: dict[tuple, dict] = {}
        self.StateDB = StateDB

    def start(self) -> None:
        """Start the monitor (its Dask cluster takes a few seconds: called off the event loop)."""
        if self.monitor is None:
            return
        try:
            self.monitor.start()
            self.db = self.StateDB(self._state_path, readonly=True)
        except Exception as exc:  # noqa: BLE001
            self.error = f"The monitor cannot start: {' '.join(str(exc).split())}"
            log.exception("the monitor failed to start")
        self.loop.add_callback(self.changed.notify_all)

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()

    # ---------------------------------------------------------------- what the page gets
    def status(self) -> dict:
        if self.monitor is None or self.monitor.db is None:
            return {"error": self.error, "starting": not self.error, "demo": self.demo}
        out = self.monitor.status()
        out.update(error=self.error, starting=False, demo=self.demo)
        return out

    def rows(self, since: int) -> tuple[int, list[dict]]:
        if self.db is None:
            return 0, []
        seq = self.db.last_seq()
        rows = self.db.rows(since=since, limit=FIRST_ROWS if since == 0 else None,
                            newest_first=since == 0)
        return seq, [self._public(r) for r in rows]

    def _public(self, row: dict) -> dict:
        folder = row["folder"]
        label = self.monitor.layout.labels.get(folder, os.path.basename(folder or ""))
        out = {k: row[k] for k in ("path", "state", "kind", "verdict", "summary", "conclusion",
                                   "action", "error", "note", "seq", "first_seen", "completed_at",
                                   "finished_at", "result")}
        out["folder"] = label
        out["name"] = os.path.relpath(row["path"], folder) if folder else row["path"]
        out["dashboard"] = DASHBOARD_FOR.get(row["kind"] or "")
        if row["state"] == "done" and row["result"]:
            out.update(self._summary(row))
        return out

    def _summary(self, row: dict) -> dict:
        key = (row["path"], row["seq"])
        cached = self._summaries.get(key)
        if cached is None:
            try:
                s = json.loads((Path(row["result"]) / "summary.json").read_text())
            except (OSError, ValueError):
                s = {}
            cached = {"frames": s.get("frames"), "frame_shape": s.get("frame_shape"),
                      "reason": s.get("reason"),
                      "files": sorted(p.name for p in Path(row["result"]).glob("*")
                                      if SERVED.match(p.name))}
            if len(self._summaries) > 20000:
                self._summaries.clear()
            self._summaries[key] = cached
        return cached


class _Handler(HubOAuthenticated, web.RequestHandler):
    @property
    def live(self) -> Live:
        return self.settings["live"]

    def user_name(self) -> str:
        return self.current_user["name"]

    def write_json(self, value, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(value, allow_nan=False))

    def refuse(self, status: int, message: str) -> None:
        self.write_json({"error": message}, status)


class PageHandler(_Handler):
    @web.authenticated
    def get(self):
        prefix = self.settings["prefix"]
        hub = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        page = (HERE / "page.html").read_text(encoding="utf-8")
        # the page's requests are fetches: the hub's XSRF check wants this token with each
        values = {"prefix": prefix, "hub": hub, "user": self.user_name(),
                  "static": url_path_join(prefix, "static/"), "xsrf": self.xsrf_token.decode()}
        for key, value in values.items():
            page = page.replace("{{" + key + "}}", _html(value))
        self.set_header("Cache-Control", "no-store")
        self.finish(page)


class DatasetsHandler(_Handler):
    @web.authenticated
    async def get(self):
        try:
            since = max(0, int(self.get_argument("since", "0")))
            wait = min(max(0.0, float(self.get_argument("wait", "0"))), LONGEST_WAIT)
        except ValueError:
            return self.refuse(400, "since and wait are numbers")
        seq, rows = self.live.rows(since)
        if not rows and wait > 0:
            await self.live.changed.wait(timeout=time.time() + wait)
            seq, rows = self.live.rows(since)
        self.write_json({"seq": seq, "rows": rows, "status": self.live.status(),
                         "now": time.time()})


class FileHandler(_Handler):
    @web.authenticated
    async def get(self):
        path, name = self.get_argument("path", ""), self.get_argument("name", "")
        db = self.live.db
        row = db.get(path) if db is not None else None
        if row is None or not row["result"] or not SERVED.match(name):
            raise web.HTTPError(404)
        folder = Path(row["result"]).resolve()
        target = (folder / name).resolve()
        if target.parent != folder or not target.is_file():
            raise web.HTTPError(404)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.set_header("Content-Type", kind)
        if not name.endswith((".png", ".json")):
            stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(path))
            self.set_header("Content-Disposition", f'attachment; filename="{stem}-{name}"')
        self.set_header("Cache-Control", "private, max-age=60")
        with open(target, "rb") as fh:
            while chunk := fh.read(1 << 20):
                self.write(chunk)
                await self.flush()
        self.finish()


class TemplatesHandler(_Handler):
    def _folder(self, text: str) -> str | None:
        monitor = self.live.monitor
        if monitor is None or not text:
            return None
        folder = os.path.normpath(text)
        if not os.path.isabs(folder) or monitor.layout.folder_of(folder) is None or not os.path.isdir(folder):
            return None
        return folder

    @web.authenticated
    def get(self):
        folder = self._folder(self.get_argument("folder", ""))
        if folder is None:
            return self.refuse(404, "not a folder the monitor watches")
        monitor = self.live.monitor
        own = monitor.templates.for_path(os.path.join(folder, "x"))
        template = own or monitor.config.template
        self.write_json({"folder": folder, "template": template.to_dict(),
                         "own": own is not None and own.folder == folder})

    @web.authenticated
    def post(self):
        from speckle.errors import InvalidInputError
        from speckle.monitor.templates import Template

        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            return self.refuse(400, "the request is not JSON")
        if not isinstance(body, dict):
            return self.refuse(400, "send {\"folder\": ..., \"template\": {...}}")
        folder = self._folder(str(body.get("folder") or ""))
        if folder is None:
            return self.refuse(400, f"{body.get('folder')!r} is not a folder the monitor watches")
        try:
            template = Template.from_dict(body.get("template"))
            template = template.stamped(folder=folder, saved_by=self.user_name())
            path = self.live.monitor.templates.save(template)
        except InvalidInputError as exc:
            return self.refuse(400, " ".join(str(exc).split()))
        except OSError as exc:
            return self.refuse(500, f"could not save the template: {exc.strerror or exc}")
        log.info("%s saved the template of %s (%s)", self.user_name(), folder, path)
        self.write_json({"folder": folder, "file": str(path), "template": template.to_dict()})


def _html(value: str) -> str:
    import html

    return html.escape(str(value), quote=True)


def make_app(live: Live, prefix: str) -> web.Application:
    """The service's tornado application under ``prefix``."""
    api = lambda path: url_path_join(prefix, path)  # noqa: E731
    return web.Application(
        [
            (prefix, PageHandler),
            (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix}),
            (api("oauth_callback"), HubOAuthCallbackHandler),
            (api("api/datasets"), DatasetsHandler),
            (api("api/file"), FileHandler),
            (api("api/templates"), TemplatesHandler),
            (api("static/(.*)"), web.StaticFileHandler, {"path": str(HERE / "static")}),
        ],
        cookie_secret=os.urandom(32), live=live, prefix=prefix,
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[%(levelname).1s %(asctime)s beamtime] %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    die_with_parent()  # no orphan watching the folders once the hub that started it is gone
    from urllib.parse import urlparse

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/beamtime/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8082"))
    config = json.loads(os.environ.get("SPECKLE_MONITOR_CONFIG", "{}"))
    loop = IOLoop.current()
    live = Live(config, loop)
    server = HTTPServer(make_app(live, prefix), xheaders=True)
    server.listen(url.port or 80, url.hostname or "127.0.0.1")
    log.info("Beamtime page at %s", prefix)
    threading.Thread(target=live.start, name="monitor-start", daemon=True).start()

    def shutdown(*_):
        log.info("stopping the monitor")
        server.stop()
        threading.Thread(target=lambda: (live.stop(), loop.add_callback(loop.stop)), daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.asyncio_loop.add_signal_handler(signum, shutdown)
    loop.start()

