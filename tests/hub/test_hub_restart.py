"""Production layout (systemd): the proxy in its own process; a hub restart keeps users' servers."""

import sqlite3

import pytest
import requests

from hubtools import Hub


@pytest.fixture(scope="module")
def hub_with_own_proxy(tmp_path_factory):
    hub = Hub(tmp_path_factory.mktemp("speckle-hub-ext"), external_proxy=True)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


def test_user_server_and_route_survive_a_hub_restart(hub_with_own_proxy):
    hub = hub_with_own_proxy
    user = hub.new_user("r")
    user.start("lab")
    assert user.get("api/contents").status_code == 200
    took = hub.stop_hub_only()
    assert took < 10  # the culler and the hub stop at once; the servers are left running
    # the hub is down: the proxy still answers, and still routes to the user's server
    assert requests.get(hub.url + "hub/health", timeout=5).status_code == 503
    assert user.get("api/contents").status_code == 200
    hub.restart_hub()
    model = hub.api("GET", f"users/{user.name}").json()
    assert model["servers"][""]["ready"]  # found again, not restarted
    assert user.get("api/contents").status_code == 200


def test_the_database_commits_to_a_write_ahead_log(hub_with_own_proxy):
    """The hub's SQLite file is in WAL mode (speckle_hub/database.py): commits append to the log
    instead of waiting for fsync on the event loop; what a running hub wrote is readable."""
    hub = hub_with_own_proxy
    user = hub.new_user("w")
    db = hub.state_dir / "jupyterhub.sqlite"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {row[0] for row in con.execute("SELECT name FROM users")}
    assert user.name in names
    assert (hub.state_dir / "jupyterhub.sqlite-wal").exists()
