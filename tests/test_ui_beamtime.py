"""The XPCS dashboard and the beamtime monitor: the page's settings as a folder's template and
back, a Beamtime result opened in the dashboard with its template, and the template saved
through the monitor's API."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np
import pytest

from speckle.demo import demo_metadata, demo_path
from speckle.errors import InvalidInputError
from speckle.monitor import Monitor, MonitorConfig
from speckle.monitor.index import read_index
from speckle.monitor.jobs import analyse_file
from speckle.monitor.templates import Template, TemplateStore
from speckle.ui import xpcs_dashboard
from speckle.ui.beamtime import FolderTemplatePanel, read_monitor_result, xpcs_recipe_of


@pytest.fixture
def beamline(home, monkeypatch):
    """A beamline folder holding the demo series (as the hub sets SPECKLE_DATA_DIRS)."""
    folder = home / "beamline" / "sample3"
    folder.mkdir(parents=True)
    shutil.copy(demo_path("xpcs"), folder / "scan_0001.npy.zip")
    monkeypatch.setenv("SPECKLE_DATA_DIRS", str(home / "beamline"))
    return folder


def _demo_dashboard(path):
    dash = xpcs_dashboard()
    dash.chooser.open_path(path, metadata=demo_metadata("xpcs"))
    assert dash.wait(60) and dash.chooser.state == "ready", dash.chooser.message.text
    return dash


def test_the_dashboards_settings_as_a_template_and_back(beamline):
    dash = _demo_dashboard(beamline / "scan_0001.npy.zip")
    dash.image.add_roi(100, 160, 60, 120)
    dash.image.add_roi(20, 80, 150, 220)
    dash.runner.model.value = "stretched"
    dash.runner.twotime.value = False
    dash.runner.frame_time_ms.value = 2.5
    dash.runner.exclude.value = "3,10"  # belongs to one run: not in the template
    folder, template = dash._folder_template()
    assert folder == str(beamline)
    t = Template.from_dict(template)
    assert t.kind == "xpcs" and t.xpcs.partition.kind == "rois"
    assert t.xpcs.partition.rois == ((100, 160, 60, 120), (20, 80, 150, 220))
    assert t.xpcs.options.fit_model == "stretched" and t.xpcs.options.twotime is False
    assert t.xpcs.options.exclude_frames == ()
    assert t.xpcs.metadata["frame_time"] == pytest.approx(2.5e-3)

    other = xpcs_dashboard()
    other.open_with_recipe(beamline / "scan_0001.npy.zip", t.xpcs)
    assert other.wait(120) and other.runner.state == "done", other.runner.error
    assert other.image.rois == [(100, 160, 60, 120), (20, 80, 150, 220)]
    assert other.runner.model.value == "stretched" and other.runner.twotime.value is False
    assert other.runner.frame_time_ms.value == pytest.approx(2.5)
    assert other.runner.result.partition.n_dynamic == 2
    assert other.runner.result.metadata.frame_time == pytest.approx(2.5e-3)


def test_the_monitor_and_the_dashboard_give_the_same_g2_for_the_same_rings(beamline, tmp_path):
    dash = _demo_dashboard(beamline / "scan_0001.npy.zip")
    assert dash.image.mode.value == "q-rings"  # the demo's geometry is known
    dash.image.n_rings.value = 5
    dash.runner.run()
    assert dash.wait(120) and dash.runner.state == "done", dash.runner.error
    _, template = dash._folder_template()
    assert Template.from_dict(template).xpcs.partition.kind == "q_rings"
    out = analyse_file(str(beamline / "scan_0001.npy.zip"), template, str(tmp_path / "r"))
    assert "error" not in out, out
    with h5py.File(tmp_path / "r" / "result.h5") as f:
        monitor_g2 = f["xpcs/multitau/normalized_g2"][()]
    assert monitor_g2.shape[1] == 5
    np.testing.assert_allclose(monitor_g2, np.asarray(dash.runner.result.g2.g2), rtol=1e-12)


def _monitor_result(beamline, results) -> str:
    """Let a real monitor analyse the beamline folder with a template of two regions."""
    store = TemplateStore(results / "templates")
    store.save(Template.from_dict({
        "kind": "xpcs", "folder": str(beamline),
        "xpcs": {"partition": {"kind": "rois", "rois": [[0, 64, 0, 64], [100, 200, 100, 200]]},
                 "metadata": {"frame_time": "1.30068ms"}, "options": {"fit_model": "single"}}}))
    config = MonitorConfig.from_dict({"folders": [str(beamline.parent)], "results": str(results),
                                      "cluster": {"type": "process"}})
    Monitor(config).run_once(timeout=120)
    [entry] = read_index(results / "index.jsonl")
    assert "error" not in entry, entry
    return entry["result"]


def test_a_beamtime_result_opens_with_its_template_and_is_analysed(beamline, tmp_path, monkeypatch):
    results = tmp_path / "results"
    result = _monitor_result(beamline, results)
    monkeypatch.setenv("SPECKLE_MONITOR_RESULTS", str(results))
    dash = xpcs_dashboard()
    dash.page_query.query = "?" + urllib.parse.urlencode({"result": result})  # what the browser sends
    assert dash.wait(120) and dash.chooser.state == "ready", dash.chooser.message.text
    assert dash.runner.wait(120) and dash.runner.state == "done", dash.runner.error
    assert Path(str(dash.chooser.dataset.source)) == beamline / "scan_0001.npy.zip"
    assert dash.image.rois == [(0, 64, 0, 64), (100, 200, 100, 200)]
    assert dash.runner.result.metadata.frame_time == pytest.approx(1.30068e-3)
    summary = json.loads((Path(result) / "summary.json").read_text())
    assert dash.results.level == summary["verdict"]  # the same verdict as on the Beamtime page


def test_results_from_elsewhere_are_refused(beamline, tmp_path):
    results = tmp_path / "results"
    result = Path(_monitor_result(beamline, results))
    roots = [beamline.parent]
    path, template = read_monitor_result(result, results_root=results, data_roots=roots)
    assert path == beamline / "scan_0001.npy.zip" and template.xpcs.partition.kind == "rois"
    with pytest.raises(InvalidInputError, match="not a result of this hub"):
        read_monitor_result(result, results_root=tmp_path / "other", data_roots=roots)
    with pytest.raises(InvalidInputError, match="not a result of this hub"):
        read_monitor_result(results / ".." / "elsewhere", results_root=results, data_roots=roots)
    with pytest.raises(InvalidInputError, match="not in a data folder"):
        read_monitor_result(result, results_root=results, data_roots=[tmp_path / "nowhere"])
    with pytest.raises(InvalidInputError, match="no readable result"):
        read_monitor_result(results / "templates", results_root=results, data_roots=roots)
    dash = xpcs_dashboard()  # in the page: a message, no dataset
    dash.page_query.query = "?result=%2Fetc"
    assert dash.chooser.dataset is None and "not a result" in dash.chooser.message.text


class _FakeMonitor(BaseHTTPRequestHandler):
    """Stands in for the monitor's API: records the request, answers like the service."""

    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        if body["folder"].endswith("refused"):
            reply, status = {"error": "'x' is not a folder the monitor watches"}, 400
        else:
            reply = {"folder": body["folder"], "file": "/r/templates/sample3-1234.yaml",
                     "template": {**body["template"], "saved_by": "ana"}}
            status = 200
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_the_template_button_saves_through_the_monitor_with_the_servers_token(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeMonitor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/services/beamtime/"
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret-token")
    try:
        template = Template(kind="xpcs").to_dict()
        panel = FolderTemplatePanel(lambda: ("/data/sample3", template), url=url)
        assert panel.layout.display is None  # shown: there is a monitor
        panel.button.click()
        assert panel.wait(30)
        path, auth, body = _FakeMonitor.seen[-1]
        assert path == "/services/beamtime/api/templates" and auth == "token secret-token"
        assert body == {"folder": "/data/sample3", "template": template}
        assert "Saved" in panel.note.value and "/data/sample3" in panel.note.value
        refused = FolderTemplatePanel(lambda: ("/data/refused", template), url=url)
        refused.button.click()
        assert refused.wait(30)
        assert "not a folder the monitor watches" in refused.message.text and refused.note.value == ""
        nothing = FolderTemplatePanel(lambda: (_ for _ in ()).throw(InvalidInputError("choose a dataset")), url=url)
        nothing.button.click()
        assert "choose a dataset" in nothing.message.text
    finally:
        server.shutdown()
    assert FolderTemplatePanel(lambda: None, url="").layout.display == "none"  # no monitor


def test_uploads_and_demo_data_are_not_watched_folders(home):
    dash = xpcs_dashboard()
    dash.chooser.open_demo("xpcs")
    assert dash.wait(60)
    with pytest.raises(InvalidInputError, match="not watched"):
        dash._folder_template()
    assert xpcs_recipe_of(dash.image, dash.runner).partition.kind == "q_rings"
