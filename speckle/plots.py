"""Figures of XPCS results: g2, intensity trace, two-time maps, detector images.

Every builder returns a new :class:`matplotlib.figure.Figure` and never touches pyplot, so no
global figure state leaks between dashboard callbacks, threads or tests (display a figure in a
notebook with ``IPython.display.display(fig)`` or save it with :func:`save_png`). Lags and
times are plotted in seconds; detector images are shown with row 0 at the top (the convention
of :meth:`speckle.xpcs.geometry.Geometry.phi_map`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.ticker import FuncFormatter, NullFormatter

from .backend import asnumpy
from .errors import InvalidInputError
from .io.atomic import atomic_path
from .xpcs.outliers import format_frames

__all__ = ["bin_outlines", "fit_curve", "plot_g2", "plot_image", "plot_intensity", "plot_twotime",
           "save_png"]

_SCALES = ("linear", "sqrt", "log")


def _bin_colors(n: int) -> list:
    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(i / (n - 1)) for i in range(n)]


def _time_label(result, what: str) -> str:
    if result.metadata.frame_time is None:
        return f"{what} (frames; frame time unknown)"
    return f"{what} (s)"


def _log_label(value, _pos=None) -> str:
    """A log axis's major tick as a plain number (0.001, 0.1, 10, 1e+04): read at a glance,
    and no math text to typeset (a third of a plot's drawing time)."""
    return f"{value:g}" if value > 0 else ""


def _minor_log_label(value, _pos=None) -> str:
    """Label only the 2× and 5× minor ticks of a log axis (for spans under two decades)."""
    if not value > 0:
        return ""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = round(value / 10.0**exponent, 6)
    return f"{value:.3g}" if mantissa in (2, 5) else ""


def fit_curve(fit, tau_s) -> np.ndarray | None:
    """Evaluate a fit at lags ``tau_s`` (seconds); None when it cannot be evaluated.

    Uses the fit's own ``evaluate(tau_s)`` (or ``curve``/``predict``) when it has one; otherwise
    the stretched exponential ``baseline + beta * exp(-2 (tau_s / tau)**gamma)`` from its
    ``params`` (``beta``/``contrast``, ``tau`` in seconds, ``gamma``/``stretch`` defaulting to 1,
    ``baseline``/``offset`` defaulting to 1).
    """
    if fit is None:
        return None
    t = np.asarray(tau_s, dtype=float)
    for name in ("evaluate", "curve", "predict"):
        method = getattr(fit, name, None)
        if callable(method):
            try:
                y = np.asarray(asnumpy(method(t)), dtype=float)
            except Exception:
                continue
            if y.shape == t.shape:
                return y
    params = getattr(fit, "params", None) or {}

    def pick(*names, default=None):
        for n in names:
            if params.get(n) is not None:
                return float(params[n])
        return default

    beta = pick("beta", "contrast")
    tau = pick("tau", "tau_s", "relaxation_time")
    if beta is None or tau is None or not tau > 0:
        return None
    gamma = pick("gamma", "stretch", "kww", default=1.0)
    base = pick("baseline", "offset", default=1.0)
    return base + beta * np.exp(-2.0 * (t / tau) ** gamma)


def plot_g2(result, *, bins=None, title: str | None = None,
            figsize=(6.4, 4.4)) -> Figure:
    """g2 against lag (log scale, seconds), with error bars and fit curves, one colour per bin.

    Fits whose ``success`` is False are not drawn.

    Parameters
    ----------
    result : XpcsResult
    bins : sequence of int, optional
        1-based dynamic bins to show (default all).
    title : str, optional
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
    """
    part = result.partition
    n = part.n_dynamic
    bins = list(range(1, n + 1)) if bins is None else [int(b) for b in bins]
    bad = [b for b in bins if not 1 <= b <= n]
    if bad:
        raise InvalidInputError(f"bin(s) {bad} do not exist: the result has bins 1..{n}")
    tau_s = np.asarray(asnumpy(result.g2.tau_frames), float).reshape(-1) * result.frame_time
    g2 = np.asarray(asnumpy(result.g2.g2), float).reshape(tau_s.size, -1)
    err = result.g2.g2_err
    err = None if err is None else np.asarray(asnumpy(err), float).reshape(g2.shape)
    fits = list(result.fits or [])
    pos = tau_s > 0
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    colors = _bin_colors(len(bins))
    dense = None
    if pos.any():
        dense = np.geomspace(tau_s[pos].min(), tau_s[pos].max(), 200)
    for color, b in zip(colors, bins):
        y = g2[pos, b - 1]
        e = None if err is None else err[pos, b - 1]
        ax.errorbar(tau_s[pos], y, yerr=e, fmt="o", ms=3.5, lw=0.8, capsize=1.5, color=color,
                    label=part.labels[b - 1])
        fit = fits[b - 1] if b - 1 < len(fits) else None
        if fit is not None and getattr(fit, "success", True) is False:
            fit = None  # a failed fit's curve would mislead
        curve = fit_curve(fit, dense) if dense is not None else None
        if curve is not None:
            ax.plot(dense, curve, "-", lw=1.2, color=color)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_log_label))
    ax.xaxis.set_minor_formatter(FuncFormatter(_minor_log_label)
                                 if dense is not None and dense[-1] < 100 * dense[0]
                                 else NullFormatter())  # all minor labels would collide
    ax.set_xlabel(_time_label(result, "lag τ"))
    ax.set_ylabel("g₂(τ)")
    ax.grid(True, which="major", alpha=0.3)
    if bins:
        # beside the axes: it covers no point, and searching the best place among every error
        # bar took 40 % of the drawing
        ax.legend(fontsize="small", ncol=1 if len(bins) <= 20 else 2, frameon=False,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if title:
        ax.set_title(title)
    return fig


def plot_intensity(result, *, title: str | None = None, figsize=(6.4, 3.2)) -> Figure:
    """Mean counts per used pixel against time (seconds): beam drops, drifts, damage.

    Frames the verdict flags (spikes, beam losses, empty frames) are circled in red, frames left
    out of the analysis are crossed in grey.

    Parameters
    ----------
    result : XpcsResult
    title : str, optional
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
    """
    y = np.asarray(asnumpy(result.intensity_vs_time), float).reshape(-1)
    t = np.arange(y.size) * result.frame_time
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(t, y, lw=0.8)
    excluded = [f for f in result.parameters.get("exclude_frames") or () if 0 <= f < y.size]
    if excluded:
        ax.plot(t[excluded], y[excluded], "x", color="#888",
                label=f"left out: {_shorten(format_frames(excluded))}")
    flagged = [f for f in getattr(result.verdict, "exclude_frames", None) or () if f < y.size]
    if flagged:
        ax.plot(t[flagged], y[flagged], "o", mfc="none", mec="#b00020", ms=7,
                label=f"flagged: {_shorten(format_frames(flagged))}")
    if excluded or flagged:
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel(_time_label(result, "time"))
    ax.set_ylabel("mean counts per pixel")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    return fig


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(",", 1)[0] + ",…"


def _robust_limits(values: np.ndarray, lo=1.0, hi=99.0):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    vmin, vmax = np.percentile(finite, [lo, hi])
    if vmax <= vmin:
        vmin, vmax = finite.min(), finite.max()
    if vmax <= vmin:
        vmax = vmin + 1.0
    return float(vmin), float(vmax)


def plot_twotime(result, bin: int, *, figsize=(5.2, 4.4)) -> Figure:
    """Two-time correlation map C(t₁, t₂) of one dynamic bin, in seconds, origin lower left.

    Parameters
    ----------
    result : XpcsResult
    bin : int
        1-based dynamic bin.
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidInputError
        When the result has no two-time map for that bin.
    """
    maps = result.twotime or {}
    if not maps:
        raise InvalidInputError(
            "this result has no two-time maps: run the analysis with two-time enabled")
    key = int(bin)
    if key not in maps:
        raise InvalidInputError(
            f"no two-time map for bin {key}; maps exist for bins {sorted(int(k) for k in maps)}")
    c = np.asarray(asnumpy(maps[key]), dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise InvalidInputError(f"the two-time map of bin {key} is not square: {c.shape}")
    step = max(1, int(result.twotime_bin_frames)) * result.frame_time
    span = c.shape[0] * step
    off = c[~np.eye(c.shape[0], dtype=bool)] if c.shape[0] > 1 else c.ravel()
    vmin, vmax = _robust_limits(off)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(c.T, origin="lower", extent=(0, span, 0, span), vmin=vmin, vmax=vmax,
                   cmap="viridis", interpolation="nearest", aspect="equal")
    ax.set_xlabel(_time_label(result, "t₁"))
    ax.set_ylabel(_time_label(result, "t₂"))
    labels = result.partition.labels
    ax.set_title(labels[key - 1] if key - 1 < len(labels) else f"bin {key}", fontsize="medium")
    fig.colorbar(im, ax=ax, label="C(t₁, t₂)")
    return fig


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along each row of a 2-D boolean array: (row, first, one past the last)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, first = np.nonzero(step == 1)
    _, stop = np.nonzero(step == -1)  # row-major order: each row's stops pair with its starts
    return rows, first, stop


def _outline_segments(labels: np.ndarray) -> np.ndarray:
    """Pixel edges separating different bins (or a bin from unused pixels), as line segments.

    Adjoining edges on one line are one segment (a few hundred instead of thousands: matplotlib
    draws each segment as an object of its own).

    Returns an (n, 2, 2) array of ((x0, y0), (x1, y1)) in image coordinates (pixel centres at
    integers), ready for a :class:`~matplotlib.collections.LineCollection`.
    """
    cols, first, stop = _runs((labels[:, 1:] != labels[:, :-1]).T)  # vertical edges, per column
    x = cols + 0.5
    vertical = np.stack([np.stack([x, first - 0.5], -1), np.stack([x, stop - 0.5], -1)], 1)
    rows, first, stop = _runs(labels[1:, :] != labels[:-1, :])  # horizontal edges, per row
    y = rows + 0.5
    horizontal = np.stack([np.stack([first - 0.5, y], -1), np.stack([stop - 0.5, y], -1)], 1)
    return np.concatenate([vertical, horizontal]).astype(float)


def bin_outlines(partition, color="white") -> PathPatch:
    """The dynamic bins' outlines along the pixel edges, as one artist to add to an image's axes.

    One path of many pieces: matplotlib draws it at once, where a collection of thousands of
    pixel edges took most of an image's drawing time. Add it with ``ax.add_artist`` (the image
    sets the limits; ``add_patch`` would walk every piece to update them).

    Parameters
    ----------
    partition : Partition
    color : colour

    Returns
    -------
    matplotlib.patches.PathPatch
    """
    segments = _outline_segments(np.asarray(partition.dynamic_map))
    codes = np.tile(np.array([MplPath.MOVETO, MplPath.LINETO], MplPath.code_type), len(segments))
    path = MplPath(segments.reshape(-1, 2), codes)
    return PathPatch(path, fill=False, edgecolor=color, linewidth=0.6, alpha=0.9)


def plot_image(image, scale: str = "linear", partition=None, *, title: str | None = None,
               cmap: str = "viridis", outline_color="white", figsize=(5.6, 4.8)) -> Figure:
    """A detector image (row 0 at the top), optionally with the bins' outlines drawn over it.

    Parameters
    ----------
    image : ndarray, (rows, cols)
        For example ``result.mean_image``.
    scale : {"linear", "sqrt", "log"}
        Colour scale. Linear and sqrt clip to the 0.5-99.5 percentiles; log shows
        non-positive pixels in the "bad" colour.
    partition : Partition, optional
        Its dynamic bins are outlined by thin lines along the pixel edges between bins.
    title : str, optional
    cmap : str
        Matplotlib colormap name.
    outline_color : colour
        Colour of the bin outlines.
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InvalidInputError
        For an unknown scale, an image that is not 2D, or a partition of another shape.
    """
    if scale not in _SCALES:
        raise InvalidInputError(f"unknown scale {scale!r}; choose one of {', '.join(_SCALES)}")
    img = np.asarray(asnumpy(image), dtype=float)
    if img.ndim != 2:
        raise InvalidInputError(f"an image must be 2D, got shape {img.shape}")
    if scale == "log":
        positive = img[np.isfinite(img) & (img > 0)]
        if positive.size:
            vmin = float(np.percentile(positive, 0.5))
            vmax = float(positive.max())
            norm = mcolors.LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))
        else:
            norm = mcolors.LogNorm(vmin=1e-3, vmax=1.0)
        shown = np.where(img > 0, img, np.nan)
    else:
        vmin, vmax = _robust_limits(img, 0.5, 99.5)
        if vmin is None:
            vmin, vmax = 0.0, 1.0
        if scale == "sqrt":
            vmin = max(vmin, 0.0)
            vmax = max(vmax, vmin + 1e-12)
            norm = mcolors.PowerNorm(gamma=0.5, vmin=vmin, vmax=vmax)
            shown = np.clip(img, vmin, None)
        else:
            norm = mcolors.Normalize(vmin=vmin, vmax=vmax)
            shown = img
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shown, origin="upper", norm=norm, cmap=cmap, interpolation="nearest")
    bar = fig.colorbar(im, ax=ax, label=f"counts ({scale} scale)")
    if scale == "log":
        bar.ax.yaxis.set_major_formatter(FuncFormatter(_log_label))
        bar.ax.yaxis.set_minor_formatter(FuncFormatter(_minor_log_label) if norm.vmax < 100 * norm.vmin
                                         else NullFormatter())
    if partition is not None:
        if tuple(partition.shape) != img.shape:
            raise InvalidInputError(
                f"partition shape {partition.shape} does not match the image {img.shape}")
        ax.add_artist(bin_outlines(partition, outline_color))  # not add_patch: no limits to update
    ax.set_xlabel("column (pixel)")
    ax.set_ylabel("row (pixel)")
    if title:
        ax.set_title(title)
    return fig


def save_png(fig: Figure, path, *, dpi: int = 120) -> Path:
    """Save a figure as PNG, atomically (the file is complete or absent).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
    dpi : int

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return Path(path)
