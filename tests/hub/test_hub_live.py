"""The real hub (JupyterHub + npm proxy + spawner) started as `make hub` starts it."""

import json
import os
import pwd
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from hubtools import IS_ROOT, _cmdline, _pids_of_uid
from kernel_client import KernelSocket, start_kernel


def test_health_answers_without_login(speckle_hub):
    r = requests.get(speckle_hub.url + "hub/health", timeout=5)
    assert r.status_code == 200
    r = requests.get(speckle_hub.url + "hub/api/", timeout=5)
    assert r.status_code == 200 and "version" in r.json()


@pytest.mark.parametrize("path", [
    "hub/home", "hub/spawn", "hub/admin", "hub/token", "hub/authorize", "hub/change-password",
    "hub/user/someone/", "user/someone/", "user/someone/lab", "user/admin/voila/render/dashboards/x.ipynb",
])
def test_every_page_needs_a_login(speckle_hub, path):
    r = requests.get(speckle_hub.url + path, allow_redirects=True, timeout=10)
    # anonymous browsers end on the login form (or a refusal), never on content
    assert r.url.split("?")[0].endswith("/hub/login") or r.status_code in (401, 403), (path, r.status_code, r.url)
    if r.status_code == 200:
        assert 'id="login_submit"' in r.text


def test_api_needs_a_token(speckle_hub):
    assert requests.get(speckle_hub.url + "hub/api/users", timeout=5).status_code == 403
    assert requests.post(speckle_hub.url + "hub/api/users/x/server", timeout=5).status_code == 403


def test_signup_needs_approval_then_login_works(speckle_hub):
    hub = speckle_hub
    name, password = f"s{os.urandom(4).hex()}", "a-long-passphrase-42"
    r = hub.signup(name, password)
    assert r.status_code == 200 and "has been sent to the admin" in r.text
    with pytest.raises(AssertionError, match="login of"):
        hub.login(name, password)
    s = requests.Session()
    s.get(hub.url + "hub/login")
    r = s.post(hub.url + "hub/login", data={"username": name, "password": password, "_xsrf": s.cookies["_xsrf"]})
    assert r.status_code == 403 and "approval" in r.text
    # a wrong password says nothing about approval
    r = s.post(hub.url + "hub/login", data={"username": name, "password": "wrong-wrong-1", "_xsrf": s.cookies["_xsrf"]})
    assert r.status_code == 403 and "approval" not in r.text
    page = hub.admin.session.get(hub.url + "hub/authorize")
    assert page.status_code == 200 and name in page.text
    hub.approve(name)
    user = hub.login(name, password)
    assert user.session.get(hub.url + "hub/home").status_code == 200
    # an admin name cannot be taken by signing up
    r = hub.signup("admin", "another-long-pass-1")
    with pytest.raises(AssertionError):
        hub.login("admin", "another-long-pass-1")
    # non-admins may not approve anyone
    assert user.session.get(hub.url + "hub/authorize", allow_redirects=False).status_code == 403


def test_landing_page_shows_the_tiles(speckle_hub):
    user = speckle_hub.new_user()
    r = user.session.get(speckle_hub.url + "hub/home")
    assert r.status_code == 200
    html = r.text
    assert "<title>speckle hub</title>" in html
    tiles = re.findall(r'id="tile-([\w-]+)"', html)
    for tile in ("xpcs_quick_check", "fth_reconstruction", "cdi_phasing", "propagation",
                 "data_browser", "jupyterlab", "examples"):
        assert tile in tiles
    # a tile is live exactly when its dashboard notebook is in the repository
    dashboards = Path(__file__).resolve().parents[2] / "notebooks" / "dashboards"
    missing = [n for n in ("fth_reconstruction", "cdi_phasing", "propagation")
               if not (dashboards / f"{n}.ipynb").exists()]
    assert html.count(">coming<") == len(missing)
    assert f"spawn/{user.name}?profile=lab" in html
    # nothing from another host: every script, stylesheet and image is the hub's own
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not re.match(r"^(https?:)?//", url), url
    assert ("single-account-banner" in html) == (not IS_ROOT)


def test_spawn_form_offers_the_profiles(speckle_hub):
    user = speckle_hub.new_user()
    r = user.session.get(speckle_hub.url + "hub/spawn")
    assert r.status_code == 200
    assert 'id="profile-quick"' in r.text and 'id="profile-lab"' in r.text
    assert "Quick check" in r.text and "JupyterLab" in r.text
    assert 'id="speckle-gpu-none"' in r.text  # no GPU on this machine


def _server_pid(unix_uid: int) -> int:
    for pid in _pids_of_uid(unix_uid):
        if "user_server/singleuser.py" in _cmdline(pid):
            return pid
    raise AssertionError("no user server (hub_config/user_server/singleuser.py) for that account")


def _server_environ(user) -> dict:
    """The environment of ``user``'s server, as code there sees it (a kernel inherits it).

    Not ``/proc/<pid>/environ``: that shows the environment a process was exec'd with, and a
    server forked from the hub's warm template was not exec'd (speckle_hub/warmstart.py).
    """
    kernel = start_kernel(user)
    socket = KernelSocket(user, kernel, user.api_token())
    try:
        status, out = socket.run("import json, os; print(json.dumps(dict(os.environ)))")
    finally:
        socket.close()
        user.request("DELETE", f"api/kernels/{kernel}")
    assert status == "ok", out
    return json.loads(out)


@pytest.fixture(scope="module")
def two_users(speckle_hub):
    """Alice through the spawn form (Quick check), Bob through the API (JupyterLab)."""
    alice, bob = speckle_hub.new_user("a"), speckle_hub.new_user("b")
    t0 = time.monotonic()
    r = alice.session.post(speckle_hub.url + f"hub/spawn/{alice.name}", allow_redirects=False,
                           data={"profile": "quick", "_xsrf": alice.xsrf})
    assert r.status_code == 302, r.text[:500]
    bob.start("lab")
    speckle_hub.start_server(alice.name, {}, timeout=90)  # already spawning: waits until ready
    spawn_s = time.monotonic() - t0
    yield alice, bob, spawn_s
    alice.stop()
    bob.stop()


def test_servers_spawn_and_answer(speckle_hub, two_users):
    alice, bob, spawn_s = two_users
    assert spawn_s < 60
    r = bob.get("lab")
    assert r.status_code == 200 and r.url.endswith(f"/user/{bob.name}/lab")
    r = bob.get("api/contents")
    names = {c["name"] for c in r.json()["content"]}
    assert {"dashboards", "speckle-examples", "speckle-uploads"} <= names
    # the data browser tile's folder: the beamline folders, linked into the home, readable
    (speckle_hub.beamline_dir / "scan_0001.h5").write_bytes(b"not really hdf5")
    os.chmod(speckle_hub.beamline_dir / "scan_0001.h5", 0o644)
    link = Path(str(speckle_hub.beamline_dir)).name
    r = bob.get(f"api/contents/beamline-data/{link}")
    assert r.status_code == 200, r.text[:300]
    assert "scan_0001.h5" in {c["name"] for c in r.json()["content"]}
    # the Quick check profile lands on the XPCS dashboard (Voila, from the home copy)
    r = alice.session.get(alice.server_url, allow_redirects=True, timeout=60)
    assert r.url == alice.dashboard_url("xpcs_quick_check.ipynb")
    assert r.url.endswith("/voila/render/dashboards/xpcs_quick_check.ipynb")
    # Voila finds the notebook in the home copy (what it shows is the dashboards' tests' business)
    assert r.status_code != 404, r.text[:300]


def test_user_cannot_reach_another_users_server(speckle_hub, two_users):
    alice, bob, _ = two_users
    for path in ("lab", "api/contents", "api/kernels", "voila/render/dashboards/xpcs_quick_check.ipynb"):
        r = alice.session.get(bob.server_url + path, allow_redirects=True)
        assert r.status_code == 403 or "/hub/login" in r.url, (path, r.status_code, r.url)
        assert "speckle-examples" not in r.text
    r = alice.session.post(speckle_hub.url + f"hub/api/users/{bob.name}/server",
                           headers={"X-XSRFToken": alice.xsrf})
    assert r.status_code in (403, 404)
    r = alice.session.delete(speckle_hub.url + f"hub/api/users/{bob.name}/server",
                             headers={"X-XSRFToken": alice.xsrf})
    assert r.status_code in (403, 404)
    # a token of Alice's does not open Bob's server either
    token = alice.api_token()
    r = requests.get(bob.server_url + "api/contents", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code in (403, 404)


@pytest.mark.skipif(not IS_ROOT, reason="one unix account per user needs root (single-account mode otherwise)")
def test_each_user_is_an_own_unix_account_with_a_private_home(speckle_hub, two_users):
    alice, bob, _ = two_users
    a, b = pwd.getpwnam(alice.unix_name), pwd.getpwnam(bob.unix_name)
    assert a.pw_uid != b.pw_uid and min(a.pw_uid, b.pw_uid) >= 1000
    for entry in (a, b):
        mode = os.stat(entry.pw_dir).st_mode
        assert stat.S_IMODE(mode) == 0o700 and os.stat(entry.pw_dir).st_uid == entry.pw_uid
    # Bob's server runs as Bob, with the GPU/CPU and data settings in its environment
    assert os.stat(f"/proc/{_server_pid(b.pw_uid)}").st_uid == b.pw_uid
    env = _server_environ(bob)
    assert env["USER"] == bob.unix_name and env["HOME"] == b.pw_dir
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["SPECKLE_GPU_NAME"] == "CPU"
    assert env["SPECKLE_DATA_DIRS"] == str(speckle_hub.beamline_dir)
    assert env["SPECKLE_UPLOAD_DIR"] == os.path.join(b.pw_dir, "speckle-uploads")
    assert int(env["SPECKLE_UPLOAD_QUOTA_BYTES"]) > 0
    # Alice, as her unix account, can read neither Bob's home nor a file in his uploads
    secret = Path(b.pw_dir) / "speckle-uploads" / "result.h5"
    secret.write_bytes(b"bob's data")
    os.chown(secret, b.pw_uid, b.pw_gid)
    for cmd in (["ls", b.pw_dir], ["cat", str(secret)]):
        out = subprocess.run(["runuser", "-u", alice.unix_name, "--", *cmd], capture_output=True, text=True)
        assert out.returncode != 0 and "Permission denied" in out.stderr
    # the dashboards are a read-only copy the user cannot change
    dash = Path(b.pw_dir) / "dashboards"
    out = subprocess.run(["runuser", "-u", bob.unix_name, "--", "touch", str(dash / "new.ipynb")],
                         capture_output=True, text=True)
    assert out.returncode != 0
