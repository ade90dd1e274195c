"""Options of the imaging workflow: plain, frozen values in SI units, with working defaults.

:class:`FthOptions`, :class:`CdiOptions` and :class:`RefocusOptions` are what
:mod:`speckle.imaging.workflow` takes. They hold numbers, strings, tuples and None only, so a
YAML or JSON template maps onto them: ``CdiOptions.from_dict(d)`` refuses a key it does not
know (naming it) and ``to_dict()`` gives the dict back. Every value is checked when the
object is made: a bad one raises :class:`~speckle.errors.InvalidInputError` naming the field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import InvalidInputError
from .focus import METRICS, RECOMMENDED_METRIC
from .phasing import PhasingOptions
from .propagation import METHODS

__all__ = ["CdiOptions", "FthOptions", "RefocusOptions", "SUPPORT_METHODS"]

#: How :func:`~speckle.imaging.workflow.run_cdi` finds its initial support.
#: ``auto``: from the holographic cross-terms when the pattern has them (a sample with
#: reference apertures), else from the autocorrelation; ``fth`` and ``autocorrelation`` force
#: one; ``rectangles``: the union of ``support_rects``.
SUPPORT_METHODS = ("auto", "fth", "autocorrelation", "rectangles")

def _tuple(value):
    """Lists (from YAML/JSON) as tuples, nested too, so that options stay hashable and frozen."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuple(v) for v in value)
    return value


class _Plain:
    """from_dict / to_dict and the checks shared by the option classes."""

    @classmethod
    def from_dict(cls, values):
        """Make the options from a dict (a YAML/JSON template); unknown keys are refused.

        Parameters
        ----------
        values : mapping or None
            Field names to values; missing fields keep their defaults.

        Raises
        ------
        InvalidInputError
            Naming an unknown key, or a field whose value is refused.
        """
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise InvalidInputError(f"{cls.__name__} are given as a mapping of names to values, "
                                    f"got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise InvalidInputError(f"unknown {cls.__name__} key {key!r}; known keys: "
                                        f"{', '.join(sorted(known))}")
        return cls(**{k: _tuple(v) for k, v in values.items()})

    def to_dict(self) -> dict:
        """The options as a dict of plain values (tuples as lists: YAML/JSON-friendly)."""
        def plain(value):
            return [plain(v) for v in value] if isinstance(value, tuple) else value
        return {k: plain(v) for k, v in asdict(self).items()}

    def _number(self, name, low=None, high=None, *, optional=False, whole=False,
                open_low=False):
        value = getattr(self, name)
        if value is None and optional:
            return
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or \
                not math.isfinite(value):
            what = "a whole number" if whole else "a number"
            raise InvalidInputError(f"{name} must be {what}, got {value!r}")
        if low is not None and (value < low or (open_low and value == low)):
            raise InvalidInputError(f"{name} must be {'>' if open_low else '≥'} {low}, "
                                    f"got {value!r}")
        if high is not None and value > high:
            raise InvalidInputError(f"{name} must be ≤ {high}, got {value!r}")

    def _flag(self, name):
        if not isinstance(getattr(self, name), bool):
            raise InvalidInputError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def _choice(self, name, choices):
        if getattr(self, name) not in choices:
            raise InvalidInputError(f"{name} must be one of {', '.join(map(str, choices))}, got "
                                    f"{getattr(self, name)!r}")

    def _pair(self, name, *, optional=True):
        value = getattr(self, name)
        if value is None and optional:
            return
        if not (isinstance(value, tuple) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in value)):
            raise InvalidInputError(f"{name} must be two numbers (row, col), got {value!r}")

    def _rects(self, name, value=None):
        value = getattr(self, name) if value is None else value
        if not isinstance(value, tuple) or not all(
                isinstance(r, tuple) and len(r) == 4 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in r) for r in value):
            raise InvalidInputError(f"{name} must be rectangles (row0, row1, col0, col1) of "
                                    f"whole pixels, got {value!r}")


@dataclass(frozen=True)
class FthOptions(_Plain):
    """Options of :func:`~speckle.imaging.workflow.run_fth`.

    Attributes
    ----------
    center : (float, float) or None
        Zero frequency of the hologram (row, col), pixels; None: found
        (:func:`speckle.imaging.center.find_center`, weighted for holograms).
    apodization : float
        Smooth radial edge window, as a fraction of the half-size (0: none, up to 1).
    helicity_factor : float or None
        ``f`` of the XMCD difference ``positive − f·(positive + negative)`` when a second
        helicity is given; None: the factor that cancels the total intensity.
    rotate_phase : bool
        With two helicities, rotate the difference's global phase so that the magnetic
        contrast of the strongest cross-term lies in the real part.
    """

    center: tuple | None = None
    apodization: float = 0.0
    helicity_factor: float | None = None
    rotate_phase: bool = True

    def __post_init__(self):
        object.__setattr__(self, "center", _tuple(self.center))
        self._pair("center")
        self._number("apodization", 0, 1)
        self._number("helicity_factor", optional=True)
        self._flag("rotate_phase")


@dataclass(frozen=True)
class CdiOptions(_Plain):
    """Options of :func:`~speckle.imaging.workflow.run_cdi`; the defaults converge on real data.

    Preparation of the pattern, in this order: the given mask, non-finite pixels and (if
    asked) pixels reading ≤ 0 or below ``mask_below`` are unmeasured; the ``background`` is
    subtracted; the pattern (and mask) is centred and binned; shadows (``mask_shadows``) and
    ``mask_rects`` (in the prepared pattern's pixels) are masked. See
    :func:`speckle.imaging.prepare.prepare_pattern`.

    Attributes
    ----------
    background : float, str or None
        Constant pedestal subtracted first: counts, ``"pN"`` the N-th percentile of the
        measured pixels, or ``"auto"`` (the 1st percentile when it is above zero: a detector
        offset; photon-counting data are left alone); None: none.
    mask_zeros : bool
        Pixels reading ≤ 0 are unmeasured (a beamstop or gap that reads 0).
    mask_below : float or None
        Pixels reading below this (before the background) are unmeasured.
    center : "auto", (float, float) or None
        Move the pattern's centre to the middle pixel first: the centre of symmetry found
        (``"auto"``) or the one given (row, col); None: the pattern is centred already.
    bin_factor : int
        Sum blocks of ``bin_factor``² pixels after centring.
    mask_shadows : bool
        Regions that read far less than their Friedel mirror image (a blocked detector region
        reading only its pedestal) are unmeasured
        (:func:`speckle.imaging.shadows.find_shadows`).
    mask_rects : tuple of (row0, row1, col0, col1)
        Rectangles of the prepared pattern that are unmeasured (half-open).
    support : str
        One of :data:`SUPPORT_METHODS`.
    support_rects : tuple of (row0, row1, col0, col1)
        The initial support with ``support="rectangles"``.
    support_threshold : float or None
        Threshold of the autocorrelation support, a fraction of the maximum of
        :func:`speckle.imaging.support.autocorrelation_map`; None: from the data.
    incoherent_floor : bool
        Let the modulus constraint leave out a smooth background under the speckle, up to
        the local minimum of the pattern over three speckles
        (:func:`speckle.imaging.floor.incoherent_floor`): parasitic and diffuse scattering,
        a drifting pedestal and speckle washed out by partial coherence are then not fitted
        with random fine structure. Near zero for a pattern without such a background.
    schedule, rounds, trials, keep, beta, positivity, real, average_last, shrinkwrap, \
shrinkwrap_sigma, shrinkwrap_sigma_start, shrinkwrap_threshold, seed, device
        Phasing, as :class:`speckle.imaging.phasing.PhasingOptions`. The defaults: 14 rounds
        of ``60*HIO + 10*ER``, 4 trials of which the best half is kept, shrink-wrap between
        rounds at 0.15 of the maximum with a blur falling from 3 to 1 pixel, each trial the
        average of its estimates over the last six rounds (420 iterations).
    """

    background: float | str | None = "auto"
    mask_zeros: bool = False
    mask_below: float | None = None
    center: str | tuple | None = None
    bin_factor: int = 1
    mask_shadows: bool = True
    mask_rects: tuple = ()
    support: str = "auto"
    support_rects: tuple = ()
    support_threshold: float | None = None
    incoherent_floor: bool = True
    schedule: str = "60*HIO + 10*ER"
    rounds: int = 14
    trials: int = 4
    keep: float = 0.5
    beta: float = 0.8
    positivity: bool = False
    real: bool = False
    average_last: int = 420
    shrinkwrap: bool = True
    shrinkwrap_sigma: float = 1.0
    shrinkwrap_sigma_start: float | None = 3.0
    shrinkwrap_threshold: float = 0.15
    seed: int | None = None
    device: str = "auto"

    def __post_init__(self):
        for name in ("center", "mask_rects", "support_rects"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        bg = self.background
        if not (bg is None or isinstance(bg, str) or (
                isinstance(bg, (int, float)) and not isinstance(bg, bool) and math.isfinite(bg))):
            raise InvalidInputError(f"background must be a number of counts or 'pN' (a "
                                    f"percentile), got {bg!r}")
        self._flag("mask_zeros")
        self._number("mask_below", optional=True)
        if not (self.center is None or self.center == "auto"):
            self._pair("center")
        self._number("bin_factor", 1, whole=True)
        self._flag("mask_shadows")
        self._rects("mask_rects")
        self._choice("support", SUPPORT_METHODS)
        self._rects("support_rects")
        if self.support == "rectangles" and not self.support_rects:
            raise InvalidInputError("support 'rectangles' needs support_rects: give at least "
                                    "one (row0, row1, col0, col1)")
        self._number("support_threshold", 0, 1, optional=True, open_low=True)
        self._flag("incoherent_floor")
        self.phasing().steps()  # the phasing checks, with their own messages

    def phasing(self) -> PhasingOptions:
        """The phasing part as :class:`~speckle.imaging.phasing.PhasingOptions`."""
        names = {f.name for f in fields(PhasingOptions)}
        return PhasingOptions(**{k: v for k, v in asdict(self).items() if k in names})


@dataclass(frozen=True)
class RefocusOptions(_Plain):
    """Options of :func:`~speckle.imaging.workflow.run_refocus` (SI units).

    Attributes
    ----------
    energy : float or None
        Photon energy, eV (required: there is no sensible default).
    pixel_size : float, (float, float) or None
        Pixel size in the object plane, m (required).
    distances : (float, float, int)
        Sweep from, to (m) and the number of distances.
    distance_list : tuple of float
        Distances (m) swept instead, when given.
    region : (row0, row1, col0, col1) or None
        Part of the field to propagate (at least 8 × 8 pixels); None: all of it.
    apodization : float
        Smooth (cos²) edge window on the region before it is propagated, as a fraction of its
        half-size (0: none, up to 1), so that its cut edges do not ring
        (:func:`speckle.imaging.focus.apodize`).
    metric : str
        Sharpness metric that picks the focus (:data:`speckle.imaging.focus.METRICS`).
    extremum : "max", "min" or None
        Focus at the metric's maximum or minimum; None: the metric's usual one.
    method : "angular" or "fresnel"
    refine : bool
        Refine the best sampled distance by golden-section search.
    device : {"auto", "cpu", "gpu"}
        Where to propagate (a cupy field stays on its GPU).
    """

    energy: float | None = None
    pixel_size: float | tuple | None = None
    distances: tuple = (-5e-6, 5e-6, 101)
    distance_list: tuple = ()
    region: tuple | None = None
    apodization: float = 0.0
    metric: str = RECOMMENDED_METRIC
    extremum: str | None = None
    method: str = "angular"
    refine: bool = True
    device: str = "auto"

    def __post_init__(self):
        for name in ("pixel_size", "distances", "distance_list", "region"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        self._number("energy", 0, optional=True, open_low=True)
        px = self.pixel_size
        if px is not None and not (
                isinstance(px, (int, float)) and not isinstance(px, bool) and px > 0) and not (
                isinstance(px, tuple) and len(px) == 2 and all(
                    isinstance(v, (int, float)) and v > 0 for v in px)):
            raise InvalidInputError(f"pixel_size must be a positive length in m (or two), got "
                                    f"{px!r}")
        d = self.distances
        if not (isinstance(d, tuple) and len(d) == 3 and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in d[:2])
                and isinstance(d[2], int) and not isinstance(d[2], bool) and d[2] >= 1):
            raise InvalidInputError(f"distances must be (from, to, count) in m, got {d!r}")
        if not (isinstance(self.distance_list, tuple) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in self.distance_list)):
            raise InvalidInputError(f"distance_list must be distances in m, got "
                                    f"{self.distance_list!r}")
        if self.region is not None:
            self._rects("region", (self.region,))
        self._choice("metric", METRICS)
        self._choice("extremum", ("max", "min", None))
        self._choice("method", METHODS)
        self._flag("refine")
        self._number("apodization", 0, 1)
        self._choice("device", ("auto", "cpu", "gpu"))

    def swept(self):
        """The distances swept (m), as a numpy array."""
        if self.distance_list:
            return np.asarray(self.distance_list, dtype=float)
        start, stop, count = self.distances
        return np.linspace(float(start), float(stop), int(count))
