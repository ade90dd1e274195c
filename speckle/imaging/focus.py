"""Focus: sharpness metrics, a fast sweep of propagation distances, and autofocus.

A complex field (an FTH cross-term, a CDI reconstruction, a region of either) is propagated over
a range of distances (:mod:`speckle.imaging.propagation` conventions: positive = downstream) and
scored by sharpness metrics. The sweep transforms the field once and then, per distance, only
multiplies the spectrum by the transfer function and transforms back, in single precision by
default and on two threads on the CPU (numpy releases the GIL in FFTs and ufuncs), so 100
distances over 512 × 512 take about a second on a 2-core CPU (``benchmarks/bench_refocus.py``).

Metrics (``a = |field|``; differences are the two-pixel central differences
``a[i+1] - a[i-1]`` along rows and columns, on the interior pixels):

- ``"acutance"``: mean gradient magnitude ``mean(|∇a|) / mean(a)`` (scale invariant).
- ``"brenner"``: Brenner's gradient, ``mean((a[i+2] - a[i])²)`` summed over both directions,
  divided by ``mean(a)²``.
- ``"normalized_variance"``: ``var(a) / mean(a)²``.
- ``"edge_sparsity"``: Tamura coefficient ``sqrt(std(g) / mean(g))`` of the gradient magnitude
  ``g = |∇field|`` of the *complex* field (Memmolo et al., Opt. Lett. 36, 1945 (2011); Zhang et
  al., Opt. Lett. 42, 3824 (2017)): edges are sparsest in focus for absorbing and phase objects.

Which extremum marks the focus, measured on simulated soft X-ray holograms (778 eV, 20-50 nm
pixels, defocus 2-5 µm, Poisson noise; tests/test_focus.py):

- ``edge_sparsity`` is maximal at focus for absorbing and for phase objects, on a whole
  cross-term (object and its aperture) as on a periodic field inside the object: the recommended
  metric (:data:`RECOMMENDED_METRIC`), the default here and the dashboards' default.
- ``brenner`` and ``normalized_variance`` are maximal at focus for absorbing objects and for a
  cross-term whose aperture edge is in the region, but *minimal* at focus for a pure phase
  object seen without amplitude edges (in focus its magnitude is flat): use
  ``extremum="min"`` there.
- ``acutance`` (the original server's curve) is maximal at focus for an absorbing cross-term but
  minimal for a phase object, and in coherent light often minimal for both (defocus adds
  Fresnel fringes, which add gradient): plot it, do not autofocus on it blindly.

:data:`FOCUS_EXTREMUM` holds each metric's default extremum; every function that picks a best
distance takes ``extremum="max" | "min"`` to override it.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dc_field

import numpy as np

from ..backend import array_module, asnumpy
from ..errors import Cancelled, InvalidInputError
from .fth import apodization_window
from .propagation import METHODS, propagate

__all__ = [
    "MIN_REGION_SIDE",
    "FOCUS_EXTREMUM",
    "METRICS",
    "RECOMMENDED_METRIC",
    "FocusSweep",
    "apodize",
    "autofocus",
    "focus_sweep",
    "gradient_magnitude",
    "sharpness",
]

METRICS = ("acutance", "brenner", "normalized_variance", "edge_sparsity")
#: Which extremum of each metric marks the focus by default (see the module docstring).
FOCUS_EXTREMUM = {"acutance": "max", "brenner": "max", "normalized_variance": "max",
                  "edge_sparsity": "max"}
#: The metric that found the focus of absorbing and of phase objects in the tests.
RECOMMENDED_METRIC = "edge_sparsity"
#: The smallest region the dashboards and ``speckle propagate`` refocus (pixels each way).
MIN_REGION_SIDE = 8
_EXTREMA = ("max", "min")
_MIN_SIDE = 4  # pixels: smaller fields have (almost) no interior for the differences


# -- metrics ---------------------------------------------------------------------------------

def _check_metrics(metrics) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise InvalidInputError(f"unknown focus metric {bad[0] if bad else '(none)'!r}; "
                                f"choose from {', '.join(METRICS)}")
    return names


def _extremum(metric: str, extremum: str | None) -> str:
    extremum = FOCUS_EXTREMUM[metric] if extremum is None else extremum
    if extremum not in _EXTREMA:
        raise InvalidInputError(f"extremum must be 'max' or 'min', not {extremum!r}")
    return extremum


def _metric_values(u, names, xp) -> dict[str, float]:
    """The requested metrics of one complex (or real) 2D field ``u``."""
    a = xp.abs(u)
    mean_a = float(a.mean())
    out = {}
    if not mean_a > 0:  # a zero field has no sharpness
        return dict.fromkeys(names, math.nan)
    if "acutance" in names or "brenner" in names:
        dx = a[1:-1, 2:] - a[1:-1, :-2]
        dy = a[2:, 1:-1] - a[:-2, 1:-1]
        dx *= dx
        dy *= dy
        dx += dy  # squared two-pixel differences, summed over both directions
        if "brenner" in names:
            out["brenner"] = float(dx.mean()) / mean_a**2
        if "acutance" in names:
            xp.sqrt(dx, out=dx)
            out["acutance"] = float(dx.mean()) / (2 * mean_a)  # central difference = half
    if "normalized_variance" in names:
        a -= mean_a
        a *= a
        out["normalized_variance"] = float(a.mean()) / mean_a**2
    if "edge_sparsity" in names:
        g = _complex_gradient_sq(u, xp)
        xp.sqrt(g, out=g)
        mean_g = float(g.mean())
        if mean_g > 0:
            g -= mean_g
            g *= g
            out["edge_sparsity"] = math.sqrt(math.sqrt(float(g.mean())) / mean_g)
        else:
            out["edge_sparsity"] = math.nan
    return {n: out[n] for n in names}


def _complex_gradient_sq(u, xp):
    """``|u[i+1] - u[i-1]|²`` summed over rows and columns, on the interior (real array)."""
    cx = u[1:-1, 2:] - u[1:-1, :-2]
    cy = u[2:, 1:-1] - u[:-2, 1:-1]
    if not xp.iscomplexobj(u):
        cx *= cx
        cy *= cy
        cx += cy
        return cx
    g = cx.real * cx.real
    g += cx.imag * cx.imag
    g += cy.real * cy.real
    g += cy.imag * cy.imag
    return g


def _as_field(field, name="field"):
    xp = array_module(field)
    field = xp.asarray(field)
    if field.ndim != 2:
        raise InvalidInputError(f"the {name} must be one 2D image, got shape {field.shape}")
    if min(field.shape) < _MIN_SIDE:
        raise InvalidInputError(f"the {name} of shape {field.shape} is too small: give a region "
                                f"of at least {_MIN_SIDE} × {_MIN_SIDE} pixels")
    if field.dtype.kind not in "biufc":
        raise InvalidInputError(f"the {name} must hold numbers, not {field.dtype}")
    if field.dtype.kind in "biu":
        field = field.astype(np.float64)
    if not bool(xp.isfinite(field).all()):
        raise InvalidInputError(f"the {name} has NaN or infinite values; fill or crop them "
                                "before refocusing")
    return field, xp


def sharpness(field, metric: str = RECOMMENDED_METRIC) -> float:
    """Sharpness of one field by one metric (see the module docstring for the definitions).

    Parameters
    ----------
    field : array, (rows, cols)
        Complex or real, numpy or cupy; the amplitude metrics use ``|field|``.
    metric : str
        One of :data:`METRICS` (default :data:`RECOMMENDED_METRIC`).

    Returns
    -------
    float
        NaN for a field that is zero everywhere.
    """
    (name,) = _check_metrics(metric)
    field, xp = _as_field(field)
    return _metric_values(field, (name,), xp)[name]


def gradient_magnitude(field):
    """The gradient view: ``|∇|field||`` by central differences, in pixels⁻¹ units of |field|.

    Parameters
    ----------
    field : array, (rows, cols)
        Complex or real, numpy or cupy.

    Returns
    -------
    array, (rows, cols)
        Float, same array module as ``field``; the one-pixel border repeats its neighbours.
    """
    field, xp = _as_field(field)
    a = xp.abs(field).astype(np.result_type(field.real.dtype, np.float32))
    dx = (a[1:-1, 2:] - a[1:-1, :-2]) / 2
    dy = (a[2:, 1:-1] - a[:-2, 1:-1]) / 2
    return xp.pad(xp.sqrt(dx * dx + dy * dy), 1, mode="edge")


# -- the sweep -------------------------------------------------------------------------------

def _pixel_pair(pixel_size) -> tuple[float, float]:
    try:
        dy, dx = (float(v) for v in np.broadcast_to(np.asarray(pixel_size, float), (2,)))
    except (TypeError, ValueError):
        raise InvalidInputError(f"cannot read the pixel size {pixel_size!r}: give one length "
                                "in metres or (row, col)") from None
    if not (dy > 0 and dx > 0 and math.isfinite(dy) and math.isfinite(dx)):
        raise InvalidInputError(f"the pixel size must be positive, got {pixel_size!r} m")
    return dy, dx


class _Refocuser:
    """A field's spectrum and the distance-independent part of the transfer function.

    ``field(z)`` is ``ifft2(spectrum * exp(i z dk))`` with ``dk = kz - k`` (angular spectrum,
    evanescent components removed) or ``-(kx² + ky²) / 2k`` (Fresnel): the propagated field
    without its constant phase ``exp(i k z)``, which no metric sees.
    """

    def __init__(self, field, pixel_size, wavelength, method, precision):
        if method not in METHODS:
            raise InvalidInputError(f"unknown propagation method {method!r}; choose one of "
                                    f"{METHODS}")
        if precision not in ("single", "double"):
            raise InvalidInputError(f"precision must be 'single' or 'double', not {precision!r}")
        if not (wavelength and wavelength > 0 and math.isfinite(wavelength)):
            raise InvalidInputError(f"the wavelength must be positive, got {wavelength!r} m")
        field, xp = _as_field(field)
        self.xp = xp
        self.cdtype = np.complex64 if precision == "single" else np.complex128
        rdtype = np.float32 if precision == "single" else np.float64
        dy, dx = _pixel_pair(pixel_size)
        rows, cols = field.shape
        k = 2 * np.pi / wavelength
        ky = 2 * np.pi * np.fft.fftfreq(rows, d=dy)[:, None]
        kx = 2 * np.pi * np.fft.fftfreq(cols, d=dx)[None, :]
        kp2 = kx**2 + ky**2
        if method == "angular":
            propagating = kp2 < k**2
            # kz - k = -kp² / (kz + k): no cancellation, so single precision holds
            dk = np.where(propagating, -kp2 / (np.sqrt(np.maximum(k**2 - kp2, 0)) + k), 0.0)
        else:
            propagating = None
            dk = -kp2 / (2 * k)
        self.dk = xp.asarray(dk.astype(rdtype))
        if xp is np:
            import scipy.fft  # noqa: PLC0415 - scipy's pocketfft takes workers= and overwrite_x=

            self._fft, self._ifft = scipy.fft.fft2, scipy.fft.ifft2
            self.threads = max(1, min(os.cpu_count() or 1, 4))
        else:
            self._fft, self._ifft = xp.fft.fft2, xp.fft.ifft2
            self.threads = 1
        spectrum = self._fft(field.astype(self.cdtype))
        if propagating is not None and not propagating.all():
            spectrum *= xp.asarray(propagating)
        self.spectrum = spectrum.astype(self.cdtype, copy=False)
        self._local = threading.local()

    def field(self, distance: float):
        """The propagated field at ``distance`` (without the constant phase)."""
        xp = self.xp
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = xp.empty(self.spectrum.shape, self.cdtype)
            self._local.phase = xp.empty(self.spectrum.shape, self.dk.dtype)
        phase = self._local.phase
        xp.multiply(self.dk, self.dk.dtype.type(distance), out=phase)
        xp.cos(phase, out=buf.real)  # cos + i sin: several times faster than a complex exp
        xp.sin(phase, out=buf.imag)
        buf *= self.spectrum
        if xp is np:
            return self._ifft(buf, overwrite_x=True, workers=1)
        return self._ifft(buf)

    def metrics(self, distance: float, names) -> dict[str, float]:
        return _metric_values(self.field(distance), names, self.xp)

    def sweep(self, distances, names, progress=None, cancel=None) -> dict[str, np.ndarray]:
        out = {n: np.full(len(distances), np.nan) for n in names}
        chunk = 4 * self.threads
        pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        try:
            for start in range(0, len(distances), chunk):
                if cancel is not None and cancel():
                    raise Cancelled("the focus sweep was cancelled")
                part = list(distances[start:start + chunk])
                if pool is None:
                    values = [self.metrics(z, names) for z in part]
                else:
                    values = list(pool.map(lambda z: self.metrics(z, names), part))
                for i, v in enumerate(values, start):
                    for n in names:
                        out[n][i] = v[n]
                if progress is not None:
                    progress(min(1.0, (start + len(part)) / len(distances)), "propagating")
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return out


@dataclass
class FocusSweep:
    """Sharpness against propagation distance.

    Attributes
    ----------
    distances : numpy.ndarray
        m, as given.
    sharpness : dict of str to numpy.ndarray
        One curve per metric, same length as ``distances``.
    """

    distances: np.ndarray
    sharpness: dict[str, np.ndarray]
    pixel_size: tuple[float, float] = (1.0, 1.0)
    wavelength: float = 1.0
    method: str = "angular"
    _field: object = dc_field(default=None, repr=False)

    def best(self, metric: str = RECOMMENDED_METRIC, extremum: str | None = None) -> float:
        """The distance (m) where ``metric`` is at its focus extremum (:data:`FOCUS_EXTREMUM`).

        Parameters
        ----------
        metric : str
            One of the swept metrics.
        extremum : {"max", "min"}, optional
            Override the metric's default (for instance ``"min"`` with ``brenner`` for a phase
            object).
        """
        if metric not in self.sharpness:
            raise InvalidInputError(f"the metric {metric!r} was not swept; choose from "
                                    f"{', '.join(self.sharpness)}")
        values = np.asarray(self.sharpness[metric], float)
        if not np.isfinite(values).any():
            raise InvalidInputError(f"the metric {metric!r} is undefined everywhere (a zero "
                                    "field?)")
        pick = np.nanargmax if _extremum(metric, extremum) == "max" else np.nanargmin
        return float(self.distances[pick(values)])

    def field_at(self, distance: float) -> np.ndarray:
        """The field propagated to ``distance`` (m), recomputed in full precision (numpy)."""
        return asnumpy(propagate(self._field, float(distance), self.pixel_size,
                                 wavelength=self.wavelength, method=self.method))


def _distances(distances) -> np.ndarray:
    try:
        d = np.atleast_1d(np.asarray(distances, dtype=float))
    except (TypeError, ValueError):
        raise InvalidInputError("the distances must be numbers (metres)") from None
    if d.ndim != 1 or d.size == 0 or not np.isfinite(d).all():
        raise InvalidInputError("give at least one finite distance (metres)")
    return d


def apodize(field, apodization: float):
    """``field`` times a smooth (cos²) edge window about its middle (0: unchanged).

    The window is :func:`speckle.imaging.fth.reconstruct`'s: 1 inside, falling over
    ``apodization`` of the half-size towards the edge, so that the cut edges of a region do
    not ring when it is propagated.

    Parameters
    ----------
    field : array, (rows, cols)
        numpy or cupy.
    apodization : float
        Width of the edge as a fraction of the half-size, 0 to 1.

    Returns
    -------
    array
        Same module; ``field`` itself when ``apodization`` is 0.
    """
    if not apodization > 0:
        return field
    xp = array_module(field)
    rows, cols = field.shape
    return field * apodization_window((rows, cols), ((rows - 1) / 2, (cols - 1) / 2),
                                       float(apodization), xp)


def focus_sweep(field, distances, *, pixel_size, wavelength: float, method: str = "angular",
                metrics=METRICS, progress=None, cancel=None,
                precision: str = "single") -> FocusSweep:
    """Propagate ``field`` to each distance and score its sharpness.

    Parameters
    ----------
    field : array, (rows, cols)
        Complex (or real) field, numpy or cupy, e.g. a region of a reconstruction.
    distances : sequence of float
        m; positive = downstream (see :mod:`speckle.imaging.propagation`).
    pixel_size : float or (float, float)
        m.
    wavelength : float
        m (:func:`~speckle.imaging.propagation.wavelength_from_energy`).
    method : {"angular", "fresnel"}
    metrics : sequence of str
        Subset of :data:`METRICS`.
    progress : callable(fraction, stage), optional
    cancel : callable() -> bool, optional
        Checked between groups of distances; raises :class:`~speckle.errors.Cancelled`.
    precision : {"single", "double"}
        Arithmetic of the sweep (single is twice as fast and ample for metrics).

    Returns
    -------
    FocusSweep
    """
    names = _check_metrics(metrics)
    d = _distances(distances)
    ref = _Refocuser(field, pixel_size, wavelength, method, precision)
    curves = ref.sweep(d, names, progress, cancel)
    return FocusSweep(distances=d, sharpness=curves, pixel_size=_pixel_pair(pixel_size),
                      wavelength=float(wavelength), method=method, _field=field)


def autofocus(field, z_range, *, pixel_size, wavelength: float,
              metric: str = RECOMMENDED_METRIC, n_sweep: int = 21,
              tolerance: float | None = None, method: str = "angular",
              extremum: str | None = None, progress=None, cancel=None) -> float:
    """Find the focus distance: a coarse sweep, then golden-section refinement.

    Parameters
    ----------
    field : array, (rows, cols)
        Complex (or real) field, numpy or cupy.
    z_range : (float, float)
        Search interval, m.
    pixel_size : float or (float, float)
        m.
    wavelength : float
        m.
    metric : str
        One of :data:`METRICS` (default :data:`RECOMMENDED_METRIC`).
    n_sweep : int
        Points of the coarse sweep (at least 3).
    tolerance : float, optional
        Width (m) of the final bracket; default a hundredth of the sweep step.
    method : {"angular", "fresnel"}
    extremum : {"max", "min"}, optional
        Default :data:`FOCUS_EXTREMUM` of the metric.
    progress, cancel : callables, optional

    Returns
    -------
    float
        The focus distance, m (to propagate ``field`` by).
    """
    (name,) = _check_metrics(metric)
    sign = 1.0 if _extremum(name, extremum) == "max" else -1.0
    try:
        z0, z1 = sorted(float(z) for z in z_range)
    except (TypeError, ValueError):
        raise InvalidInputError("z_range must be two distances (m)") from None
    if not (math.isfinite(z0) and math.isfinite(z1) and z1 > z0):
        raise InvalidInputError("z_range must be two different finite distances (m)")
    if int(n_sweep) < 3:
        raise InvalidInputError("n_sweep must be at least 3")
    zs = np.linspace(z0, z1, int(n_sweep))
    step = zs[1] - zs[0]
    tol = step / 100 if tolerance is None else float(tolerance)
    if not tol > 0:
        raise InvalidInputError("the tolerance must be a positive distance (m)")
    ref = _Refocuser(field, pixel_size, wavelength, method, "single")
    sub = None if progress is None else (lambda f, s: progress(0.8 * f, s))
    curve = sign * ref.sweep(zs, (name,), sub, cancel)[name]
    if not np.isfinite(curve).any():
        raise InvalidInputError(f"the metric {name!r} is undefined (a zero field?)")
    i = int(np.nanargmax(curve))
    lo, hi = zs[max(i - 1, 0)], zs[min(i + 1, len(zs) - 1)]

    def score(z):
        if cancel is not None and cancel():
            raise Cancelled("autofocus was cancelled")
        value = sign * ref.metrics(z, (name,))[name]
        return value if math.isfinite(value) else -math.inf

    best_z, best_v = zs[i], curve[i]
    invphi = (math.sqrt(5) - 1) / 2
    c, d = hi - invphi * (hi - lo), lo + invphi * (hi - lo)
    fc, fd = score(c), score(d)
    while hi - lo > tol:
        if fc >= fd:
            hi, d, fd = d, c, fc
            c = hi - invphi * (hi - lo)
            fc = score(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + invphi * (hi - lo)
            fd = score(d)
    z, v = (c, fc) if fc >= fd else (d, fd)
    if progress is not None:
        progress(1.0, "refined")
    return float(z) if v >= best_v else float(best_z)
