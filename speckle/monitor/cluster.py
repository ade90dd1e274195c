"""Where the monitor's analyses run: Dask, on this machine or a cluster the settings name.

:class:`ClusterSpec` says which engine; :func:`open_executor` starts or joins it and returns an
:class:`Executor` the monitor hands tasks to:

``local``      a Dask ``LocalCluster`` on this machine (the default): one worker per GPU when
               there are GPUs (each pinned to its GPU), else about one per two cores; each worker
               a process with one thread (an analysis uses the cores its worker has)
``slurm``      workers as Slurm jobs through ``dask-jobqueue``'s ``SLURMCluster``
``gateway``    a cluster from a ``dask-gateway`` server (its address in ``address``)
``scheduler``  an existing Dask scheduler (``address``, e.g. ``tcp://10.0.5.21:8786``)
``process``    no Dask: one analysis at a time in a thread of this process (for debugging, and
               the one-process baseline the benchmark compares with)

Results do not depend on the engine: a task is a call of
:func:`speckle.monitor.jobs.analyse_file` with plain arguments, and it writes its own result
folder.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InvalidInputError

__all__ = ["CLUSTER_TYPES", "ClusterSpec", "Executor", "detect_gpus", "open_executor"]

CLUSTER_TYPES = ("local", "slurm", "gateway", "scheduler", "process")


@dataclass(frozen=True)
class ClusterSpec:
    """Which engine runs the analyses (see the module docstring).

    Attributes
    ----------
    type : {"local", "slurm", "gateway", "scheduler", "process"}
    workers : int or None
        Workers (local), or Slurm jobs / gateway workers to keep; None: the machine's share.
    memory : str or None
        Memory per worker (``"4GB"``); None: a share of this machine's memory (local) or 4GB.
    address : str or None
        The dask-gateway server or the scheduler (``gateway``, ``scheduler``).
    queue, walltime, cores, account : optional
        Slurm partition, time limit per worker job (``"08:00:00"``), cores per job, account.
    job_extra : tuple of str
        More ``#SBATCH`` directives (``"--gres=gpu:1"``).
    interface : str or None
        Network interface the workers and scheduler use (Slurm; ``"lo"`` on one machine).
    gpus : {"auto", "none"}
        Local: one worker per GPU pinned to it when GPUs are found ("auto"), or ignore them.
    auth : {"jupyterhub", "basic", "kerberos"} or None
        How to log in to a dask-gateway (its kwargs from dask's configuration, e.g.
        ``DASK_GATEWAY__AUTH__KWARGS__PASSWORD``); ``jupyterhub`` uses the hub token of the
        service the monitor runs as. None: dask-gateway's configured default.
    """

    type: str = "local"
    workers: int | None = None
    memory: str | None = None
    address: str | None = None
    queue: str | None = None
    walltime: str = "08:00:00"
    cores: int = 1
    account: str | None = None
    job_extra: tuple = ()
    interface: str | None = None
    gpus: str = "auto"
    auth: str | None = None

    def __post_init__(self):
        if self.type not in CLUSTER_TYPES:
            raise InvalidInputError(f"cluster type must be one of {', '.join(CLUSTER_TYPES)}, "
                                    f"not {self.type!r}")
        if self.type in ("gateway", "scheduler") and not self.address:
            raise InvalidInputError(f"cluster type {self.type!r} needs its address")
        if self.workers is not None and int(self.workers) < 1:
            raise InvalidInputError("cluster workers must be at least 1")
        if self.gpus not in ("auto", "none"):
            raise InvalidInputError("cluster gpus must be 'auto' or 'none'")
        if self.auth not in (None, "jupyterhub", "basic", "kerberos"):
            raise InvalidInputError(f"cluster auth must be jupyterhub, basic or kerberos, not "
                                    f"{self.auth!r}")
        object.__setattr__(self, "job_extra", tuple(str(x) for x in self.job_extra))

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "ClusterSpec":
        """Read settings (every key optional; unknown keys refused by name)."""
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - names)
        if extra:
            raise InvalidInputError(f"cluster: unknown key {extra[0]!r}; known: {', '.join(sorted(names))}")
        if "job_extra" in d:
            d["job_extra"] = tuple(d["job_extra"] or ())
        return cls(**d)


def detect_gpus() -> list[str]:
    """UUIDs of this machine's NVIDIA GPUs (``nvidia-smi``), or [] when there are none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=uuid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().startswith("GPU-")]


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


class Executor:
    """Runs tasks somewhere and says what runs (a thin layer over a Dask client).

    Attributes
    ----------
    description : str
        What it is, in words ("Dask LocalCluster, 2 workers").
    """

    description = ""

    def submit(self, fn, *args, key: str, priority: int = 0):
        """Start ``fn(*args)``; returns a future with ``done()``, ``result()``, ``cancel()``."""
        raise NotImplementedError

    def running(self) -> set[str]:
        """Keys of the tasks a worker is processing now."""
        raise NotImplementedError

    def workers(self) -> list[dict]:
        """One dict per worker: ``name``, ``threads``, ``memory_limit`` (bytes or None),
        ``busy`` (tasks in hand)."""
        raise NotImplementedError

    def cancel(self, future, key: str | None = None) -> None:
        """Give up a task; a worker stuck in it is restarted where the engine can."""
        future.cancel()

    def close(self) -> None:
        """Stop what this executor started (a cluster it joined is left running)."""


_CLOSED: list = []


class ProcessExecutor(Executor):
    """No Dask: one task at a time in a thread of this process."""

    def __init__(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="speckle-monitor")
        self._running: set[str] = set()
        self.description = "this process, one analysis at a time (no Dask)"

    def submit(self, fn, *args, key: str, priority: int = 0):
        def call():
            self._running.add(key)
            try:
                return fn(*args)
            finally:
                self._running.discard(key)

        return self._pool.submit(call)

    def running(self) -> set[str]:
        return set(self._running)

    def workers(self) -> list[dict]:
        return [{"name": "this process", "threads": 1, "memory_limit": None,
                 "busy": len(self._running)}]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class _PinGpu:
    """Dask worker plugin: worker ``i`` of a local cluster sees only GPU ``i`` (by UUID).

    It runs when a worker starts, before any task could initialise CUDA in that process.
    """

    name = "speckle-pin-gpu"

    def __init__(self, uuids: list[str]):
        self.uuids = list(uuids)

    def setup(self, worker) -> None:
        try:
            index = int(worker.name)
        except (TypeError, ValueError):
            index = abs(hash(worker.name))
        os.environ["CUDA_VISIBLE_DEVICES"] = self.uuids[index % len(self.uuids)]

    def teardown(self, worker) -> None:
        pass


def _warm_worker() -> None:
    """Run a tiny analysis and draw its g2, so that the first file does not wait for imports,
    compiled kernels or matplotlib's fonts."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from .. import plots
    from ..xpcs.recipe import XpcsRecipe
    from ..xpcs.simulate import ou_speckle

    result = XpcsRecipe().run(ou_speckle(64, (16, 16), 4.0, seed=0))
    plots.plot_g2(result, figsize=(3.2, 2.2)).savefig(io.BytesIO(), format="png", dpi=60)


class DaskExecutor(Executor):
    """Tasks on a Dask cluster through a ``distributed.Client``."""

    def __init__(self, client, cluster=None, description: str = "", gateway=None):
        self.client = client
        self.cluster = cluster
        self.gateway = gateway
        self.description = description

    def submit(self, fn, *args, key: str, priority: int = 0):
        return self.client.submit(fn, *args, key=key, pure=False, priority=priority, retries=0)

    def running(self) -> set[str]:
        try:
            processing = self.client.processing()
        except Exception:  # noqa: BLE001 - a scheduler that went away: nothing is known to run
            return set()
        return {str(k) for keys in processing.values() for k in keys}

    def workers(self) -> list[dict]:
        try:
            info = self.client.scheduler_info(n_workers=-1)["workers"]
            processing = self.client.processing()
        except Exception:  # noqa: BLE001
            return []
        return [{"name": str(w.get("name", addr)), "threads": int(w.get("nthreads", 1)),
                 "memory_limit": w.get("memory_limit") or None,
                 "busy": len(processing.get(addr, ()))} for addr, w in sorted(info.items())]

    def cancel(self, future, key: str | None = None) -> None:
        stuck = []
        if key is not None:
            try:
                stuck = [w for w, keys in self.client.processing().items() if key in map(str, keys)]
            except Exception:  # noqa: BLE001 - a scheduler that went away
                stuck = []
        try:
            self.client.cancel(future, force=True)
        except Exception:  # noqa: BLE001 - cancelling a task that already ended
            pass
        if stuck:  # a thread cannot be stopped: its worker process is restarted (the nanny)
            try:
                self.client.restart_workers(stuck, raise_for_error=False)
            except Exception:  # noqa: BLE001 - a worker of a cluster that cannot restart it
                pass

    def close(self) -> None:
        for part in (self.client, self.cluster, self.gateway):
            if part is not None:
                try:
                    part.close()
                except Exception:  # noqa: BLE001 - closing a cluster that is already gone
                    pass
        if self.gateway is not None:
            # dask-gateway's objects close themselves again when collected, which fails once
            # their loop has stopped; kept until the interpreter ends, they are left alone
            _CLOSED.extend((self.gateway, self.cluster))


def _dask_config():
    import dask

    # a worker that dies (killed for memory) fails its task at once instead of passing it on
    # to the next worker, which would die the same way
    # and a worker is handed one task per thread (so "running" means running, and a new file
    # is not stuck behind one that a worker holds in reserve)
    return dask.config.set({"distributed.scheduler.allowed-failures": 0,
                            "distributed.scheduler.worker-saturation": 1.0,
                            "distributed.worker.daemon": False,
                            "distributed.admin.tick.limit": "10s"})


def open_executor(spec: ClusterSpec | None = None, *, scratch=None, log=None) -> Executor:
    """Start or join the engine ``spec`` names and return its executor.

    A cluster started here (local, Slurm) speaks TLS with credentials made for it and held
    only by this process and its workers: another account on the machine (a hub user's
    terminal) cannot connect to its scheduler and run code as the monitor. ``scratch`` (a
    folder only this account reads) holds the credentials Slurm jobs need.

    Raises
    ------
    InvalidInputError
        When the engine's package is missing or the cluster cannot be reached; the message
        says what to install or check.
    """
    spec = spec or ClusterSpec()
    log = log or logging.getLogger("speckle.monitor").info
    if spec.type == "process":
        return ProcessExecutor()
    try:
        from distributed import Client
    except ImportError:
        raise InvalidInputError("the monitor runs analyses on Dask: pip install 'dask[distributed]' "
                                "(or use cluster type 'process')") from None
    logging.getLogger("distributed").setLevel(logging.WARNING)
    with _dask_config():
        if spec.type == "local":
            return _local(spec, Client, log)
        if spec.type == "scheduler":
            try:
                client = Client(spec.address, timeout="20s")
            except OSError as exc:
                raise InvalidInputError(f"cannot reach the Dask scheduler at {spec.address}: "
                                        f"{exc}") from None
            client.run(_warm_worker)
            return DaskExecutor(client, None, f"Dask scheduler at {spec.address}")
        if spec.type == "slurm":
            return _slurm(spec, Client, log, scratch)
        return _gateway(spec, log)


def _local(spec: ClusterSpec, Client, log) -> Executor:
    from distributed import LocalCluster

    gpus = detect_gpus() if spec.gpus == "auto" else []
    cores = os.cpu_count() or 1
    n = int(spec.workers or (len(gpus) or max(1, cores // 2)))
    memory = spec.memory or int(_memory_bytes() * 0.5 / n)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=memory,
                           dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
                           host="127.0.0.1", silence_logs=logging.ERROR, security=True)
    client = Client(cluster)
    if gpus:
        client.register_plugin(_PinGpu(gpus), name=_PinGpu.name)
    client.run(_warm_worker)
    where = f", one per GPU ({len(gpus)})" if gpus else ""
    log(f"Dask LocalCluster: {n} worker{'s' * (n != 1)}{where}")
    return DaskExecutor(client, cluster, f"Dask LocalCluster, {n} worker{'s' * (n != 1)}{where}")


def _slurm(spec: ClusterSpec, Client, log, scratch=None) -> Executor:
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise InvalidInputError("cluster type slurm needs dask-jobqueue: pip install dask-jobqueue") from None
    import sys

    from pathlib import Path

    kwargs = dict(cores=int(spec.cores), processes=1, memory=spec.memory or "4GB",
                  walltime=spec.walltime, python=sys.executable,
                  job_extra_directives=list(spec.job_extra), security=True,
                  scheduler_options={"dashboard_address": "127.0.0.1:0"})
    if scratch is not None:
        Path(scratch).mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(scratch, 0o700)
        kwargs["shared_temp_directory"] = str(scratch)
        kwargs["log_directory"] = str(scratch)
    if spec.queue:
        kwargs["queue"] = spec.queue
    if spec.account:
        kwargs["account"] = spec.account
    if spec.interface:
        kwargs["interface"] = spec.interface
    try:
        cluster = SLURMCluster(**kwargs)
    except Exception as exc:  # noqa: BLE001 - dask-jobqueue raises many kinds
        raise InvalidInputError(f"cannot set up the Slurm cluster: {exc}") from None
    n = int(spec.workers or 1)
    cluster.scale(jobs=n)
    client = Client(cluster)
    log(f"Dask on Slurm: {n} worker job{'s' * (n != 1)}"
        f"{f' in partition {spec.queue}' if spec.queue else ''}")
    return DaskExecutor(client, cluster, f"Dask on Slurm ({n} worker job{'s' * (n != 1)}"
                                         f"{f', partition {spec.queue}' if spec.queue else ''})")


def _gateway(spec: ClusterSpec, log) -> Executor:
    try:
        from dask_gateway import Gateway
    except ImportError:
        raise InvalidInputError("cluster type gateway needs dask-gateway: pip install dask-gateway") from None
    gateway = Gateway(spec.address, auth=spec.auth) if spec.auth else Gateway(spec.address)
    try:
        cluster = gateway.new_cluster()
        cluster.scale(int(spec.workers or 1))
        client = cluster.get_client()
    except Exception as exc:  # noqa: BLE001
        gateway.close()
        raise InvalidInputError(f"cannot get a cluster from the dask-gateway at {spec.address}: "
                                f"{exc}") from None
    client.run(_warm_worker)
    log(f"Dask gateway cluster at {spec.address}")
    return DaskExecutor(client, cluster, f"dask-gateway cluster at {spec.address}", gateway)

