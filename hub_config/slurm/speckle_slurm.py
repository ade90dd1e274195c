"""User servers as Slurm jobs: batchspawner's ``SlurmSpawner`` with the speckle hub's accounts,
folders, environment, server arguments and spawn form.

Loaded by ``jupyterhub_slurm.py`` (the configuration snippet); importable on its own for tests.

What changes against the single-machine hub (``speckle_hub.spawner.SpeckleSpawner``):

- **The process**: ``sbatch`` submits the server as a job *as the user's unix account*
  (``runuser -u <account> --``: beamline machines have no sudo); ``squeue`` follows it;
  ``scancel`` stops it. Commands are called by full path (the servers' ``PATH`` is not the hub's).
- **Accounts and folders**: the same unix account per hub user (``unix_name_for``: ``speckle-NAME``,
  created at the first start with native/oauth sign-in; the account itself with ``auth.type: pam``
  or ``ldap``), and the same home preparation (dashboards, examples, uploads) run on the hub
  machine as the user: the homes must be the ones the compute nodes mount.
- **GPUs**: Slurm's, not the hub's allocator. With a GPU GRES each job asks for it and Slurm sets
  ``CUDA_VISIBLE_DEVICES``; without one a job gets ``CUDA_VISIBLE_DEVICES=""`` and
  ``SPECKLE_GPU_NAME=CPU``. The spawn form keeps the profiles (Quick check / JupyterLab) and says
  which GPU a server gets; there is no GPU choice.
- **The user server**: ``singleuser_slurm.py`` (batchspawner's wrapper, which tells the hub the
  port the job picked, around the hub's own ``user_server/singleuser.py`` and preheated
  dashboards); every argument is shell-quoted in the job script.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from batchspawner import SlurmSpawner
from speckle_hub import settings as speckle_settings
from speckle_hub.pages import template_vars
from speckle_hub.spawner import DEFAULT_PROFILE, SpeckleSpawner
from traitlets import default

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
#: What each job runs (with the project's python): batchspawner's wrapper around the user server.
SINGLEUSER_WRAPPER = HERE / "singleuser_slurm.py"

#: The environment variables a beamline sets (with their defaults) to fit its cluster.
ENV_DEFAULTS = {
    "SPECKLE_SLURM_PARTITION": "",  # "": the cluster's default partition
    "SPECKLE_SLURM_GRES": "auto",  # auto: gpu:1 when the partition's nodes have GPUs, else none
    "SPECKLE_SLURM_TIME": "12:00:00",  # the job's time limit (a shift)
    "SPECKLE_SLURM_MEMORY": "16G",
    "SPECKLE_SLURM_CPUS": "4",
    "SPECKLE_SLURM_HUB_IP": "",  # "": 127.0.0.1 (single-node cluster); else the hub's cluster address
}

_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|UNLIMITED|INFINITE")
_MEMORY = re.compile(r"\d+[KMGT]?")
_GRES = re.compile(r"[A-Za-z][\w.-]*(:[\w.-]+)*(,[A-Za-z][\w.-]*(:[\w.-]+)*)*")


class SlurmSettingsError(ValueError):
    """A SPECKLE_SLURM_* variable has a value Slurm would refuse (names the variable)."""


def slurm_command(name: str) -> str:
    """The full path of a Slurm (or other) command on the hub's ``PATH``; raises when missing."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise SlurmSettingsError(f"the command {name!r} is not installed on the hub machine (apt-get install slurm-client)")
    return found


def gres_from_sinfo(text: str) -> str:
    """``"gpu:1"`` when any node line of ``sinfo -h -o %G`` lists a GPU GRES, else ``""``."""
    return "gpu:1" if any(re.match(r"gpu[:(]|gpu$", g) for line in text.split() for g in line.split(",")) else ""


def detect_gres(partition: str = "", sinfo: str = "sinfo", timeout: float = 10.0) -> str:
    """Ask Slurm whether the partition's nodes have GPUs (``SPECKLE_SLURM_GRES=auto``)."""
    cmd = [sinfo, "-h", "-o", "%G"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SlurmSettingsError(
            f"SPECKLE_SLURM_GRES=auto could not ask Slurm which GPUs it has ({' '.join(cmd)}: {exc}); "
            "start slurmctld, or set SPECKLE_SLURM_GRES=gpu:1 or none") from None
    return gres_from_sinfo(out)


def slurm_settings(environ=None, sinfo: str | None = None) -> dict:
    """The job requests from ``SPECKLE_SLURM_*`` (see :data:`ENV_DEFAULTS`), checked.

    Parameters
    ----------
    environ : mapping, optional
        Default ``os.environ``.
    sinfo : str, optional
        The ``sinfo`` command for ``SPECKLE_SLURM_GRES=auto`` (default: found on the ``PATH``).

    Returns
    -------
    dict
        ``partition``, ``gres`` (``""`` for none), ``time``, ``memory``, ``cpus``, ``hub_ip``.
    """
    env = os.environ if environ is None else environ
    v = {key: env.get(key, default).strip() for key, default in ENV_DEFAULTS.items()}
    problems = []
    if v["SPECKLE_SLURM_TIME"] and not _TIME.fullmatch(v["SPECKLE_SLURM_TIME"]):
        problems.append(f"SPECKLE_SLURM_TIME={v['SPECKLE_SLURM_TIME']!r} is not a Slurm time (e.g. 12:00:00 or 1-00:00:00)")
    if v["SPECKLE_SLURM_MEMORY"] and not _MEMORY.fullmatch(v["SPECKLE_SLURM_MEMORY"]):
        problems.append(f"SPECKLE_SLURM_MEMORY={v['SPECKLE_SLURM_MEMORY']!r} is not a Slurm memory size (e.g. 16G)")
    if not re.fullmatch(r"[1-9]\d*", v["SPECKLE_SLURM_CPUS"]):
        problems.append(f"SPECKLE_SLURM_CPUS={v['SPECKLE_SLURM_CPUS']!r} is not a number of CPUs (e.g. 4)")
    gres = v["SPECKLE_SLURM_GRES"]
    if gres.lower() in ("", "none"):
        gres = ""
    elif gres != "auto" and not _GRES.fullmatch(gres):
        problems.append(f"SPECKLE_SLURM_GRES={gres!r} is not a Slurm GRES (e.g. gpu:1, gpu:a100:1, none or auto)")
    if problems:
        raise SlurmSettingsError("; ".join(problems))
    if gres == "auto":
        gres = detect_gres(v["SPECKLE_SLURM_PARTITION"], sinfo or slurm_command("sinfo"))
    return {"partition": v["SPECKLE_SLURM_PARTITION"], "gres": gres, "time": v["SPECKLE_SLURM_TIME"],
            "memory": v["SPECKLE_SLURM_MEMORY"], "cpus": v["SPECKLE_SLURM_CPUS"], "hub_ip": v["SPECKLE_SLURM_HUB_IP"]}


def gpu_description(gres: str) -> str:
    """What a server gets, for the landing page and the spawn form (``""``: no GPU)."""
    return f"one GPU per server from Slurm (--gres={gres})" if "gpu" in gres else ""


class SpeckleSlurmSpawner(SlurmSpawner, SpeckleSpawner):
    """batchspawner's SlurmSpawner for the process; SpeckleSpawner for everything else.

    The method order puts batchspawner first: ``start``/``poll``/``stop`` and the job state are
    its own; ``get_env``, ``get_args``, the spawn form and the accounts come from
    :class:`~speckle_hub.spawner.SpeckleSpawner` (LocalProcessSpawner's process code is never
    reached).
    """

    @default("req_username")
    def _unix_account(self):
        return self.unix_name

    @default("req_homedir")
    def _unix_home(self):
        return str(self.home)

    @default("env_keep")
    def _env_keep(self):
        # sbatch, squeue and srun (inside the job) find a non-default configuration through it
        return ["JUPYTERHUB_SINGLEUSER_APP", "SLURM_CONF"]

    def user_env(self, env):
        return SpeckleSpawner.user_env(self, env)  # the unix account, not the hub name

    def get_env(self):
        env = super().get_env()
        if "gpu" in self.req_gres:
            # Slurm sets CUDA_VISIBLE_DEVICES for the GPU it gives the job; the dashboards then
            # name the GPU themselves
            env.pop("CUDA_VISIBLE_DEVICES", None)
            env.pop("SPECKLE_GPU_NAME", None)
        return env

    def cmd_formatted_for_batch(self):
        # quoted: the server arguments hold spaces and quotes ({'voila': True, ...})
        return shlex.join([*shlex.split(self.batchspawner_singleuser_cmd), *self.cmd, *self.get_args()])

    def _gpu_choices(self) -> list[dict]:
        text = gpu_description(self.req_gres)
        return [{"index": 0, "name": text, "servers": 0, "utilization": 0.0, "memory_used_mib": 0}] if text else []

    async def start(self):
        self.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
        self.notebook_dir = str(self.home)
        self.default_url = self._profile()["default_url"]
        self.log.info("Server %s: Slurm job as %s (%s mode), profile %s, partition %s, gres %s",
                      self.gpu_key, self.unix_name, "single-account" if self.single_account else "isolated",
                      (self.user_options or {}).get("profile", DEFAULT_PROFILE), self.req_partition or "(default)",
                      self.req_gres or "none")
        return await super().start()  # batchspawner: sbatch, then wait until the job runs


def configure(c, environ=None) -> dict:
    """Apply the Slurm settings to the JupyterHub config ``c`` (the snippet calls this).

    Returns the settings (:func:`slurm_settings`).
    """
    s = slurm_settings(environ)
    spawner = c.SpeckleSlurmSpawner
    spawner.req_partition = s["partition"]
    spawner.req_gres = s["gres"]
    spawner.req_runtime = s["time"]
    spawner.req_memory = s["memory"]
    spawner.req_nprocs = s["cpus"]
    # as root (a beamline) each job is submitted as the user's account; otherwise as the hub's own
    # (single-account mode)
    spawner.exec_prefix = f"{slurm_command('runuser')} -u {{username}} --" if os.geteuid() == 0 else ""
    spawner.batch_submit_cmd = f"{slurm_command('sbatch')} --parsable"
    spawner.batch_query_cmd = f"{slurm_command('squeue')} -h -j {{job_id}} -o '%T %B'"
    spawner.batch_cancel_cmd = f"{slurm_command('scancel')} {{job_id}}"
    spawner.req_srun = slurm_command("srun")
    spawner.batchspawner_singleuser_cmd = shlex.join([sys.executable, str(SINGLEUSER_WRAPPER)])
    spawner.start_timeout = 300  # a job may wait in the queue
    spawner.http_timeout = 120
    spawner.startup_poll_interval = 0.25
    if s["hub_ip"]:  # the jobs on the compute nodes call the hub's API there
        c.JupyterHub.hub_ip = s["hub_ip"]
    # the landing page: Slurm's GPUs, not the hub machine's; no GPU choice, so the server starts at login
    hub_settings = speckle_settings.load()
    hub_settings["gpus"] = {**hub_settings["gpus"], "policy": "cpu"}
    page = template_vars(hub_settings)
    page["speckle_gpus"] = gpu_description(s["gres"])
    c.JupyterHub.template_vars = page
    return s
