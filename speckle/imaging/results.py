"""What the imaging workflow returns: arrays, the numbers a person reads, and the verdict.

:class:`FthResult`, :class:`CdiResult` and :class:`RefocusResult` are written and read by
:mod:`speckle.io.imaging_result` (one versioned layout per kind); ``to_dict()`` gives the
summary as plain JSON values (no large arrays), what the command line prints with ``--json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .options import CdiOptions, FthOptions, RefocusOptions
from .verdict import ImagingVerdict, half_period_pixels, prtf_cutoff

__all__ = ["CdiResult", "FthResult", "RefocusResult"]


def _number(value):
    """A finite float, or None (strict JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class FthResult:
    """A holographic reconstruction (:func:`~speckle.imaging.workflow.run_fth`).

    Attributes
    ----------
    reconstruction : complex ndarray
        Centred reconstruction (the XMCD difference's, phase-rotated, with two helicities).
    hologram : ndarray
        The hologram inverted (the difference with two helicities).
    center : (float, float)
        The hologram's centre used (row, col).
    cross_terms : list of CrossTerm
        Found in the reconstruction (of the sum, with two helicities), strongest first.
    options : FthOptions
    verdict : ImagingVerdict
    source : str
    charge_reconstruction : complex ndarray or None
        Reconstruction of the sum of the helicities.
    helicity_factor : float or None
    phase_rotation : float or None
        Radians removed from the difference's global phase.
    negative_source : str or None
    elapsed_s : float
    region : (int, int, int, int) or None
        A region of the reconstruction chosen (to refocus), when one was.
    """

    reconstruction: np.ndarray
    hologram: np.ndarray
    center: tuple
    cross_terms: list
    options: FthOptions
    verdict: ImagingVerdict
    source: str = ""
    charge_reconstruction: np.ndarray | None = None
    helicity_factor: float | None = None
    phase_rotation: float | None = None
    negative_source: str | None = None
    elapsed_s: float = 0.0
    region: tuple | None = None

    kind = "fth"

    def to_dict(self) -> dict:
        """The summary as JSON values."""
        return {"kind": self.kind, "source": self.source, "negative": self.negative_source,
                "shape": list(self.reconstruction.shape), "center": list(self.center),
                "apodization": self.options.apodization,
                "helicity_factor": _number(self.helicity_factor),
                "phase_rotation_rad": _number(self.phase_rotation),
                "cross_terms": [t.to_dict() for t in self.cross_terms],
                "region": None if self.region is None else list(self.region),
                "elapsed_s": round(float(self.elapsed_s), 3),
                "options": self.options.to_dict(), "verdict": self.verdict.to_dict()}


@dataclass
class CdiResult:
    """A phase retrieval (:func:`~speckle.imaging.workflow.run_cdi`).

    Attributes
    ----------
    reconstruction : complex ndarray
        Average of the aligned kept trials, centred on its centre of mass.
    support : bool ndarray
        Final support, in the reconstruction's frame.
    initial_support : bool ndarray
    support_method : str
        ``"fth"``, ``"autocorrelation"`` or ``"rectangles"``: how the initial support was made.
    pattern : ndarray
        The prepared pattern phased.
    mask : bool ndarray
        Its unmeasured pixels.
    errors : ndarray
        Mean Fourier error per iteration.
    trial_errors : ndarray, (trials, iterations)
    estimate_errors : ndarray, (trials,)
    trials : ndarray, (trials, rows, cols)
        The aligned trials.
    kept : list of int
    final_error : float
    trial_spread : float or None
    prtf, frc : (ndarray, ndarray) or None
    iterations : int
    options : CdiOptions
    verdict : ImagingVerdict
    source : str
    center : (float, float) or None
        Centre of the pattern as read, when it was moved.
    background : float or None
    device : str
    elapsed_s : float
    cross_terms : list of CrossTerm
        Found in the pattern (they guided the support when ``support_method`` is ``"fth"``).
    shadowed : int
        Pixels found in shadows and left free (``options.mask_shadows``).
    floor_share : float or None
        Share of the measured intensity that the incoherent floor let the modulus constraint
        leave out (``options.incoherent_floor``; :mod:`speckle.imaging.floor`), or None.
    """

    reconstruction: np.ndarray
    support: np.ndarray
    initial_support: np.ndarray
    support_method: str
    pattern: np.ndarray
    mask: np.ndarray
    errors: np.ndarray
    trial_errors: np.ndarray
    estimate_errors: np.ndarray
    trials: np.ndarray
    kept: list
    final_error: float
    trial_spread: float | None
    prtf: tuple | None
    frc: tuple | None
    iterations: int
    options: CdiOptions
    verdict: ImagingVerdict
    source: str = ""
    center: tuple | None = None
    background: float | None = None
    device: str = "cpu"
    elapsed_s: float = 0.0
    cross_terms: list = field(default_factory=list)
    shadowed: int = 0
    floor_share: float | None = None

    kind = "cdi"

    @property
    def prtf_cutoff(self) -> float | None:
        """|q|/|q|max where the PRTF falls below 1/e (None: no PRTF, or never)."""
        return prtf_cutoff(self.prtf)

    @property
    def resolution_pixels(self) -> float | None:
        """Half-period resolution from the PRTF, in pixels of the reconstruction."""
        return half_period_pixels(self.prtf_cutoff, self.reconstruction.shape)

    def to_dict(self) -> dict:
        """The summary as JSON values."""
        return {"kind": self.kind, "source": self.source,
                "shape": list(self.pattern.shape), "masked_pixels": int(self.mask.sum()),
                "center": None if self.center is None else list(self.center),
                "background": _number(self.background),
                "support_method": self.support_method,
                "initial_support_pixels": int(self.initial_support.sum()),
                "support_pixels": int(self.support.sum()),
                "cross_terms": [t.to_dict() for t in self.cross_terms],
                "shadowed_pixels": int(self.shadowed), "floor_share": _number(self.floor_share),
                "iterations": int(self.iterations), "trials": int(len(self.trials)),
                "kept_trials": [int(k) for k in self.kept],
                "final_error": _number(self.final_error),
                "trial_spread": _number(self.trial_spread),
                "prtf_cutoff_q_fraction": _number(self.prtf_cutoff),
                "resolution_pixels": _number(self.resolution_pixels),
                "device": self.device, "elapsed_s": round(float(self.elapsed_s), 3),
                "options": self.options.to_dict(), "verdict": self.verdict.to_dict()}


@dataclass
class RefocusResult:
    """A focus sweep (:func:`~speckle.imaging.workflow.run_refocus`).

    Attributes
    ----------
    distances : ndarray
        Swept distances, m.
    sharpness : dict of str to ndarray
        Every metric at every distance.
    field : complex ndarray
        The field (region) propagated.
    focused : complex ndarray
        The field at ``focus_distance``.
    best_distance : float
        The best sampled distance, m.
    focus_distance : float
        The focus (refined when asked), m.
    region : (int, int, int, int)
        Of the input field.
    wavelength : float
        m.
    options : RefocusOptions
    verdict : ImagingVerdict
    source : str
    elapsed_s : float
    image : complex ndarray or None
        The whole field the region was cut from.
    source_kind : str
        What that field is: "fth", "cdi", "propagation" or "" (unknown).
    sweep : FocusSweep or None
        The sweep itself, to look at the field at any distance again
        (:meth:`~speckle.imaging.focus.FocusSweep.field_at`); not written to files.
    """

    distances: np.ndarray
    sharpness: dict
    field: np.ndarray
    focused: np.ndarray
    best_distance: float
    focus_distance: float
    region: tuple
    wavelength: float
    options: RefocusOptions
    verdict: ImagingVerdict
    source: str = ""
    elapsed_s: float = 0.0
    image: np.ndarray | None = None
    source_kind: str = ""
    sweep: object = field(default=None, repr=False, compare=False)

    kind = "propagation"

    def to_dict(self) -> dict:
        """The summary as JSON values."""
        return {"kind": self.kind, "source": self.source, "source_kind": self.source_kind,
                "region": list(self.region),
                "n_distances": int(len(self.distances)),
                "wavelength_m": float(self.wavelength),
                "best_distance_m": float(self.best_distance),
                "focus_distance_m": float(self.focus_distance),
                "elapsed_s": round(float(self.elapsed_s), 3),
                "options": self.options.to_dict(), "verdict": self.verdict.to_dict()}
