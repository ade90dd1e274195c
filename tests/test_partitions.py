"""q rings, q/φ sectors and APS q-map files."""

import h5py
import numpy as np
import pytest

from speckle.errors import InvalidInputError, UnsafeFileError
from speckle.xpcs.geometry import Geometry
from speckle.xpcs.partitions import (
    q_phi_sectors,
    q_rings,
    read_aps_qmap,
    rectangles,
    write_aps_qmap,
)

PER_A = 1e10
SHAPE = (64, 80)
GEO = Geometry(energy=8000.0, distance=2.0, pixel_size=75e-6, beam_center=(30.2, 35.7))


def _rings(**kw):
    args = dict(q_min=0.002 * PER_A, q_width=0.0006 * PER_A, n_rings=5)
    args.update(kw)
    return q_rings(SHAPE, GEO, **args)


def test_rings_pixels_lie_in_their_ring():
    q_min, w, step, n = 0.002 * PER_A, 0.0006 * PER_A, 0.0009 * PER_A, 4
    p = q_rings(SHAPE, GEO, q_min=q_min, q_width=w, q_step=step, n_rings=n)
    q = GEO.q_map(SHAPE)
    assert p.kind == "qring" and p.n_dynamic == n
    for i in range(n):
        lo = q_min + i * step
        sel = p.dynamic_map == i + 1
        assert sel.any()
        assert (q[sel] >= lo).all() and (q[sel] < lo + w).all()
        # and every pixel in that q interval is in the ring
        assert ((q >= lo) & (q < lo + w) == sel).all()
    # pixels in the gaps between rings are unused
    in_any = np.zeros(SHAPE, bool)
    for i in range(n):
        in_any |= (q >= q_min + i * step) & (q < q_min + i * step + w)
    assert ((p.dynamic_map > 0) == in_any).all()
    assert p.labels[0] == f"q={(q_min + w / 2) / PER_A:.5f} 1/Å"
    np.testing.assert_allclose(p.dynamic_q, q_min + step * np.arange(n) + w / 2)


def test_rings_static_bins_subdivide_each_ring():
    p = _rings(static_per_dynamic=3)
    q = GEO.q_map(SHAPE)
    s2d = p.static_to_dynamic()
    assert p.n_static <= 15 and (s2d > 0).all()
    assert np.array_equal(p.dynamic_map > 0, p.static_map > 0)
    for s in range(1, p.n_static + 1):
        sel = p.static_map == s
        d = s2d[s - 1]
        ring_lo = 0.002 * PER_A + (d - 1) * 0.0006 * PER_A
        assert (q[sel] >= ring_lo).all() and (q[sel] < ring_lo + 0.0006 * PER_A).all()
        # the static centre lies inside the ring, and static bins go outwards
        assert ring_lo < p.static_q[s - 1] < ring_lo + 0.0006 * PER_A
    assert np.all(np.diff(p.static_q) > 0)


def test_rings_respect_the_mask():
    mask = np.ones(SHAPE, bool)
    mask[:, :40] = False
    p = _rings(mask=mask)
    assert (p.dynamic_map[:, :40] == 0).all() and (p.static_map[:, :40] == 0).all()
    assert (p.dynamic_map[:, 40:] > 0).any()


@pytest.mark.parametrize("kw,match", [
    (dict(q_step=0.0003 * PER_A), "overlap"),
    (dict(n_rings=0), "number of rings"),
    (dict(n_rings="eight"), "number of rings"),
    (dict(n_rings=2.5), "number of rings"),
    (dict(q_width=0.0), "width"),
    (dict(q_min=-1.0), "q_min"),
    (dict(static_per_dynamic=0), "static"),
    (dict(n_rings=200), "no usable pixel"),
    (dict(mask=np.ones((3, 3), bool)), "mask shape"),
])
def test_rings_refusals(kw, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        _rings(**kw)
    assert "\n" not in str(info.value)


def test_ring_behind_the_mask_is_refused():
    mask = GEO.q_map(SHAPE) >= 0.0026 * PER_A  # the first ring is fully masked
    with pytest.raises(InvalidInputError, match=r"ring\(s\) \[1\]"):
        _rings(mask=mask)


def test_sectors_pixels_lie_in_their_cell():
    q_edges = np.array([0.002, 0.003, 0.004, 0.005]) * PER_A
    phi_edges = np.array([-180.0, -90.0, 0.0, 90.0, 180.0])
    p = q_phi_sectors(SHAPE, GEO, q_edges=q_edges, phi_edges=phi_edges)
    q = GEO.q_map(SHAPE)
    phi = GEO.phi_map(SHAPE)
    assert p.kind == "qphi" and p.dynamic_phi is not None
    assert p.n_dynamic == 12 and p.n_static == 12
    for b in range(1, p.n_dynamic + 1):
        sel = p.dynamic_map == b
        qc, pc = p.dynamic_q[b - 1], p.dynamic_phi[b - 1]
        i = np.searchsorted(q_edges, qc) - 1
        j = np.searchsorted(phi_edges, pc) - 1
        assert (q[sel] >= q_edges[i]).all() and (q[sel] < q_edges[i + 1]).all()
        assert (phi[sel] >= phi_edges[j]).all() and (phi[sel] < phi_edges[j + 1]).all()
    assert p.labels[0] == "q=0.00250 1/Å, φ=-135.0°"
    assert np.array_equal(p.dynamic_map, p.static_map)


def test_sector_wraps_around_180_degrees():
    p = q_phi_sectors(SHAPE, GEO, q_edges=[0.002 * PER_A, 0.006 * PER_A],
                      phi_edges=[150.0, 210.0])
    phi = GEO.phi_map(SHAPE)[p.dynamic_map == 1]
    assert p.n_dynamic == 1 and phi.size > 0
    assert (np.abs(phi) >= 150.0 - 1e-9).all()
    assert (phi > 0).any() and (phi < 0).any()
    assert p.dynamic_phi[0] == pytest.approx(180.0)


def test_sector_cells_without_pixels_are_dropped():
    # q beyond the detector's reach in the last q cell: only the first cells survive
    p = q_phi_sectors(SHAPE, GEO, q_edges=np.array([0.002, 0.004, 0.5]) * PER_A,
                      phi_edges=[0.0, 90.0])
    assert p.n_dynamic == 2
    layout = p.extra["aps_layout"]
    assert list(layout["dynamic_index_mapping"]) == [0, 1]


@pytest.mark.parametrize("kw,match", [
    (dict(q_edges=[0.003 * PER_A, 0.002 * PER_A]), "q_edges"),
    (dict(phi_edges=[0.0]), "phi_edges"),
    (dict(phi_edges=[-180.0, 200.0]), "360"),
    (dict(q_edges=[1.0 * PER_A, 2.0 * PER_A]), "no usable pixel"),
])
def test_sector_refusals(kw, match):
    args = dict(q_edges=[0.002 * PER_A, 0.004 * PER_A], phi_edges=[0.0, 90.0])
    args.update(kw)
    with pytest.raises(InvalidInputError, match=match):
        q_phi_sectors(SHAPE, GEO, **args)


def test_qmap_round_trip_rings(tmp_path):
    mask = np.ones(SHAPE, bool)
    mask[30:34, :] = False
    p = _rings(static_per_dynamic=4, mask=mask)
    path = tmp_path / "qmap.h5"
    write_aps_qmap(p, path)
    back = read_aps_qmap(path)
    assert back.kind == "qmap"
    assert np.array_equal(back.dynamic_map, p.dynamic_map)
    assert np.array_equal(back.static_map, p.static_map)
    np.testing.assert_allclose(back.dynamic_q, p.dynamic_q, rtol=1e-12)
    np.testing.assert_allclose(back.static_q, p.static_q, rtol=1e-12)
    assert back.labels == p.labels
    assert back.dynamic_phi is None
    geo = back.extra["aps_geometry"]
    assert geo["beam_center_x"] == 35.7 and geo["beam_center_y"] == 30.2
    assert geo["detector_distance"] == 2.0 and geo["energy"] == pytest.approx(8.0)
    with h5py.File(path, "r") as f:
        assert f["qmap/dynamic_v_list_dim0"][0] == pytest.approx(p.dynamic_q[0] / PER_A)
        assert f["qmap/mask"][31, 10] == 0
        assert isinstance(f["qmap"].attrs["hash"], str)
    assert [x.name for x in tmp_path.iterdir()] == ["qmap.h5"]  # no temporary file left


def test_qmap_round_trip_sectors_keeps_the_grid(tmp_path):
    p = q_phi_sectors(SHAPE, GEO, q_edges=np.array([0.002, 0.003, 0.004]) * PER_A,
                      phi_edges=np.arange(-180.0, 181.0, 60.0))
    write_aps_qmap(p, tmp_path / "s.h5")
    back = read_aps_qmap(tmp_path / "s.h5")
    assert np.array_equal(back.dynamic_map, p.dynamic_map)
    np.testing.assert_allclose(back.dynamic_q, p.dynamic_q, rtol=1e-12)
    np.testing.assert_allclose(back.dynamic_phi, p.dynamic_phi)
    assert back.labels == p.labels
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert list(f["qmap/dynamic_num_pts"][()]) == [2, 6]
    # written again from what was read: the same grid and geometry
    write_aps_qmap(back, tmp_path / "t.h5")
    again = read_aps_qmap(tmp_path / "t.h5")
    assert again.labels == p.labels and np.array_equal(again.static_map, p.static_map)
    assert again.extra["aps_geometry"] == pytest.approx(back.extra["aps_geometry"])
    assert again.extra["aps_geometry"]["beam_center_y"] == 30.2


def test_qmap_round_trip_rectangles_have_nan_q(tmp_path):
    p = rectangles(SHAPE, ["0:10,0:10", "20:30,20:40"])
    write_aps_qmap(p, tmp_path / "r.h5")
    back = read_aps_qmap(tmp_path / "r.h5")
    assert np.array_equal(back.dynamic_map, p.dynamic_map)
    assert np.isnan(back.dynamic_q).all()
    assert back.labels == ["bin 1", "bin 2"]


def _write_raw(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f[f"qmap/{name}"] = data


def test_read_minimal_aps_qmap_mask_and_missing_q(tmp_path):
    dyn = np.zeros((6, 8), np.uint32)
    dyn[1:3, 1:7] = 1
    dyn[3:5, 1:7] = 2
    sta = dyn * 2 - (np.arange(8) < 4) * (dyn > 0)  # two static bins per dynamic bin
    mask = np.ones((6, 8), np.int32)
    mask[1, :] = 0
    path = tmp_path / "aps.h5"
    _write_raw(path, dynamic_roi_map=dyn, static_roi_map=sta.astype(np.uint32), mask=mask)
    p = read_aps_qmap(path)
    assert p.n_dynamic == 2 and p.n_static == 4
    assert (p.dynamic_map[1] == 0).all() and (p.static_map[1] == 0).all()
    assert p.dynamic_map[2, 3] == 1 and p.static_map[2, 3] == 1 and p.static_map[2, 5] == 2
    assert np.isnan(p.dynamic_q).all() and np.isnan(p.static_q).all()
    assert list(p.static_to_dynamic()) == [1, 1, 2, 2]


def test_read_aps_qmap_q_lists_in_inverse_angstrom(tmp_path):
    dyn = np.zeros((4, 4), np.int64)
    dyn[0, :] = 1
    dyn[2, :] = 2
    path = tmp_path / "aps.h5"
    _write_raw(path, dynamic_roi_map=dyn, static_roi_map=dyn, mask=np.ones((4, 4)),
               dynamic_v_list_dim0=np.array([0.001, 0.002]),
               static_v_list_dim0=np.array([0.001, 0.002]))
    p = read_aps_qmap(path)
    np.testing.assert_allclose(p.dynamic_q, [0.001 * PER_A, 0.002 * PER_A])
    assert p.labels == ["q=0.00100 1/Å", "q=0.00200 1/Å"]


def test_read_aps_result_qmap_group(tmp_path):
    dyn = np.ones((4, 4), np.int32)
    with h5py.File(tmp_path / "r.hdf", "w") as f:
        for name in ("dynamic_roi_map", "static_roi_map", "mask"):
            f[f"xpcs/qmap/{name}"] = dyn
    assert read_aps_qmap(tmp_path / "r.hdf").n_dynamic == 1


@pytest.mark.parametrize("case,match", [
    ("missing", "static_roi_map is missing"),
    ("shape", "disagree in shape"),
    ("negative", "negative"),
    ("fraction", "whole numbers"),
    ("string", "integers"),
    ("empty", "selects no pixel"),
    ("straddle", "single dynamic bin"),
    ("not3d", "2D"),
])
def test_read_aps_qmap_refusals(tmp_path, case, match):
    dyn = np.zeros((4, 5), np.int32)
    dyn[:2] = 1
    dyn[2:] = 2
    data = dict(dynamic_roi_map=dyn, static_roi_map=dyn.copy(), mask=np.ones((4, 5), np.uint8))
    if case == "missing":
        del data["static_roi_map"]
    elif case == "shape":
        data["mask"] = np.ones((5, 4), np.uint8)
    elif case == "negative":
        data["dynamic_roi_map"] = dyn - 2
    elif case == "fraction":
        data["static_roi_map"] = dyn + 0.5
    elif case == "string":
        data["dynamic_roi_map"] = np.full((4, 5), b"a")
    elif case == "empty":
        data["mask"] = np.zeros((4, 5), np.uint8)
    elif case == "straddle":
        data["static_roi_map"] = np.ones((4, 5), np.int32)
    elif case == "not3d":
        data["dynamic_roi_map"] = np.ones((2, 4, 5), np.int32)
    path = tmp_path / "bad.h5"
    _write_raw(path, **data)
    with pytest.raises(InvalidInputError, match=match) as info:
        read_aps_qmap(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_read_aps_qmap_refuses_external_links(tmp_path):
    dyn = np.ones((4, 4), np.int32)
    _write_raw(tmp_path / "other.h5", dynamic_roi_map=dyn)
    with h5py.File(tmp_path / "linked.h5", "w") as f:
        f["qmap/static_roi_map"] = dyn
        f["qmap/mask"] = dyn
        f["qmap/dynamic_roi_map"] = h5py.ExternalLink("other.h5", "/qmap/dynamic_roi_map")
    with pytest.raises(UnsafeFileError, match="external link to other.h5"):
        read_aps_qmap(tmp_path / "linked.h5")
    # a soft link to an external link is refused too
    with h5py.File(tmp_path / "soft.h5", "w") as f:
        f["ext"] = h5py.ExternalLink("other.h5", "/qmap")
        f["qmap"] = h5py.SoftLink("/ext")
    with pytest.raises(UnsafeFileError):
        read_aps_qmap(tmp_path / "soft.h5")


def test_read_aps_qmap_refuses_other_files(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InvalidInputError, match="HDF5"):
        read_aps_qmap(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(InvalidInputError, match="no /qmap group"):
        read_aps_qmap(tmp_path / "y.h5")
    with pytest.raises(InvalidInputError, match="no such file"):
        read_aps_qmap(tmp_path / "missing.h5")
