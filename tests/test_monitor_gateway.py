"""The monitor's analyses on a cluster from a real dask-gateway server (the gateway a facility
runs; here its local backend on loopback with a password), with the same results as one
process; the cluster is shut down with the monitor."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import requests

from monitor_helpers import config, write_stack
from speckle.monitor import Monitor
from speckle.monitor.index import read_index

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gateway(tmp_path):
    """A dask-gateway server (local backend, password login); yields its public address."""
    api, public = _free_port(), _free_port()
    conf = tmp_path / "gateway_config.py"
    conf.write_text(f"""
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = "gateway-test-password"
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{public}"
c.ClusterConfig.scheduler_cmd = [{str(VENV_BIN / 'dask')!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{str(VENV_BIN / 'dask')!r}, "worker"]
c.DaskGateway.db_url = "sqlite:///{tmp_path / 'gateway.sqlite'}"
""")
    log = open(tmp_path / "gateway.log", "wb")
    proc = subprocess.Popen([str(VENV_BIN / "dask-gateway-server"), "-f", str(conf)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    address = f"http://127.0.0.1:{public}"
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if requests.get(address + "/api/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("dask-gateway-server did not start:\n"
                        + (tmp_path / "gateway.log").read_text(errors="replace")[-2000:])
        import dask

        # what DASK_GATEWAY__AUTH__KWARGS__* say in a deployment (dask reads the environment
        # once, when it is first imported)
        with dask.config.set({"gateway.auth.kwargs": {"username": "monitor",
                                                      "password": "gateway-test-password"}}):
            yield address
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_analyses_on_a_dask_gateway_cluster_equal_one_process(gateway, tmp_path):
    data = tmp_path / "beamline"
    data.mkdir()
    for i in range(2):
        write_stack(data / f"scan_{i}.h5", seed=40 + i, n=160)
    Monitor(config(data, tmp_path / "one")).run_once(timeout=120)
    cluster = {"type": "gateway", "address": gateway, "auth": "basic", "workers": 1}
    Monitor(config(data, tmp_path / "gw", cluster=cluster)).run_once(timeout=240)
    entries = read_index(tmp_path / "gw" / "index.jsonl")
    assert len(entries) == 2 and all("error" not in e for e in entries), entries
    for i in range(2):
        rel = Path("beamline") / f"scan_{i}_h5" / "result.h5"
        with h5py.File(tmp_path / "one" / rel) as a, h5py.File(tmp_path / "gw" / rel) as b:
            assert np.array_equal(a["xpcs/multitau/normalized_g2"][()],
                                  b["xpcs/multitau/normalized_g2"][()])
    # the monitor shut its gateway cluster down when it stopped (the gateway's REST API)
    r = requests.get(gateway + "/api/v1/clusters/", auth=("monitor", "gateway-test-password"),
                     timeout=10)
    assert r.status_code == 200 and r.json() == {}, r.text
