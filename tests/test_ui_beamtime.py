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
from speckle.ui.common.beamtime import (
    FolderTemplatePanel,
    read_monitor_result,
    xpcs_recipe_of,
)


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
    dash.image.add_region(100, 160, 60, 120)
    dash.image.add_region(20, 80, 150, 220)
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
    assert other.image.regions == [(100, 160, 60, 120), (20, 80, 150, 220)]
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
    assert dash.image.regions == [(0, 64, 0, 64), (100, 200, 100, 200)]
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


# ---------------------------------------------------------------------------------- imaging
def _hologram_folder(home, monkeypatch):
    """A beamline folder with a hologram whose object lies 3 um out of the reference plane."""
    from test_fth import simulate_fth

    folder = home / "beamline" / "holo"
    folder.mkdir(parents=True)
    hologram, _ = simulate_fth("absorbing", pixel=30e-9, defocus=3e-6, ref_radius=1.0,
                               photons=1e8, seed=1)
    np.save(folder / "holo_0001.npy", hologram.astype(np.float32))
    monkeypatch.setenv("SPECKLE_DATA_DIRS", str(home / "beamline"))
    return folder


def test_the_fth_dashboards_settings_as_a_template_and_a_result_opened_with_them(home, tmp_path,
                                                                                  monkeypatch):
    from test_fth import ENERGY

    from speckle.imaging.fth import detect_cross_terms, reconstruct
    from speckle.ui.imaging import fth_dashboard

    folder = _hologram_folder(home, monkeypatch)
    dash = fth_dashboard()
    dash.apodization.value = 0.1
    dash.chooser.open_path(folder / "holo_0001.npy")
    assert dash.wait(120) and dash.result is not None, dash.message.text
    image = reconstruct(np.load(folder / "holo_0001.npy")).image
    term = next(t for t in detect_cross_terms(image) if t.col < 128)  # the object, not its twin
    r0, r1, c0, c1 = term.box
    region = (r0 - 4, r1 + 4, c0 - 4, c1 + 4)
    dash.reconstruction_view.clear_regions()
    dash.reconstruction_view.add_region(*region)
    dash.refocus.set_parameters(energy=ENERGY, pitch=30e-9, z_range=(-8e-6, 8e-6))
    dash.refocus.run()
    assert dash.wait(120) and dash.refocus.sweep is not None
    folder_name, template = dash._folder_template()
    assert folder_name == str(folder)
    t = Template.from_dict(template)
    assert t.kind == "fth" and t.options("fth").apodization == pytest.approx(0.1)
    assert t.options("refocus").region == region and t.options("refocus").energy == ENERGY

    # the monitor analyses the folder with it; its result opens in a fresh dashboard
    results = tmp_path / "results"
    TemplateStore(results / "templates").save(t.stamped(folder=str(folder)))
    Monitor(MonitorConfig.from_dict({"folders": [str(folder.parent)], "results": str(results),
                                     "cluster": {"type": "process"}})).run_once(timeout=120)
    [entry] = read_index(results / "index.jsonl")
    focus = json.loads((Path(entry["result"]) / "summary.json").read_text())["details"]["focus_distance_m"]
    assert abs(focus + 3e-6) < 0.5e-6
    monkeypatch.setenv("SPECKLE_MONITOR_RESULTS", str(results))
    other = fth_dashboard()
    other.page_query.query = "?" + urllib.parse.urlencode({"result": entry["result"]})
    assert other.wait(120) and other.result is not None, other.message.text
    assert other.apodization.value == pytest.approx(0.1)
    assert other.reconstruction_view.region == region
    assert other.refocus.sweep is not None  # refocused at once, with the template's settings
    assert abs(other.refocus.best_distance() - focus) < 0.3e-6


def test_the_cdi_dashboards_settings_as_a_template_and_a_result_opened_with_them(home, tmp_path,
                                                                                  monkeypatch):
    from speckle.imaging.simulate import random_object, simulated_pattern
    from speckle.ui.imaging import cdi_dashboard

    folder = home / "beamline" / "cdi"
    folder.mkdir(parents=True)
    monkeypatch.setenv("SPECKLE_DATA_DIRS", str(home / "beamline"))
    np.save(folder / "pattern_0001.npy", simulated_pattern(random_object((128, 128), seed=2),
                                                           photons=1e9, seed=2))
    dash = cdi_dashboard()
    dash.chooser.open_path(folder / "pattern_0001.npy")
    assert dash.wait(120) and dash.shown is not None, dash.message.text
    dash.schedule.value = "30*HIO + 10*ER"
    dash.rounds.value, dash.trials.value = 4, 2
    dash.constraint.value = "real"
    _, template = dash._folder_template()
    t = Template.from_dict(template)
    o = t.options("cdi")
    assert (t.kind, o.schedule, o.rounds, o.trials, o.real, o.positivity) == (
        "cdi", "30*HIO + 10*ER", 4, 2, True, False)

    results = tmp_path / "results"
    TemplateStore(results / "templates").save(t.stamped(folder=str(folder)))
    Monitor(MonitorConfig.from_dict({"folders": [str(folder.parent)], "results": str(results),
                                     "cluster": {"type": "process"}})).run_once(timeout=300)
    [entry] = read_index(results / "index.jsonl")
    assert entry["kind"] == "cdi" and "error" not in entry, entry
    monkeypatch.setenv("SPECKLE_MONITOR_RESULTS", str(results))
    other = cdi_dashboard()
    other.page_query.query = "?" + urllib.parse.urlencode({"result": entry["result"]})
    assert other.wait(300), other.message.text
    assert other.schedule.value == "30*HIO + 10*ER" and other.constraint.value == "real"
    assert (other.rounds.value, other.trials.value) == (4, 2)
    assert other.result is not None  # phased at once with the folder's settings
