"""One analysis of one file, as a task: what a Dask worker (or this process) runs.

:func:`analyse_file` takes plain values (the file, the template as a dict, the result folder) so
it runs the same on any worker; it opens the file, recognises its kind unless the template fixes
it, runs the library's workflow for that kind, and writes the result folder atomically (complete
or absent; an earlier result of the same file is replaced only once the new one is whole). It
returns the outcome as a dict and does not raise for bad input: a refused file is an outcome
with an ``error``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
import time
import traceback
from pathlib import Path

import numpy as np

from ..errors import Cancelled, SpeckleError

__all__ = ["analyse_file"]

log = logging.getLogger("speckle.monitor")

#: Width of the thumbnail the live page shows, pixels.
THUMB_SIZE = 160


def analyse_file(path: str, template: dict, result_dir: str, max_seconds: float = 1800.0) -> dict:
    """Analyse ``path`` with ``template`` and write its result folder ``result_dir``.

    Parameters
    ----------
    path : str
        The dataset.
    template : dict
        A :class:`~speckle.monitor.templates.Template` as plain values.
    result_dir : str
        The result folder to write (replaced when it exists).
    max_seconds : float
        The analysis is stopped after this long (a file that declares more than it holds, or
        simply too much for this machine) and reported as refused.

    Returns
    -------
    dict
        ``path``, ``kind``, ``reason`` (why that kind), ``verdict``, ``summary``, ``conclusion``,
        ``action``, ``result``, ``elapsed_s``, ``frames``, ``frame_shape``, ``details``,
        ``ran_on`` (host, pid, Slurm job); or ``path``, ``error`` (and ``kind`` when it was known).
    """
    from .templates import Template

    t0 = time.perf_counter()
    deadline = time.monotonic() + float(max_seconds)

    def cancel() -> bool:
        return time.monotonic() > deadline

    outcome: dict = {"path": str(path), "ran_on": _where()}
    try:
        tmpl = Template.from_dict(template)
        with tmpl.xpcs.open(path) as ds:
            outcome.update(frames=int(ds.n_frames), frame_shape=[int(v) for v in ds.frame_shape])
            if tmpl.kind == "auto":
                from .recognise import recognise

                kind, reason = recognise(ds)
            else:
                kind, reason = tmpl.kind, "the folder's template says so"
            outcome.update(kind=kind, reason=reason)
            run = {"xpcs": _xpcs, "fth": _imaging, "cdi": _imaging}[kind]
            outcome.update(run(ds, tmpl, kind, Path(result_dir), cancel, outcome))
        outcome["result"] = str(result_dir)
    except Cancelled:
        outcome["error"] = (f"the analysis took longer than {max_seconds:g} s and was stopped "
                            "(the file may declare more data than it holds, or is too large for "
                            "this machine: analyse it in a dashboard, or raise monitor.max_seconds)")
    except SpeckleError as exc:
        outcome["error"] = " ".join(str(exc).split())
    except MemoryError:
        outcome["error"] = ("not enough memory for this analysis: use a template with fewer "
                            "pixels (regions, q-rings) or a machine with more memory")
    except OSError as exc:
        outcome["error"] = f"cannot read or write a file: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - the monitor must go on; the trace goes to its log
        log.error("analysis of %s failed:\n%s", path, traceback.format_exc())
        outcome["error"] = f"the analysis failed unexpectedly ({type(exc).__name__}: {exc})"
    outcome["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return outcome


# ------------------------------------------------------------------------------------ XPCS
def _xpcs(ds, tmpl, kind, result_dir: Path, cancel, outcome) -> dict:
    from ..io.result_folder import write_result_folder

    result = tmpl.xpcs.run(ds, cancel=cancel)
    verdict = result.verdict
    details = {"bins": _bins(result), "frame_time_s": result.metadata.frame_time}
    out = {"verdict": verdict.level, "summary": verdict.summary,
           "conclusion": verdict.conclusion, "action": verdict.action, "details": details}

    def extra(folder: Path) -> None:
        _finish_folder(folder, {**outcome, **out, "result": str(result_dir)}, tmpl,
                       result.mean_image)
        _g2_small(result, folder / "g2_small.png")

    write_result_folder(result, ds.source if isinstance(ds.source, str) else str(ds.source),
                        root=result_dir.parent, name=result_dir.name, replace=True, extra=extra)
    return out


def _bins(result) -> list[dict]:
    part, out = result.partition, []
    for b in range(part.n_dynamic):
        fit = result.fits[b] if b < len(result.fits) else None
        ok = fit is not None and fit.success
        q = float(part.dynamic_q[b])
        out.append({"label": part.labels[b],
                    "q_inv_angstrom": q * 1e-10 if np.isfinite(q) else None,
                    "tau_s": _finite(fit.params.get("tau")) if ok else None,
                    "beta": _finite(fit.params.get("contrast")) if ok else None,
                    "verdict": result.verdict.bins[b].level})
    return out


def _g2_small(result, path: Path) -> None:
    from .. import plots

    fig = plots.plot_g2(result, figsize=(3.2, 2.2))
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
        ax.set_title("")
    plots.save_png(fig, path, dpi=60)


# ------------------------------------------------------------------------------------ imaging
def _imaging(ds, tmpl, kind, result_dir: Path, cancel, outcome) -> dict:
    from ..imaging import workflow
    from ..io.imaging_result import write_imaging_result
    from ..io.result_folder import new_result_folder
    from .recognise import image_of

    image = image_of(ds)
    if kind == "fth":
        result = workflow.run_fth(image, tmpl.options("fth"), cancel=cancel)
    else:
        result = workflow.run_cdi(image, tmpl.options("cdi"), cancel=cancel)
    verdict = result.verdict
    conclusion = verdict.summary.removeprefix(f"{verdict.level.upper()}: ")  # the badge says it
    out = {"verdict": verdict.level, "summary": verdict.summary, "conclusion": conclusion,
           "action": verdict.action, "details": {"reasons": list(verdict.reasons)}}
    region = workflow.object_region(result)
    focus = None
    if tmpl.refocus:
        options = tmpl.options("refocus")
        if options.region is None and region is not None:
            options = replace(options, region=region)
        focus = workflow.run_refocus(result, options, cancel=cancel)
        d = focus.focus_distance
        out["conclusion"] = f"{conclusion}; in focus at {d * 1e6:+.2f} µm"
        out["action"] = out["action"] or focus.verdict.action
        out["details"].update(focus_distance_m=float(d), refocus_verdict=focus.verdict.to_dict())
    with new_result_folder(kind, result_dir.parent, name=result_dir.name, replace=True) as (tmp, _):
        write_imaging_result(result, tmp / "result.h5")
        complex_picture(result.reconstruction, tmp / "reconstruction.png", size=None)
        shown = result.reconstruction if region is None else _crop(result.reconstruction, region)
        if focus is not None:
            write_imaging_result(focus, tmp / "refocus.h5")
            shown = focus.focused
            complex_picture(shown, tmp / "focused.png", size=None)
        complex_picture(shown, tmp / "preview_small.png", size=THUMB_SIZE)
        _finish_folder(tmp, {**outcome, **out, "result": str(result_dir)}, tmpl, image)
    return out


def _crop(field, region) -> np.ndarray:
    r0, r1, c0, c1 = region
    return np.asarray(field)[r0:r1, c0:c1]


def complex_picture(field, path: Path, size: int | None) -> None:
    """A reconstruction as a picture (magnitude as brightness, log scale; phase as hue),
    shrunk to ``size`` pixels across when given."""
    import matplotlib.image

    from ..imaging.display import complex_to_rgb

    rgb = complex_to_rgb(field, "log")
    if size:
        rgb = _shrink(rgb, size)
    matplotlib.image.imsave(path, np.clip(rgb, 0, 1), format="png")


def _shrink(a: np.ndarray, size: int) -> np.ndarray:
    """Block means so that the larger side is at most ``size`` (extra channels kept)."""
    step = max(1, int(np.ceil(max(a.shape[:2]) / size)))
    rows, cols = (a.shape[0] // step) * step, (a.shape[1] // step) * step
    if step == 1 or not rows or not cols:
        return a
    a = a[:rows, :cols]
    return a.reshape(rows // step, step, cols // step, step, *a.shape[2:]).mean(axis=(1, 3))


# ------------------------------------------------------------------------------------ shared
def _finish_folder(folder: Path, outcome: dict, tmpl, image) -> None:
    """summary.json, template.yaml and the thumbnail of a result folder."""
    from .templates import save_template

    summary = {k: v for k, v in outcome.items() if k != "elapsed_s"}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=False),
                                         encoding="utf-8")
    save_template(tmpl, folder / "template.yaml")
    thumbnail(image, folder / "thumb.png")


def thumbnail(image, path: Path, size: int = THUMB_SIZE) -> None:
    """A small log-scaled picture of ``image`` (the live page's thumbnail)."""
    import matplotlib.image

    a = _shrink(np.asarray(image, dtype=np.float64), size)
    a = np.log10(np.clip(np.nan_to_num(a, nan=0.0), 0, None) + 1.0)
    lo, hi = np.percentile(a, [1, 99.5]) if a.size else (0.0, 1.0)
    matplotlib.image.imsave(path, a, cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1,
                            format="png")


def _where() -> dict:
    """Where this task runs (provenance): host, process, and the Slurm job when in one."""
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(),
            "slurm_job": os.environ.get("SLURM_JOB_ID")}


def _finite(value):
    return float(value) if value is not None and np.isfinite(value) else None
