"""XPCS results in the APS NeXus result layout, the one pyXpcsViewer opens.

:func:`write_aps_result` writes an :class:`~speckle.xpcs.result.XpcsResult` atomically. The file
holds (units in brackets; the APS convention uses 1/Å for q and keV for the energy):

``/entry``
    ``start_time`` (ISO 8601), ``instrument/detector_1/{frame_time, count_time}`` [s],
    ``{x,y}_pixel_size`` and ``distance`` [m], ``beam_center_{x,y}`` [pixel; x = column,
    y = row], ``instrument/incident_beam/incident_energy`` [keV], and the empty group
    ``instrument/bluesky/metadata`` by which pyXpcsViewer recognises a NeXus result file.
``/xpcs/multitau``
    ``normalized_g2`` and ``normalized_g2_err`` (lag × bin), ``delay_list`` [frames],
    ``config/stride_frame`` = ``config/avg_frame`` = 1 (so lag in seconds =
    ``delay_list × frame_time``).
``/xpcs/qmap``
    the partition in the APS q-map layout (see :func:`speckle.xpcs.partitions.write_aps_qmap`).
``/xpcs/temporal_mean``
    ``scattering_2d`` (1 × rows × cols, mean counts per frame), ``scattering_1d`` (1 × static
    bins: I(q)), ``scattering_1d_segments`` (one segment: the same I(q)).
``/xpcs/spatial_mean/intensity_vs_time``
    2 × frames: frame index, mean counts per used pixel.
``/xpcs/twotime`` (only when two-time maps exist)
    ``correlation_map/c2_00001...`` (upper triangle of C(t1, t2) per dynamic bin, the APS
    "upper_half" storage), ``processed_bins`` (1-based), ``normalized_g2`` (diagonal averages,
    delay × bin), ``normalized_g2_segments`` (the same over consecutive time segments,
    delay × segment × bin), ``delay_list`` [frames], ``config/stride_frame`` = 1 and
    ``config/avg_frame`` = raw frames per two-time step.
``/xpcs/speckle`` (ours)
    ``version``, ``parameters`` and ``verdict`` (JSON strings), ``labels``, ``n_pairs``,
    ``tau_seconds``, ``dynamic_q``/``static_q`` [1/m], and ``fits/``: ``model`` (per bin, "" where
    no fit), ``success`` (1 converged, 0 failed, -1 no fit), one array per fit parameter and
    ``<name>_err`` (NaN where no fit), ``chi2_reduced`` and ``json`` (each fit's ``to_dict()``).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from .. import __version__
from ..backend import asnumpy
from ..errors import InvalidInputError
from ..xpcs.partitions import _read_dataset, _write_qmap_group
from .atomic import atomic_path
from .compressed import create_compressed
from .jsontext import to_json
from .read_hdf5 import open_h5_file
from .tables import _g2_arrays, fit_summary

__all__ = ["ApsG2", "read_aps_result_g2", "write_aps_result"]

_STR = h5py.string_dtype("utf-8")
_BIG = 1 << 20  # arrays above this many elements are compressed


def _scalar(group, name, value, unit=None):
    ds = group.create_dataset(name, data=np.float64(np.nan if value is None else value))
    if unit:
        ds.attrs["units"] = unit
    return ds


def _array(group, name, data, unit=None, compress=False):
    data = np.asarray(data)
    if compress or data.size >= _BIG:
        ds = create_compressed(group, name, data)
    else:
        ds = group.create_dataset(name, data=data)
    if unit:
        ds.attrs["units"] = unit
    return ds


def _group(parent, name, nx_class=None):
    g = parent.require_group(name)
    if nx_class:
        g.attrs["NX_class"] = nx_class
    return g


def _pair(value, index):
    if value is None:
        return None
    return float(np.broadcast_to(np.asarray(value, float), (2,))[index])


def _start_time(result) -> str:
    for source in (getattr(result.metadata, "extra", None) or {}, result.parameters or {}):
        value = source.get("start_time")
        if value:
            return str(value)
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _diagonal_means(c: np.ndarray, length: int) -> np.ndarray:
    """Mean of each upper diagonal k = 0..length-1 of a square matrix (NaN-aware).

    Row by row (row ``i`` from the diagonal on adds to diagonals 0 .. T-1-i): one numpy call
    per row instead of several per diagonal."""
    size = c.shape[0]
    sums, counts = np.zeros(size), np.zeros(size)
    finite = np.isfinite(c)
    whole = bool(finite.all())
    for i in range(size):
        row = c[i, i:]
        if whole:
            sums[:size - i] += row
        else:
            ok = finite[i, i:]
            sums[:size - i] += np.where(ok, row, 0.0)
            counts[:size - i] += ok
    if whole:
        counts = size - np.arange(size, dtype=np.float64)
    out = np.full(length, np.nan)
    n = min(length, size)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:n] = np.where(counts[:n] > 0, sums[:n] / counts[:n], np.nan)
    return out


def _twotime_arrays(result):
    """Validated two-time maps: sorted bins, list of (T, T) arrays."""
    n = result.partition.n_dynamic
    bins, maps = [], []
    for key in sorted(result.twotime or {}):
        try:
            b = int(key)
        except (TypeError, ValueError):
            raise InvalidInputError(f"two-time map key {key!r} is not a bin number") from None
        if not 1 <= b <= n:
            raise InvalidInputError(f"two-time map for bin {b}, but the result has bins 1..{n}")
        c = np.asarray(asnumpy(result.twotime[key]), dtype=np.float64)
        if c.ndim != 2 or c.shape[0] != c.shape[1]:
            raise InvalidInputError(f"two-time map of bin {b} must be square, got {c.shape}")
        bins.append(b)
        maps.append(c)
    return bins, maps


def _write_twotime(xpcs, result, bins, maps):
    tt = _group(xpcs, "twotime", "NXdata")
    cm = _group(tt, "correlation_map")
    for b, c in zip(bins, maps):
        ds = create_compressed(cm, f"c2_{b:05d}", np.triu(c).astype(np.float32))
        ds.attrs["populated_elements"] = "upper_half"
        ds.attrs["time_origin_location"] = "upper_left"
    t_max = max(c.shape[0] for c in maps)
    g2 = np.stack([_diagonal_means(c, t_max) for c in maps], axis=1)
    n_seg = 4 if t_max >= 16 else 1
    seg_len = t_max // n_seg
    seg = np.full((seg_len, n_seg, len(maps)), np.nan)
    for j, c in enumerate(maps):
        L = c.shape[0] // n_seg
        for s in range(n_seg):
            block = c[s * L:(s + 1) * L, s * L:(s + 1) * L]
            seg[:L, s, j] = _diagonal_means(block, L)[:seg_len]
    _array(tt, "processed_bins", np.asarray(bins, np.int64))
    _array(tt, "normalized_g2", g2)
    _array(tt, "normalized_g2_segments", seg)
    _array(tt, "delay_list", np.arange(t_max, dtype=np.int64) * int(result.twotime_bin_frames),
           unit="frames")
    cfg = _group(tt, "config")
    cfg.create_dataset("stride_frame", data=np.int64(1))
    cfg.create_dataset("avg_frame", data=np.int64(max(1, int(result.twotime_bin_frames))))


def write_aps_result(result, path) -> Path:
    """Write an XPCS result as an APS NeXus result file that pyXpcsViewer opens.

    Parameters
    ----------
    result : speckle.xpcs.result.XpcsResult
    path : str or path-like
        Destination (``.hdf`` or ``.h5`` so that pyXpcsViewer lists it). Replaced only when the
        whole file was written (see :func:`speckle.io.atomic.atomic_path`).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InvalidInputError
        When the result's arrays disagree with its partition (g2 columns, static bins, image
        shape, two-time keys).

    Notes
    -----
    The layout is described in the module docstring. An unknown frame time is written as 1 s
    with the attribute ``assumed = True``; other unknown geometry values are written as NaN.
    """
    part = result.partition
    md = result.metadata
    tau, g2, err = _g2_arrays(result)
    n_dyn, n_sta = part.n_dynamic, part.n_static
    image = np.asarray(asnumpy(result.mean_image), dtype=np.float64)
    if image.shape != part.shape:
        raise InvalidInputError(
            f"mean image shape {image.shape} does not match the partition {part.shape}")
    static_i = np.asarray(asnumpy(result.static_intensity), dtype=np.float64).reshape(-1)
    if static_i.size != n_sta:
        raise InvalidInputError(
            f"{static_i.size} static intensities for {n_sta} static bins; inconsistent result")
    intensity = np.asarray(asnumpy(result.intensity_vs_time), dtype=np.float64).reshape(-1)
    bins, maps = _twotime_arrays(result)
    n_pairs = result.g2.n_pairs
    n_pairs = None if n_pairs is None else np.asarray(asnumpy(n_pairs)).reshape(-1)
    tau_out = tau.astype(np.int64) if np.all(tau == np.round(tau)) else tau.astype(float)
    frame_time_known = md.frame_time is not None
    summary = fit_summary(result)

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["creator"] = f"speckle {__version__}"
        f.attrs["NX_class"] = "NXroot"
        # -- /entry: acquisition metadata ------------------------------------------------
        entry = _group(f, "entry", "NXentry")
        entry.create_dataset("start_time", data=_start_time(result), dtype=_STR)
        inst = _group(entry, "instrument", "NXinstrument")
        det = _group(inst, "detector_1", "NXdetector")
        ds = _scalar(det, "frame_time", result.frame_time, "s")
        ds.attrs["assumed"] = not frame_time_known
        _scalar(det, "count_time", md.count_time, "s")
        _scalar(det, "x_pixel_size", _pair(md.pixel_size, 1), "m")
        _scalar(det, "y_pixel_size", _pair(md.pixel_size, 0), "m")
        _scalar(det, "distance", md.distance, "m")
        _scalar(det, "beam_center_x", _pair(md.beam_center, 1), "pixel")
        _scalar(det, "beam_center_y", _pair(md.beam_center, 0), "pixel")
        beam = _group(inst, "incident_beam", "NXbeam")
        _scalar(beam, "incident_energy", None if md.energy is None else md.energy / 1000, "keV")
        marker = _group(_group(inst, "bluesky", "NXcollection"), "metadata", "NXcollection")
        marker.attrs["writer"] = f"speckle {__version__}"
        # -- /xpcs: analysis results -------------------------------------------------------
        xpcs = _group(f, "xpcs", "NXprocess")
        mt = _group(xpcs, "multitau", "NXdata")
        _array(mt, "normalized_g2", g2)
        _array(mt, "normalized_g2_err", err)
        _array(mt, "delay_list", tau_out, unit="frames")
        cfg = _group(mt, "config")
        cfg.create_dataset("stride_frame", data=np.int64(1))
        cfg.create_dataset("avg_frame", data=np.int64(1))
        _write_qmap_group(_group(xpcs, "qmap"), part, energy=md.energy, distance=md.distance,
                          pixel_size=md.pixel_size, beam_center=md.beam_center)
        tm = _group(xpcs, "temporal_mean", "NXdata")
        _array(tm, "scattering_2d", image[None].astype(np.float32), unit="counts/frame",
               compress=True)
        _array(tm, "scattering_1d", static_i[None], unit="counts/pixel/frame")
        _array(tm, "scattering_1d_segments", static_i[None], unit="counts/pixel/frame")
        sm = _group(xpcs, "spatial_mean", "NXdata")
        _array(sm, "intensity_vs_time",
               np.stack([np.arange(intensity.size, dtype=np.float64), intensity]))
        if bins:
            _write_twotime(xpcs, result, bins, maps)
        # -- /xpcs/speckle: what only speckle knows ----------------------------------------
        sp = _group(xpcs, "speckle", "NXcollection")
        sp.create_dataset("version", data=__version__, dtype=_STR)
        sp.create_dataset("parameters", data=to_json(result.parameters or {}), dtype=_STR)
        sp.create_dataset("verdict", data=to_json(result.verdict), dtype=_STR)
        sp.create_dataset("partition_kind", data=str(part.kind), dtype=_STR)
        sp.create_dataset("labels", data=np.array(list(part.labels), dtype=object), dtype=_STR)
        _array(sp, "tau_seconds", tau * result.frame_time, unit="s")
        if n_pairs is not None:
            _array(sp, "n_pairs", n_pairs)
        _array(sp, "dynamic_q", np.asarray(part.dynamic_q, float), unit="1/m")
        _array(sp, "static_q", np.asarray(part.static_q, float), unit="1/m")
        if part.dynamic_phi is not None:
            _array(sp, "dynamic_phi", np.asarray(part.dynamic_phi, float), unit="deg")
        fits = _group(sp, "fits")
        fits.create_dataset("model", data=np.array(summary["model"], dtype=object), dtype=_STR)
        for name in summary["names"]:
            _array(fits, name, summary["values"][name])
            _array(fits, f"{name}_err", summary["errors"][name])
        _array(fits, "success", np.array([-1 if ok is None else int(ok)
                                          for ok in summary["success"]], np.int8))
        _array(fits, "chi2_reduced", summary["chi2"])
        fit_list = list(result.fits or [])[:n_dyn]
        fit_list += [None] * (n_dyn - len(fit_list))
        fits.create_dataset("json", data=to_json(fit_list), dtype=_STR)
    return Path(path)


class ApsG2(NamedTuple):
    """Multi-tau g2 read back from an APS result file."""

    tau_frames: np.ndarray
    """Lags in frames (``delay_list``), (n_tau,)."""
    g2: np.ndarray
    """Normalised g2, (n_tau, n_bins)."""
    g2_err: np.ndarray
    """Its standard error, (n_tau, n_bins)."""


def read_aps_result_g2(path) -> ApsG2:
    """Read the multi-tau g2 of an APS result file (ours or one from APS).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ApsG2
        ``(tau_frames, g2, g2_err)``; lags are in frames: multiply by ``frame_time ×
        stride_frame × avg_frame`` for seconds.

    Raises
    ------
    InvalidInputError
        When the file is not HDF5, lacks ``/xpcs/multitau``, links to other files, or its arrays
        disagree in shape.
    """
    source = str(path)
    with open_h5_file(path, "an APS XPCS result file (.h5/.hdf)") as f:
        arrays = {}
        for name in ("delay_list", "normalized_g2", "normalized_g2_err"):
            arr = _read_dataset(f, f"xpcs/multitau/{name}", source, max_size=1 << 28)
            if arr is None:
                raise InvalidInputError(
                    f"{source}: /xpcs/multitau/{name} is missing; not an APS multi-tau result")
            arr = np.asarray(arr)
            if arr.dtype.kind not in "iuf":
                raise InvalidInputError(
                    f"{source}: /xpcs/multitau/{name} must be numeric, found {arr.dtype}")
            arrays[name] = arr
    tau = arrays["delay_list"].reshape(-1)
    g2 = arrays["normalized_g2"]
    err = arrays["normalized_g2_err"]
    if g2.ndim == 1:
        g2 = g2[:, None]
    if err.ndim == 1:
        err = err[:, None]
    if g2.ndim != 2 or g2.shape[0] != tau.size or err.shape != g2.shape:
        raise InvalidInputError(
            f"{source}: delay_list {arrays['delay_list'].shape}, normalized_g2 "
            f"{arrays['normalized_g2'].shape} and normalized_g2_err "
            f"{arrays['normalized_g2_err'].shape} disagree (expected lags × bins)")
    return ApsG2(tau, g2, err)
