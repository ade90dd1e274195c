"""What the CDI dashboard knows and does, in plain Python (no widgets).

:class:`CdiController` holds the state of one CDI page: the fields as plain values
(:class:`CdiFields`), the regions masked on the pattern and drawn on the autocorrelation
(:class:`~speckle.ui.common.regions.RegionList`), the pattern shown as read and as prepared
(:class:`ShownPattern`), the last phasing's result and its files, or a saved result. Its
operations call the library's imaging workflow: :func:`~speckle.imaging.prepare.prepare_pattern`
and :func:`~speckle.imaging.workflow.initial_support` to show what will be phased,
:func:`~speckle.imaging.workflow.run_cdi` to phase it, and
:func:`~speckle.io.imaging_result.write_imaging_result` for its result folder. The widget layer
(:mod:`speckle.ui.imaging.cdi`) only binds widgets to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ...backend import asnumpy
from ...errors import InvalidInputError
from ...imaging.display import display_window
from ...imaging.figures import error_figure, prtf_figure
from ...imaging.options import CdiOptions
from ...imaging.phasing import parse_schedule
from ...imaging.prepare import PreparedPattern, prepare_pattern
from ...imaging.support import autocorrelation_map, support_from_rectangles
from ...imaging.workflow import initial_support, run_cdi
from ...io.images import write_reconstruction_zip
from ...io.imaging_result import write_imaging_result
from ..common.downloads import render_png
from ..common.export import new_result_folder
from ..common.regions import Region, RegionList

__all__ = ["BIN_FACTORS", "CONSTRAINTS", "RESULT_FILES", "SUPPORT_MODES", "CdiController",
           "CdiFields", "PhasingJob", "ShownPattern", "fourier_modulus", "result_figures",
           "saved_as_result", "show_pattern"]

#: Object constraints: the value of :attr:`CdiFields.constraint`.
CONSTRAINTS = ("complex", "real", "positive")
#: How the initial support is chosen: :attr:`CdiFields.support_mode`.
SUPPORT_MODES = ("auto", "rectangles")
#: Binnings offered.
BIN_FACTORS = (1, 2, 4)
#: The files of a result folder: key of :attr:`CdiController.files` to file name.
RESULT_FILES = {"hdf5": "result.h5", "zip": "reconstruction.zip", "png": "reconstruction.png",
                "errors_png": "errors.png", "prtf_png": "prtf.png"}


# -------------------------------------------------------------------------------- the pattern
@dataclass
class ShownPattern:
    """The pattern shown: as read, as prepared for phasing, and what its support would be.

    Attributes
    ----------
    image : numpy.ndarray
        The image as read.
    prepared : PreparedPattern
        :func:`~speckle.imaging.prepare.prepare_pattern` of it with the fields' options.
    autocorrelation : numpy.ndarray
        :func:`~speckle.imaging.support.autocorrelation_map` of the prepared pattern.
    auto_support : numpy.ndarray or None
        The automatic initial support; None when none could be found (``auto_error`` says
        why).
    auto_method : str
        How it was found (a key of :data:`speckle.imaging.workflow.SUPPORT_NAMES`).
    auto_error : str
    options : CdiOptions
        What made it.
    """

    image: np.ndarray
    prepared: PreparedPattern
    autocorrelation: np.ndarray
    auto_support: np.ndarray | None
    auto_method: str
    auto_error: str
    options: CdiOptions


def fourier_modulus(pattern) -> np.ndarray:
    """``√I`` (negative values as 0, non-finite ones kept): what the pattern view shows.

    The modulus spans half the decades of the intensity.
    """
    p = np.asarray(asnumpy(pattern), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(p), np.sqrt(np.maximum(p, 0.0)), p)


def show_pattern(image, options: CdiOptions) -> ShownPattern:
    """Prepare a pattern as :func:`~speckle.imaging.workflow.run_cdi` will, and its support."""
    raw = np.asarray(asnumpy(image), dtype=np.float64)
    prepared = prepare_pattern(raw, background=options.background,
                               mask_zeros=options.mask_zeros, mask_below=options.mask_below,
                               center=options.center, bin_factor=options.bin_factor,
                               mask_shadows=options.mask_shadows, mask_rects=options.mask_rects)
    ac = np.asarray(asnumpy(autocorrelation_map(prepared.pattern, mask=prepared.mask)))
    auto, method, error = None, "autocorrelation", ""
    try:
        auto, method, _ = initial_support(prepared, options)
    except InvalidInputError as exc:
        error = " ".join(str(exc).split())
    return ShownPattern(image=raw, prepared=prepared, autocorrelation=ac, auto_support=auto,
                        auto_method=method, auto_error=error, options=options)


def result_figures(result) -> tuple[bytes, bytes]:
    """The error and PRTF plots of a result (or of :func:`saved_as_result`), as PNG."""
    rounds = result.options.rounds
    return (render_png(error_figure(result.errors, result.trial_errors, rounds,
                                    result.final_error)),
            render_png(prtf_figure(result.prtf, result.frc)))


def saved_as_result(saved):
    """What :func:`result_figures` reads, from a saved CDI result (None without errors)."""
    a, attrs = saved.arrays, saved.attrs
    if "errors" not in a:
        return None
    return SimpleNamespace(
        errors=a["errors"], trial_errors=a.get("trial_errors", np.zeros((0, 0))),
        options=SimpleNamespace(rounds=int((attrs.get("options") or {}).get("rounds", 1))),
        final_error=float(attrs.get("final_error", float("nan"))),
        prtf=(a["prtf_q"], a["prtf"]) if {"prtf_q", "prtf"} <= set(a) else None,
        frc=(a["frc_q"], a["frc"]) if {"frc_q", "frc"} <= set(a) else None)


@dataclass
class PhasingJob:
    """What one phasing run needs (taken when Run is pressed)."""

    image: np.ndarray
    options: CdiOptions
    label: str


# -------------------------------------------------------------------------------- the fields
def _number(text: str, what: str) -> float | None:
    text = text.strip()
    try:
        return float(text) if text else None
    except ValueError:
        raise InvalidInputError(f"cannot read {what} {text!r}: give a number, or leave it "
                                "empty") from None


def _background(text: str) -> float | str | None:
    """The background field as ``speckle cdi --background`` reads it; empty is none."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return None
    if text.lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        return text  # "pN", checked by prepare_pattern


def _text(value) -> str:
    return "" if value is None else str(value)


@dataclass
class CdiFields:
    """The CDI page's fields as plain values: what is typed, ticked or chosen.

    Text fields (``background``, ``mask_below``, ``support_threshold``, ``seed``) hold the text
    as typed; :meth:`CdiController.options` reads them. The names are those of
    :class:`~speckle.imaging.options.CdiOptions` where one field gives one option;
    ``support_mode`` is one of :data:`SUPPORT_MODES`, ``center`` a tick (centre on the
    symmetry centre), ``constraint`` one of :data:`CONSTRAINTS`.
    """

    background: str
    mask_below: str
    mask_zeros: bool
    mask_shadows: bool
    center: bool
    bin_factor: int
    support_mode: str
    support_threshold: str
    schedule: str
    rounds: int
    trials: int
    beta: float
    seed: str
    shrinkwrap: bool
    shrinkwrap_sigma: float
    shrinkwrap_threshold: float
    constraint: str
    incoherent_floor: bool

    @classmethod
    def from_options(cls, o: CdiOptions) -> CdiFields:
        """The fields that give ``o`` (its rectangles aside: they are regions).

        Raises
        ------
        InvalidInputError
            For a binning the page does not offer.
        """
        if o.bin_factor not in BIN_FACTORS:
            raise InvalidInputError(f"this folder's template bins {o.bin_factor}×{o.bin_factor}; "
                                    f"the page offers {', '.join(map(str, BIN_FACTORS))}")
        return cls(
            background="none" if o.background is None else str(o.background),
            mask_below=_text(o.mask_below), mask_zeros=bool(o.mask_zeros),
            mask_shadows=bool(o.mask_shadows), center=o.center is not None,
            bin_factor=int(o.bin_factor),
            support_mode="rectangles" if o.support == "rectangles" else "auto",
            support_threshold=_text(o.support_threshold), schedule=o.schedule,
            rounds=int(o.rounds), trials=int(o.trials), beta=float(o.beta), seed=_text(o.seed),
            shrinkwrap=bool(o.shrinkwrap), shrinkwrap_sigma=float(o.shrinkwrap_sigma),
            shrinkwrap_threshold=float(o.shrinkwrap_threshold),
            constraint="positive" if o.positivity else "real" if o.real else "complex",
            incoherent_floor=bool(o.incoherent_floor))


# -------------------------------------------------------------------------------- the controller
class CdiController:
    """The state and the operations of one CDI page.

    Attributes
    ----------
    fields : CdiFields
        The fields (defaults: :class:`~speckle.imaging.options.CdiOptions`'s, as
        ``speckle cdi``).
    mask_regions : RegionList
        Rectangles of the prepared pattern left unmeasured (beamstop, gaps, saturation).
    support_regions : RegionList
        Rectangles of the autocorrelation: their union is the initial support; adding one
        switches :attr:`CdiFields.support_mode` to ``"rectangles"``.
    label : str
        Short name of the data (result folder names).
    metadata : Metadata or None
    shown : ShownPattern or None
        The pattern shown, as read and as prepared, its autocorrelation and automatic support.
    result : CdiResult or None
        The last finished phasing.
    job : PhasingJob or None
        What the last finished phasing was given.
    saved : SavedResult or None
        A saved result chosen as data, its reconstruction shown (until the next phasing).
    window : (row0, row1, col0, col1) or None
        The part of the reconstruction shown.
    folder : pathlib.Path or None
        The last result folder.
    files : dict of str to pathlib.Path
        Its files (keys of :data:`RESULT_FILES`).
    """

    def __init__(self):
        self.fields = CdiFields.from_options(CdiOptions())
        self.mask_regions = RegionList(max_regions=None)
        self.support_regions = RegionList(max_regions=None)
        self.support_regions.on_change(self._support_regions_changed)
        self.label = ""
        self.metadata = None
        self.shown: ShownPattern | None = None
        self.saved = None
        self.clear_result()

    # ---------------------------------------------------------------- options
    def pattern_options(self) -> CdiOptions:
        """The options that shape the pattern and its initial support (phasing: defaults).

        Raises
        ------
        InvalidInputError
            For a field that cannot be read.
        """
        f = self.fields
        rects = tuple(self.support_regions.regions)
        rectangles = f.support_mode == "rectangles" and bool(rects)
        return CdiOptions(
            background=_background(f.background), mask_zeros=bool(f.mask_zeros),
            mask_shadows=bool(f.mask_shadows), mask_below=_number(f.mask_below, "“mask below”"),
            center="auto" if f.center else None, bin_factor=int(f.bin_factor),
            mask_rects=tuple(self.mask_regions.regions),
            support="rectangles" if rectangles else "auto",
            support_rects=rects if rectangles else (),
            support_threshold=_number(f.support_threshold, "the support threshold"))

    def options(self) -> CdiOptions:
        """The options the fields ask for (checked): the same as ``speckle cdi`` takes.

        Raises
        ------
        InvalidInputError
            For a field that cannot be read, a schedule that cannot be read or numbers out of
            range.
        """
        f = self.fields
        seed_text = f.seed.strip()
        try:
            seed = int(seed_text) if seed_text else None
        except ValueError:
            raise InvalidInputError(f"the seed must be a whole number (or empty for random "
                                    f"starts), got {seed_text!r}") from None
        return replace(
            self.pattern_options(), schedule=f.schedule, rounds=int(f.rounds),
            trials=int(f.trials), beta=float(f.beta), positivity=f.constraint == "positive",
            incoherent_floor=bool(f.incoherent_floor),
            real=f.constraint in ("real", "positive"), shrinkwrap=bool(f.shrinkwrap),
            shrinkwrap_sigma=float(f.shrinkwrap_sigma),
            shrinkwrap_threshold=float(f.shrinkwrap_threshold), seed=seed)

    def apply_options(self, options: CdiOptions) -> None:
        """Take a template's options as the fields (its rectangles go in once the pattern is
        shown: :meth:`apply_rectangles`).

        Raises
        ------
        InvalidInputError
            For a binning the page does not offer.
        """
        self.fields = CdiFields.from_options(options)

    def apply_rectangles(self, options: CdiOptions) -> None:
        """Add a template's support and mask rectangles to the regions (pattern shown).

        Raises
        ------
        InvalidInputError
            For a rectangle outside the prepared pattern.
        """
        for r in options.support_rects:
            self.support_regions.add(*r)
        for r in options.mask_rects:
            self.mask_regions.add(*r)

    def iterations(self) -> tuple[int, int, int]:
        """Iterations per round, per trial and in all, from the schedule, rounds and trials.

        Raises
        ------
        InvalidInputError
            For a schedule that cannot be read.
        """
        per = sum(n for _, n in parse_schedule(self.fields.schedule))
        rounds, trials = max(self.fields.rounds or 0, 0), max(self.fields.trials or 0, 0)
        return per, per * rounds, per * rounds * trials

    # ---------------------------------------------------------------- the pattern
    def prepare(self, image) -> ShownPattern:
        """``image`` prepared with the fields' options (safe in a worker thread).

        Raises
        ------
        InvalidInputError
            For a field that cannot be read or a pattern that cannot be prepared.
        """
        return show_pattern(image, self.pattern_options())

    def apply(self, shown: ShownPattern | None) -> None:
        """Make ``shown`` the pattern shown (None: none); regions of another shape go."""
        self.shown = shown
        shape = None if shown is None else shown.prepared.pattern.shape
        self.mask_regions.set_shape(shape)
        self.support_regions.set_shape(shape)

    def is_current(self, image) -> bool:
        """Whether ``image`` (as read) is still the one shown."""
        return self.shown is not None and self.shown.image is image

    @property
    def prepared(self) -> PreparedPattern | None:
        """The pattern as it will be phased, and its mask (None before data are chosen)."""
        return None if self.shown is None else self.shown.prepared

    def geometry_changed(self) -> None:
        """Centring or binning moves the pixels: the masked rectangles no longer fit."""
        self.mask_regions.clear()

    # ---------------------------------------------------------------- the support
    def _support_regions_changed(self) -> None:
        if len(self.support_regions) and self.fields.support_mode != "rectangles":
            self.fields.support_mode = "rectangles"  # drawing one means using them

    def initial_support(self) -> np.ndarray:
        """The initial support as chosen: the rectangles' union, or the automatic one.

        Raises
        ------
        InvalidInputError
            Saying what to do: no pattern yet, no rectangle drawn, no automatic support.
        """
        shown = self.shown
        if shown is None:
            raise InvalidInputError("choose a diffraction pattern first: a beamline file, an "
                                    "upload or the demo data")
        if self.fields.support_mode == "rectangles":
            rects = self.support_regions.regions
            if not rects:
                raise InvalidInputError(
                    "draw at least one rectangle on the autocorrelation (drag with the mouse, or "
                    "type ROW0:ROW1,COL0:COL1 and press Add), or choose the automatic support")
            return support_from_rectangles(shown.prepared.pattern.shape, rects)
        if shown.auto_support is None:
            raise InvalidInputError(shown.auto_error or "no automatic support was found; "
                                    "draw rectangles on the autocorrelation")
        return shown.auto_support

    # ---------------------------------------------------------------- phasing
    def make_job(self) -> PhasingJob:
        """Everything a run needs, checked (the reason when something is missing).

        Raises
        ------
        InvalidInputError
            As :meth:`options` and :meth:`initial_support`.
        """
        options = self.options()
        self.initial_support()
        return PhasingJob(image=self.shown.image, options=options, label=self.label or "cdi")

    @staticmethod
    def phase(job: PhasingJob, progress: Callable | None = None,
              cancel: Callable | None = None):
        """Phase the job's pattern: :func:`~speckle.imaging.workflow.run_cdi` (worker thread)."""
        return run_cdi(job.image, job.options, source=job.label, progress=progress,
                       cancel=cancel)

    def accept(self, result, job: PhasingJob) -> None:
        """Make ``result`` the one shown (its files not written yet)."""
        self.result, self.job, self.saved = result, job, None
        self.folder, self.files = None, {}

    def write(self, result, job: PhasingJob, picture: bytes, step: Callable,
              results_dir=None) -> None:
        """Write the result folder (complete or absent) and remember it.

        Parameters
        ----------
        result : CdiResult
        job : PhasingJob
        picture : bytes
            The reconstruction as shown (PNG).
        step : callable
            ``step(fraction, stage)``; may raise to abandon the folder.
        results_dir : path-like, optional
            Where result folders go (default: the server's).
        """
        errors_png, prtf_png = result_figures(result)
        with new_result_folder(f"{job.label}-cdi", results_dir) as (tmp, final):
            step(0.1, "writing the HDF5 result")
            write_imaging_result(result, tmp / RESULT_FILES["hdf5"])
            step(0.5, "writing the ZIP")
            write_reconstruction_zip(tmp / RESULT_FILES["zip"], result.reconstruction, picture,
                                     result.support)
            step(0.8, "writing pictures")
            (tmp / RESULT_FILES["png"]).write_bytes(picture)
            (tmp / RESULT_FILES["errors_png"]).write_bytes(errors_png)
            (tmp / RESULT_FILES["prtf_png"]).write_bytes(prtf_png)
            step(0.95, "finishing")
        self.folder = final
        self.files = {key: final / name for key, name in RESULT_FILES.items()}

    def clear_result(self) -> None:
        """Forget the shown reconstruction (new data were chosen)."""
        self.result, self.job, self.saved, self.window = None, None, None, None
        self.folder: Path | None = None
        self.files: dict[str, Path] = {}

    # ---------------------------------------------------------------- the reconstruction
    def reconstruction(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The reconstruction shown (the last phasing's, or a saved one's) and its support."""
        if self.result is not None:
            return np.asarray(self.result.reconstruction), np.asarray(self.result.support, bool)
        if self.saved is not None:
            obj = self.saved.image
            support = self.saved.arrays.get("support")
            if support is None or support.shape != obj.shape:
                return obj, None
            return obj, np.asarray(support, bool)
        return None, None

    def choose_window(self, whole_frame: bool) -> Region | None:
        """The part of the reconstruction to show: around the support, or the whole frame."""
        obj, support = self.reconstruction()
        if obj is None:
            return None
        rows, cols = obj.shape
        self.window = ((0, rows, 0, cols) if whole_frame or support is None
                       else display_window(support))
        return self.window

    def refocus_region(self, region: Region | None) -> tuple[np.ndarray, Region]:
        """The reconstruction and the region to refocus in its pixels.

        Parameters
        ----------
        region : (row0, row1, col0, col1) or None
            Selected in the window shown; None: the whole window.

        Raises
        ------
        InvalidInputError
            When there is no reconstruction yet.
        """
        obj, _ = self.reconstruction()
        if obj is None or self.window is None:
            raise InvalidInputError("run the phase retrieval first (section 4), or choose a "
                                    "saved result.h5: the refocus works on a reconstruction")
        r0, r1, c0, c1 = self.window
        region = region or (0, r1 - r0, 0, c1 - c0)
        return obj, (region[0] + r0, region[1] + r0, region[2] + c0, region[3] + c0)
