"""The pictures of imaging results, the same for the command line, the dashboards and notebooks.

Each function returns matplotlib figures (no pyplot state); :func:`result_figures` gives the
set that goes beside a result file, named as the PNG files are.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..plots import plot_image
from .display import display_window, plot_complex
from .focus import gradient_magnitude
from .verdict import PRTF_LEVEL, prtf_cutoff

__all__ = ["PRTF_NEEDS", "error_figure", "prtf_figure", "result_figures", "sharpness_figure"]

#: Said instead of a PRTF when fewer than two independent estimates were averaged.
PRTF_NEEDS = "PRTF needs ≥ 2 trials"


def error_figure(errors, trial_errors=None, rounds: int = 1, final_error=None) -> Figure:
    """Fourier error against iteration (log scale): every trial thin, their mean thick."""
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    errors = np.asarray(errors, float)
    it = np.arange(1, errors.size + 1)
    trials = np.asarray(trial_errors if trial_errors is not None else np.zeros((0, 0)), float)
    if trials.ndim == 2 and trials.shape[0] > 1 and trials.shape[1] == errors.size:
        for row in trials:
            ax.plot(it, row, color="#a9c4e2", linewidth=0.7)
        label = f"mean of {trials.shape[0]} trials"
    else:
        label = "Fourier error"
    ax.plot(it, errors, color="#1f77b4", linewidth=1.5, label=label)
    if rounds > 1 and errors.size % rounds == 0:
        per_round = errors.size // rounds
        for k in range(1, rounds):
            ax.axvline(k * per_round + 0.5, color="#888", linestyle=":", linewidth=1)
    finite = errors[np.isfinite(errors)]
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("iteration" + (" (dotted: new round, shrink-wrap)" if rounds > 1 else ""))
    ax.set_ylabel("Fourier error")
    if final_error is not None:
        ax.set_title(f"final error {final_error:.3g}", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def prtf_figure(prtf, frc=None) -> Figure:
    """PRTF (and FRC of even against odd trials) against |q|/|q|max, with the 1/e cut-off.

    Without a PRTF (None: a single estimate, which fits √I by construction) the plot says so.
    """
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    values = np.zeros(0)
    if prtf is None:
        ax.text(0.5, 0.55, f"{PRTF_NEEDS}: a single reconstruction fits √I\nby "
                "construction, so its PRTF would be ≈ 1 whatever its phases",
                ha="center", va="center", fontsize=9, transform=ax.transAxes)
    else:
        q, values = (np.asarray(a, float) for a in prtf)
        ax.plot(q, values, "o-", color="#1f77b4", markersize=3, linewidth=1.2, label="PRTF")
    if frc is not None:
        ax.plot(*(np.asarray(a, float) for a in frc), "-", color="#ff7f0e", linewidth=1.0,
                label="FRC, even vs odd trials (self-consistency)")
    ax.axhline(PRTF_LEVEL, color="#d62728", linestyle="--", linewidth=1, label="1/e")
    cut = prtf_cutoff(prtf)
    if cut is not None:
        ax.axvline(cut, color="#2ca02c", linestyle=":", linewidth=1.2,
                   label=f"PRTF < 1/e from {cut:.2f}")
    ax.set_xlim(0, 1)
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set_ylim(0, max(1.05, float(top) * 1.05))
    ax.set_xlabel("|q| / |q|max")
    ax.set_ylabel("PRTF")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def sharpness_figure(distances, sharpness: dict, metric: str, focus: float) -> Figure:
    """Every sharpness metric (each scaled to 0-1) against distance, the focus marked."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    z_um = np.asarray(distances, float) * 1e6
    for name, values in sharpness.items():
        v = np.asarray(values, float)
        span = np.nanmax(v) - np.nanmin(v)
        norm = (v - np.nanmin(v)) / span if span > 0 else v * 0
        ax.plot(z_um, norm, lw=2.2 if name == metric else 1, label=name)
    ax.axvline(focus * 1e6, color="k", ls="--", lw=1, label=f"focus {focus * 1e6:.3f} µm")
    ax.set_xlabel("propagation distance (µm)")
    ax.set_ylabel("sharpness (each scaled to 0-1)")
    ax.legend(fontsize="small")
    return fig


def _cdi(result) -> dict:
    r0, r1, c0, c1 = display_window(result.support)
    return {
        "reconstruction": plot_complex(result.reconstruction[r0:r1, c0:c1],
                                       title=f"reconstruction, rows {r0}:{r1}, cols {c0}:{c1}"),
        "errors": error_figure(result.errors, result.trial_errors, result.options.rounds,
                               result.final_error),
        "prtf": prtf_figure(result.prtf, result.frc),
        "pattern": plot_image(np.where(result.mask, np.nan, result.pattern), "log",
                              title="pattern (unmeasured pixels blank)"),
    }


def _fth(result) -> dict:
    image = result.reconstruction
    total = result.hologram if result.charge_reconstruction is None else None
    figures = {"hologram": plot_image(np.nan_to_num(result.hologram), "log",
                                      title="hologram" if total is not None else
                                      "helicity difference")}
    # the autocorrelation's centre outshines everything: saturate it
    vmax = float(np.percentile(np.abs(image), 99.5))
    figures["reconstruction"] = plot_complex(image, "log", vmax=vmax or None,
                                             title="reconstruction (log)")
    for i, t in enumerate(result.cross_terms[:4], start=1):
        r0, r1, c0, c1 = t.box
        figures[f"cross_term_{i}"] = plot_complex(
            image[r0:r1, c0:c1], "linear", title=f"cross-term {i} [{r0}:{r1}, {c0}:{c1}]")
    return figures


def _refocus(result) -> dict:
    opts = result.options
    px = opts.pixel_size[1] if isinstance(opts.pixel_size, tuple) else opts.pixel_size
    return {"sharpness": sharpness_figure(result.distances, result.sharpness, opts.metric,
                                          result.focus_distance),
            "focused": plot_complex(result.focused, "linear", pixel_size=px,
                                    title=f"at {result.focus_distance * 1e6:.3f} µm"),
            "focused_gradient": plot_image(np.asarray(gradient_magnitude(result.focused)),
                                           "linear", title="gradient of |field|")}


def result_figures(result) -> dict:
    """The pictures of an FTH, CDI or refocus result, by PNG name (without ``.png``)."""
    return {"fth": _fth, "cdi": _cdi, "propagation": _refocus}[result.kind](result)
