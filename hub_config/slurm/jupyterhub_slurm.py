# speckle hub: user servers as Slurm jobs (batchspawner). Loaded after jupyterhub_config.py with
#   SPECKLE_HUB_EXTRA_CONFIG=hub_config/slurm/jupyterhub_slurm.py make hub
# Needs `.venv/bin/pip install batchspawner==1.3.0` (it calls the deprecated Spawner.db: keep
# jupyterhub<7) and Slurm's client commands on the hub machine. What a job asks for comes from
# SPECKLE_SLURM_PARTITION, _GRES, _TIME, _MEMORY, _CPUS and _HUB_IP (README.md beside this file);
# the spawner itself is speckle_slurm.SpeckleSlurmSpawner. This exact file runs in
# tests/hub/test_scale_out_slurm.py against a real single-node Slurm cluster.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from speckle_slurm import SpeckleSlurmSpawner, configure  # noqa: E402

c = get_config()  # noqa: F821 (provided by JupyterHub)

c.JupyterHub.spawner_class = SpeckleSlurmSpawner
# partition, GRES, time, memory, CPUs from SPECKLE_SLURM_*; full paths of runuser/sbatch/squeue/
# scancel/srun; the job's command; the landing page's GPU line. The main configuration's spawn
# form (profiles) and pre-spawn hook (unix account at the first start, home folders) stay.
configure(c)
