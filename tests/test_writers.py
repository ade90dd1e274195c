"""Result writers: APS NeXus (opened by pyXpcsViewer), CSV tables, PNG figures, atomicity."""

import csv
import json
import os
from dataclasses import dataclass

import h5py
import numpy as np
import pytest

from speckle.errors import InvalidInputError
from speckle.io import aps_result, tables
from speckle.io.aps_result import read_aps_result_g2, write_aps_result
from speckle.io.atomic import atomic_path
from speckle.io.dataset import HC_EV_M, Metadata
from speckle.io.tables import write_fits_csv, write_g2_csv
from speckle.plots import (
    bin_outlines,
    fit_curve,
    plot_g2,
    plot_image,
    plot_intensity,
    plot_twotime,
    save_png,
)
from speckle.xpcs.fitting import FitResult
from speckle.xpcs.geometry import Geometry
from speckle.xpcs.partitions import q_phi_sectors, q_rings, rectangles
from speckle.xpcs.result import MultiTauG2, XpcsResult
from speckle.xpcs.verdict import BinVerdict, Verdict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FRAME_TIME = 1.30068e-3


@dataclass
class FakeVerdict:
    """A verdict whose serialisation fails, to interrupt a writer half way."""

    def to_dict(self):
        raise RuntimeError("disk full (simulated)")


def _fit(tau, success=True):
    return FitResult("stretched", {"baseline": 1.0, "contrast": 0.2, "tau": tau, "stretch": 1.0},
                     {"baseline": 0.001, "contrast": 0.01, "tau": tau / 10, "stretch": 0.05},
                     chi2_reduced=1.1, success=success, message="fit converged", n_points=16)


def make_result(kind="qring", twotime=True, frame_time=FRAME_TIME):
    shape = (40, 48)
    md = Metadata(frame_time=frame_time, count_time=1e-3, energy=HC_EV_M / 1.546e-10,
                  distance=2.23, pixel_size=(1.08e-4, 1.08e-4), beam_center=(20.3, 22.7),
                  extra={"start_time": "2024-05-01T12:00:00"})
    if kind == "qring":
        part = q_rings(shape, Geometry.from_metadata(md), q_min=0.0016e10, q_width=4e-4 * 1e10,
                       n_rings=3, static_per_dynamic=2)
    else:
        part = rectangles(shape, ["0:10,0:10", "10:20,5:30", "30:40,40:48"])
    tau = np.r_[np.arange(1, 9), np.arange(10, 17, 2), np.arange(20, 33, 4)]
    taus = np.array([0.005, 0.01, 0.02])
    ft = frame_time or 1.0
    g2 = 1 + 0.2 * np.exp(-2 * tau[:, None] * ft / taus[None, :])
    err = np.full_like(g2, 0.01)
    err[0, 0] = 0.02
    err[-1, 2] = np.nan
    g2[-1, 2] = np.nan
    rng = np.random.default_rng(1)
    maps = {}
    if twotime:
        lag = np.abs(np.subtract.outer(np.arange(32), np.arange(32)))
        for b in (1, 3):
            c = 1 + 0.2 * np.exp(-lag / 5.0) + rng.normal(0, 0.01, (32, 32))
            maps[b] = 0.5 * (c + c.T)
    fits = [_fit(float(taus[0])), None, _fit(float(taus[2]))]
    verdict = Verdict("marginal", "one bin is bad", [],
                      [BinVerdict(b + 1, part.labels[b], level)
                       for b, level in enumerate(("good", "marginal", "bad"))])
    return XpcsResult(
        g2=MultiTauG2(tau, g2, err, np.arange(tau.size)[::-1] * 10 + 5), partition=part,
        metadata=md, intensity_vs_time=rng.uniform(0.5, 1.0, 64),
        mean_image=rng.uniform(0, 2, shape), static_intensity=np.linspace(1, 2, part.n_static),
        twotime=maps, twotime_bin_frames=2, fits=fits, verdict=verdict,
        parameters={"buffers": 8, "levels": np.int64(3), "exclude": np.array([1, 2]),
                    "threshold": float("nan")})


# -------------------------------------------------------------------------- APS result file

def test_aps_result_round_trip(tmp_path):
    r = make_result()
    path = write_aps_result(r, tmp_path / "run_results.hdf")
    back = read_aps_result_g2(path)
    assert np.array_equal(back.tau_frames, r.g2.tau_frames)
    np.testing.assert_array_equal(back.g2, r.g2.g2)
    np.testing.assert_array_equal(back.g2_err, r.g2.g2_err)
    with h5py.File(path, "r") as f:
        assert "entry/instrument/bluesky/metadata" in f
        assert f["entry/start_time"][()].decode() == "2024-05-01T12:00:00"
        assert f["entry/instrument/detector_1/frame_time"][()] == FRAME_TIME
        assert f["entry/instrument/detector_1/count_time"][()] == 1e-3
        assert f["entry/instrument/incident_beam/incident_energy"][()] == pytest.approx(
            HC_EV_M / 1.546e-10 / 1000)
        assert f["xpcs/multitau/config/stride_frame"][()] == 1
        assert f["xpcs/multitau/config/avg_frame"][()] == 1
        np.testing.assert_allclose(f["xpcs/qmap/dynamic_v_list_dim0"][()],
                                   r.partition.dynamic_q * 1e-10, rtol=1e-12)
        assert f["xpcs/qmap/beam_center_x"][()] == 22.7
        assert f["xpcs/qmap/beam_center_y"][()] == 20.3
        assert f["xpcs/temporal_mean/scattering_2d"].shape == (1, 40, 48)
        np.testing.assert_array_equal(f["xpcs/temporal_mean/scattering_1d"][0],
                                      r.static_intensity)
        np.testing.assert_array_equal(f["xpcs/spatial_mean/intensity_vs_time"][1],
                                      r.intensity_vs_time)
        assert sorted(f["xpcs/twotime/correlation_map"]) == ["c2_00001", "c2_00003"]
        c2 = f["xpcs/twotime/correlation_map/c2_00003"][()]
        np.testing.assert_allclose(c2, np.triu(r.twotime[3]), rtol=1e-6)
        assert f["xpcs/twotime/config/avg_frame"][()] == 2
        sp = f["xpcs/speckle"]
        params = json.loads(sp["parameters"][()])
        assert params == {"buffers": 8, "levels": 3, "exclude": [1, 2], "threshold": None}
        verdict = json.loads(sp["verdict"][()])
        assert verdict["level"] == "marginal" and verdict["bins"][2]["level"] == "bad"
        assert [s.decode() for s in sp["labels"][()]] == r.partition.labels
        tau_fit = sp["fits/tau"][()]
        assert tau_fit[0] == 0.005 and np.isnan(tau_fit[1]) and tau_fit[2] == 0.02
        assert np.isnan(sp["fits/tau_err"][1]) and sp["fits/tau_err"][2] == pytest.approx(0.002)
        assert [s.decode() for s in sp["fits/model"][()]] == ["stretched", "", "stretched"]
        assert list(sp["fits/success"][()]) == [1, -1, 1]
        assert sp["fits/chi2_reduced"][0] == 1.1 and np.isnan(sp["fits/chi2_reduced"][1])
        assert json.loads(sp["fits/json"][()])[1] is None
        np.testing.assert_array_equal(sp["n_pairs"][()], r.g2.n_pairs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_results.hdf"]


def _viewer():
    """pyXpcsViewer's loader, headless (a test dependency: it must be there, never skipped)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyxpcsviewer.core.xpcs_file as xpcs_file

    return xpcs_file


def test_pyxpcsviewer_opens_result(tmp_path):
    xpcs_file = _viewer()
    from pyxpcsviewer.core.file_io.qmap_utils import QMapManager

    r = make_result()
    path = str(write_aps_result(r, tmp_path / "run_results.hdf"))
    xf = xpcs_file.XpcsFile(path)
    assert set(xf.atype) == {"Multitau", "Twotime"}
    np.testing.assert_array_equal(xf.tau, r.g2.tau_frames)
    np.testing.assert_allclose(xf.t_el, r.g2.tau_frames * FRAME_TIME, rtol=1e-15)
    np.testing.assert_allclose(xf.t_el, r.tau_seconds, rtol=1e-15)
    np.testing.assert_array_equal(xf.g2, r.g2.g2)
    ok = r.g2.g2_err > 1e-6  # the viewer replaces tiny and missing errors by the column mean
    np.testing.assert_array_equal(xf.g2_err[ok], r.g2.g2_err[ok])
    np.testing.assert_allclose(xf.dqlist, r.partition.dynamic_q * 1e-10, rtol=1e-12)
    np.testing.assert_allclose(xf.sqlist, r.partition.static_q * 1e-10, rtol=1e-12)
    q, t_el, g2, g2_err, labels = xf.get_g2_data()
    np.testing.assert_allclose(q, r.partition.dynamic_q * 1e-10, rtol=1e-12)
    assert labels[0] == "qbin=1, q=0.00180 Å⁻¹"
    np.testing.assert_array_equal(xf.saxs_1d["Iq"][0], r.static_intensity)
    np.testing.assert_array_equal(xf.Int_t[1], r.intensity_vs_time)
    np.testing.assert_allclose(xf.saxs_2d, r.mean_image, rtol=1e-6)
    assert (xf.bcx, xf.bcy) == (22.7, 20.3)
    assert xf.det_dist == 2.23 and xf.pixel_size == 1.08e-4
    assert xf.X_energy == pytest.approx(HC_EV_M / 1.546e-10 / 1000)
    assert xf.t0 == FRAME_TIME and xf.t1 == 1e-3 and xf.start_time == "2024-05-01T12:00:00"
    # the viewer's q map agrees with ours (it works in 1/Å)
    np.testing.assert_allclose(xf.qmap.qmap["q"], Geometry.from_metadata(r.metadata)
                               .q_map(r.partition.shape) * 1e-10, rtol=2e-4)
    # two-time: the viewer rebuilds the full matrix from the stored upper half
    assert list(xf.c2_processed_bins) == [1, 3]
    c2 = xf.get_twotime_c2(selection=1, correct_diag=False)["c2_mat"]
    np.testing.assert_allclose(c2, r.twotime[3], rtol=1e-6)
    # the GUI opens files through a QMapManager (cached by the q-map hash)
    assert xpcs_file.XpcsFile(path, qmap_manager=QMapManager()).g2.shape == r.g2.g2.shape


def test_pyxpcsviewer_opens_roi_result_without_twotime(tmp_path):
    xpcs_file = _viewer()
    r = make_result(kind="roi", twotime=False)
    path = str(write_aps_result(r, tmp_path / "roi.h5"))
    xf = xpcs_file.XpcsFile(path)
    assert xf.atype == ("Multitau",)
    np.testing.assert_array_equal(xf.g2, r.g2.g2)
    assert np.isnan(xf.dqlist).all()
    with h5py.File(path, "r") as f:
        assert "xpcs/twotime" not in f


def test_pyxpcsviewer_opens_q_phi_result(tmp_path):
    xpcs_file = _viewer()
    r = make_result(twotime=False)
    part = q_phi_sectors(r.partition.shape, Geometry.from_metadata(r.metadata),
                         q_edges=np.array([0.0016, 0.0022, 0.0028]) * 1e10,
                         phi_edges=np.arange(-180.0, 181.0, 90.0))
    n, tau = part.n_dynamic, r.g2.tau_frames
    g2 = 1 + 0.1 * np.exp(-tau[:, None] / np.arange(1, n + 1))
    r.partition, r.fits, r.verdict = part, [], None
    r.g2 = MultiTauG2(tau, g2, np.full(g2.shape, 0.01), r.g2.n_pairs)
    r.static_intensity = np.arange(1.0, n + 1)
    xf = xpcs_file.XpcsFile(str(write_aps_result(r, tmp_path / "qphi.hdf")))
    q, _, g2_back, _, labels = xf.get_g2_data()
    np.testing.assert_array_equal(g2_back, g2)
    np.testing.assert_allclose(q, part.dynamic_q * 1e-10, rtol=1e-12)
    assert labels[1] == "qbin=2, q=0.00190 Å⁻¹, φ=-45.0 deg"
    assert len(xf.get_g2_data(qrange=(0.0021, 0.003))[4]) == 4  # one q, four sectors


def test_unknown_frame_time_is_marked(tmp_path):
    r = make_result(frame_time=None)
    path = write_aps_result(r, tmp_path / "x.hdf")
    with h5py.File(path, "r") as f:
        ds = f["entry/instrument/detector_1/frame_time"]
        assert ds[()] == 1.0 and bool(ds.attrs["assumed"])


def test_inconsistent_result_is_refused_and_writes_nothing(tmp_path):
    r = make_result()
    r.g2.g2 = r.g2.g2[:, :2]
    with pytest.raises(InvalidInputError, match="inconsistent"):
        write_aps_result(r, tmp_path / "x.hdf")
    r = make_result()
    r.twotime = {7: np.eye(3)}
    with pytest.raises(InvalidInputError, match="bin 7"):
        write_aps_result(r, tmp_path / "x.hdf")
    assert list(tmp_path.iterdir()) == []


def test_read_aps_result_g2_refusals(tmp_path):
    with h5py.File(tmp_path / "a.hdf", "w") as f:
        f["xpcs/multitau/delay_list"] = np.arange(1, 5)
        f["xpcs/multitau/normalized_g2"] = np.ones((5, 2))
        f["xpcs/multitau/normalized_g2_err"] = np.ones((5, 2))
    with pytest.raises(InvalidInputError, match="disagree"):
        read_aps_result_g2(tmp_path / "a.hdf")
    with h5py.File(tmp_path / "b.hdf", "w") as f:
        f["xpcs/multitau/delay_list"] = np.arange(1, 5)
    with pytest.raises(InvalidInputError, match="normalized_g2 is missing"):
        read_aps_result_g2(tmp_path / "b.hdf")
    with h5py.File(tmp_path / "c.hdf", "w") as f:
        f["xpcs/multitau/delay_list"] = np.arange(1, 5)
        f["xpcs/multitau/normalized_g2"] = h5py.ExternalLink("a.hdf", "/xpcs/multitau/x")
        f["xpcs/multitau/normalized_g2_err"] = np.ones((4, 2))
    with pytest.raises(InvalidInputError, match="external link to"):
        read_aps_result_g2(tmp_path / "c.hdf")


# -------------------------------------------------------------------------- CSV tables

def test_g2_csv_reads_back(tmp_path):
    r = make_result()
    path = write_g2_csv(r, tmp_path / "g2.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    labels = r.partition.labels
    assert rows[0] == ["tau_s"] + [x for lab in labels for x in (f"g2 {lab}", f"g2_err {lab}")]
    assert len(rows) == 1 + r.g2.tau_frames.size
    data = np.array([[float(v) if v else np.nan for v in row] for row in rows[1:]])
    np.testing.assert_array_equal(data[:, 0], r.tau_seconds)  # repr precision: exact
    np.testing.assert_array_equal(data[:, 1::2], r.g2.g2)
    np.testing.assert_array_equal(data[:, 2::2], r.g2.g2_err)
    assert rows[-1][5] == "" and rows[-1][6] == ""  # NaN written as an empty cell


def test_g2_csv_without_frame_time_is_in_frames(tmp_path):
    r = make_result(frame_time=None)
    with open(write_g2_csv(r, tmp_path / "g2.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "tau_frames"
    assert [float(row[0]) for row in rows[1:]] == list(r.g2.tau_frames)


def test_fits_csv_reads_back(tmp_path):
    r = make_result()
    r.fits[2] = _fit(0.02, success=False)
    path = write_fits_csv(r, tmp_path / "fits.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    assert list(rows[0]) == ["bin", "label", "q (1/Å)", "model", "success", "baseline",
                             "baseline_err", "contrast", "contrast_err", "tau", "tau_err",
                             "stretch", "stretch_err", "chi2_reduced", "verdict"]
    assert rows[0]["label"] == r.partition.labels[0]
    assert float(rows[0]["q (1/Å)"]) == pytest.approx(0.0018)
    assert float(rows[0]["tau"]) == 0.005 and float(rows[0]["tau_err"]) == 0.0005
    assert rows[0]["success"] == "True" and rows[2]["success"] == "False"
    assert rows[1]["model"] == "" and rows[1]["success"] == "" and rows[1]["tau"] == ""
    assert rows[0]["chi2_reduced"] == "1.1" and rows[1]["chi2_reduced"] == ""
    assert [row["verdict"] for row in rows] == ["good", "marginal", "bad"]


def test_fits_csv_without_fits_or_verdict(tmp_path):
    r = make_result(kind="roi")
    r.fits, r.verdict = [], None
    with open(write_fits_csv(r, tmp_path / "f.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["bin", "label", "q (1/Å)", "model", "success", "chi2_reduced", "verdict"]
    assert rows[1] == ["1", "ROI 1 [0:10, 0:10]", "", "", "", "", ""]


# -------------------------------------------------------------------------- figures

def _assert_png(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50


def test_figures_are_valid_pngs_and_leave_no_pyplot_state(tmp_path):
    import matplotlib.pyplot as plt

    r = make_result()
    figures = {
        "g2": plot_g2(r, title="run 42"),
        "intensity": plot_intensity(r),
        "twotime": plot_twotime(r, 3),
        "linear": plot_image(r.mean_image),
        "sqrt": plot_image(r.mean_image, scale="sqrt", partition=r.partition),
        "log": plot_image(r.mean_image, scale="log", partition=r.partition),
    }
    for name, fig in figures.items():
        _assert_png(save_png(fig, tmp_path / f"{name}.png"))
    assert plt.get_fignums() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in figures)


def test_g2_plot_content():
    r = make_result()
    ax = plot_g2(r).axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == r.partition.labels
    fit_lines = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert len(fit_lines) == 2  # bins 1 and 3 (bin 2 has no fit)
    curve = fit_lines[0]
    np.testing.assert_allclose(curve.get_ydata(), r.fits[0].evaluate(curve.get_xdata()))
    r.fits[2] = _fit(0.02, success=False)  # a failed fit is not drawn
    assert len([ln for ln in plot_g2(r).axes[0].lines if ln.get_linestyle() == "-"]) == 1
    assert "(s)" in ax.get_xlabel()
    ax = plot_twotime(r, 1).axes[0]
    assert ax.images[0].origin == "lower"
    span = 32 * 2 * FRAME_TIME
    assert ax.images[0].get_extent() == pytest.approx([0, span, 0, span])


def _unit_edges(segments) -> set:
    """The unit pixel edges the outline segments cover: ("v", x, row) and ("h", column, y)."""
    edges = set()
    for (x0, y0), (x1, y1) in np.asarray(segments):
        if x0 == x1:
            edges.update(("v", x0, y + 0.5) for y in np.arange(y0, y1))
        else:
            assert y0 == y1, "outline pieces run along pixel edges"
            edges.update(("h", x + 0.5, y0) for x in np.arange(x0, x1))
    return edges


def test_bin_outlines_are_the_edges_between_different_bins():
    rng = np.random.default_rng(7)
    for _ in range(150):
        labels = rng.integers(0, 3, size=(int(rng.integers(1, 10)), int(rng.integers(1, 10))))
        want = set()
        rows, cols = labels.shape
        for r in range(rows):  # every pair of neighbours with different labels, one by one
            for c in range(cols):
                if c + 1 < cols and labels[r, c] != labels[r, c + 1]:
                    want.add(("v", c + 0.5, float(r)))
                if r + 1 < rows and labels[r, c] != labels[r + 1, c]:
                    want.add(("h", float(c), r + 0.5))

        @dataclass
        class Part:
            dynamic_map: np.ndarray

        path = bin_outlines(Part(labels)).get_path()
        pieces = path.vertices.reshape(-1, 2, 2)
        assert _unit_edges(pieces) == want
        assert len(pieces) <= len(want)  # joined along lines, never more pieces than edges
    # a ring is drawn as far fewer pieces than its pixel edges
    y, x = np.mgrid[:128, :128]
    ring = ((np.hypot(y - 64, x - 64) // 10) == 3).astype(int)
    pieces = bin_outlines(Part(ring)).get_path().vertices.reshape(-1, 2, 2)
    assert len(pieces) < 0.6 * len(_unit_edges(pieces))


def test_log_axes_are_labelled_with_plain_numbers(tmp_path):
    r = make_result()
    for fig, axis in ((plot_g2(r), lambda f: f.axes[0].xaxis),
                      (plot_image(r.mean_image, scale="log"), lambda f: f.axes[1].yaxis)):
        save_png(fig, tmp_path / "x.png")  # ticks are labelled when drawn
        labels = [t.get_text() for t in axis(fig).get_ticklabels() if t.get_text()]
        assert labels and not any("$" in t for t in labels), labels
        assert all(float(t) > 0 for t in labels), labels


def test_fit_curve():
    t = np.array([0.0, 0.005, 0.01])
    np.testing.assert_allclose(fit_curve(_fit(0.01), t), 1 + 0.2 * np.exp(-2 * t / 0.01))

    @dataclass
    class Plain:  # a fit that only has parameters
        params: dict

    np.testing.assert_allclose(fit_curve(Plain({"contrast": 0.3, "tau": 0.01}), t),
                               1 + 0.3 * np.exp(-2 * t / 0.01))
    assert fit_curve(Plain({"contrast": 0.3}), t) is None
    assert fit_curve(None, t) is None


def test_plot_refusals():
    r = make_result()
    with pytest.raises(InvalidInputError, match="scale"):
        plot_image(r.mean_image, scale="cubic")
    with pytest.raises(InvalidInputError, match="bins"):
        plot_twotime(r, 2)
    with pytest.raises(InvalidInputError, match="does not match"):
        plot_image(np.ones((3, 3)), partition=r.partition)
    with pytest.raises(InvalidInputError, match="no two-time"):
        plot_twotime(make_result(twotime=False), 1)
    with pytest.raises(InvalidInputError, match="bins 1..3"):
        plot_g2(r, bins=[4])


# -------------------------------------------------------------------------- atomicity

def test_atomic_path_success_replaces(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    final = tmp_path / "out.png"
    final.write_text("old")
    with atomic_path(final) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".png"
        assert tmp.exists() and final.read_text() == "old"
        tmp.write_text("new")
    assert final.read_text() == "new"
    assert synced
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_atomic_path_exception_leaves_nothing(tmp_path):
    final = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash in the middle")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_exception_keeps_existing_file(tmp_path):
    final = tmp_path / "out.csv"
    final.write_text("precious")
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert final.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_atomic_path_refuses_missing_folder(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"), \
            atomic_path(tmp_path / "nope" / "x.hdf"):
        pass


def test_writer_failing_midway_keeps_previous_result(tmp_path):
    path = tmp_path / "run_results.hdf"
    write_aps_result(make_result(), path)
    before = path.read_bytes()
    broken = make_result()
    broken.verdict = FakeVerdict()  # raises after the g2 and maps were written
    with pytest.raises(RuntimeError, match="simulated"):
        write_aps_result(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run_results.hdf"]
    # and with no previous file, nothing is left at all
    with pytest.raises(RuntimeError):
        write_aps_result(broken, tmp_path / "other.hdf")
    assert [p.name for p in tmp_path.iterdir()] == ["run_results.hdf"]


def test_csv_writer_failing_midway_keeps_previous_table(tmp_path, monkeypatch):
    path = tmp_path / "g2.csv"
    write_g2_csv(make_result(), path)
    before = path.read_bytes()
    calls = []

    def flaky(value):
        calls.append(value)
        if len(calls) > 20:
            raise OSError("disk full (simulated)")
        return repr(float(value))

    monkeypatch.setattr(tables, "_nan_blank", flaky)
    with pytest.raises(OSError, match="simulated"):
        write_g2_csv(make_result(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g2.csv"]


def test_json_is_strict():
    from speckle.io.jsontext import to_json

    text = to_json({"a": float("inf"), "b": np.float32(1.5), "c": (1, 2)})
    assert json.loads(text) == {"a": None, "b": 1.5, "c": [1, 2]}


@pytest.mark.parametrize("size,length", [(1, 1), (6, 9), (40, 40), (301, 120)])
def test_diagonal_means_are_the_means_of_the_finite_diagonal_values(size, length):
    """The two-time g2 of the result file: the mean of each upper diagonal's finite values
    (NaN where none), by definition, element by element."""
    rng = np.random.default_rng(size)
    c = rng.normal(1.2, 0.1, (size, size)).astype(np.float32)
    if size > 5:
        c[2, :] = np.nan          # a time step with no counts
        c[:, 4] = np.nan
        c[0, size - 1] = np.nan   # the last diagonal has no finite value left
    want = np.full(length, np.nan)
    for k in range(min(size, length)):
        values = [float(c[i, i + k]) for i in range(size - k) if np.isfinite(c[i, i + k])]
        if values:
            want[k] = sum(values) / len(values)
    np.testing.assert_allclose(aps_result._diagonal_means(c, length), want, rtol=1e-12,
                               equal_nan=True)
