"""Which pixels are correlated together: dynamic and static bins, and masks.

A :class:`Partition` follows the APS convention: two integer maps over the detector, 1-based bin
numbers and 0 for pixels that are not used. Static bins are the finer ones (normalisation and
I(q)); each static bin lies inside one dynamic bin (the bins g2 is reported for).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..errors import InvalidInputError, UnsafeFileError
from ..io.atomic import atomic_path
from ..io.read_hdf5 import ensure_filters, open_h5_file, resolve_inside

__all__ = [
    "Partition",
    "parse_roi",
    "q_phi_sectors",
    "q_rings",
    "read_aps_qmap",
    "rectangles",
    "write_aps_qmap",
]


@dataclass
class Partition:
    """Dynamic and static bins over a detector.

    Attributes
    ----------
    dynamic_map : ndarray of int32, (rows, cols)
        Dynamic bin of each pixel, 1..n_dynamic; 0 where unused or masked.
    static_map : ndarray of int32, (rows, cols)
        Static bin of each pixel, 1..n_static; 0 where unused or masked. Nonzero exactly where
        ``dynamic_map`` is nonzero.
    dynamic_q : ndarray of float, (n_dynamic,)
        Centre momentum transfer of each dynamic bin, 1/m; NaN for rectangular regions.
    static_q : ndarray of float, (n_static,)
        Centre momentum transfer of each static bin, 1/m; NaN for rectangular regions.
    labels : list of str
        A short human label for each dynamic bin ("q=0.0017 1/Å", "ROI 1 [10:50, 20:60]").
    kind : str
        "roi", "qring", "qphi" or "qmap".
    dynamic_phi : ndarray of float or None
        Centre azimuth of each dynamic bin, degrees, for q/φ sectors.
    """

    dynamic_map: np.ndarray
    static_map: np.ndarray
    dynamic_q: np.ndarray
    static_q: np.ndarray
    labels: list[str]
    kind: str
    dynamic_phi: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.dynamic_map = np.asarray(self.dynamic_map, np.int32)
        self.static_map = np.asarray(self.static_map, np.int32)
        if self.dynamic_map.ndim != 2 or self.dynamic_map.shape != self.static_map.shape:
            raise InvalidInputError("dynamic and static maps must be 2D and of the same shape")
        if (self.dynamic_map < 0).any() or (self.static_map < 0).any():
            raise InvalidInputError("bin maps must be 0 (unused) or positive 1-based bin numbers")
        if not np.array_equal(self.dynamic_map > 0, self.static_map > 0):
            raise InvalidInputError(
                "static and dynamic maps must select the same pixels (0 in both where unused)")
        if not (self.dynamic_map > 0).any():
            raise InvalidInputError(
                "the partition selects no pixel: check the regions, q range and mask")
        self.dynamic_q = np.asarray(self.dynamic_q, float)
        self.static_q = np.asarray(self.static_q, float)
        if len(self.labels) != self.n_dynamic or self.dynamic_q.shape != (self.n_dynamic,):
            raise InvalidInputError("one label and one q value are needed per dynamic bin")

    @property
    def shape(self) -> tuple[int, int]:
        """Detector shape (rows, cols)."""
        return self.dynamic_map.shape

    @property
    def n_dynamic(self) -> int:
        """Number of dynamic bins."""
        return int(self.dynamic_map.max())

    @property
    def n_static(self) -> int:
        """Number of static bins."""
        return int(self.static_map.max())

    @property
    def mask(self) -> np.ndarray:
        """Boolean map of the pixels the partition uses."""
        return self.dynamic_map > 0

    def static_to_dynamic(self) -> np.ndarray:
        """Dynamic bin (1-based) of each static bin, (n_static,); 0 for empty static bins.

        Raises
        ------
        InvalidInputError
            When a static bin straddles two dynamic bins.
        """
        sel = self.mask
        s = self.static_map[sel]
        d = self.dynamic_map[sel]
        of_static = np.zeros(self.n_static + 1, np.int32)
        of_static[s] = d  # one of each static bin's dynamic bins (d > 0 where used)
        if (of_static[s] != d).any():  # another pixel of the bin lies in another one
            raise InvalidInputError("each static bin must lie inside a single dynamic bin")
        return of_static[1:]

    def with_mask(self, good: np.ndarray) -> "Partition":
        """Return a copy where pixels with ``good == False`` are unused (dead, hot, beamstop)."""
        good = np.asarray(good, bool)
        if good.shape != self.shape:
            raise InvalidInputError(
                f"mask shape {good.shape} does not match the detector {self.shape}")
        return Partition(np.where(good, self.dynamic_map, 0), np.where(good, self.static_map, 0),
                         self.dynamic_q, self.static_q, list(self.labels), self.kind,
                         self.dynamic_phi, dict(self.extra))


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """Parse ``"ROW0:ROW1,COL0:COL1"`` (half-open, 0-based pixels) into four integers."""
    try:
        rows, cols = text.split(",")
        r0, r1 = (int(v) for v in rows.split(":"))
        c0, c1 = (int(v) for v in cols.split(":"))
    except ValueError:
        raise InvalidInputError(
            f"cannot read the region {text!r}: write it as ROW0:ROW1,COL0:COL1, e.g. 10:50,20:60"
        ) from None
    return r0, r1, c0, c1


def rectangles(shape: tuple[int, int], rois, mask: np.ndarray | None = None) -> Partition:
    """Build a partition from rectangular regions, one dynamic and one static bin each.

    Parameters
    ----------
    shape : (rows, cols)
        Detector shape.
    rois : sequence of (row0, row1, col0, col1) or "ROW0:ROW1,COL0:COL1" strings
        Half-open pixel ranges. Where regions overlap, the later one wins.
    mask : ndarray of bool, optional
        True for good pixels.
    """
    dyn = np.zeros(shape, np.int32)
    labels = []
    if len(rois) == 0:
        raise InvalidInputError("give at least one region")
    for i, roi in enumerate(rois, start=1):
        r0, r1, c0, c1 = parse_roi(roi) if isinstance(roi, str) else (int(v) for v in roi)
        if not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]):
            raise InvalidInputError(
                f"region {i} [{r0}:{r1}, {c0}:{c1}] is empty or outside the {shape[0]}×{shape[1]} "
                "detector")
        dyn[r0:r1, c0:c1] = i
        labels.append(f"ROI {i} [{r0}:{r1}, {c0}:{c1}]")
    if mask is not None:
        dyn = np.where(np.asarray(mask, bool), dyn, 0)
    n = len(labels)
    present = np.unique(dyn[dyn > 0])
    if len(present) != n:
        missing = sorted(set(range(1, n + 1)) - set(present.tolist()))
        raise InvalidInputError(
            f"region(s) {missing} have no usable pixel (covered by a later region or masked)")
    return Partition(dyn, dyn.copy(), np.full(n, np.nan), np.full(n, np.nan), labels, "roi")


# --------------------------------------------------------------------------------------------
# q rings and q/φ sectors from the scattering geometry
# --------------------------------------------------------------------------------------------

_A = 1e-10  # metres per ångström: q[1/Å] = q[1/m] * _A


def _check_shape(shape) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InvalidInputError(f"detector shape must be (rows, cols), got {shape!r}") from None
    if rows < 1 or cols < 1:
        raise InvalidInputError(f"detector shape must be positive, got {shape!r}")
    return rows, cols


def _check_mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    good = np.asarray(mask)
    if good.shape != tuple(shape):
        raise InvalidInputError(
            f"mask shape {good.shape} does not match the detector {tuple(shape)}")
    return good.astype(bool)


def _positive(value, name, *, allow_zero=False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InvalidInputError(
            f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return value


def _positive_int(value, name) -> int:
    try:
        ok = int(value) == value and int(value) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _q_label(q: float, phi: float | None = None) -> str:
    """Human label of a bin: q in 1/Å (the unit people read), φ in degrees."""
    text = f"q={q * _A:.5f} 1/Å"
    if phi is not None and np.isfinite(phi):
        text += f", φ={phi:.1f}°"
    return text


def q_rings(shape, geometry, *, q_min: float, q_width: float, q_step: float | None = None,
            n_rings: int, static_per_dynamic: int = 1, mask=None) -> Partition:
    """Concentric rings of constant momentum transfer, the usual XPCS partition.

    Ring ``i`` (1-based bin ``i + 1``) holds the pixels with
    ``q_min + i*q_step <= q < q_min + i*q_step + q_width``.

    Parameters
    ----------
    shape : (rows, cols)
        Detector shape.
    geometry : speckle.xpcs.geometry.Geometry
        Energy, distance, pixel size and beam centre.
    q_min : float
        Lower edge of the first ring, 1/m.
    q_width : float
        Radial width of each ring, 1/m.
    q_step : float, optional
        Distance between the lower edges of consecutive rings, 1/m; at least ``q_width`` (rings
        never overlap). Default ``q_width`` (contiguous rings).
    n_rings : int
        Number of rings (dynamic bins).
    static_per_dynamic : int
        Number of static bins each ring is split into radially (equal q widths). Finer static
        bins make the symmetric normalisation robust to intensity gradients inside a ring.
        Static bins left empty (no pixel) are dropped and the others renumbered in q order.
    mask : ndarray of bool, optional
        True for good pixels; False pixels are never used.

    Returns
    -------
    Partition
        Kind ``"qring"``; ``dynamic_q`` holds the ring centres and ``static_q`` the static bin
        centres (1/m); labels read ``"q=0.00170 1/Å"``. ``extra["ring_edges"]`` is the
        (n_rings, 2) array of [lower, upper) edges in 1/m and ``extra["geometry"]`` the geometry.

    Raises
    ------
    InvalidInputError
        For non-physical parameters, overlapping rings, or a ring without any usable pixel
        (off the detector, behind the mask, or narrower than a pixel).
    """
    shape = _check_shape(shape)
    q_min = _positive(q_min, "q_min", allow_zero=True)
    q_width = _positive(q_width, "the ring width q_width")
    q_step = q_width if q_step is None else _positive(q_step, "the ring step q_step")
    if q_step < q_width:
        raise InvalidInputError(
            f"the ring step ({q_step * _A:.3g} 1/Å) is smaller than the ring width "
            f"({q_width * _A:.3g} 1/Å): rings would overlap; use a step >= the width")
    n_rings = _positive_int(n_rings, "the number of rings")
    n_sub = _positive_int(static_per_dynamic, "the number of static bins per ring")
    good = _check_mask(mask, shape)

    q = geometry.q_map(shape)
    starts = q_min + q_step * np.arange(n_rings, dtype=np.float64)
    ends = starts + q_width
    k = np.searchsorted(starts, q, side="right") - 1  # last ring whose lower edge is <= q
    kc = np.clip(k, 0, n_rings - 1)
    inside = (k >= 0) & (q < ends[kc]) & good
    dyn = np.where(inside, kc + 1, 0).astype(np.int32)

    present = np.zeros(n_rings + 1, bool)
    present[dyn[inside]] = True
    empty = [i for i in range(1, n_rings + 1) if not present[i]]
    if empty:
        centres = ", ".join(f"{(starts[i - 1] + q_width / 2) * _A:.5f}" for i in empty[:8])
        more = ", ..." if len(empty) > 8 else ""
        raise InvalidInputError(
            f"ring(s) {empty} (q = {centres}{more} 1/Å) contain no usable pixel: they fall off "
            f"the detector (q there spans {np.nanmin(q) * _A:.5f}-{np.nanmax(q) * _A:.5f} 1/Å), "
            "behind the mask, or are narrower than a pixel; change q_min, q_width or n_rings")

    sub_w = q_width / n_sub
    j = np.clip(np.floor((q - starts[kc]) / sub_w).astype(np.int64), 0, n_sub - 1)
    raw_static = np.where(inside, kc * n_sub + j + 1, 0)
    used = np.unique(raw_static[inside])
    lut = np.zeros(n_rings * n_sub + 1, np.int32)
    lut[used] = np.arange(1, used.size + 1, dtype=np.int32)
    sta = lut[raw_static]
    static_q = starts[(used - 1) // n_sub] + (((used - 1) % n_sub) + 0.5) * sub_w

    centres = starts + q_width / 2
    return Partition(
        dyn, sta, centres, static_q, [_q_label(c) for c in centres], "qring",
        extra={"geometry": geometry, "ring_edges": np.stack([starts, ends], axis=1)})


def q_phi_sectors(shape, geometry, *, q_edges, phi_edges, mask=None) -> Partition:
    """Bins on a q × φ grid (for anisotropic dynamics: flow, stretched samples).

    Cell ``(i, j)`` holds the pixels with ``q_edges[i] <= q < q_edges[i+1]`` and
    ``phi_edges[j] <= φ < phi_edges[j+1]`` (φ compared modulo 360°, so edges such as
    ``[150, 210]`` select the sector around 180°). φ follows
    :meth:`speckle.xpcs.geometry.Geometry.phi_map`: 0° along +column, counter-clockwise as
    displayed with rows pointing down.

    Parameters
    ----------
    shape : (rows, cols)
        Detector shape.
    geometry : speckle.xpcs.geometry.Geometry
    q_edges : sequence of float
        Increasing q edges, 1/m (at least two).
    phi_edges : sequence of float
        Increasing azimuth edges, degrees (at least two, spanning at most 360°).
    mask : ndarray of bool, optional
        True for good pixels.

    Returns
    -------
    Partition
        Kind ``"qphi"``, one static bin per dynamic bin. Cells without any usable pixel are
        dropped and the others numbered in grid order (q major, φ minor); ``dynamic_q`` and
        ``dynamic_phi`` give each bin's cell centre. ``extra["aps_layout"]`` records the grid
        (APS units: q in 1/Å) so that the APS writers keep the q × φ structure.

    Raises
    ------
    InvalidInputError
        For badly ordered edges, a φ span over 360°, or no usable pixel at all.
    """
    shape = _check_shape(shape)
    q_edges = np.asarray(q_edges, dtype=float).ravel()
    phi_edges = np.asarray(phi_edges, dtype=float).ravel()
    if q_edges.size < 2 or not np.all(np.isfinite(q_edges)) or np.any(np.diff(q_edges) <= 0) \
            or q_edges[0] < 0:
        raise InvalidInputError(
            "q_edges must be at least two non-negative, strictly increasing values (1/m)")
    if phi_edges.size < 2 or not np.all(np.isfinite(phi_edges)) \
            or np.any(np.diff(phi_edges) <= 0):
        raise InvalidInputError(
            "phi_edges must be at least two strictly increasing angles in degrees")
    if phi_edges[-1] - phi_edges[0] > 360 + 1e-9:
        raise InvalidInputError(
            f"phi_edges span {phi_edges[-1] - phi_edges[0]:g}°: a full turn is at most 360°")
    good = _check_mask(mask, shape)
    n_q, n_phi = q_edges.size - 1, phi_edges.size - 1

    q = geometry.q_map(shape)
    phi = geometry.phi_map(shape)
    iq = np.searchsorted(q_edges, q, side="right") - 1
    rel = np.mod(phi - phi_edges[0], 360.0)
    rel[rel >= 360.0] = 0.0  # float rounding of the modulo
    ip = np.searchsorted(phi_edges - phi_edges[0], rel, side="right") - 1
    sel = (iq >= 0) & (iq < n_q) & (ip >= 0) & (ip < n_phi) & good
    if not sel.any():
        raise InvalidInputError(
            f"no usable pixel lies in the q/φ grid (q on the detector spans "
            f"{q.min() * _A:.5f}-{q.max() * _A:.5f} 1/Å); check q_edges, phi_edges and the mask")
    flat = np.where(sel, iq * n_phi + ip, -1)
    used = np.unique(flat[sel])
    lut = np.zeros(n_q * n_phi, np.int32)
    lut[used] = np.arange(1, used.size + 1, dtype=np.int32)
    dyn = np.where(sel, lut[np.clip(flat, 0, None)], 0).astype(np.int32)

    q_c = 0.5 * (q_edges[:-1] + q_edges[1:])
    phi_c = 0.5 * (phi_edges[:-1] + phi_edges[1:])
    dq = q_c[used // n_phi]
    dphi = phi_c[used % n_phi]
    labels = [_q_label(a, b) for a, b in zip(dq, dphi)]
    layout = {
        "map_names": ["q", "phi"],
        "map_units": ["Å⁻¹", "deg"],
        "dynamic_num_pts": np.array([n_q, n_phi]),
        "dynamic_v_list_dim0": q_c * _A,
        "dynamic_v_list_dim1": phi_c.copy(),
        "dynamic_index_mapping": used.astype(np.int64),
        "static_num_pts": np.array([n_q, n_phi]),
        "static_v_list_dim0": q_c * _A,
        "static_v_list_dim1": phi_c.copy(),
        "static_index_mapping": used.astype(np.int64),
    }
    return Partition(dyn, dyn.copy(), dq, dq.copy(), labels, "qphi", dynamic_phi=dphi,
                     extra={"geometry": geometry, "q_edges": q_edges, "phi_edges": phi_edges,
                            "aps_layout": layout})


# --------------------------------------------------------------------------------------------
# APS q-map files (boost_corr / pySimpleMask layout) and the /xpcs/qmap group of result files
# --------------------------------------------------------------------------------------------

#: Largest detector (pixels) and largest list a q-map may hold before we call it damaged.
_MAX_PIXELS = 1 << 28
_MAX_LIST = 1 << 24
_MAX_BIN = (1 << 31) - 1

_LAYOUT_KEYS = ("dynamic_num_pts", "dynamic_v_list_dim0", "dynamic_v_list_dim1",
                "dynamic_index_mapping", "static_num_pts", "static_v_list_dim0",
                "static_v_list_dim1", "static_index_mapping")


def _read_dataset(group, name: str, source: str, *, max_size: int):
    """Read a dataset below ``group`` (None when absent) after checking kind and size."""
    obj = resolve_inside(group, name)
    if obj is None:
        return None
    where = f"{group.name.rstrip('/')}/{name}"
    if not isinstance(obj, h5py.Dataset):
        raise InvalidInputError(f"{source}: {where} must be a dataset, found a group")
    if obj.size > max_size:
        raise UnsafeFileError(
            f"{source}: {where} has {obj.size} elements, more than a q-map can sensibly hold; "
            "the file is damaged or not a q-map")
    ensure_filters(obj)
    return obj[()]


def _as_int_map(arr, where: str, source: str, *, bins: bool) -> np.ndarray:
    arr = np.asarray(arr)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{source}: {where} must be a 2D detector map, found shape {arr.shape}")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InvalidInputError(
                f"{source}: {where} must hold whole numbers (bin numbers), found fractional or "
                "NaN values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise InvalidInputError(
            f"{source}: {where} must hold integers, found data of type {arr.dtype}")
    if bins:
        if arr.size and arr.min() < 0:
            raise InvalidInputError(
                f"{source}: {where} has negative bin numbers; bins are 1-based and 0 marks "
                "unused pixels")
        if arr.size and int(arr.max()) > _MAX_BIN:
            raise InvalidInputError(
                f"{source}: {where} has bin numbers above {_MAX_BIN}; the map is damaged")
    return arr


def _as_list(arr, where: str, source: str, *, integer: bool = False):
    if arr is None:
        return None
    arr = np.asarray(arr)
    if arr.dtype.kind not in "iuf" or (integer and arr.dtype.kind == "f"
                                       and np.any(arr != np.round(arr))):
        raise InvalidInputError(
            f"{source}: {where} must hold {'integers' if integer else 'numbers'}, "
            f"found data of type {arr.dtype}")
    arr = arr.reshape(-1)
    return arr.astype(np.int64) if integer else arr.astype(np.float64)


def _as_names(arr) -> list[str] | None:
    if arr is None:
        return None
    out = []
    for item in np.asarray(arr, dtype=object).reshape(-1):
        out.append(item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item))
    return out


def _bin_values(n_bins: int, layout: dict, kind: str):
    """q (1/m) and φ (deg, or None) of bins 1..n_bins from an APS layout; NaN when unknown."""
    q = np.full(n_bins, np.nan)
    phi = np.full(n_bins, np.nan)
    dim0 = layout.get(f"{kind}_v_list_dim0")
    if dim0 is None or n_bins == 0:
        return q, None
    dim1 = layout.get(f"{kind}_v_list_dim1")
    n0 = dim0.size
    n1 = dim1.size if dim1 is not None and dim1.size else 1
    pts = layout.get(f"{kind}_num_pts")
    if pts is not None and pts.size == 2 and (pts[0] != n0 or pts[1] != n1):
        return q, None  # the lists do not describe the grid the mapping refers to
    mapping = layout.get(f"{kind}_index_mapping")
    if mapping is not None and mapping.size:
        idx = np.full(n_bins, -1, np.int64)
        m = min(n_bins, mapping.size)
        idx[:m] = mapping[:m]
    else:
        idx = np.arange(n_bins, dtype=np.int64)
    ok = (idx >= 0) & (idx < n0 * n1)
    names = layout.get("map_names") or ["q", "phi"]
    if names[0].strip().lower() == "q":
        q[ok] = dim0[idx[ok] // n1] / _A
    has_phi = len(names) > 1 and names[1].strip().lower() == "phi" and dim1 is not None \
        and n1 > 1
    if has_phi:
        phi[ok] = dim1[idx[ok] % n1]
        return q, phi
    return q, None


def _read_qmap_group(group, source: str) -> Partition:
    """Build a :class:`Partition` from an APS q-map group (``/qmap`` or ``/xpcs/qmap``)."""
    where = group.name.rstrip("/")
    maps = {}
    for name in ("dynamic_roi_map", "static_roi_map", "mask"):
        arr = _read_dataset(group, name, source, max_size=_MAX_PIXELS)
        if arr is None:
            if name == "mask":
                continue
            raise InvalidInputError(
                f"{source}: {where}/{name} is missing; an APS q-map holds {where}/dynamic_roi_map, "
                f"{where}/static_roi_map and {where}/mask")
        maps[name] = _as_int_map(arr, f"{where}/{name}", source, bins=name != "mask")
    shapes = {k: v.shape for k, v in maps.items()}
    if len(set(shapes.values())) != 1:
        raise InvalidInputError(
            f"{source}: the q-map arrays disagree in shape: "
            + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    dyn = maps["dynamic_roi_map"]
    sta = maps["static_roi_map"]
    use = (dyn > 0) & (sta > 0)
    if "mask" in maps:
        use &= maps["mask"] != 0
    if not use.any():
        raise InvalidInputError(
            f"{source}: the q-map selects no pixel (every pixel is 0 in a bin map or masked)")
    dyn = np.where(use, dyn, 0)
    sta = np.where(use, sta, 0)
    n_dyn, n_sta = int(dyn.max()), int(sta.max())
    if max(n_dyn, n_sta) > max(dyn.size, 1 << 16):  # each bin costs memory: refuse before allocating
        raise InvalidInputError(
            f"{source}: the q-map numbers its bins up to {max(n_dyn, n_sta)} for {dyn.size} pixels; "
            "the map is damaged")

    layout = {}
    for key in _LAYOUT_KEYS:
        arr = _read_dataset(group, key, source, max_size=_MAX_LIST)
        integer = key.endswith(("num_pts", "index_mapping"))
        layout[key] = _as_list(arr, f"{where}/{key}", source, integer=integer)
    for key in ("map_names", "map_units"):
        try:
            layout[key] = _as_names(_read_dataset(group, key, source, max_size=16))
        except UnsafeFileError:
            raise
        except InvalidInputError:  # optional description: ignore a malformed one
            layout[key] = None

    dq, dphi = _bin_values(n_dyn, layout, "dynamic")
    sq, _ = _bin_values(n_sta, layout, "static")
    labels = []
    for b in range(n_dyn):
        if np.isfinite(dq[b]):
            labels.append(_q_label(dq[b], None if dphi is None else dphi[b]))
        else:
            labels.append(f"bin {b + 1}")
    aps_geometry = {}
    for key in ("beam_center_x", "beam_center_y", "detector_distance", "pixel_size", "energy",
                "X_energy"):
        try:
            val = _read_dataset(group, key, source, max_size=4)
        except UnsafeFileError:
            raise
        except InvalidInputError:  # optional metadata: ignore a malformed entry
            continue
        if val is not None and np.asarray(val).dtype.kind in "iuf" and np.asarray(val).size:
            aps_geometry[key] = float(np.asarray(val, float).reshape(-1)[0])
    extra = {"source": source, "aps_geometry": aps_geometry,
             "aps_layout": {k: v for k, v in layout.items() if v is not None}}
    part = Partition(dyn, sta, dq, sq, labels, "qmap", dynamic_phi=dphi, extra=extra)
    try:
        part.static_to_dynamic()
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc} (the q-map is inconsistent)") from None
    return part


def read_aps_qmap(path) -> Partition:
    """Read an APS q-map file (as made by pySimpleMask, used by boost_corr).

    Reads ``/qmap/dynamic_roi_map``, ``/qmap/static_roi_map`` and ``/qmap/mask`` (1-based bin
    numbers, 0 unused; a pixel whose mask is 0 is unused). An APS *result* file is accepted too:
    its ``/xpcs/qmap`` group has the same layout. Bin q values come from
    ``dynamic_v_list_dim0`` / ``static_v_list_dim0`` (1/Å in the file, converted to 1/m) through
    ``*_index_mapping`` and ``*_num_pts`` when present; they are NaN when the file has none.
    φ comes from ``dynamic_v_list_dim1`` when the map is a q × φ grid.

    Parameters
    ----------
    path : str or path-like
        The q-map file.

    Returns
    -------
    Partition
        Kind ``"qmap"``. Pixels that are 0 in either bin map are unused in both.
        ``extra["aps_layout"]`` keeps the file's grid description (APS units) so that
        :func:`write_aps_qmap` writes it back unchanged; ``extra["aps_geometry"]`` holds the
        beam centre, distance, pixel size and energy found in the group, if any.

    Raises
    ------
    InvalidInputError
        When the file is not HDF5, lacks the maps, has maps of different shapes, negative or
        fractional bin numbers, links to other files, or selects no pixel.
    """
    source = str(path)
    with open_h5_file(path, "an APS q-map .h5/.hdf file") as f:
        for name in ("qmap", "xpcs/qmap"):
            group = resolve_inside(f, name)
            if group is not None and isinstance(group, h5py.Group):
                return _read_qmap_group(group, source)
        raise InvalidInputError(
            f"{source}: no /qmap group; this is not an APS q-map file (expected "
            "/qmap/dynamic_roi_map, /qmap/static_roi_map and /qmap/mask)")


def _aps_layout(partition: Partition) -> dict:
    """The APS grid description of a partition, in APS units (q in 1/Å, φ in degrees)."""
    n_dyn, n_sta = partition.n_dynamic, partition.n_static
    lay = partition.extra.get("aps_layout") if isinstance(partition.extra, dict) else None
    if lay:
        try:
            out = {k: np.asarray(lay[k]) for k in _LAYOUT_KEYS}
            ok = True
            for kind, n in (("dynamic", n_dyn), ("static", n_sta)):
                pts = out[f"{kind}_num_pts"].astype(np.int64).reshape(-1)
                mapping = out[f"{kind}_index_mapping"].astype(np.int64).reshape(-1)
                ok &= (pts.size == 2 and mapping.size >= n
                       and out[f"{kind}_v_list_dim0"].size == pts[0]
                       and out[f"{kind}_v_list_dim1"].size == pts[1]
                       and (mapping[:n].size == 0
                            or (mapping[:n].min() >= 0 and mapping[:n].max() < pts.prod())))
                out[f"{kind}_num_pts"] = pts
                out[f"{kind}_index_mapping"] = mapping[:n]
            if ok:
                out["map_names"] = list(lay.get("map_names") or ["q", "phi"])
                out["map_units"] = list(lay.get("map_units") or ["Å⁻¹", "deg"])
                return out
        except (KeyError, TypeError, ValueError):
            pass
    static_q = np.asarray(partition.static_q, float).reshape(-1)
    if static_q.size != n_sta:
        static_q = np.full(n_sta, np.nan)
    phi = 0.0
    if partition.dynamic_phi is not None and np.isfinite(partition.dynamic_phi).any():
        phi = float(np.nanmean(partition.dynamic_phi))
    return {
        "map_names": ["q", "phi"],
        "map_units": ["Å⁻¹", "deg"],
        "dynamic_num_pts": np.array([n_dyn, 1], np.int64),
        "dynamic_v_list_dim0": np.asarray(partition.dynamic_q, float) * _A,
        "dynamic_v_list_dim1": np.array([phi]),
        "dynamic_index_mapping": np.arange(n_dyn, dtype=np.int64),
        "static_num_pts": np.array([n_sta, 1], np.int64),
        "static_v_list_dim0": static_q * _A,
        "static_v_list_dim1": np.array([phi]),
        "static_index_mapping": np.arange(n_sta, dtype=np.int64),
    }


def _nan_or(value, index=None) -> float:
    if value is None:
        return float("nan")
    if index is not None:
        value = np.broadcast_to(np.asarray(value, float), (2,))[index]
    return float(value)


def _write_qmap_group(group, partition: Partition, *, energy=None, distance=None,
                      pixel_size=None, beam_center=None) -> None:
    """Fill an h5py group with the APS q-map layout of ``partition``.

    Geometry values are SI (eV, m, pixels as (row, col)); missing ones are written as NaN.
    The fields are those pyXpcsViewer's ``QMap`` reads (plus ``blemish`` and ``energy``).
    """
    lay = _aps_layout(partition)
    used = partition.mask
    group.attrs["NX_class"] = "NXprocess"
    group.create_dataset("dynamic_roi_map", data=partition.dynamic_map.astype(np.uint32),
                         compression="gzip", compression_opts=4, shuffle=True)
    group.create_dataset("static_roi_map", data=partition.static_map.astype(np.uint32),
                         compression="gzip", compression_opts=4, shuffle=True)
    group.create_dataset("mask", data=used.astype(np.int32), compression="gzip",
                         compression_opts=4, shuffle=True)
    group.create_dataset("blemish", data=used.astype(np.int32), compression="gzip",
                         compression_opts=4, shuffle=True)
    for key in _LAYOUT_KEYS:
        ds = group.create_dataset(key, data=np.asarray(lay[key]))
        if key.endswith("dim0"):
            ds.attrs["units"] = lay["map_units"][0]
        elif key.endswith("dim1"):
            ds.attrs["units"] = lay["map_units"][1]
    group.create_dataset("map_names", data=np.array([s.encode("utf-8")
                                                     for s in lay["map_names"]]))
    group.create_dataset("map_units", data=np.array([s.encode("utf-8")
                                                     for s in lay["map_units"]]))
    scalars = {
        "beam_center_x": (_nan_or(beam_center, 1), "pixel"),
        "beam_center_y": (_nan_or(beam_center, 0), "pixel"),
        "detector_distance": (_nan_or(distance), "m"),
        "pixel_size": (_nan_or(pixel_size, 1), "m"),
        "energy": (_nan_or(energy) / 1000.0, "keV"),
    }
    for key, (value, unit) in scalars.items():
        group.create_dataset(key, data=np.float64(value)).attrs["units"] = unit
    digest = hashlib.sha256()
    for arr in (partition.dynamic_map, partition.static_map, *(lay[k] for k in _LAYOUT_KEYS),
                np.array([v for v, _ in scalars.values()])):
        arr = np.ascontiguousarray(arr)
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    group.attrs["hash"] = digest.hexdigest()


def write_aps_qmap(partition: Partition, path, *, geometry=None) -> None:
    """Write a partition as an APS q-map file (``/qmap/...``), atomically.

    The layout is the one :func:`read_aps_qmap` and boost_corr read: ``dynamic_roi_map``,
    ``static_roi_map`` (uint32, 1-based, 0 unused), ``mask`` (1 where the partition uses the
    pixel), the grid description ``*_v_list_dim0`` (q, 1/Å), ``*_v_list_dim1`` (φ, degrees),
    ``*_num_pts``, ``*_index_mapping``, ``map_names``/``map_units``, and the geometry
    (``beam_center_x`` = column, ``beam_center_y`` = row in pixels, ``detector_distance`` and
    ``pixel_size`` in m, ``energy`` in keV; NaN when unknown). A q × φ partition keeps its grid.

    Parameters
    ----------
    partition : Partition
    path : str or path-like
        Destination file; replaced only when the write succeeds.
    geometry : speckle.xpcs.geometry.Geometry, optional
        Defaults to ``partition.extra["geometry"]`` when the partition was built from one, or
        to the values :func:`read_aps_qmap` found (``partition.extra["aps_geometry"]``).
    """
    geometry = geometry if geometry is not None else partition.extra.get("geometry")
    kwargs = {}
    if geometry is not None:
        kwargs = {"energy": geometry.energy, "distance": geometry.distance,
                  "pixel_size": geometry.pixel_size, "beam_center": geometry.beam_center}
    elif partition.extra.get("aps_geometry"):  # read from an APS file: write it back
        g = partition.extra["aps_geometry"]
        kev = g.get("energy", g.get("X_energy"))
        kwargs = {"energy": None if kev is None else kev * 1000.0,
                  "distance": g.get("detector_distance"), "pixel_size": g.get("pixel_size")}
        if "beam_center_x" in g and "beam_center_y" in g:
            kwargs["beam_center"] = (g["beam_center_y"], g["beam_center_x"])
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        _write_qmap_group(f.create_group("qmap"), partition, **kwargs)
