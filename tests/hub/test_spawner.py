"""The spawner's pieces without a hub: account names, home folders, spawn form, args and env."""

import ast
import asyncio
import os
import stat

import pytest

from speckle_hub import homeprep, launch
from speckle_hub.gpus import GpuAllocator, parse_nvidia_smi
from speckle_hub.spawner import (
    JUPYTER_DATA, PROFILES, SINGLEUSER, VOILA_TEMPLATE, SpeckleSpawner, unix_name_for,
)


def test_unix_names_never_collide_with_system_accounts():
    assert unix_name_for("alice", "speckle-", "native") == "speckle-alice"
    assert unix_name_for("alice", "speckle-", "pam") == "alice"
    odd = unix_name_for("Alice.Smith@lab.gov", "speckle-", "oauth")
    assert odd.startswith("speckle-alice-smith-lab") and len(odd) <= 32
    assert odd != unix_name_for("alice.smith@lab.gov", "speckle-", "oauth")
    assert unix_name_for("root", "speckle-", "native") == "speckle-root"
    assert len(unix_name_for("a" * 60, "speckle-", "native")) <= 32


def _tree(tmp_path):
    src = tmp_path / "src"
    (src / "dash").mkdir(parents=True)
    (src / "dash" / "xpcs_quick_check.ipynb").write_text("{}")
    (src / "dash" / ".gitkeep").write_text("")
    (src / "ex" / "data").mkdir(parents=True)
    (src / "ex" / "01_read.ipynb").write_text("{}")
    (src / "ex" / "data" / "x.txt").write_text("x")
    return src


def _prep(tmp_path, src, home, beamline=()):
    args = ["--home", str(home), "--dashboards-src", str(src / "dash"), "--examples-src", str(src / "ex")]
    for b in beamline:
        args += ["--beamline-dir", b]
    assert homeprep.main(args) == 0


def test_home_gets_read_only_dashboards_examples_once_and_private_uploads(tmp_path):
    src = _tree(tmp_path)
    home = tmp_path / "home"
    _prep(tmp_path, src, home, beamline=["/srv/beamline/2026", "/data/2026"])
    dash = home / "dashboards"
    assert (dash / "xpcs_quick_check.ipynb").exists() and not (dash / ".gitkeep").exists()
    assert stat.S_IMODE(dash.stat().st_mode) == 0o555
    assert stat.S_IMODE((dash / "xpcs_quick_check.ipynb").stat().st_mode) == 0o444
    assert stat.S_IMODE((home / "speckle-uploads").stat().st_mode) == 0o700
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert os.readlink(home / "beamline-data" / "2026") == "/srv/beamline/2026"
    assert os.readlink(home / "beamline-data" / "2026-2") == "/data/2026"
    # the user changes an example; a new dashboard and a new example appear upstream
    (home / "speckle-examples" / "01_read.ipynb").write_text("mine")
    (src / "dash" / "fth_reconstruction.ipynb").write_text("{}")
    (src / "ex" / "02_new.ipynb").write_text("{}")
    _prep(tmp_path, src, home, beamline=["/srv/beamline/2026"])
    assert (home / "speckle-examples" / "01_read.ipynb").read_text() == "mine"
    assert (home / "speckle-examples" / "02_new.ipynb").exists()
    assert (dash / "fth_reconstruction.ipynb").exists()
    assert sorted(p.name for p in (home / "beamline-data").iterdir()) == [".speckle-managed", "2026"]


def test_a_users_own_dashboards_folder_is_moved_aside_not_deleted(tmp_path):
    src = _tree(tmp_path)
    home = tmp_path / "home"
    (home / "dashboards").mkdir(parents=True)
    (home / "dashboards" / "precious.txt").write_text("keep me")
    _prep(tmp_path, src, home)
    moved = [p for p in home.iterdir() if p.name.startswith("dashboards.moved-")]
    assert len(moved) == 1 and (moved[0] / "precious.txt").read_text() == "keep me"
    assert (home / "dashboards" / "xpcs_quick_check.ipynb").exists()


def run(coro):
    """Run a coroutine on its own thread (Playwright's sync API may own this thread's loop)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _spawner(settings, allocator=None):
    sp = SpeckleSpawner.__new__(SpeckleSpawner)  # no hub needed for the form and args
    SpeckleSpawner.__init__(sp, speckle_settings=settings)
    if allocator is not None:
        sp._allocator = lambda: allocator
    return sp


SETTINGS = {"gpus": {"policy": "auto", "devices": "all", "let_users_choose": True},
            "data": {"beamline_dirs": ["/a", "/b"], "upload_dir": "speckle-uploads", "upload_quota_gb": 2,
                     "websocket_max_message_mb": 100},
            "culling": {"kernel_idle_timeout": 600, "kernel_cull_interval": 30},
            "users": {"unix_prefix": "speckle-"}, "auth_type": "native", "state_dir": "/tmp/x"}


def test_options_given_through_the_api_are_checked():
    """The REST API skips the form: an unknown profile must be refused with its reason (HTTP 400),
    not started as the default profile."""
    from tornado import web

    sp = _spawner(SETTINGS)
    run(sp._run_apply_user_options({"profile": ["lab"], "gpu": "1", "other": "x"}))
    assert sp.user_options == {"profile": "lab", "gpu": "1"}
    for bad, reason in (({"profile": "gpu-party"}, "unknown profile 'gpu-party'"),
                        ({"profile": "quick", "gpu": "all of them"}, "GPU must be 'auto'")):
        with pytest.raises(web.HTTPError) as caught:
            run(sp._run_apply_user_options(bad))
        assert caught.value.status_code == 400 and reason in caught.value.log_message
    run(sp._run_apply_user_options({}))
    assert sp.user_options == {"profile": "quick", "gpu": "auto"}


def test_spawn_form_offers_profiles_and_a_gpu_choice_when_several():
    two = parse_nvidia_smi("0, NVIDIA H100 80GB HBM3, 10, 1\n1, NVIDIA H100 80GB HBM3, 20, 50\n")
    alloc = GpuAllocator(detect_fn=lambda: two)
    alloc.assign("someone/", choice=1)
    html = run(_spawner(SETTINGS, alloc)._options_form())
    assert 'id="profile-quick"' in html and 'id="profile-lab"' in html and "Quick check" in html
    assert 'name="gpu"' in html and '<option value="1">GPU 1: NVIDIA H100 80GB HBM3 (shared by 1 server(s)' in html
    one = GpuAllocator(detect_fn=lambda: two[:1])
    html = run(_spawner(SETTINGS, one)._options_form())
    assert 'name="gpu"' not in html and "NVIDIA H100" in html
    none = GpuAllocator(detect_fn=lambda: [])
    html = run(_spawner(SETTINGS, none)._options_form())
    assert "no GPU: analysis runs on the CPU" in html


def test_form_and_query_options_are_checked():
    sp = _spawner(SETTINGS)
    assert sp.options_from_form({"profile": ["lab"], "gpu": ["1"]}) == {"profile": "lab", "gpu": "1"}
    assert sp.options_from_query({"profile": ["quick"]}) == {"profile": "quick", "gpu": "auto"}
    with pytest.raises(ValueError, match="unknown profile"):
        sp.options_from_form({"profile": ["root-shell"]})
    with pytest.raises(ValueError, match="GPU must be"):
        sp.options_from_form({"profile": ["lab"], "gpu": ["0;rm"]})
    assert PROFILES["quick"]["default_url"] == "/voila/render/dashboards/xpcs_quick_check.ipynb"


def test_args_enable_extensions_cull_kernels_and_raise_the_websocket_limit():
    sp = _spawner(SETTINGS)
    args = [a for a in sp.get_args() if a.startswith("--ServerApp.") or a.startswith("--MappingKernelManager.")]
    joined = " ".join(args)
    assert "'voila': True" in joined
    assert f"'websocket_max_message_size': {100 * 2**20}" in joined
    assert "--MappingKernelManager.cull_idle_timeout=600" in args
    assert "--MappingKernelManager.cull_interval=30" in args
    assert "--MappingKernelManager.cull_connected=False" in args


def test_quick_check_servers_preheat_dashboards_and_load_nothing_from_another_host():
    dashboards = {"preheat": ["xpcs_quick_check.ipynb", "cdi_phasing.ipynb"], "preheat_refill_delay": 7}
    sp = _spawner({**SETTINGS, "dashboards": dashboards})
    sp.user_options = {"profile": "quick"}
    args = sp.get_args()
    assert f"--VoilaConfiguration.template={VOILA_TEMPLATE}" in args
    assert (JUPYTER_DATA / "nbconvert" / "templates" / VOILA_TEMPLATE / "index.html.j2").is_file()
    tornado = ast.literal_eval(next(a for a in args if a.startswith("--ServerApp.tornado_settings=")).split("=", 1)[1])
    assert tornado["mathjax_url"] is None and tornado["mathjax_config"] is None  # Voila's own MathJax
    assert "--ServerApp.kernel_manager_class=speckle_preheat.PreheatedKernelManager" in args
    assert "--PreheatedKernelManager.preheat_notebooks=dashboards/xpcs_quick_check.ipynb" in args
    assert "--PreheatedKernelManager.preheat_notebooks=dashboards/cdi_phasing.ipynb" in args
    assert "--PreheatedKernelManager.fill_delay=7.0" in args
    assert "--PreheatedKernelManager.refill=False" not in args
    assert "--MappingKernelManager.cull_connected=False" in args  # the pool's manager culls views too
    # JupyterLab servers keep no preheated kernels; nor does a hub that preheats nothing (the
    # kernel manager stays: it reports dashboard kernels that die)
    sp.user_options = {"profile": "lab"}
    lab_args = sp.get_args()
    assert "--ServerApp.kernel_manager_class=speckle_preheat.PreheatedKernelManager" in lab_args
    # every server stops a dashboard's kernel once its page has gone (tests/hub/test_owner.py)
    pool = [a for a in lab_args if a.startswith("--PreheatedKernelManager.")]
    assert pool == ["--PreheatedKernelManager.orphan_grace=120.0"]
    sp = _spawner({**SETTINGS, "dashboards": {"preheat": []}})
    sp.user_options = {"profile": "quick"}
    assert [a for a in sp.get_args() if a.startswith("--PreheatedKernelManager.")] == pool
    # no refill delay: one preheated kernel per dashboard, from the server's start
    sp = _spawner({**SETTINGS, "dashboards": {"preheat": ["xpcs_quick_check.ipynb"], "preheat_refill_delay": None}})
    sp.user_options = {"profile": "quick"}
    assert "--PreheatedKernelManager.refill=False" in sp.get_args()
    # the server command: the project's python running the user-server wrapper
    assert sp.singleuser_cmd[1] == str(SINGLEUSER) and SINGLEUSER.is_file()


def test_launcher_preflight_and_banner(tmp_path, monkeypatch):
    from speckle_hub import settings as st

    monkeypatch.setenv("SPECKLE_HUB_STATE", str(tmp_path / "state"))
    s = st.load(st.DEFAULT_SETTINGS_PATH)
    launch.prepare_state(tmp_path / "state")
    mode = stat.S_IMODE((tmp_path / "state").stat().st_mode)
    assert mode == 0o700
    for name in ("jupyterhub_cookie_secret", "proxy-auth-token"):
        assert stat.S_IMODE((tmp_path / "state" / name).stat().st_mode) == 0o600
    pw = launch.first_admin_passwords(s)
    assert set(pw) == {"admin"} and len(pw["admin"]) >= 12
    text = launch.banner(s, pw)
    assert "http://127.0.0.1:8000/" in text and pw["admin"] in text and "shown this once" in text
    # the next start keeps the same password for the hub to use but does not print it again
    assert launch.first_admin_passwords(s) == {}
    assert (tmp_path / "state" / "first-admin-password").read_text().split() == ["admin", pw["admin"]]
    again = launch.banner(s, {})
    assert pw["admin"] not in again and "first-admin-password (readable only by you)" in again
    assert ("SINGLE-ACCOUNT" in text) == (os.geteuid() != 0)
    import shutil
    import tempfile

    open_dir = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(open_dir, 0o755)
        blocked = os.path.join(open_dir, "closed")
        os.mkdir(blocked, 0o700)
        exe = os.path.join(blocked, "python")
        open(exe, "w").close()
        assert launch._world_can_reach(exe) == blocked
        os.chmod(blocked, 0o755)
        os.chmod(exe, 0o755)
        assert launch._world_can_reach(exe) is None
    finally:
        shutil.rmtree(open_dir)
