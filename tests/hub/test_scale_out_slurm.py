"""The hub scaled out on Slurm, for real: hub_config/slurm/jupyterhub_slurm.py (the file a beamline
loads with SPECKLE_HUB_EXTRA_CONFIG) against a single-node Slurm cluster started here (munged,
slurmctld, slurmd: tests/hub/slurm_cluster.py).

A hub user's server is spawned through the hub's API and must be a Slurm job running as that
user's unix account, on the partition and with the limits the SPECKLE_SLURM_* variables ask for,
without a GPU request on a cluster without GPUs, with the speckle environment, reachable through
the hub's proxy; stopping it must cancel the job. Needs root (sbatch as the user via runuser, the
daemons, useradd): skipped otherwise. Missing Slurm packages fail the test: `make setup-test`
installs them.
"""

from __future__ import annotations

import os
import pwd
import sys
import time
from pathlib import Path

import pytest

from hubtools import HUB_CONFIG, IS_ROOT, Hub, _pids_of_uid
from slurm_cluster import SlurmCluster, missing_programs

SNIPPET = HUB_CONFIG / "slurm" / "jupyterhub_slurm.py"
sys.path.insert(0, str(SNIPPET.parent))

from speckle_slurm import SlurmSettingsError, gres_from_sinfo, slurm_settings  # noqa: E402

# what the test's hub asks Slurm for (a beamline sets the same variables; see hub_config/slurm/README.md)
JOB_ENV = {
    "SPECKLE_SLURM_PARTITION": "speckle",  # not the cluster's default partition: the setting must act
    "SPECKLE_SLURM_TIME": "00:30:00",
    "SPECKLE_SLURM_MEMORY": "1G",
    "SPECKLE_SLURM_CPUS": "1",
    # SPECKLE_SLURM_GRES unset: "auto" must find no GPU on this cluster
}


# ---------------------------------------------------------------------- settings, no cluster needed
def test_gres_auto_detection_reads_sinfo():
    assert gres_from_sinfo("(null)\n(null)\n") == ""
    assert gres_from_sinfo("gpu:a100:4(S:0-1)\n(null)\n") == "gpu:1"
    assert gres_from_sinfo("mps:100,gpu:2\n") == "gpu:1"
    assert gres_from_sinfo("gpuless_license:1\n") == ""


def test_bad_job_settings_name_the_variable():
    with pytest.raises(SlurmSettingsError, match="SPECKLE_SLURM_MEMORY"):
        slurm_settings({"SPECKLE_SLURM_MEMORY": "lots", "SPECKLE_SLURM_GRES": "none"})
    with pytest.raises(SlurmSettingsError, match="SPECKLE_SLURM_TIME"):
        slurm_settings({"SPECKLE_SLURM_TIME": "noon", "SPECKLE_SLURM_GRES": "none"})
    with pytest.raises(SlurmSettingsError, match="SPECKLE_SLURM_CPUS"):
        slurm_settings({"SPECKLE_SLURM_CPUS": "0", "SPECKLE_SLURM_GRES": "none"})
    with pytest.raises(SlurmSettingsError, match="SPECKLE_SLURM_GRES=auto could not ask Slurm"):
        slurm_settings({}, sinfo="/bin/false")
    s = slurm_settings({"SPECKLE_SLURM_GRES": "gpu:a100:1", "SPECKLE_SLURM_TIME": "1-00:00:00"})
    assert (s["gres"], s["time"], s["memory"], s["cpus"]) == ("gpu:a100:1", "1-00:00:00", "16G", "4")
    assert slurm_settings({"SPECKLE_SLURM_GRES": "none"})["gres"] == ""


# ---------------------------------------------------------------------- the real cluster and hub
@pytest.fixture(scope="module")
def slurm_hub(tmp_path_factory):
    """(hub, cluster): the real hub with the Slurm snippet, and the cluster its servers run on."""
    if not IS_ROOT:
        pytest.skip("needs root: the Slurm daemons, and sbatch as each user's account (runuser)")
    missing = missing_programs()
    if missing:
        pytest.fail(f"Slurm is not installed ({', '.join(missing)}): run `make setup-test`")
    cluster = SlurmCluster(partition=JOB_ENV["SPECKLE_SLURM_PARTITION"])
    hub = Hub(tmp_path_factory.mktemp("speckle-hub-slurm"))
    try:
        cluster.start()
        with pytest.MonkeyPatch.context() as mp:  # the hub process inherits these
            mp.setenv("SPECKLE_HUB_EXTRA_CONFIG", str(SNIPPET))
            mp.setenv("SLURM_CONF", str(cluster.conf))
            mp.delenv("SPECKLE_SLURM_GRES", raising=False)
            for key, value in JOB_ENV.items():
                mp.setenv(key, value)
            hub.start()
        yield hub, cluster
    finally:
        hub.stop()  # first: stopping the servers cancels their jobs
        cluster.stop()


def _server_process(uid: int) -> tuple[int, dict]:
    """The user's jupyterhub-singleuser process (pid, environment)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"singleuser_slurm.py") for part in cmdline):
            env = dict(item.decode(errors="replace").split("=", 1) for item in environ if b"=" in item)
            return int(entry.name), env
    raise AssertionError(f"no user server process of uid {uid}")


def _wait(predicate, timeout: float, interval: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def test_spawn_form_offers_the_profiles_and_says_there_is_no_gpu(slurm_hub):
    hub, _ = slurm_hub
    user = hub.new_user("sf")
    page = user.session.get(hub.url + "hub/spawn").text
    assert 'id="speckle-profiles"' in page and 'value="quick"' in page and 'value="lab"' in page
    assert 'id="speckle-gpu-none"' in page  # Slurm's GPUs (none here), not the hub machine's


def test_user_server_is_a_slurm_job_of_the_users_account(slurm_hub):
    hub, cluster = slurm_hub
    user = hub.new_user("sl")
    t0 = time.monotonic()
    try:
        user.start("quick", timeout=60)  # the default profile: preheated dashboards too
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.logs()}") from None
    spawn_s = time.monotonic() - t0

    # a Slurm job, as the user's own unix account, where and how the settings say
    jobs = [j for j in cluster.jobs() if j["user"] == user.unix_name]
    assert len(jobs) == 1, cluster.jobs()
    job = jobs[0]
    assert job["state"] == "RUNNING" and job["name"] == "spawner-jupyterhub"
    assert job["partition"] == "speckle" and job["time_limit"] == "30:00"
    script = cluster.batch_script(job["id"])
    assert "#SBATCH --mem=1G" in script and "#SBATCH --cpus-per-task=1" in script
    assert "--gres" not in script  # no GPU request on a cluster without GPUs
    assert f"--chdir={user.home}" in script

    # the server process: the user's uid, inside that job, with the speckle environment
    account = pwd.getpwnam(user.unix_name)
    pid, env = _server_process(account.pw_uid)
    assert env["SLURM_JOB_ID"] == job["id"]
    assert env["USER"] == user.unix_name and env["HOME"] == account.pw_dir
    assert env["SPECKLE_HUB_MODE"] == "isolated"
    assert env["SPECKLE_GPU_NAME"] == "CPU" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["SPECKLE_UPLOAD_DIR"] == str(user.home / "speckle-uploads")
    assert env["SPECKLE_DATA_DIRS"] == str(hub.beamline_dir)
    assert env["JUPYTER_PATH"].split(os.pathsep)[0] == str(HUB_CONFIG / "jupyter")
    # the pre-spawn hook ran (account created at the first start, home prepared as the user)
    dashboard = user.home / "dashboards" / "xpcs_quick_check.ipynb"
    assert dashboard.is_file() and dashboard.stat().st_uid == account.pw_uid

    # it answers through the hub's proxy, with the hub's server arguments in force
    r = user.get("api/status")
    assert r.status_code == 200, r.text
    kernels = _wait(lambda: user.get("api/kernels").json(), 20)  # the preheated Quick check
    assert kernels, "no preheated dashboard kernel: the speckle_preheat kernel manager did not load"
    r = user.get("voila/render/dashboards/xpcs_quick_check.ipynb")
    assert r.status_code == 200 and "speckle" in r.text.lower()

    # stopping the server cancels the job
    user.stop()
    assert _wait(lambda: not [j for j in cluster.jobs() if j["user"] == user.unix_name], 15), cluster.jobs()
    assert not hub.api("GET", f"users/{user.name}").json()["servers"]
    assert _wait(lambda: not _pids_of_uid(account.pw_uid), 10)
    print(f"\nSlurm spawn to ready: {spawn_s:.1f} s")

