"""CSV tables of an XPCS result, for spreadsheets and quick scripts.

Two tables, both written atomically with the plain :mod:`csv` module (UTF-8, numbers written
with ``repr`` precision so they read back bit for bit, empty cells for "no value"):

- :func:`write_g2_csv`: one row per lag: ``tau_s`` then, for each bin, ``g2 <label>`` and
  ``g2_err <label>`` (the per-region layout of the original ALS speckle server's table).
- :func:`write_fits_csv`: one row per dynamic bin: bin number, label, q in 1/Å, fit model, each
  fit parameter and its error, χ², and the quality verdict's level.

The helpers :func:`fit_summary` and :func:`verdict_levels` turn the loosely typed ``fits`` and
``verdict`` of an :class:`~speckle.xpcs.result.XpcsResult` into plain columns; the HDF5 writer and
the plots reuse them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..backend import asnumpy
from ..errors import InvalidInputError
from .atomic import atomic_path

__all__ = ["fit_summary", "verdict_levels", "write_fits_csv", "write_g2_csv"]

_CHI2_KEYS = ("chi2_reduced", "chi2", "reduced_chi2", "redchi")


def _fit_dict(fit) -> dict:
    try:
        d = fit.to_dict()
    except Exception:  # a fit without to_dict, or one that fails: use its attributes only
        return {}
    return d if isinstance(d, dict) else {}


def fit_summary(result) -> dict:
    """Collect the fits of a result into per-bin columns.

    Parameters
    ----------
    result : XpcsResult
        ``result.fits`` holds one FitResult (``.model``, ``.params``, ``.errors``,
        ``.to_dict()``) or None per dynamic bin; a shorter list is padded with None.

    Returns
    -------
    dict
        ``names`` (parameter names in order of first appearance), ``model`` (list of str, ""
        where no fit), ``success`` (list of True/False, None where no fit; a fit without a
        ``success`` attribute counts as successful), ``values`` and ``errors`` (dict name ->
        float array (n_dynamic,), NaN where absent), ``chi2`` (reduced chi-square, float array,
        NaN where unknown).
    """
    n = result.partition.n_dynamic
    fits = list(result.fits or [])[:n]
    fits += [None] * (n - len(fits))
    names: list[str] = []
    for fit in fits:
        for name in (getattr(fit, "params", None) or {}) if fit is not None else {}:
            if name not in names:
                names.append(str(name))
    values = {name: np.full(n, np.nan) for name in names}
    errors = {name: np.full(n, np.nan) for name in names}
    chi2 = np.full(n, np.nan)
    models, success = [], []
    for i, fit in enumerate(fits):
        if fit is None:
            models.append("")
            success.append(None)
            continue
        models.append(str(getattr(fit, "model", "") or ""))
        success.append(bool(getattr(fit, "success", True)))
        params = getattr(fit, "params", None) or {}
        errs = getattr(fit, "errors", None) or {}
        for name in names:
            for source, target in ((params, values), (errs, errors)):
                v = source.get(name)
                if v is not None:
                    try:
                        target[name][i] = float(v)
                    except (TypeError, ValueError):
                        pass
        c = next((getattr(fit, k) for k in _CHI2_KEYS if getattr(fit, k, None) is not None),
                 None)
        if c is None:
            d = _fit_dict(fit)
            c = next((d[k] for k in _CHI2_KEYS if d.get(k) is not None), None)
        if c is not None:
            try:
                chi2[i] = float(c)
            except (TypeError, ValueError):
                pass
    return {"names": names, "model": models, "success": success, "values": values,
            "errors": errors, "chi2": chi2}


def verdict_levels(verdict, n_bins: int) -> list[str]:
    """The verdict level of each dynamic bin ("" when unknown).

    ``verdict.to_dict()`` may give per-bin levels as a list under ``"bins"`` (or ``"per_bin"``),
    each a level string or a dict with a ``"level"`` key; otherwise the overall ``"level"`` is
    used for every bin.
    """
    if verdict is None:
        return [""] * n_bins
    try:
        d = verdict.to_dict()
    except Exception:
        d = {}
    if not isinstance(d, dict):
        d = {}
    per_bin = d.get("bins", d.get("per_bin"))
    if isinstance(per_bin, (list, tuple)) and len(per_bin) == n_bins:
        out = []
        for item in per_bin:
            if isinstance(item, dict):
                item = item.get("level", "")
            out.append("" if item is None else str(item))
        return out
    level = d.get("level", getattr(verdict, "level", ""))
    return ["" if level is None else str(level)] * n_bins


def _g2_arrays(result):
    tau = np.asarray(asnumpy(result.g2.tau_frames)).reshape(-1)
    g2 = np.asarray(asnumpy(result.g2.g2), dtype=float)
    err = result.g2.g2_err
    err = np.full_like(g2, np.nan) if err is None else np.asarray(asnumpy(err), dtype=float)
    n = result.partition.n_dynamic
    if g2.ndim == 1:
        g2 = g2[:, None]
        err = err.reshape(g2.shape)
    if g2.shape != (tau.size, n) or err.shape != g2.shape:
        raise InvalidInputError(
            f"g2 has shape {g2.shape} (errors {err.shape}) but the result has {tau.size} lags "
            f"and {n} bins; the result is inconsistent")
    return tau, g2, err


def write_g2_csv(result, path) -> Path:
    """Write g2 and its error, one row per lag, one column pair per bin.

    Parameters
    ----------
    result : XpcsResult
    path : str or path-like
        Destination ``.csv`` file, replaced only when the write succeeds.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Columns: ``tau_s`` (lag in seconds; ``tau_frames``, in frames, when the frame time is
    unknown), then ``g2 <label>`` and ``g2_err <label>`` for each
    dynamic bin in order (labels such as ``q=0.00170 1/Å``). Missing values are empty cells.
    """
    tau, g2, err = _g2_arrays(result)
    known = result.metadata.frame_time is not None
    tau_s = tau * result.frame_time if known else tau.astype(float)
    labels = list(result.partition.labels)
    header = ["tau_s" if known else "tau_frames"]
    for label in labels:
        header += [f"g2 {label}", f"g2_err {label}"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(tau.size):
            row = [_nan_blank(tau_s[i])]
            for b in range(len(labels)):
                row += [_nan_blank(g2[i, b]), _nan_blank(err[i, b])]
            w.writerow(row)
    return Path(path)


def _nan_blank(value) -> str:
    value = float(value)
    return "" if math.isnan(value) else repr(value)


def write_fits_csv(result, path) -> Path:
    """Write one row per dynamic bin with its fit parameters and verdict.

    Parameters
    ----------
    result : XpcsResult
    path : str or path-like
        Destination ``.csv`` file, replaced only when the write succeeds.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Columns: ``bin`` (1-based), ``label``, ``q (1/Å)`` (bin centre in 1/Å; empty for rectangular
    regions), ``model`` and ``success`` (``True``/``False``; both empty where no fit was made),
    then ``<name>`` and ``<name>_err`` for every fit parameter (times in seconds, see
    :mod:`speckle.xpcs.fitting`; the values of a failed fit are its last trial, not a
    measurement), ``chi2_reduced`` and ``verdict`` (the bin's quality level).
    """
    part = result.partition
    n = part.n_dynamic
    summary = fit_summary(result)
    levels = verdict_levels(result.verdict, n)
    q = np.asarray(part.dynamic_q, float) * 1e-10
    header = ["bin", "label", "q (1/Å)", "model", "success"]
    for name in summary["names"]:
        header += [name, f"{name}_err"]
    header += ["chi2_reduced", "verdict"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            ok = summary["success"][i]
            row = [str(i + 1), part.labels[i], _nan_blank(q[i]), summary["model"][i],
                   "" if ok is None else str(ok)]
            for name in summary["names"]:
                row += [_nan_blank(summary["values"][name][i]),
                        _nan_blank(summary["errors"][name][i])]
            row += [_nan_blank(summary["chi2"][i]), levels[i]]
            w.writerow(row)
    return Path(path)
