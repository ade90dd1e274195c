"""Fits of the intensity correlation g2 and of the relaxation rate against q.

Conventions
-----------
Times are in seconds. ``tau`` is the correlation time of the *field* correlation
``g1(t) = exp(-t / tau)``; the intensity correlation follows the Siegert relation
``g2 = baseline + contrast * |g1|^2``. The models are

``"single"``
    ``g2 = baseline + contrast * exp(-2 t / tau)``
``"stretched"``
    ``g2 = baseline + contrast * exp(-2 (t / tau)^stretch)`` (Kohlrausch-Williams-Watts,
    ``0 < stretch <= 2``; ``stretch < 1`` is "stretched", ``> 1`` "compressed")
``"double"``
    ``g2 = baseline + contrast * (fraction exp(-t/tau) + (1 - fraction) exp(-t/tau2))^2``;
    the result always has ``tau < tau2`` (the components are swapped, and ``fraction``
    replaced by ``1 - fraction``, when the optimiser ends the other way round; not when
    ``tau``, ``tau2`` or ``fraction`` is fixed, as swapping would change a fixed value).

.. note::
   The original ALS analysis server fitted ``a + b * exp(-t / T)``. Its ``T`` is the decay
   time of the *intensity* correlation, so ``T = tau / 2`` here (``tau = 2 T``); compare
   numbers from the two with that factor in mind.

Parameter names are exactly ``baseline``, ``contrast``, ``tau``, ``stretch``, ``tau2``
and ``fraction``. Bad data never raise: points with a non-finite lag, value or error, a
non-positive lag or a non-positive error are dropped, and a curve that cannot be fitted gives
a :class:`FitResult` with ``success=False`` and a message in plain words. Only programming
mistakes (an unknown model or parameter name) raise
:class:`speckle.errors.InvalidInputError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .medians import median

__all__ = [
    "FitResult",
    "PowerLawFit",
    "fit_all",
    "fit_g2",
    "fit_relaxation_rate",
    "g2_model",
    "model_names",
]

_PARAMS = {
    "single": ("baseline", "contrast", "tau"),
    "stretched": ("baseline", "contrast", "tau", "stretch"),
    "double": ("baseline", "contrast", "tau", "tau2", "fraction"),
}

_DEFAULT_BOUNDS = {
    "baseline": (-np.inf, np.inf),
    "contrast": (0.0, np.inf),
    "tau": (0.0, np.inf),
    "stretch": (0.0, 2.0),
    "tau2": (0.0, np.inf),
    "fraction": (0.0, 1.0),
}

# Parameters that must stay strictly positive for the model to be defined.
_POSITIVE = ("tau", "tau2", "stretch")

# Thresholds of the verdict on a fit (see ``_judge``).
_MIN_CONTRAST_SIGNIFICANCE = 3.0   # contrast / error below this: contrast not determined
_FLAT_P_VALUE = 1e-3               # a flat curve fits worse than this by chance: not flat
_DECAYED_BEFORE = 0.1              # less than this fraction of the decay left at the first lag
_NOT_DECAYED = 0.9                 # more than this fraction of the decay left at the last lag

# Default range of tau and tau2 relative to the first and the last lag.
_TAU_RANGE = (1e-3, 1e3)

_OK = "fit converged"

# The chi-square a flat curve exceeds with probability _FLAT_P_VALUE, for k degrees of freedom
# (scipy.special.chdtri(k, 1e-3); k is at most 4 here): a table, so that fitting does not
# import scipy (tests/test_fitting.py checks it against scipy).
_FLAT_LIMITS = {1: 10.827566170662733, 2: 13.815510557964274, 3: 16.26623619623813,
                4: 18.466826952903173, 5: 20.515005652432876}


def _flat_limit(k: int) -> float:
    if k in _FLAT_LIMITS:
        return _FLAT_LIMITS[k]
    from scipy.special import chdtri  # noqa: PLC0415 - never reached by the models here

    return float(chdtri(k, _FLAT_P_VALUE))


def model_names() -> tuple[str, ...]:
    """Names of the g2 models :func:`fit_g2` knows.

    Returns
    -------
    tuple of str
        ``("single", "stretched", "double")``.
    """
    return tuple(_PARAMS)


def _check_model(model) -> tuple[str, ...]:
    if model not in _PARAMS:
        raise InvalidInputError(
            f"unknown g2 model {model!r}; valid models are: {', '.join(_PARAMS)}")
    return _PARAMS[model]


def _check_names(model: str, names, what: str) -> None:
    valid = _PARAMS[model]
    bad = [n for n in names if n not in valid]
    if bad:
        raise InvalidInputError(
            f"unknown parameter name(s) {', '.join(map(repr, bad))} in {what} for the "
            f"{model!r} model; valid names are: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------
# models


def _decay(model: str, t: np.ndarray, p: dict) -> np.ndarray:
    """The normalised decay ``|g1(t)|^2`` (1 at t = 0, 0 at long times)."""
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        if model == "single":
            return np.exp(-2.0 * t / p["tau"])
        if model == "stretched":
            return np.exp(-2.0 * (np.abs(t) / p["tau"]) ** p["stretch"])
        g1 = p["fraction"] * np.exp(-t / p["tau"]) + (1.0 - p["fraction"]) * np.exp(-t / p["tau2"])
        return g1 * g1


def _model_and_jacobian(model: str, t: np.ndarray, p: dict, names) -> tuple[np.ndarray, np.ndarray]:
    """Model values and derivatives with respect to the parameters ``names`` (analytic)."""
    b, c = p["baseline"], p["contrast"]
    cols = {}
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        if model == "single":
            tau = p["tau"]
            e = np.exp(-2.0 * t / tau)
            f = e
            cols["tau"] = c * e * 2.0 * t / tau**2
        elif model == "stretched":
            tau, s = p["tau"], p["stretch"]
            x = (t / tau) ** s
            e = np.exp(-2.0 * x)
            f = e
            cols["tau"] = c * e * 2.0 * s * x / tau
            logr = np.log(t / tau)
            cols["stretch"] = np.where(x > 0, -2.0 * c * e * x * logr, 0.0)
        else:
            tau, tau2, fr = p["tau"], p["tau2"], p["fraction"]
            e1, e2 = np.exp(-t / tau), np.exp(-t / tau2)
            g1 = fr * e1 + (1.0 - fr) * e2
            f = g1 * g1
            cols["tau"] = 2.0 * c * g1 * fr * e1 * t / tau**2
            cols["tau2"] = 2.0 * c * g1 * (1.0 - fr) * e2 * t / tau2**2
            cols["fraction"] = 2.0 * c * g1 * (e1 - e2)
    cols["baseline"] = np.ones_like(t)
    cols["contrast"] = f
    value = b + c * f
    jac = np.column_stack([cols[n] for n in names]) if names else np.empty((t.size, 0))
    return value, jac


def g2_model(model: str, t, **params) -> np.ndarray:
    """Evaluate a g2 model.

    Parameters
    ----------
    model : str
        One of :func:`model_names`.
    t : array_like
        Lag times in seconds.
    **params : float
        Every parameter of the model, by name (``baseline``, ``contrast``, ``tau`` and, as the
        model needs, ``stretch`` or ``tau2`` and ``fraction``).

    Returns
    -------
    ndarray
        g2 at ``t`` (same shape as ``t``).

    Raises
    ------
    InvalidInputError
        Unknown model, unknown parameter name or a missing parameter.
    """
    names = _check_model(model)
    _check_names(model, params, "g2_model")
    missing = [n for n in names if n not in params]
    if missing:
        raise InvalidInputError(
            f"the {model!r} model needs the parameter(s) {', '.join(missing)}; its parameters "
            f"are: {', '.join(names)}")
    t = np.asarray(t, dtype=np.float64)
    p = {n: float(params[n]) for n in names}
    return p["baseline"] + p["contrast"] * _decay(model, t, p)


# --------------------------------------------------------------------------------------------
# results


def _json_float(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class FitResult:
    """The fit of one g2 curve.

    Attributes
    ----------
    model : str
        The model name (see :func:`model_names`).
    params : dict of str to float
        Best-fit value of every parameter of the model (fixed ones included). NaN when the
        fit could not run at all (too few points).
    errors : dict of str to float
        One-sigma errors from the covariance matrix: absolute when the fit had errors on g2,
        otherwise scaled by the residual scatter. 0.0 for fixed parameters, NaN when the data
        do not determine the parameter.
    fixed : tuple of str
        Names of the parameters held constant.
    chi2_reduced : float
        Chi-square per degree of freedom with the given errors; NaN when no errors were given
        (a chi-square needs errors).
    success : bool
        True when the fit converged and the curve shows a decay the parameters describe.
    message : str
        ``"fit converged"`` (possibly with remarks) when successful; otherwise why not, in
        plain words.
    n_points : int
        Number of points that entered the fit.
    """

    model: str
    params: dict[str, float]
    errors: dict[str, float]
    fixed: tuple[str, ...] = ()
    chi2_reduced: float = float("nan")
    success: bool = False
    message: str = ""
    n_points: int = 0

    def evaluate(self, t) -> np.ndarray:
        """The fitted g2 at lag times ``t`` (seconds); NaN when the parameters are NaN.

        Parameters
        ----------
        t : array_like

        Returns
        -------
        ndarray
        """
        return g2_model(self.model, t, **self.params)

    def to_dict(self) -> dict:
        """A JSON-serialisable dictionary (non-finite numbers become ``None``).

        Returns
        -------
        dict
        """
        return {
            "model": self.model,
            "params": {k: _json_float(v) for k, v in self.params.items()},
            "errors": {k: _json_float(v) for k, v in self.errors.items()},
            "fixed": list(self.fixed),
            "chi2_reduced": _json_float(self.chi2_reduced),
            "success": bool(self.success),
            "message": str(self.message),
            "n_points": int(self.n_points),
        }


def _failed(model, names, fixed, message, n_points=0, params=None) -> FitResult:
    nan = float("nan")
    p = {n: nan for n in names}
    if params:
        p.update({n: float(v) for n, v in params.items()})
    err = {n: (0.0 if n in fixed else nan) for n in names}
    return FitResult(model, p, err, tuple(n for n in names if n in fixed), nan, False, message,
                     int(n_points))


# --------------------------------------------------------------------------------------------
# data preparation and starting guesses


def _clean(t, g2, err):
    """Float arrays of the usable points, or a message why none can be formed."""
    t = np.asarray(t, dtype=np.float64).ravel()
    y = np.asarray(g2, dtype=np.float64).ravel()
    if t.size != y.size:
        return None, f"t has {t.size} values but g2 has {y.size}"
    if err is None:
        s = None
        good = np.isfinite(t) & np.isfinite(y) & (t > 0)
    else:
        s = np.asarray(err, dtype=np.float64)
        if s.size == 1:
            s = np.full(t.size, float(s.ravel()[0]))
        s = s.ravel()
        if s.size != t.size:
            return None, f"err has {s.size} values but g2 has {y.size}"
        good = np.isfinite(t) & np.isfinite(y) & (t > 0) & np.isfinite(s) & (s > 0)
    order = np.argsort(t[good], kind="stable")
    t, y = t[good][order], y[good][order]
    if s is not None:
        s = s[good][order]
    return (t, y, s), ""


def _half_time(t: np.ndarray, y: np.ndarray) -> float:
    """Where the normalised decay ``y`` (1 -> 0) crosses 0.5, interpolated in log t.

    The split between "above half" and "below half" is the one that misclassifies the fewest
    points, so a few noisy points do not move it.
    """
    n = t.size
    above = y > 0.5
    # cost[k]: points before k that are below, plus points from k on that are above
    below_before = np.concatenate(([0], np.cumsum(~above)))
    above_after = np.concatenate((np.cumsum(above[::-1])[::-1], [0]))
    cost = below_before + above_after
    ks = np.flatnonzero(cost == cost.min())
    k = int(ks[len(ks) // 2])
    if k == 0:
        return float(t[0])
    if k == n:
        return float(t[-1])
    lt0, lt1 = math.log(t[k - 1]), math.log(t[k])
    y0, y1 = y[k - 1], y[k]
    if y0 > 0.5 > y1 and y0 != y1:
        w = (y0 - 0.5) / (y0 - y1)
        return float(math.exp(lt0 + w * (lt1 - lt0)))
    return float(math.exp(0.5 * (lt0 + lt1)))


def _guess(model: str, t: np.ndarray, y: np.ndarray, fixed: dict) -> dict:
    """Automatic starting values (fixed values are used where given)."""
    n = t.size
    m = max(3, n // 10)
    m = min(m, max(1, n // 3))
    baseline = fixed.get("baseline", median(y[-m:]))
    head = median(y[: min(3, n)])
    scatter = float(np.std(y)) if n > 1 else 0.0
    contrast = fixed.get("contrast", head - baseline)
    if not contrast > 0:
        contrast = max(scatter, 1e-3 * max(abs(baseline), 1.0))
    norm = (y - baseline) / contrast
    t_half = _half_time(t, norm)
    stretch = fixed.get("stretch", 1.0)
    # |g1|^2 = 1/2 at 2 (t/tau)^s = ln 2
    tau = t_half / (0.5 * math.log(2.0)) ** (1.0 / stretch) if stretch > 0 else t_half
    guess = {"baseline": baseline, "contrast": contrast, "tau": tau}
    if model == "stretched":
        guess["stretch"] = 1.0
    elif model == "double":
        guess["tau2"] = 10.0 * tau
        guess["fraction"] = 0.5
    return guess


# --------------------------------------------------------------------------------------------
# fitting one curve


def _covariance(jac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariance ``(J^T J)^-1`` by SVD, and a mask of parameters the data do not determine."""
    p = jac.shape[1]
    if p == 0:
        return np.zeros((0, 0)), np.zeros(0, bool)
    if not np.all(np.isfinite(jac)):
        return np.full((p, p), np.nan), np.ones(p, bool)
    # scale columns so the threshold does not depend on the parameters' units
    scale = np.max(np.abs(jac), axis=0)
    undetermined = ~(scale > 0)
    scale = np.where(undetermined, 1.0, scale)
    _, s, vt = np.linalg.svd(jac / scale, full_matrices=False)
    tol = max(jac.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0) * 1e3
    keep = s > tol
    v = vt[keep].T
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        cov = (v / s[keep] ** 2) @ v.T
        cov = cov / np.outer(scale, scale)
    undetermined |= ~np.isfinite(np.diag(cov))
    if not np.all(keep):
        null = vt[~keep].T
        undetermined |= np.any(np.abs(null) > 1e-3, axis=1)
    return cov, undetermined


@dataclass
class _Solution:
    """The end of one least-squares run: the free parameters, the weighted residuals at them,
    half their sum of squares, and a status (> 0 converged, 0 stopped at the evaluation limit)."""

    x: np.ndarray
    fun: np.ndarray
    cost: float
    status: int


def _least_squares(fun, x0, lo, hi, max_nfev, max_step=np.inf) -> _Solution:
    """Minimise ``sum(r**2) / 2`` within the box ``lo <= x <= hi`` (Levenberg-Marquardt).

    ``fun(x)`` returns the residuals ``r`` and their Jacobian. Marquardt's damping scaled by
    the diagonal of ``J^T J`` (so the steps do not depend on the parameters' units), Nielsen's
    update of the damping, and bounds by projection: a parameter at a bound whose gradient
    points out of the box is held there for the step, the others' step is clipped into the
    box, and a step that does not lower the cost is retried with more damping. It stops as
    scipy's ``least_squares(xtol=ftol=gtol=1e-12)`` does: the cost changes by less than 1e-12
    of itself on a good step, the step is below 1e-12 of the parameters, or the gradient is
    orthogonal to the residuals within 1e-12 (MINPACK's test). Non-finite residuals count as
    an infinite cost. ``max_step`` (per parameter) caps a step: a longer one is shortened
    along its direction.
    """
    tol = 1e-12
    x = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    r, jac = fun(x)
    cost = 0.5 * float(r @ r) if np.all(np.isfinite(r)) else math.inf
    if not math.isfinite(cost):
        return _Solution(x, r, cost, -1)
    nfev, lam, nu, status = 1, 1e-3, 2.0, 0
    while nfev < max_nfev:
        g = jac.T @ r
        a = jac.T @ jac
        d = np.diag(a).copy()
        held = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        move = ~held
        if not move.any():
            status = 1
            break
        gm, dm = g[move], d[move]
        if cost == 0.0 or np.max(np.abs(gm) / np.sqrt(np.maximum(dm, 1e-300) * 2.0 * cost)) <= tol:
            status = 1
            break
        dm = np.maximum(dm, 1e-15 * max(float(dm.max()), 1e-300))
        am = a[np.ix_(move, move)]
        try:
            step = np.linalg.solve(am + lam * np.diag(dm), -gm)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(am + lam * np.diag(dm), -gm, rcond=None)[0]
        over = np.max(np.abs(step) / np.broadcast_to(max_step, x.shape)[move])
        if over > 1.0:
            step = step / over
        trial = x.copy()
        trial[move] += step
        trial = np.clip(trial, lo, hi)
        dx = trial - x
        r_new, jac_new = fun(trial)
        nfev += 1
        cost_new = 0.5 * float(r_new @ r_new) if np.all(np.isfinite(r_new)) else math.inf
        if cost_new < cost:
            # the reduction the linear model predicts for the projected step
            jdx = jac @ dx
            predicted = -(g @ dx) - 0.5 * float(jdx @ jdx)
            rho = (cost - cost_new) / predicted if predicted > 0 else 0.0
            small_change = cost - cost_new <= tol * cost and rho > 0.25
            small_step = math.sqrt(float(dx @ dx)) <= tol * (tol + math.sqrt(float(x @ x)))
            x, r, jac, cost = trial, r_new, jac_new, cost_new
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            if small_change or small_step:
                status = 2
                break
        else:
            if math.sqrt(float(dx @ dx)) <= tol * (tol + math.sqrt(float(x @ x))):
                status = 3  # no step of any damping lowers the cost: at the minimum
                break
            lam *= nu
            nu *= 2.0
    return _Solution(x, r, cost, status)


def _start_vector(free, start, lo, hi) -> np.ndarray:
    x0 = np.array([start[n] for n in free], dtype=np.float64)
    x0 = np.where(np.isfinite(x0), x0, np.where(np.isfinite(lo), lo, 0.0))
    return np.clip(x0, lo, hi)


def _full(free, fixed_vals):
    def full(x):
        p = dict(fixed_vals)
        p.update(zip(free, x))
        return p
    return full


def _fit_once(model, names, free, t, y, w, start, lo, hi, fixed_vals):
    """One least-squares run from ``start``; returns (solution, full params).

    The single and stretched models: :func:`_least_squares` here, with tau in log, moving at
    most a factor 10 per step (a step that far lands on the plateau of a curve decayed before
    the first lag, where nothing moves tau back). The double model: scipy's trust-region
    reflective method (:func:`_fit_once_scipy`), whose results on the double model's curves
    with several minima this one does not reproduce.
    """
    if model == "double":
        return _fit_once_scipy(model, names, free, t, y, w, start, lo, hi, fixed_vals)
    full = _full(free, fixed_vals)
    logs = np.array([n == "tau" for n in free])

    def fun(u):
        x = np.where(logs, np.exp(u), u)
        value, j = _model_and_jacobian(model, t, full(x), free)
        j = j * (w[:, None] * np.where(logs, x, 1.0))
        return (value - y) * w, np.where(np.isfinite(j), j, 0.0)

    def to_log(v):
        return np.where(logs, np.log(np.where(logs, v, 1.0)), v)

    x0 = _start_vector(free, start, lo, hi)
    with np.errstate(divide="ignore", over="ignore"):
        res = _least_squares(fun, to_log(x0), to_log(lo), to_log(hi), 200 * (x0.size + 1),
                             max_step=np.where(logs, math.log(10.0), np.inf))
        res.x = np.where(logs, np.exp(res.x), res.x)
    return res, full(res.x)


def _fit_once_scipy(model, names, free, t, y, w, start, lo, hi, fixed_vals):
    """:func:`_fit_once` by scipy's ``least_squares`` (trust-region reflective)."""
    full = _full(free, fixed_vals)

    def resid(x):
        value, _ = _model_and_jacobian(model, t, full(x), ())
        r = (value - y) * w
        return np.where(np.isfinite(r), r, 1e150)

    def jac(x):
        _, j = _model_and_jacobian(model, t, full(x), free)
        j = j * w[:, None]
        return np.where(np.isfinite(j), j, 0.0)

    x0 = _start_vector(free, start, lo, hi)
    from scipy.optimize import least_squares  # noqa: PLC0415 - ~0.2-0.5 s; only the double model

    res = least_squares(resid, x0, jac=jac, bounds=(lo, hi), method="trf", x_scale="jac",
                        xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=200 * (x0.size + 1))
    return res, full(res.x)


def _resolve_bounds(free, bounds, t):
    lo, hi = [], []
    for n in free:
        a, b = _DEFAULT_BOUNDS[n]
        if bounds and n in bounds and bounds[n] is not None:
            try:
                ua, ub = bounds[n]
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"bounds for {n} must be a pair (low, high), None for an open end; "
                    f"got {bounds[n]!r}") from None
            a = a if ua is None else float(ua)
            b = b if ub is None else float(ub)
        if n in _POSITIVE and not (bounds and n in bounds and bounds[n] is not None
                                   and bounds[n][0] is not None and float(bounds[n][0]) > 0):
            # the model is undefined at 0: keep a positive floor
            a = max(a, 1e-3 if n == "stretch" else _TAU_RANGE[0] * float(t[0]))
        if n in ("tau", "tau2") and not (bounds and n in bounds and bounds[n] is not None
                                         and bounds[n][1] is not None):
            # times far outside the lags are not measurable; keep the numbers sane
            b = min(b, _TAU_RANGE[1] * float(t[-1]))
        lo.append(a)
        hi.append(b)
    return np.array(lo), np.array(hi)


def _undetermined(name: str, value: float, err: float) -> bool:
    """An error so large (or NaN) that the value means nothing."""
    if not math.isfinite(err):
        return True
    if name == "fraction":
        return err > 0.5
    if name == "stretch":
        return err > 1.0
    if name == "baseline":
        return False
    if name == "contrast":
        return _MIN_CONTRAST_SIGNIFICANCE * err > abs(value)
    return err > abs(value)


def _judge(model, t, params, errors, free, fixed, flat_excess) -> tuple[bool, str]:
    """Does the fitted curve show a decay that the measured lags describe?

    ``flat_excess`` is how much worse a constant (the baseline alone) fits than the model, as
    a chi-square difference in units of the noise, over its 99.9 % quantile for a flat curve
    (None when the contrast is fixed and no flat curve is in the model).
    """
    f_first = float(_decay(model, np.array([t[0]]), params)[0])
    f_last = float(_decay(model, np.array([t[-1]]), params)[0])
    slow = params["tau2"] if model == "double" else params["tau"]
    if flat_excess is not None and not flat_excess > 1.0:
        if "baseline" in fixed:
            return False, ("the curve has decayed before the first lag: it is flat at the "
                           "fixed baseline within the noise")
        return False, ("the curve does not decay inside the measured lags: it is flat within "
                       "the noise (a constant fits as well as the model); it may have decayed "
                       "before the first lag or decay after the last one")
    if f_first < _DECAYED_BEFORE:
        return False, (f"the curve has decayed before the first lag: only {100 * f_first:.1f} % "
                       f"of the decay is left at t = {t[0]:.3g} s (tau = {params['tau']:.3g} s)")
    if f_last > _NOT_DECAYED:
        return False, ("the curve does not decay inside the measured lags: "
                       f"{100 * (1 - f_last):.1f} % of the decay happens before the last lag "
                       f"t = {t[-1]:.3g} s (slowest time {slow:.3g} s)")
    bad = [n for n in free if _undetermined(n, params[n], errors[n])]
    # single and stretched: say which end of the lags the undetermined decay is at (for the
    # double model an undetermined time mostly means one component is enough)
    if model != "double" and "tau" in bad and not (slow + errors["tau"] <= t[-1]):
        return False, ("the curve does not decay inside the measured lags: the decay is too "
                       f"slow to measure (tau {slow:.3g} +/- {errors['tau']:.3g} s, last lag "
                       f"{t[-1]:.3g} s)")
    if model != "double" and "tau" in bad and not (slow - errors["tau"] >= t[0]):
        return False, ("the curve has decayed before the first lag, or nearly: the decay is "
                       f"too fast to measure (tau {slow:.3g} +/- {errors['tau']:.3g} s, first "
                       f"lag {t[0]:.3g} s)")
    if bad:
        hint = "; try the single model" if model == "double" else ""
        return False, (f"the data do not determine {', '.join(bad)} (error larger than the "
                       f"value or its range{hint})")
    return True, _OK


def fit_g2(t, g2, err=None, model="single", *, fixed: dict | None = None,
           initial: dict | None = None, bounds: dict | None = None,
           t_range: tuple | None = None) -> FitResult:
    """Fit one g2 curve with a decay model.

    Parameters
    ----------
    t : array_like, (n,)
        Lag times in seconds (points with ``t <= 0`` are dropped: lag 0 is not a correlation
        lag of g2).
    g2 : array_like, (n,)
        Intensity correlation.
    err : array_like or float, optional
        One-sigma errors of g2. When given, the fit is weighted by them and the reported
        errors are absolute; points with a non-finite or non-positive error are dropped.
        Without errors every point has the same weight and the reported errors are scaled by
        the residual scatter.
    model : {"single", "stretched", "double"}
        See the module documentation.
    fixed : dict, optional
        Parameter name -> value held constant (its error is 0.0); the others are fitted.
    initial : dict, optional
        Parameter name -> starting value, overriding the automatic guess (baseline from the
        tail, contrast from the first points minus the baseline, tau from the half-decay
        crossing interpolated in log t, stretch 1, tau2 = 10 tau, fraction 0.5).
    bounds : dict, optional
        Parameter name -> ``(low, high)`` replacing the default bounds (``None`` for an open
        end). Defaults: contrast >= 0, 0 < stretch <= 2, 0 <= fraction <= 1, baseline free,
        and tau, tau2 between 1e-3 times the first and 1e3 times the last fitted lag (times
        farther out are not measurable; such fits are reported as unsuccessful anyway).
    t_range : (float or None, float or None), optional
        Only fit points with ``t_min <= t <= t_max`` (seconds; ``None`` for an open end).

    Returns
    -------
    FitResult
        Never raises for bad data: ``success`` is False with a message when the fit cannot be
        done or the curve does not show a decay inside the measured lags.

    Raises
    ------
    InvalidInputError
        Unknown model, an unknown parameter name in ``fixed``, ``initial`` or ``bounds``, or a
        bound that is not a pair.

    Notes
    -----
    ``success`` is False (with the reason in ``message``) when fewer points than free
    parameters + 1 remain, the optimiser fails, the contrast is not 3 sigma above zero (a flat
    curve), less than 10 % of the fitted decay is left at the first lag (decayed before it),
    more than 90 % is left at the last lag (does not decay inside the lags), or a free
    parameter's error exceeds its value (or its range, for fraction and stretch). The
    parameters and errors of the attempt are kept in the result for inspection.
    """
    names = _check_model(model)
    fixed = dict(fixed or {})
    initial = dict(initial or {})
    bounds = dict(bounds or {})
    _check_names(model, fixed, "fixed")
    _check_names(model, initial, "initial")
    _check_names(model, bounds, "bounds")
    fixed_names = set(fixed)
    free = tuple(n for n in names if n not in fixed)

    try:
        fixed_vals = {n: float(v) for n, v in fixed.items()}
    except (TypeError, ValueError):
        return _failed(model, names, fixed_names, "a fixed value is not a number")
    bad = [n for n, v in fixed_vals.items() if not math.isfinite(v)]
    if bad:
        return _failed(model, names, fixed_names,
                       f"the fixed value of {', '.join(bad)} is not a finite number")
    for n, v in fixed_vals.items():
        if n in _POSITIVE and v <= 0:
            return _failed(model, names, fixed_names, f"the fixed value of {n} must be > 0")

    cleaned, why = _clean(t, g2, err)
    if cleaned is None:
        return _failed(model, names, fixed_names, why)
    tt, yy, ss = cleaned
    if t_range is not None:
        a, b = t_range
        keep = np.ones(tt.size, bool)
        if a is not None:
            keep &= tt >= float(a)
        if b is not None:
            keep &= tt <= float(b)
        tt, yy = tt[keep], yy[keep]
        ss = None if ss is None else ss[keep]
    n = tt.size
    if n < len(free) + 1:
        return _failed(model, names, fixed_names,
                       f"too few points: {n} usable point(s) for {len(free)} free "
                       f"parameter(s) (need at least {len(free) + 1})", n)

    w = np.ones(n) if ss is None else 1.0 / ss
    lo, hi = _resolve_bounds(free, bounds, tt)
    if np.any(lo >= hi):
        bad = [f for f, a, b in zip(free, lo, hi) if a >= b]
        return _failed(model, names, fixed_names,
                       f"empty bounds for {', '.join(bad)}", n)

    guess = _guess(model, tt, yy, fixed_vals)
    for k, v in initial.items():
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            guess[k] = v
    starts = [guess]
    if model == "double" and not ({"tau", "tau2"} & set(initial)):
        th = guess["tau"]
        for a, b in ((th / 3.0, 3.0 * th), (th / 10.0, th), (th, 100.0 * th)):
            s = dict(guess)
            s["tau"], s["tau2"] = a, b
            starts.append(s)

    best = None
    for start in starts:
        if not free:
            best = (None, dict(fixed_vals))
            break
        try:
            res, params = _fit_once(model, names, free, tt, yy, w, start, lo, hi, fixed_vals)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if not np.all(np.isfinite(res.fun)):
            continue
        if best is None or res.cost < best[0].cost:
            best = (res, params)
    if best is None:
        return _failed(model, names, fixed_names, "the optimiser failed on this curve", n)
    res, params = best

    value, jac = _model_and_jacobian(model, tt, params, free)
    r = (value - yy) * w
    chi2 = float(np.sum(r * r))
    dof = n - len(free)
    cov, undetermined = _covariance(jac * w[:, None])
    if ss is None:
        cov = cov * (chi2 / dof)
    var = np.diag(cov).copy() if free else np.zeros(0)
    errors = {k: 0.0 for k in fixed_names}
    for i, k in enumerate(free):
        errors[k] = float(math.sqrt(var[i])) if (var[i] >= 0 and not undetermined[i]) else float("nan")
    chi2_red = chi2 / dof if ss is not None else float("nan")

    if model == "double" and params["tau"] > params["tau2"] and not (
            {"tau", "tau2", "fraction"} & fixed_names):
        params["tau"], params["tau2"] = params["tau2"], params["tau"]
        errors["tau"], errors["tau2"] = errors["tau2"], errors["tau"]
        params["fraction"] = 1.0 - params["fraction"]

    params = {k: float(params[k]) for k in names}
    errors = {k: float(errors[k]) for k in names}
    fixed_t = tuple(k for k in names if k in fixed_names)

    flat_excess = None
    if "contrast" in free:
        if "baseline" in fixed_names:
            level = fixed_vals["baseline"]
        else:
            level = float(np.sum(w * w * yy) / np.sum(w * w))
        chi2_flat = float(np.sum((w * (yy - level)) ** 2))
        noise = 1.0 if ss is not None else chi2 / dof
        k = len(free) - (0 if "baseline" in fixed_names else 1)
        limit = _flat_limit(k)
        delta = chi2_flat - chi2
        flat_excess = (delta / noise / limit) if noise > 0 else (math.inf if delta > 0 else 0.0)
    success, message = _judge(model, tt, params, errors, free, fixed_names, flat_excess)
    if success and res is not None and res.status <= 0:
        success, message = False, "the fit did not converge (too many iterations)"
    if success:
        at_bound = [k for k, a, b in zip(free, lo, hi)
                    if np.isclose(params[k], a, rtol=1e-6, atol=0) or
                    np.isclose(params[k], b, rtol=1e-6, atol=0)]
        if at_bound:
            message += "; at a bound: " + ", ".join(f"{k} = {params[k]:.3g}" for k in at_bound)
    return FitResult(model, params, errors, fixed_t, chi2_red, success, message, n)


def fit_all(t, g2, err=None, model="single", **kwargs) -> list[FitResult]:
    """Fit every column of a g2 array (one column per dynamic bin).

    Parameters
    ----------
    t : array_like, (n_tau,)
        Lag times in seconds.
    g2 : array_like, (n_tau, n_bins) or (n_tau,)
        One curve per column (a 1-D array is one curve).
    err : array_like, optional
        Errors broadcastable to the shape of ``g2`` (per point, per lag or one value).
    model : str
        See :func:`fit_g2`.
    **kwargs
        Passed to :func:`fit_g2`. A value in ``fixed`` or ``initial`` may also be a sequence
        of ``n_bins`` values, one per column.

    Returns
    -------
    list of FitResult
        One per column, in column order.
    """
    _check_model(model)
    g2 = np.asarray(g2, dtype=np.float64)
    if g2.ndim < 2:
        g2 = g2.reshape(-1, 1)
    elif g2.ndim > 2:
        g2 = g2.reshape(g2.shape[0], -1)
    n_bins = g2.shape[1]
    t = np.asarray(t, dtype=np.float64).ravel()
    e = None
    if err is not None:
        e = np.asarray(err, dtype=np.float64)
        if e.ndim == 1 and e.size == g2.shape[0] and n_bins != g2.shape[0]:
            e = e[:, None]
        try:
            e = np.broadcast_to(e, g2.shape)
        except ValueError:
            return [_failed(model, _PARAMS[model], set((kwargs.get("fixed") or {})),
                            f"err of shape {np.shape(err)} does not match g2 of shape "
                            f"{g2.shape}") for _ in range(n_bins)]

    def column(d, j):
        if not d:
            return d
        out = {}
        for k, v in d.items():
            if np.ndim(v) >= 1 and np.size(v) == n_bins:
                out[k] = np.ravel(v)[j]
            else:
                out[k] = v
        return out

    results = []
    for j in range(n_bins):
        kw = dict(kwargs)
        for key in ("fixed", "initial"):
            if kw.get(key):
                kw[key] = column(kw[key], j)
        results.append(fit_g2(t, g2[:, j], None if e is None else e[:, j], model, **kw))
    return results


# --------------------------------------------------------------------------------------------
# relaxation rate against q


@dataclass
class PowerLawFit:
    """The fit ``Gamma = 1 / tau = prefactor * q^exponent``.

    Attributes
    ----------
    prefactor : float
        ``Gamma`` at ``q = 1`` in the units of q. For diffusion (exponent 2) this is the
        diffusion coefficient ``D`` (m^2/s when q is in 1/m and tau in s); fit with
        ``exponent=2`` to read D, as a free exponent moves the prefactor a lot.
    exponent : float
    prefactor_err, exponent_err : float
        One-sigma errors (0.0 for a fixed exponent, NaN when not estimable).
    regime : str
        ``"diffusive"`` when the exponent is within 2 sigma (or 0.3) of 2, ``"ballistic"``
        when near 1 by the same rule, otherwise ``"anomalous"`` (``"unknown"`` when the fit
        failed).
    success : bool
    message : str
    n_points : int
        Number of (q, tau) pairs used.
    chi2_reduced : float
        Chi-square per degree of freedom in log space (NaN without ``tau_err``).
    """

    prefactor: float
    exponent: float
    prefactor_err: float
    exponent_err: float
    regime: str
    success: bool
    message: str
    n_points: int = 0
    chi2_reduced: float = float("nan")

    def to_dict(self) -> dict:
        """A JSON-serialisable dictionary (non-finite numbers become ``None``).

        Returns
        -------
        dict
        """
        return {
            "prefactor": _json_float(self.prefactor),
            "exponent": _json_float(self.exponent),
            "prefactor_err": _json_float(self.prefactor_err),
            "exponent_err": _json_float(self.exponent_err),
            "regime": str(self.regime),
            "success": bool(self.success),
            "message": str(self.message),
            "n_points": int(self.n_points),
            "chi2_reduced": _json_float(self.chi2_reduced),
        }


def _regime(n: float, err: float) -> str:
    if not math.isfinite(n):
        return "unknown"
    e = err if math.isfinite(err) else 0.0
    near = [(abs(n - k), name) for k, name in ((2.0, "diffusive"), (1.0, "ballistic"))
            if abs(n - k) < 0.3 or abs(n - k) <= 2.0 * e]
    if not near:
        return "anomalous"
    return min(near)[1]


def fit_relaxation_rate(q, tau, tau_err=None, *, exponent: float | None = None) -> PowerLawFit:
    """Fit the relaxation rate ``Gamma = 1/tau = prefactor * q^exponent``.

    The fit is a weighted straight line in log space, ``ln Gamma = ln prefactor +
    exponent ln q``, with ``sigma(ln Gamma) = tau_err / tau``.

    Parameters
    ----------
    q : array_like
        Momentum transfers (1/m or 1/Angstrom; the prefactor follows).
    tau : array_like
        Field correlation times in seconds (as fitted by :func:`fit_g2`).
    tau_err : array_like, optional
        One-sigma errors of tau. Given: weights and absolute errors. Not given: equal weights
        and errors from the scatter about the line.
    exponent : float, optional
        Hold the exponent at this value (e.g. 2 to measure a diffusion coefficient); the
        regime then follows the given exponent.

    Returns
    -------
    PowerLawFit
        ``success`` False with a message (never an exception) when fewer than three usable
        points (two with a fixed exponent) remain; points with non-finite or non-positive q,
        tau or tau_err are dropped.
    """
    nan = float("nan")
    q = np.asarray(q, dtype=np.float64).ravel()
    tau = np.asarray(tau, dtype=np.float64).ravel()
    if q.size != tau.size:
        return PowerLawFit(nan, nan, nan, nan, "unknown", False,
                           f"q has {q.size} values but tau has {tau.size}")
    good = np.isfinite(q) & np.isfinite(tau) & (q > 0) & (tau > 0)
    s = None
    if tau_err is not None:
        s = np.asarray(tau_err, dtype=np.float64).ravel()
        if s.size == 1:
            s = np.full(q.size, float(s[0]))
        if s.size != q.size:
            return PowerLawFit(nan, nan, nan, nan, "unknown", False,
                               f"tau_err has {s.size} values but tau has {tau.size}")
        good &= np.isfinite(s) & (s > 0)
    x = np.log(q[good])
    y = -np.log(tau[good])
    sig = np.ones_like(x) if s is None else s[good] / tau[good]
    n = x.size
    n_free = 1 if exponent is not None else 2
    if n < n_free + 1:
        return PowerLawFit(nan, nan if exponent is None else float(exponent), nan, nan,
                           "unknown", False,
                           f"too few points: {n} usable (q, tau) pair(s), need at least "
                           f"{n_free + 1}", n)
    w = 1.0 / sig**2
    x0 = float(np.sum(w * x) / np.sum(w))  # centre for a well-conditioned system
    xc = x - x0
    if exponent is not None:
        k = float(exponent)
        a_c = float(np.sum(w * (y - k * xc)) / np.sum(w))
        var_a = 1.0 / float(np.sum(w))
        var_k = 0.0
        cov_ak = 0.0
        resid = y - a_c - k * xc
    else:
        sw, swx2 = float(np.sum(w)), float(np.sum(w * xc * xc))
        if swx2 <= 0:
            return PowerLawFit(nan, nan, nan, nan, "unknown", False,
                               "all q values are the same: the exponent is not determined", n)
        k = float(np.sum(w * xc * y) / swx2)
        a_c = float(np.sum(w * y) / sw)
        var_a, var_k, cov_ak = 1.0 / sw, 1.0 / swx2, 0.0
        resid = y - a_c - k * xc
    chi2 = float(np.sum(w * resid**2))
    dof = n - n_free
    if s is None:
        scale = chi2 / dof
        var_a, var_k, cov_ak = var_a * scale, var_k * scale, cov_ak * scale
        chi2_red = nan
    else:
        chi2_red = chi2 / dof
    # ln prefactor = a_c - k x0
    ln_a = a_c - k * x0
    var_ln_a = var_a + x0 * x0 * var_k - 2.0 * x0 * cov_ak
    prefactor = math.exp(ln_a) if ln_a < 709 else math.inf
    pref_err = prefactor * math.sqrt(var_ln_a) if var_ln_a >= 0 else nan
    k_err = math.sqrt(var_k) if var_k >= 0 else nan
    regime = _regime(k, k_err)
    return PowerLawFit(float(prefactor), float(k), float(pref_err), float(k_err), regime, True,
                       _OK, n, float(chi2_red))
