"""Accounts under abuse: failed logins slow down the address they come from but never lock the
real user (nor the admin) out; passwords are checked off the event loop; sign-up reveals no
names and caps pending requests; the first admin's password is shown once; a stop while the
server starts is answered with a sentence, not a 500."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.adapters import HTTPAdapter

from hubtools import HubUser, running_hub
from speckle_hub.startstop import MESSAGE as STOPPED_WHILE_STARTING
from speckle_hub.throttle import ADDRESS_FACTOR, LoginThrottle

FREE, PENDING = 3, 3


def test_the_throttle_backs_off_per_address_and_name():
    now = [1000.0]
    t = LoginThrottle(free=3, max_wait=10, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait("10.0.0.9", "ana") == 0
        t.failure("10.0.0.9", "ana")
    assert t.wait("10.0.0.9", "ana") == 1.0  # then 1, 2, 4... s
    t.failure("10.0.0.9", "ana")
    assert t.wait("10.0.0.9", "ana") == 2.0
    for _ in range(10):
        t.failure("10.0.0.9", "ana")
    assert t.wait("10.0.0.9", "ana") == 10.0  # at most max_wait
    assert t.wait("10.0.5.20", "ana") == 0  # the real user, elsewhere: never kept out
    now[0] += 10
    assert t.wait("10.0.0.9", "ana") == 0
    t.success("10.0.5.20", "ana")
    # an address guessing many names waits as a whole
    for i in range(3 * ADDRESS_FACTOR):
        t.failure("10.0.0.7", f"name{i}")
    assert t.wait("10.0.0.7", "somebody-else") > 0
    assert LoginThrottle(free=0, max_wait=10).wait("x", "y") == 0  # 0: off


class _From(HTTPAdapter):
    """Requests that leave from another loopback address (a second machine, for the hub)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _try_login(hub, name: str, password: str, address: str = "127.0.0.1") -> requests.Response:
    s = requests.Session()
    s.mount("http://", _From(address))
    s.get(hub.url + "hub/login", timeout=10)
    return s.post(hub.url + "hub/login", allow_redirects=False, timeout=30,
                  data={"username": name, "password": password, "_xsrf": s.cookies.get("_xsrf", "")})


@pytest.fixture(scope="module")
def accounts_hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("speckle-hub-accounts"), settings={"auth": {"native": {
            "allowed_failed_logins": FREE, "seconds_before_next_try": 60,
            "max_pending_signups": PENDING}}}) as hub:
        yield hub


def test_wrong_passwords_never_lock_out_the_real_user_or_the_admin(accounts_hub):
    hub = accounts_hub
    user = hub.new_user("acc")
    for name in (user.name, "admin"):
        for _ in range(FREE + 3):
            assert _try_login(hub, name, "wrong-password-1", "127.0.0.2").status_code == 403
        # the attacker's address now waits, even with the right password
        right = user.password if name == user.name else hub.admin.password
        r = _try_login(hub, name, right, "127.0.0.2")
        assert r.status_code == 403 and "Too many failed logins from your address: wait" in r.text
        # the real owner, from their own address, logs in at once
        assert _try_login(hub, name, right).status_code == 302


def test_passwords_are_checked_off_the_event_loop(accounts_hub):
    hub = accounts_hub
    user = hub.new_user("busy")
    slowest, stop = [0.0], threading.Event()

    def watch():
        while not stop.wait(0.05):
            t0 = time.monotonic()
            requests.get(hub.url + "hub/health", timeout=10)
            slowest[0] = max(slowest[0], time.monotonic() - t0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(12) as pool:  # bcrypt: about 0.25 s of CPU each
            codes = list(pool.map(lambda _: _try_login(hub, user.name, user.password).status_code, range(24)))
    finally:
        stop.set()
        watcher.join()
    assert codes == [302] * 24
    assert slowest[0] < 1.0, f"the hub took {slowest[0]:.2f} s to answer while passwords were checked"


def test_sign_up_reveals_no_names_and_caps_pending_requests(accounts_hub):
    hub = accounts_hub
    user = hub.new_user("taken")

    def result(name):
        text = hub.signup(name, "another-long-pass-9").text
        return text.split('id="signup-result"', 1)[1].split("</div>", 1)[0]

    assert result(user.name) == result("freshname1")  # the same answer, taken or free
    assert _try_login(hub, user.name, user.password).status_code == 302  # untouched
    pending = ["freshname1"]
    while len(pending) < PENDING:
        pending.append(f"freshname{len(pending) + 1}")
        assert "sent to the admins" in result(pending[-1])
    assert "Sign-ups are paused" in result("onetoomany")
    hub.approve(pending[0])
    assert "sent to the admins" in result("onetoomany")
    for name in pending[1:] + ["onetoomany"]:  # handled: later sign-ups are taken again
        hub.approve(name)


def test_a_stop_while_the_server_starts_is_answered_cleanly(accounts_hub):
    hub = accounts_hub
    user: HubUser = hub.new_user("stop")
    answers = {}
    starting = threading.Thread(target=lambda: answers.setdefault(
        "start", hub.api("POST", f"users/{user.name}/server", json={"profile": "quick"})))
    starting.start()
    time.sleep(0.3)
    stop = hub.api("DELETE", f"users/{user.name}/server")
    starting.join()
    assert stop.status_code in (202, 204)
    start = answers["start"]
    assert start.status_code == 409 and start.json()["message"] == STOPPED_WHILE_STARTING
    hub._wait_stopped(user.name, 60)
    assert " 500 " not in hub.log_path.read_text(errors="replace")


def test_the_first_admin_password_is_shown_once(accounts_hub):
    hub = accounts_hub
    password = (hub.state_dir / "first-admin-password").read_text().split()[1]
    hub.restart_hub()
    log = hub.log_path.read_text(errors="replace")
    assert log.count(password) == 1 and "shown this once" in log
    assert "is in " + str(hub.state_dir) + "/first-admin-password" in log
