"""The speckle.ui building blocks one by one: server paths, folder listing, image and regions,
errors in words, the device badge, the result folder, and the core staying Jupyter-free."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from speckle.errors import InvalidInputError, UnsupportedFormatError
from speckle.io.dataset import ArrayDataset, Metadata
from speckle.ui import DeviceBadge, ImageView
from speckle.ui.common._common import MessageBox, RunPanel, Tasks, describe_error
from speckle.io.browse import entry_path, list_entries, safe_join
from speckle.ui.common.device import device_text
from speckle.ui.common.export import result_folder_name, write_result_folder
from speckle.ui.common.regions import region_from_extents
from speckle.ui.common.server import data_dirs, download_url, results_root, upload_dir
from speckle.xpcs.analysis import XpcsOptions, analyze
from speckle.errors import Cancelled
from speckle.xpcs.partitions import rectangles
from ui_helpers import drag

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ server and folders
def test_download_url_inside_and_outside_the_server_root(tmp_path):
    f = tmp_path / "speckle-results" / "run 1" / "result.h5"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    assert download_url(f, prefix="/user/ana/", root=tmp_path) == \
        "/user/ana/files/speckle-results/run%201/result.h5?download=1"
    assert download_url(f, prefix="/", root=tmp_path / "other") is None
    hidden = tmp_path / ".cache" / "x.h5"
    hidden.parent.mkdir()
    hidden.write_bytes(b"x")
    assert download_url(hidden, prefix="/", root=tmp_path) is None  # the server refuses these


def test_folders_from_the_environment(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    env = {"SPECKLE_DATA_DIRS": f"{a}{os.pathsep}{b}{os.pathsep}{a}", "HOME": str(tmp_path)}
    assert data_dirs(env) == [a]  # missing folders and duplicates are dropped
    assert upload_dir({"SPECKLE_UPLOAD_DIR": str(b)}) == b
    assert results_root({"SPECKLE_RESULTS_DIR": str(b)}) == b
    assert results_root({}) == Path("~/speckle-results").expanduser()


def test_listing_is_newest_first_readable_only_and_cannot_escape(tmp_path):
    root = tmp_path / "beamline"
    (root / "day1").mkdir(parents=True)
    old = root / "day1" / "old.npy"
    new = root / "day1" / "new.npy"
    np.save(old, np.ones((2, 4, 4), np.uint16))
    np.save(new, np.ones((2, 4, 4), np.uint16))
    os.utime(old, (1_000_000_000, 1_000_000_000))
    (root / "day1" / "log.txt").write_text("text")
    (root / "day1" / ".hidden.npy").write_bytes(new.read_bytes())
    secret = tmp_path / "secret"
    secret.mkdir()
    np.save(secret / "private.npy", np.ones((2, 4, 4)))
    (root / "day1" / "escape").symlink_to(secret)
    entries = list_entries(root, "day1")
    assert [e.name for e in entries] == ["new.npy", "old.npy"]
    assert entries[0].format == "npy" and entry_path("day1", entries[0]) == "day1/new.npy"
    assert entries[0].size == new.stat().st_size
    for bad in ("../secret", "day1/../../secret", "day1/escape/private.npy", "/etc"):
        with pytest.raises(InvalidInputError):
            safe_join(root, bad)
    assert safe_join(root, "day1/new.npy") == new.resolve()


# ------------------------------------------------------------------------ image and regions
@pytest.fixture
def view():
    v = ImageView()
    data = np.random.default_rng(2).poisson(1.0, (12, 64, 80)).astype(np.uint16)
    v.set_dataset(ArrayDataset(data, Metadata(energy=8000.0, distance=2.0,
                                              pixel_size=(75e-6, 75e-6),
                                              beam_center=(32.0, 40.0))))
    assert v.wait(30)
    return v


def test_region_from_extents():
    assert region_from_extents(10.2, 20.6, 4.9, 5.2, (64, 80)) == (5, 6, 10, 22)
    assert region_from_extents(30, 10, 8, 2, (64, 80)) == (2, 9, 10, 31)  # any drag direction
    assert region_from_extents(-5, 300, -5, 300, (64, 80)) == (0, 64, 0, 80)  # clipped
    assert region_from_extents(-5, -2, 3, 9, (64, 80)) is None  # off the detector


def test_drawing_a_rectangle_with_the_mouse(view):
    assert view.mode.value == "q-rings"  # geometry known
    view.mode.value = "rectangles"
    canvas = view.canvas
    canvas.draw()  # lay the figure out, as the first display does
    version = view.regions_version
    drag(canvas, view.ax, (10, 5), (30, 25), via=(20, 12))  # (column, row)
    assert view.regions == [(5, 26, 10, 31)]
    assert view.region_list.options == ("1: rows 5:26, cols 10:31 (21×21 px)",)
    assert view.regions_version > version
    part = view.partition()
    assert part.n_dynamic == 1 and part.labels == ["ROI 1 [5:26, 10:31]"]
    view.region_list.index = 0
    view.delete_button.click()
    assert view.regions == [] and view.region_list.options == ()
    with pytest.raises(InvalidInputError, match="draw at least one region"):
        view.partition()


def test_typed_regions_and_their_errors(view):
    view.region_text.value = "nonsense"
    assert "ROW0:ROW1,COL0:COL1" in view.message.text
    assert "speckle-error" in view.message._dom_classes
    view.region_text.value = "0:10,0:200"
    assert "outside" in view.message.text and view.regions == []
    view.region_text.value = "0:10,0:20"
    assert view.regions == [(0, 10, 0, 20)] and view.message.text == ""
    view.clear_button.click()
    assert view.regions == []


def test_qrings_from_the_fields_in_ui_units(view):
    view.mode.value = "q-rings"
    view.q_min.value = 0.001
    view.q_width.value = 0.0005
    view.q_step.value = 0.0
    view.n_rings.value = 3
    part = view.partition()
    np.testing.assert_allclose(part.extra["ring_edges"][0], [0.001e10, 0.0015e10])
    assert part.labels[0] == "q=0.00125 1/Å"
    assert view.geometry().pixel_size == (75e-6, 75e-6)
    view.n_rings.value = 200  # rings off the detector: said in the page
    assert "contain no usable pixel" in view.message.text
    view.n_rings.value = 3
    assert view.message.text == ""
    view.pixel_um.value = 0
    assert "pixel size (µm)" in view.message.text


def test_image_kind_and_scale(view):
    assert "time average of all frames" in view.caption.value
    for scale in ("linear", "sqrt", "log"):
        view.scale.value = scale
        assert view._colorbar.ax.get_ylabel() == f"counts ({scale} scale)"
    view.kind.value = "first"
    assert "first frame" in view.caption.value
    np.testing.assert_array_equal(view._first, view._dataset.frame(0))


# ------------------------------------------------------------------------ messages and threads
def test_errors_in_words():
    assert describe_error(UnsupportedFormatError("x.h5: unsupported\n  content")) == \
        "x.h5: unsupported content"
    assert "Permission denied: /data/x.h5" in describe_error(
        PermissionError(13, "Permission denied", "/data/x.h5"))
    assert "not full" in describe_error(OSError(28, "No space left on device", "/home/u"))
    assert "Not enough memory" in describe_error(MemoryError())
    text = describe_error(KeyError("frames"))
    assert "KeyError" in text and "bug in speckle" in text
    assert describe_error(Cancelled("x")) == "Cancelled."


def test_message_box_and_tasks():
    box = MessageBox()
    assert box.layout.display == "none"
    box.error(InvalidInputError("bad <input>"))
    assert "&lt;input&gt;" in box.value and box.layout.display is None
    assert "speckle-error" in box._dom_classes
    box.show("fine", "info")
    assert "speckle-error" not in box._dom_classes and "speckle-message" in box._dom_classes
    box.clear()
    assert box.text == "" and box.layout.display == "none"

    tasks, seen = Tasks("t"), []
    tasks.start(lambda: time.sleep(0.2) or "old", seen.append, seen.append,
                on_stale=lambda v: seen.append(("stale", v)))
    tasks.start(lambda: "new", seen.append, seen.append)
    assert tasks.wait(5)
    assert sorted(map(str, seen)) == sorted(["new", str(("stale", "old"))])


def test_run_panel_states_stages_cancel_failures_and_replacement():
    panel = RunPanel(label="Go", what="The job", prefix="speckle-x",
                     retry_hint="Try a smaller one.")
    assert {"speckle-x-run", "speckle-run-button"} <= set(panel.run_button._dom_classes)
    assert {"speckle-x-stage", "speckle-run-stage"} <= set(panel.stage._dom_classes)
    assert panel.state == "idle" and panel.cancel_button.disabled

    def refuse():
        raise InvalidInputError("choose something first")

    assert panel.run(refuse) is None  # refused before the start, in words
    assert panel.state == "failed" and "The job did not run:" in panel.message.value
    assert panel.message.text == "choose something first. Fix this and press Go again."

    shown = []

    def work(progress, cancel):
        progress(0.25, "reading")
        shown.append(panel.stage.value)
        progress(0.5, "fitting")  # a new stage shows at once...
        shown.append(panel.stage.value)
        progress(0.6, "fitting")  # ... the same one at most ten times a second
        shown.append(panel.stage.value)

    panel.run(lambda: work)
    assert panel.wait(5) and panel.state == "done" and panel.message.text == ""
    assert shown == ["reading 25%", "fitting 50%", "fitting 50%"]
    assert panel.stage.value.startswith("done in") and panel.progress.value == 1.0
    assert panel.progress.bar_style == "success"

    def slow(progress, cancel):
        while not cancel():
            time.sleep(0.01)
        raise Cancelled("stopped")

    panel.start(slow)
    assert panel.state == "running" and panel.running and panel.run_button.disabled
    panel.cancel_button.click()
    assert panel.stage.value == "cancelling…" and panel.cancel_button.disabled
    assert panel.wait(5) and panel.state == "cancelled" and panel.stage.value == "cancelled"
    assert panel.message.text == "" and not panel.run_button.disabled

    def broken(progress, cancel):
        raise OSError(28, "No space left on device")

    panel.start(broken)
    assert panel.wait(5) and panel.state == "failed" and panel.stage.value == "failed"
    assert "speckle-error" in panel.message._dom_classes and "The job failed:" in \
        panel.message.value
    assert "No space left on device" in panel.error
    assert panel.message.text.endswith(". Try a smaller one.")

    ran = []  # replace: the running work is cancelled, the new one starts when it stopped
    panel.start(slow)
    panel.run(lambda: ran.append("prepared") or (lambda p, c: ran.append("ran")),
              replace=True)
    assert panel.wait(5) and ran == ["prepared", "ran"] and panel.state == "done"


def test_device_badge_says_what_computes(monkeypatch):
    monkeypatch.delenv("SPECKLE_GPU_NAME", raising=False)
    badge = DeviceBadge()
    assert badge.wait(30)
    assert "speckle-device" in badge._dom_classes
    from speckle import backend

    expected = backend.device_description()
    assert badge.text == expected and expected in badge.value
    if not backend.gpu_available():
        assert badge.text == "CPU: this server has no GPU"
        assert "NVIDIA H100 80GB" in device_text({"SPECKLE_GPU_NAME": "NVIDIA H100 80GB"})
        assert device_text({"SPECKLE_GPU_NAME": "NVIDIA H100 80GB"}).startswith("CPU")
        # the hub says "CPU" when it assigned no GPU
        assert device_text({"SPECKLE_GPU_NAME": "CPU"}) == "CPU: this server has no GPU"
    else:
        assert device_text({"SPECKLE_GPU_NAME": "NVIDIA H100 80GB"}) == "NVIDIA H100 80GB"


# ------------------------------------------------------------------------ result folder
@pytest.fixture(scope="module")
def small_result():
    data = np.random.default_rng(3).poisson(3.0, (64, 16, 16)).astype(np.uint16)
    ds = ArrayDataset(data, Metadata(frame_time=1e-3))
    return analyze(ds, rectangles(ds.frame_shape, [(0, 8, 0, 8), (8, 16, 8, 16)]),
                   XpcsOptions())


def test_result_folder_is_whole_or_absent(tmp_path, small_result):
    files = write_result_folder(small_result, "scan 7.h5", root=tmp_path)
    assert files.folder.name.startswith("scan_7-")
    assert sorted(p.name for p in files.folder.iterdir()) == sorted(
        ["result.h5", "g2.csv", "fits.csv", "tables.zip", "g2.png", "intensity.png",
         "mean_image.png"])
    again = write_result_folder(small_result, "scan 7.h5", root=tmp_path)
    assert again.folder != files.folder  # never overwrites an earlier result

    def stop(fraction, stage):
        if stage == "writing PNG plots":
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        write_result_folder(small_result, "cancelled", root=tmp_path, step=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [files.folder.name, again.folder.name])  # no partial folder left


def test_result_folder_name():
    assert result_folder_name("demo-xpcs", 0).startswith("demo-xpcs-1970")
    assert result_folder_name("../../etc/passwd", 0).startswith("etc_passwd-")
    assert result_folder_name("scan.npy.zip", 0).startswith("scan-")


# ------------------------------------------------------------------------ the core stays free
def test_the_library_imports_without_jupyter():
    code = ("import sys, speckle, speckle.io, speckle.plots, speckle.cli, "
            "speckle.xpcs.analysis, speckle.backend; "
            "bad = [m for m in ('ipywidgets', 'ipympl', 'anywidget', 'speckle.ui') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nothing_outside_speckle_ui_imports_it():
    offenders = []
    for path in (ROOT / "speckle").rglob("*.py"):
        if "ui" in path.relative_to(ROOT / "speckle").parts[:1]:
            continue
        text = path.read_text(encoding="utf-8")
        if "speckle.ui" in text or "from .ui" in text or "from ..ui" in text:
            offenders.append(str(path))
    assert offenders == []


def test_earlier_uploads_can_be_opened_again(tmp_path):
    from speckle.ui.common.data_chooser import DataChooser

    uploads = tmp_path / "speckle-uploads"
    uploads.mkdir()
    np.save(uploads / "scan.npy", np.ones((4, 8, 8), np.uint16))
    chooser = DataChooser(data_dirs=[], upload_dir=uploads, demos=[])
    assert [label for label, _ in chooser.root_choice.options] == [f"my uploads ({uploads})"]
    deadline = time.time() + 30
    while "scan.npy" not in [v for _, v in chooser.listing.options] and time.time() < deadline:
        time.sleep(0.05)
    chooser.listing.value = "scan.npy"
    chooser.open_selected()
    deadline = time.time() + 30
    while chooser.state in ("empty", "opening") and time.time() < deadline:
        time.sleep(0.05)
    assert chooser.state == "ready", chooser.message.text
    assert chooser.dataset.shape == (4, 8, 8)


def test_the_folder_is_listed_again_when_the_page_is_shown_later(tmp_path, monkeypatch):
    """A preheated dashboard lists the folders at server start; the page may be shown hours later."""
    from speckle.ui.common import data_chooser
    from speckle.ui.common.data_chooser import DataChooser

    beamline = tmp_path / "beamline"
    beamline.mkdir()
    np.save(beamline / "early.npy", np.ones((4, 8, 8), np.uint16))
    chooser = DataChooser(data_dirs=[beamline], upload_dir=tmp_path / "none", demos=[])
    listed = lambda: [v for _, v in chooser.listing.options]  # noqa: E731
    assert listed() == ["early.npy"]
    np.save(beamline / "late.npy", np.ones((4, 8, 8), np.uint16))
    # a display right after the listing does not list again (a page built for its own view)
    chooser.shown._on_message(chooser.shown, {"event": "shown"}, [])
    assert listed() == ["early.npy"]
    # shown later: the new file is there, newest first, and the page says when it was listed
    monkeypatch.setattr(data_chooser, "RELIST_AFTER_S", -1.0)
    chooser.shown._on_message(chooser.shown, {"event": "other"}, [])
    assert listed() == ["early.npy"]
    chooser.shown._on_message(chooser.shown, {"event": "shown"}, [])
    assert sorted(listed()) == ["early.npy", "late.npy"]
    assert "listed at" in chooser.where.value
    # a user's selection is never thrown away by a display
    chooser.listing.value = "early.npy"
    np.save(beamline / "later.npy", np.ones((4, 8, 8), np.uint16))
    chooser.shown._on_message(chooser.shown, {"event": "shown"}, [])
    assert chooser.listing.value == "early.npy" and "later.npy" not in listed()


# ------------------------------------------------------------------------ the shared regions
def test_region_list_checks_replaces_and_calls_back():
    from speckle.ui.common.regions import RegionList, parse_regions

    assert parse_regions(" 1:3,2:4 ;; 5:9,0:2; ") == [(1, 3, 2, 4), (5, 9, 0, 2)]
    with pytest.raises(InvalidInputError, match="ROW0:ROW1,COL0:COL1"):
        parse_regions("1:3,2:4; 5-9,0:2")

    model = RegionList(max_regions=2)
    with pytest.raises(InvalidInputError, match="Choose data first"):
        model.add(0, 1, 0, 1)
    model.set_shape((10, 20))
    calls = []
    model.on_change(lambda: calls.append(model.regions))
    for bad in [(0, 11, 0, 5), (3, 3, 0, 5), (-1, 4, 0, 5), (0, 4, 6, 2)]:
        with pytest.raises(InvalidInputError, match="outside the 10×20 image"):
            model.add(*bad)
    assert calls == [] and model.regions == []

    model.add(0, 2, 0, 2)
    model.add(1, 3, 1, 3)
    model.add(2, 4, 2, 4)  # beyond max_regions: the oldest goes
    assert model.regions == [(1, 3, 1, 3), (2, 4, 2, 4)] and len(calls) == 3
    with pytest.raises(InvalidInputError):
        model.add_text("0:5,0:5; 0:50,0:5")  # all or none
    assert model.regions == [(1, 3, 1, 3), (2, 4, 2, 4)] and len(calls) == 3
    model.remove(7)  # out of range: nothing
    model.remove(0)
    assert model.regions == [(2, 4, 2, 4)]
    model.set_shape((10, 20))  # the same image: kept
    assert model.regions == [(2, 4, 2, 4)]
    model.set_shape((12, 20))  # another image: dropped
    assert model.regions == [] and calls[-1] == []

    nothing = RegionList(max_regions=0, shape=(4, 4))
    with pytest.raises(InvalidInputError):
        nothing.add(0, 1, 0, 1)


def test_xpcs_and_imaging_views_share_one_region_editor(view):
    from speckle.ui.common.region_editor import RegionEditor
    from speckle.ui.imaging import ComplexImageView

    complex_view = ComplexImageView(max_regions=None)
    complex_view.set_image(np.ones((64, 80)))
    for v in (view, complex_view):
        assert type(v.editor) is RegionEditor
        v.region_text.value = "1:5,2:6; 10:20,30:40"  # several at once
        assert v.regions == [(1, 5, 2, 6), (10, 20, 30, 40)]
        assert v.region_list.options == v.editor.region_list.options
        assert len(v.region_list.options) == 2
    assert view.mode.value == "rectangles"
    assert view.partition().n_dynamic == 2  # the regions become the XPCS partition's ROIs


@pytest.mark.parametrize("module", ["common/regions.py", "imaging/cdi_controller.py",
                                    "imaging/cdi_text.py", "imaging/refocus_controller.py",
                                    "imaging/render.py"])
def test_controllers_and_models_import_no_widgets(module):
    """The plain-Python halves of the dashboards: no widget library, no widget module."""
    import ast

    tree = ast.parse((ROOT / "speckle/ui" / module).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    widget_modules = ("ipywidgets", "traitlets", "anywidget", "ipympl", "_common", "canvas",
                      "region_editor", "complex_view", "beamtime", "dashboard", "image_view")
    assert not [m for m in imported if any(w in m.split(".") for w in widget_modules)]
