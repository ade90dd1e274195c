"""What the refocus panel knows and does, in plain Python (no widgets).

:class:`RefocusController` holds the panel's fields as plain values (:class:`RefocusFields`,
in the interface's units: eV, nm, µm), the last sweep
(:func:`speckle.imaging.workflow.run_refocus`'s result), the marker's index along it, the best
distance of each metric, and the sweep's result folder (the HDF5 result in the one refocus
layout, the sharpness table, pictures, saved frames).
The widget layer (:mod:`speckle.ui.imaging.refocus`) only binds widgets to it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ...errors import InvalidInputError
from ...imaging.focus import (
    FOCUS_EXTREMUM,
    MIN_REGION_SIDE,
    RECOMMENDED_METRIC,
    gradient_magnitude,
)
from ...imaging.options import RefocusOptions
from ...imaging.propagation import METHODS, wavelength_from_energy
from ...imaging.workflow import run_refocus
from ...io.atomic import atomic_path
from ...io.imaging_result import write_imaging_result
from ..common.downloads import render_png
from ..common.export import new_result_folder
from .render import image_png, render_rgb

__all__ = ["FRAME_PIXELS", "METRIC_LABELS", "MIN_SIDE", "NM", "RESULT_FILES", "UM",
           "RefocusController", "RefocusFields", "RefocusInput", "sharpness_csv_rows",
           "sharpness_figure", "upscale"]

NM = 1e-9
UM = 1e-6
#: The displayed frame is enlarged (whole pixels) to at least this many screen pixels.
FRAME_PIXELS = 360
#: The smallest region that can be refocused (pixels each way).
MIN_SIDE = MIN_REGION_SIDE
METRIC_LABELS = {"acutance": "acutance (gradient)", "brenner": "Brenner",
                 "normalized_variance": "normalised variance",
                 "edge_sparsity": "edge sparsity (Tamura)"}
#: The files of a sweep's result folder: key of :attr:`RefocusController.files` to file name.
RESULT_FILES = {"csv": "sharpness.csv", "hdf5": "result.h5", "sharpness_png": "sharpness.png",
                "input_png": "input.png", "best_png": "focus_best.png"}


@dataclass
class RefocusInput:
    """What a refocus sweep works on, given by the panel's ``source``.

    Attributes
    ----------
    field : array, (rows, cols)
        The complex field to propagate (a region of an image), numpy or cupy.
    label : str
        Short name of the data (for the result folder's name and the result's source).
    kind : str
        What the field is: "fth", "cdi" or "propagation" (the result's ``source_kind``).
    image : array, optional
        The whole image ``field`` was cut from; kept in the result with ``region``.
    region : (row0, row1, col0, col1), optional
        Where ``field`` lies in ``image`` (None: all of it).
    """

    field: object
    label: str = "image"
    kind: str = "propagation"
    image: object = None
    region: tuple | None = None


def sharpness_csv_rows(sweep) -> list[list]:
    """The sharpness table: a header, then distance (µm) and every metric per distance."""
    names = list(sweep.sharpness)
    rows = [["distance_um", *names]]
    for i, z in enumerate(np.asarray(sweep.distances, float)):
        rows.append([f"{z / UM:.6g}", *(f"{float(sweep.sharpness[n][i]):.9g}" for n in names)])
    return rows


def sharpness_figure(sweep, metric: str, best: float | None = None,
                     figsize=(5.6, 3.6)) -> Figure:
    """Sharpness of ``metric`` against distance (µm), the best distance as a dashed line.

    Parameters
    ----------
    sweep : FocusSweep
    metric : str
        One of the swept metrics.
    best : float, optional
        The best distance (m) to mark; default ``sweep.best(metric)``.
    figsize : (float, float)

    Returns
    -------
    matplotlib.figure.Figure
    """
    best = sweep.best(metric) if best is None else best
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(np.asarray(sweep.distances, float) / UM, np.asarray(sweep.sharpness[metric], float),
            "o-", color="#1f77b4", markersize=3)
    ax.axvline(best / UM, color="#2ca02c", linestyle="--", linewidth=1,
               label=f"sharpest: {best / UM:+.3f} µm")
    ax.set_xlabel("propagation distance (µm)")
    ax.set_ylabel(f"sharpness: {METRIC_LABELS.get(metric, metric)}")
    ax.legend(loc="best", fontsize=8)
    return fig


def upscale(rgb: np.ndarray, pixels: int = FRAME_PIXELS) -> np.ndarray:
    """Enlarge a small picture by a whole factor (nearest neighbour) to about ``pixels``."""
    factor = max(1, int(pixels // max(rgb.shape[:2])))
    if factor == 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


@dataclass
class RefocusFields:
    """The refocus panel's fields as plain values, in the interface's units.

    Attributes
    ----------
    energy : float
        Photon energy (eV).
    pitch : float
        Size of one image pixel in the sample plane (nm).
    z_from, z_to : float
        The distance range (µm).
    steps : int
        How many distances.
    apodization : float
        Edge window, a fraction of the region's half-size.
    metric : str
        The sharpness metric (:data:`speckle.imaging.focus.METRICS`).
    extremum : str
        "max" or "min": which extremum of the metric marks the focus.
    method : str
        The propagation (:data:`speckle.imaging.propagation.METHODS`).
    """

    energy: float = 780.0
    pitch: float = 20.0
    z_from: float = -10.0
    z_to: float = 10.0
    steps: int = 41
    apodization: float = 0.1
    metric: str = RECOMMENDED_METRIC
    extremum: str = FOCUS_EXTREMUM[RECOMMENDED_METRIC]
    method: str = METHODS[0]


class RefocusController:
    """The state and the operations of one refocus panel.

    Attributes
    ----------
    fields : RefocusFields
    result : RefocusResult or None
        The last finished refocus.
    sweep : FocusSweep or None
        Its sweep (``result.sweep``).
    input : RefocusInput or None
        What it was given.
    index : int
        Index into ``sweep.distances`` of the marker.
    folder : pathlib.Path or None
        The result folder of the last sweep.
    files : dict of str to pathlib.Path
        Its files: the keys of :data:`RESULT_FILES`, and ``"frame_png"`` (the last saved
        frame, when saved).
    """

    def __init__(self):
        self.fields = RefocusFields()
        self.clear()

    def clear(self) -> None:
        """Forget the sweep (new data were chosen)."""
        self.result = self.sweep = self.input = None
        self.index = 0
        self.folder: Path | None = None
        self.files: dict[str, Path] = {}

    # ---------------------------------------------------------------- parameters
    def parameters(self) -> dict:
        """The sweep's parameters from the fields, in SI units.

        Raises
        ------
        InvalidInputError
            For a non-positive energy or pitch, or an empty distance range.
        """
        f = self.fields
        if not (f.energy or 0) > 0:
            raise InvalidInputError(f"the photon energy must be positive, got {f.energy} eV; "
                                    "type it in the energy field")
        if not (f.pitch or 0) > 0:
            raise InvalidInputError(f"the pixel pitch must be positive, got {f.pitch} nm; type "
                                    "the size of one image pixel in the sample plane")
        z0, z1 = f.z_from, f.z_to
        if not (np.isfinite(z0) and np.isfinite(z1)) or z0 == z1:
            raise InvalidInputError(f"the distance range {z0} to {z1} µm is empty; give two "
                                    "different distances")
        return {"energy": float(f.energy), "wavelength": wavelength_from_energy(f.energy),
                "pixel_size": float(f.pitch) * NM,
                "distances": np.linspace(z0 * UM, z1 * UM, int(f.steps)),
                "apodization": float(f.apodization), "metric": f.metric, "method": f.method}

    def options(self, region=None) -> RefocusOptions:
        """The fields as :class:`~speckle.imaging.options.RefocusOptions` (checked), for
        ``region`` of the field."""
        p = self.parameters()
        z = p["distances"]
        return RefocusOptions(energy=p["energy"], pixel_size=p["pixel_size"],
                              distances=(float(z[0]), float(z[-1]), int(len(z))),
                              region=None if region is None else tuple(int(v) for v in region),
                              apodization=p["apodization"], metric=p["metric"],
                              extremum=self.fields.extremum, method=p["method"])

    def set_parameters(self, *, energy: float | None = None, pitch: float | None = None,
                       z_range: tuple[float, float] | None = None) -> None:
        """Set fields from SI values (eV, m, (m, m)), rounded as typed; None leaves one."""
        f = self.fields
        if energy:
            f.energy = round(float(energy), 3)
        if pitch:
            f.pitch = float(f"{pitch / NM:.6g}")
        if z_range is not None:
            f.z_from = float(f"{z_range[0] / UM:.6g}")
            f.z_to = float(f"{z_range[1] / UM:.6g}")

    @staticmethod
    def default_extremum(metric: str) -> str:
        """Where ``metric`` is in focus by default: "max" or "min"."""
        return FOCUS_EXTREMUM.get(metric, "max")

    # ---------------------------------------------------------------- running
    def check(self, given: RefocusInput) -> RefocusOptions:
        """The options for ``given``, checked (the fields first, then the region's size).

        Raises
        ------
        InvalidInputError
            Saying what to do.
        """
        self.parameters()
        shape = tuple(getattr(given.field, "shape", ()))
        if len(shape) != 2 or min(shape) < MIN_SIDE:
            raise InvalidInputError(
                f"the region to refocus is {' × '.join(map(str, shape))} pixels; "
                f"select one of at least {MIN_SIDE} × {MIN_SIDE} pixels")
        return self.options(given.region if given.image is not None else None)

    @staticmethod
    def refocus(given: RefocusInput, options: RefocusOptions, progress: Callable | None = None,
                cancel: Callable | None = None):
        """Sweep: :func:`~speckle.imaging.workflow.run_refocus` (worker thread)."""
        return run_refocus(given.image if given.image is not None else given.field, options,
                           progress=progress, cancel=cancel, source=given.label,
                           source_kind=given.kind)

    def accept(self, result, given: RefocusInput) -> None:
        """Make ``result`` the sweep shown, the marker at its best distance (files not yet
        written)."""
        self.result, self.sweep, self.input = result, result.sweep, given
        self.folder, self.files = None, {}
        self.index = self.best_index()

    # ---------------------------------------------------------------- the sweep
    def best_distance(self, metric: str | None = None) -> float:
        """The best distance (m) of ``metric`` (default the chosen one) in the last sweep.

        The chosen metric's focus is at the chosen extremum; any other metric's at its default
        (:data:`speckle.imaging.focus.FOCUS_EXTREMUM`).
        """
        chosen = self.fields.metric
        metric = metric or chosen
        return self.sweep.best(metric, self.fields.extremum if metric == chosen else None)

    def best_distances(self) -> dict[str, float]:
        """The best distance (m) of every swept metric."""
        return {m: self.best_distance(m) for m in self.sweep.sharpness}

    def best_index(self) -> int:
        """Index of the best distance of the chosen metric in the last sweep."""
        return self.index_at(self.best_distance() / UM)

    def index_at(self, z_um: float) -> int:
        """Index of the swept distance nearest ``z_um`` (µm)."""
        z = np.asarray(self.sweep.distances, float) / UM
        return int(np.argmin(np.abs(z - z_um)))

    @property
    def distance(self) -> float | None:
        """The marker's distance (m), or None before a sweep."""
        if self.sweep is None:
            return None
        return float(np.asarray(self.sweep.distances)[self.index])

    def frame_at(self, distance: float, view: str = "field"):
        """The field (``view="field"``) or its gradient magnitude at ``distance`` (m)."""
        field_z = self.sweep.field_at(distance)
        return gradient_magnitude(field_z) if view == "gradient" else field_z

    def frame_rgb(self, distance: float, view: str, scale: str) -> np.ndarray:
        """The frame at ``distance`` as shown: complex colours, or the gradient in grey."""
        return render_rgb(self.frame_at(distance, view),
                          "magnitude" if view == "gradient" else "complex", scale)

    # ---------------------------------------------------------------- files
    def write(self, step: Callable, results_dir=None) -> None:
        """Write the last sweep's result folder (complete or absent) and remember it.

        Parameters
        ----------
        step : callable
            ``step(fraction, stage)``; may raise to abandon the folder.
        results_dir : path-like, optional
            Where result folders go (default: the server's).
        """
        result, sweep = self.result, self.sweep
        sharpness_png = render_png(sharpness_figure(sweep, result.options.metric,
                                                    result.best_distance))
        with new_result_folder(f"{self.input.label}-refocus", results_dir) as (tmp, final):
            step(0.1, "writing the sharpness table")
            with open(tmp / RESULT_FILES["csv"], "w", newline="") as f:
                csv.writer(f).writerows(sharpness_csv_rows(sweep))
            step(0.3, "writing the HDF5 result")
            write_imaging_result(result, tmp / RESULT_FILES["hdf5"])
            step(0.7, "writing pictures")
            (tmp / RESULT_FILES["sharpness_png"]).write_bytes(sharpness_png)
            (tmp / RESULT_FILES["input_png"]).write_bytes(image_png(render_rgb(result.field)))
            (tmp / RESULT_FILES["best_png"]).write_bytes(image_png(render_rgb(result.focused)))
            step(0.95, "finishing")
        self.folder = final
        self.files = {key: final / name for key, name in RESULT_FILES.items()}

    def save_frame(self, view: str, scale: str) -> Path:
        """Add the frame at the marker to the result folder (PNG, written atomically).

        Raises
        ------
        InvalidInputError
            Before a sweep's folder is written.
        OSError
            When the file cannot be written.
        """
        if self.folder is None or self.sweep is None:
            raise InvalidInputError("refocus first: a frame is saved in the sweep's folder")
        z = self.distance
        kind = "gradient" if view == "gradient" else "field"
        path = self.folder / f"{kind}_z{z / UM:+.3f}um.png"
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(image_png(self.frame_rgb(z, kind, scale)))
        self.files["frame_png"] = path
        return path
