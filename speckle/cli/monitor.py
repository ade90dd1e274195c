"""``speckle watch`` and ``speckle reprocess``: the beamtime monitor from the command line.

``speckle watch FOLDER... --results DIR`` analyses every new dataset in the folders as it lands
(in the foreground, one printed line per dataset; ``--once`` analyses what is there and exits).
``speckle reprocess FOLDER... --results DIR`` analyses a whole beamtime again, for example with a
corrected q-map, on the same Dask cluster, with a progress bar; run it again after an
interruption and it goes on where it stopped. Both take the analysis as a template file
(``--template FILE``) or as ``speckle xpcs``'s options (``--qmap Q.h5 --frame-time 1ms``...).
"""

from __future__ import annotations

import signal
import sys
import time

from ..errors import InvalidInputError
from ..units import parse_quantity
from .xpcs import add_recipe_arguments, recipe_from_args

__all__ = ["add_parsers"]

#: The subcommands this module adds (``speckle watch`` builds only these parsers).
COMMANDS = ("watch", "reprocess")


def _recipe_dests(parser) -> list:
    before = set(map(id, parser._actions))
    add_recipe_arguments(parser)
    return [a for a in parser._actions if id(a) not in before]


def _common(p) -> list:
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="beamline data folders")
    p.add_argument("--results", required=True, metavar="DIR",
                   help="results folder (state, index.jsonl, templates, one folder per dataset); "
                        "never inside a data folder")
    t = p.add_argument_group("the analysis (default: recognised from each file's content, "
                             "XPCS with automatic q-rings)")
    t.add_argument("--template", metavar="FILE",
                   help="an analysis template (YAML; the dashboards' 'Use for new files in this "
                        "folder' writes them), instead of the options below")
    t.add_argument("--kind", choices=("auto", "xpcs", "fth", "cdi"), default=None,
                   help="what the files are (default: recognised from the content)")
    actions = _recipe_dests(p)
    c = p.add_argument_group("where analyses run (Dask)")
    c.add_argument("--cluster", default="local",
                   choices=("local", "slurm", "gateway", "scheduler", "process"),
                   help="local: a Dask LocalCluster on this machine (default); slurm: workers as "
                        "Slurm jobs (dask-jobqueue); gateway/scheduler: the Dask gateway or "
                        "scheduler at --address; process: no Dask, one at a time")
    c.add_argument("--workers", type=int, help="workers (local) or worker jobs (slurm, gateway)")
    c.add_argument("--memory", help="memory per worker, e.g. 8GB")
    c.add_argument("--address", help="the dask-gateway or scheduler address")
    c.add_argument("--gateway-auth", choices=("jupyterhub", "basic", "kerberos"),
                   help="how to log in to the dask-gateway (default: its dask configuration)")
    c.add_argument("--queue", help="Slurm partition")
    c.add_argument("--walltime", default="08:00:00", help="Slurm time limit per worker job")
    c.add_argument("--max-seconds", default="1800s",
                   help="stop an analysis after this long (default 1800s)")
    return actions


def add_parsers(sub) -> None:
    """Add the ``watch`` and ``reprocess`` subcommands to an argparse subparsers object."""
    w = sub.add_parser("watch", help="analyse every new dataset in folders as it lands",
                       description="The beamtime monitor: every new dataset in the folders "
                                   "analysed once it is complete, one line printed per dataset, "
                                   "results and DIR/index.jsonl written as they come.")
    w.set_defaults(recipe_actions=_common(w), run=_run_watch)
    g = w.add_argument_group("watching")
    g.add_argument("--once", action="store_true",
                   help="analyse what is there (waiting for files still being written), then exit")
    g.add_argument("--settle", default="2s",
                   help="a file is complete once unchanged this long and it opens (default 2s)")
    g.add_argument("--watch", default="auto", choices=("auto", "inotify", "polling"),
                   help="auto: inotify on local disks, polling on network file systems")
    g.add_argument("--poll-interval", default="1s", help="seconds between looks when polling")

    r = sub.add_parser("reprocess", help="analyse a whole beamtime again (resumable)",
                       description="Analyse every dataset in the folders again, on the same Dask "
                                   "cluster, with a progress bar. Interrupted, it goes on where "
                                   "it stopped; datasets already analysed with the same template "
                                   "are skipped unless --force.")
    r.set_defaults(recipe_actions=_common(r), run=_run_reprocess)
    r.add_argument("--force", action="store_true", help="analyse every dataset again")


def _template(args):
    from ..monitor.templates import Template, load_template

    given = [a.option_strings[0] for a in args.recipe_actions
             if getattr(args, a.dest) != a.default]
    if args.template:
        if given:
            raise InvalidInputError(f"give the analysis as --template or as options "
                                    f"({', '.join(given)}), not both")
        t = load_template(args.template)
        return t if args.kind is None else Template.from_dict({**t.to_dict(), "kind": args.kind})
    return Template(kind=args.kind or "auto", xpcs=recipe_from_args(args))


def _config(args, **extra):
    from ..monitor.config import MonitorConfig

    cluster = {"type": args.cluster, "workers": args.workers, "memory": args.memory,
               "address": args.address, "queue": args.queue, "walltime": args.walltime,
               "auth": args.gateway_auth}
    return MonitorConfig.from_dict({
        "folders": args.folders, "results": args.results, "template": _template(args).to_dict(),
        "cluster": {k: v for k, v in cluster.items() if v is not None},
        "max_seconds": parse_quantity(args.max_seconds, "time"), **extra})


def _sigterm_to_interrupt() -> None:
    def handler(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _print(line: str) -> None:
    print(line, flush=True)


def _run_watch(args) -> int:
    from ..monitor.watcher import Monitor

    config = _config(args, settle_seconds=parse_quantity(args.settle, "time"), watch=args.watch,
                     poll_interval=parse_quantity(args.poll_interval, "time"))
    monitor = Monitor(config, report=_print)
    if args.once:
        monitor.run_once()
        return 0
    _sigterm_to_interrupt()
    for folder, mode in monitor.modes.items():
        print(f"watching {folder} ({mode}); results in {config.results}", flush=True)
    try:
        monitor.run_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def _run_reprocess(args) -> int:
    from ..monitor.watcher import Monitor

    config = _config(args, settle_seconds=0.0)
    bar = _ProgressBar(sys.stderr)
    monitor = Monitor(config, report=bar.line, redo="all" if args.force else "template")
    _sigterm_to_interrupt()
    try:
        monitor.run_once(progress=bar.update)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: run the same command again to go on", file=sys.stderr)
        return 130
    bar.close()
    return 0


class _ProgressBar:
    """A progress line on a terminal (redrawn), or a line per tenth elsewhere."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.t0 = time.monotonic()
        self.last = (-1, -1)
        self.failed = 0

    def line(self, text: str) -> None:
        if " REFUSED " in text:
            self.failed += 1
        if self.tty:
            self.stream.write("\r\033[K")
        print(text, flush=True)

    def update(self, done: int, total: int) -> None:
        if (done, total) == self.last:
            return
        if not self.tty and total and (done * 10 // total == self.last[0] * 10 // max(self.last[1], 1)
                                       and done != total):
            self.last = (done, total)
            return
        self.last = (done, total)
        width = 30
        filled = int(width * done / total) if total else width
        elapsed = time.monotonic() - self.t0
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} datasets"
                f"{f', {self.failed} refused' if self.failed else ''}, {elapsed:.0f} s")
        self.stream.write(("\r\033[K" + text) if self.tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
