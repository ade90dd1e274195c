"""A real single-node Slurm cluster for tests (root only): munged, slurmctld, slurmd.

Everything lives in one temporary folder: the munge key and socket, ``slurm.conf`` (free ports, so
a Slurm already on the machine is not disturbed), state, spool and logs. Clients find it through
``SLURM_CONF`` (:attr:`SlurmCluster.env`). ``stop()`` always cleans up: ``scontrol shutdown``,
then SIGTERM/SIGKILL of whatever is left, munged stopped, the folder removed.

Debian's packages: ``apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge``
(``make setup-test`` does it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"}
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "srun")
NODE = "localhost"


def missing_programs() -> list[str]:
    """The Slurm/munge programs this machine lacks (empty when a cluster can start)."""
    missing = [name for name, path in DAEMONS.items() if not os.access(path, os.X_OK)]
    missing += [name for name in CLIENTS if shutil.which(name) is None]
    try:
        pwd.getpwnam("munge")
    except KeyError:
        missing.append("the munge account")
    return missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.8)
    return 1024


class SlurmCluster:
    """munged + slurmctld + slurmd on this machine, with a partition ``partition`` (not default)."""

    def __init__(self, partition: str = "speckle", max_time: str = "1-00:00:00"):
        self.partition = partition
        self.dir = Path(tempfile.mkdtemp(prefix="speckle-slurm-", dir="/tmp"))
        os.chmod(self.dir, 0o755)  # users' sbatch reads slurm.conf and reaches the munge socket
        self.conf = self.dir / "slurm.conf"
        self.munge_socket = self.dir / "munge-run" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.cpus = os.cpu_count() or 1
        self.max_time = max_time

    # ------------------------------------------------------------------ lifecycle
    def _munge(self) -> None:
        munge = pwd.getpwnam("munge")
        key_dir, run_dir = self.dir / "munge-key", self.munge_socket.parent
        for folder, mode in ((key_dir, 0o700), (run_dir, 0o755)):
            folder.mkdir(mode=mode)
            os.chown(folder, munge.pw_uid, munge.pw_gid)
            os.chmod(folder, mode)
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chown(key, munge.pw_uid, munge.pw_gid)
        os.chmod(key, 0o600)
        # setpriv execs munged itself: the recorded PID is munged's (not a wrapper's)
        self._spawn("munged", ["setpriv", f"--reuid={munge.pw_uid}", f"--regid={munge.pw_gid}", "--init-groups",
                               DAEMONS["munged"], "-F", f"--key-file={key}", f"--socket={self.munge_socket}",
                               f"--pid-file={key_dir / 'munged.pid'}", f"--seed-file={key_dir / 'munged.seed'}",
                               f"--log-file={key_dir / 'munged.log'}"])
        self._wait(lambda: self.munge_socket.exists(), 10, "munged did not create its socket")

    def _write_conf(self) -> None:
        d = self.dir
        for sub in ("state", "spool", "log"):
            (d / sub).mkdir()
        self.conf.write_text("\n".join([
            "ClusterName=speckletest",
            f"SlurmctldHost={NODE}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "SlurmUser=root",
            "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/none",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
            f"NodeName={NODE} CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN",
            f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
            f"PartitionName={self.partition} Nodes={NODE} Default=NO MaxTime={self.max_time} State=UP",
            "",
        ]))

    def start(self, timeout: float = 20) -> None:
        """Start munged, slurmctld and slurmd; return when the node is idle."""
        try:
            self._munge()
            self._write_conf()
            self._spawn("slurmctld", [DAEMONS["slurmctld"], "-D", "-i"])
            self._spawn("slurmd", [DAEMONS["slurmd"], "-D", "-N", NODE])
            self._wait(self._node_idle, timeout, "the Slurm node did not become idle")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, cmd: list[str]) -> None:
        self.procs[name] = subprocess.Popen(
            cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=open(self.dir / f"{name}.out", "ab"),
            stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} within {timeout} s:\n{self.logs()}")

    def _node_idle(self) -> bool:
        r = self.run("sinfo", "-h", "-n", NODE, "-o", "%t", check=False)
        return r.returncode == 0 and r.stdout.split()[:1] == ["idle"]

    def stop(self) -> None:
        """Cancel the jobs left, shut everything down, remove the folder. Never raises."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                left = [job["id"] for job in self.jobs()]
                if left:  # jobs outlive the daemons: cancel them first
                    self.run("scancel", *left, check=False)
                    end = time.monotonic() + 10
                    while self.jobs() and time.monotonic() < end:
                        time.sleep(0.2)
                self.run("scontrol", "shutdown", check=False, timeout=10)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if name == "munged":  # it only stops when told
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ clients
    def run(self, *cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (``check``: raise when it fails)."""
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def jobs(self) -> list[dict]:
        """The jobs in the queue: id, user, state, partition, time limit, node, name."""
        out = self.run("squeue", "-h", "-o", "%i|%u|%T|%P|%l|%B|%j").stdout
        keys = ("id", "user", "state", "partition", "time_limit", "node", "name")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def batch_script(self, job_id: str) -> str:
        return self.run("scontrol", "write", "batch_script", job_id, "-").stdout

    def logs(self, n: int = 30) -> str:
        parts = []
        for path in [*sorted(self.dir.glob("*.out")), *sorted((self.dir / "log").glob("*.log"))]:
            try:
                lines = path.read_text(errors="replace").splitlines()[-n:]
            except OSError:
                continue
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(parts)
