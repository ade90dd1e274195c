# speckle hub: user servers as Slurm jobs (batchspawner). Loaded after jupyterhub_config.py with
#   SPECKLE_HUB_EXTRA_CONFIG=hub_config/slurm/jupyterhub_slurm.py make hub
# Needs: pip install 'batchspawner==1.3.0' (it calls the deprecated Spawner.db: keep jupyterhub<7),
# and hub users that are unix accounts known to Slurm: use auth.type pam or ldap in settings.yaml.
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
# there is no sudo on beamline machines: runuser (root) switches to the user for sbatch/scancel
c.SlurmSpawner.exec_prefix = "runuser -u {username} --"
c.SlurmSpawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
c.SlurmSpawner.batchspawner_singleuser_cmd = str(VENV_BIN / "batchspawner-singleuser")
c.SlurmSpawner.req_partition = "gpu"
c.SlurmSpawner.req_runtime = "12:00:00"
c.SlurmSpawner.req_memory = "32G"
c.SlurmSpawner.req_nprocs = "8"
# one GPU per job; Slurm sets CUDA_VISIBLE_DEVICES inside the job
c.SlurmSpawner.req_options = "--gres=gpu:1"
c.SlurmSpawner.start_timeout = 300
c.SlurmSpawner.http_timeout = 120
# the same user-server arguments as the single-machine hub (extensions, Voila kernel culling,
# large websocket messages, the dashboards' template and MathJax: nothing from another host)
c.SlurmSpawner.args = [
    "--ServerApp.jpserver_extensions={'voila': True, 'speckle_jupyter': True}",
    "--ServerApp.tornado_settings={'websocket_max_message_size': 536870912, 'mathjax_url': None, 'mathjax_config': None}",
    "--MappingKernelManager.cull_idle_timeout=900",
    "--MappingKernelManager.cull_interval=60",
    "--MappingKernelManager.cull_connected=False",
    "--VoilaConfiguration.template=speckle",
]
c.SlurmSpawner.environment = {"SPECKLE_GPU_NAME": "Slurm GPU",
                              "JUPYTER_PATH": str(Path(__file__).resolve().parents[1] / "jupyter")}
# The speckle spawn form and pre-spawn hook are for local servers; Slurm uses its own.
c.Spawner.options_form = ""
c.Spawner.pre_spawn_hook = None
