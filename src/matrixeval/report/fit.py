"""Power-law fits L = L0 + k·X^α of a metric against model size (or any positive x).

The fit never raises for data it cannot fit: it returns a :class:`PowerLawFit` whose ``ill_posed`` says why
(too few points, non-positive x, constant y, no convergence, unidentifiable parameters) and whose parameters
are NaN when no fit was made. A fit with ``ill_posed is None`` is a real least-squares optimum.

Internally the model is fitted in a well-conditioned form: x is centred on its geometric mean in log space and y
is standardised, so L0, k and α are all of order one for the optimiser whatever the units (x from 1e7 to 1e10,
losses of 3 or entropies of 0.4). The result is converted back to the original units.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from matrixeval.errors import MatrixEvalError

__all__ = ["PowerLawFit", "fit_power_law", "predict"]

_MIN_POINTS = 4  # three parameters need at least four distinct x values to leave a residual
_N_STARTS = 3  # curve_fit is started from this many of the best initial guesses
# Below this |alpha| * ln(max x / min x) the power term is a straight line in log x over the data: L0 and k trade off.
_MIN_CURVATURE = 1e-2
# A fit is flagged (PowerLawFit.caution), not refused, beyond these: scaling exponents of LM metrics are of order
# 0.01-1, a k beyond 1e±30 only offsets an extreme alpha, and an R² below 0.9 leaves much of the trend unexplained.
_POOR_R2 = 0.9
_MAX_ABS_ALPHA = 2.0
_MAX_ABS_LOG10_K = 30.0


@dataclass(frozen=True)
class PowerLawFit:
    """A least-squares fit of ``L = L0 + k * x**alpha``.

    Attributes:
        L0: the asymptote (the value as x grows without bound when alpha < 0).
        k: the scale of the power-law term.
        alpha: the exponent (negative for a metric that improves with scale towards L0).
        r2: coefficient of determination of the fit on the data, 1 - SSE/SST.
        n_points: how many (x, y) points were given.
        ill_posed: None for a real fit; otherwise a one-line reason, and L0/k/alpha/r2 may be NaN.
        L0_stderr, k_stderr, alpha_stderr: standard errors from the fit's covariance (curve_fit's ``pcov``, scaled
            by the residual variance), carried to the original units by the delta method; NaN when unavailable.
        caution: None, or why a real fit means little: a poor R², an extreme alpha or k, or a parameter whose
            standard error exceeds its value.
    """

    L0: float
    k: float
    alpha: float
    r2: float
    n_points: int
    ill_posed: str | None = None
    L0_stderr: float = math.nan
    k_stderr: float = math.nan
    alpha_stderr: float = math.nan
    caution: str | None = None

    @property
    def ok(self) -> bool:
        """True when the fit is well posed and its parameters can be used."""
        return self.ill_posed is None


def fit_power_law(x, y) -> PowerLawFit:
    """Fit ``L = L0 + k * x**alpha`` to points (x, y) by non-linear least squares.

    .. math:: \\min_{L_0, k, \\alpha} \\sum_i (y_i - L_0 - k x_i^{\\alpha})^2

    Args:
        x: positive abscissae (parameter counts, token counts, lengths), 1-D.
        y: metric values, same length as ``x``.

    Returns:
        A :class:`PowerLawFit`; ``ill_posed`` explains why when the data cannot determine the three parameters.

    Raises:
        MatrixEvalError: when ``x`` and ``y`` are not 1-D sequences of the same length (a caller's mistake,
            not a property of the data).

    Example:
        >>> x = np.geomspace(1e7, 1e10, 8)
        >>> fit = fit_power_law(x, 0.4 + 2.0 * x**-0.3)
        >>> round(fit.alpha, 3), fit.ill_posed
        (-0.3, None)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise MatrixEvalError(
            f"fit_power_law expects x and y as 1-D sequences of equal length, got shapes {x.shape} and {y.shape}; "
            "pass one y value per x value"
        )
    n = int(x.size)
    reason = _why_ill_posed(x, y)
    if reason is not None:
        return _no_fit(n, reason)

    # Well-conditioned form: y = m + s * (a + b * exp(alpha * u)) with u = ln(x / x_ref).
    x_ref = math.exp(float(np.mean(np.log(x))))
    u = np.log(x / x_ref)
    m, s = float(np.mean(y)), float(np.std(y))
    z = (y - m) / s

    fits = [f for p0 in _initial_guesses(u, z)[:_N_STARTS] if (f := _curve_fit(u, z, p0)) is not None]
    if not fits:
        return _no_fit(n, "the least-squares fit did not converge from any initial guess")

    params, pcov = min(fits, key=lambda f: _sse(f[0], u, z))
    a, b, alpha = (float(v) for v in params)
    L0 = m + s * a
    with np.errstate(over="ignore"):
        k = s * b * float(np.power(x_ref, -alpha))  # may overflow to inf: caught below
    r2 = 1.0 - _sse(params, u, z) / float(np.sum(z**2))
    if not all(math.isfinite(v) for v in (L0, k, alpha)):
        return _no_fit(n, "the fitted parameters overflow in the original units")
    ill_posed = None
    if pcov is None or not np.all(np.isfinite(pcov)):
        ill_posed = "the parameters are not identifiable from these points (covariance is infinite)"
    elif abs(alpha) * float(np.ptp(u)) < _MIN_CURVATURE:
        ill_posed = f"alpha={alpha:.2g} is ~0: the points follow a logarithm, so L0 and k are not separately determined"
    se = _stderrs(pcov, s, alpha, k, x_ref)
    fit = PowerLawFit(L0=L0, k=k, alpha=alpha, r2=r2, n_points=n, ill_posed=ill_posed,
                      L0_stderr=se[0], k_stderr=se[1], alpha_stderr=se[2])
    if ill_posed is None:
        fit = replace(fit, caution=_caution(fit))
    return fit


def _stderrs(pcov, s: float, alpha: float, k: float, x_ref: float) -> tuple[float, float, float]:
    """Standard errors of (L0, k, alpha) from the covariance of the well-conditioned (a, b, alpha), by the delta
    method: L0 = m + s·a and k = s·b·x_ref^(-alpha), so dk/db = s·x_ref^(-alpha) and dk/dalpha = -k·ln(x_ref)."""
    if pcov is None or not np.all(np.isfinite(pcov)):
        return (math.nan, math.nan, math.nan)
    pcov = np.asarray(pcov, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        grad_k = np.array([0.0, s * float(np.power(x_ref, -alpha)), -k * math.log(x_ref)])
        var_k = float(grad_k @ pcov @ grad_k)
    return (s * math.sqrt(max(pcov[0, 0], 0.0)), math.sqrt(max(var_k, 0.0)) if math.isfinite(var_k) else math.nan,
            math.sqrt(max(pcov[2, 2], 0.0)))


def _caution(fit: PowerLawFit) -> str | None:
    """Why a converged fit means little, or None."""
    notes = []
    if fit.r2 < _POOR_R2:
        notes.append(f"poor fit: R²={fit.r2:.2f}")
    if abs(fit.alpha) > _MAX_ABS_ALPHA:
        notes.append(f"extreme alpha={fit.alpha:.3g} (|alpha| > {_MAX_ABS_ALPHA:g})")
    if fit.k == 0 or abs(math.log10(abs(fit.k))) > _MAX_ABS_LOG10_K:
        notes.append(f"extreme k={fit.k:.3g}")
    undetermined = [name for name, value, se in (("L0", fit.L0, fit.L0_stderr), ("k", fit.k, fit.k_stderr),
                                                  ("alpha", fit.alpha, fit.alpha_stderr))
                    if math.isfinite(se) and se > abs(value)]
    if undetermined:
        notes.append(f"{', '.join(undetermined)} not determined (standard error > |value|)")
    return "; ".join(notes) or None


def predict(fit: PowerLawFit, x):
    """Evaluate a fit at ``x`` (scalar or array): ``fit.L0 + fit.k * x**fit.alpha``.

    Raises:
        MatrixEvalError: when the fit has no parameters (see ``fit.ill_posed``) or ``x`` is not positive.
    """
    if not all(math.isfinite(v) for v in (fit.L0, fit.k, fit.alpha)):
        raise MatrixEvalError(
            f"cannot predict from a power-law fit without parameters ({fit.ill_posed}); check fit.ok first"
        )
    values = np.asarray(x, dtype=np.float64)
    if np.any(values <= 0):
        raise MatrixEvalError(
            f"power-law predictions need positive x, got min(x)={values.min():g}; pass positive values"
        )
    out = fit.L0 + fit.k * values**fit.alpha
    return float(out) if out.ndim == 0 else out


def _why_ill_posed(x: np.ndarray, y: np.ndarray) -> str | None:
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return "x or y contains NaN or infinite values; drop those points before fitting"
    if np.any(x <= 0):
        return f"x must be positive for a power law, got min(x)={x.min():g}"
    n_distinct = np.unique(x).size
    if n_distinct < _MIN_POINTS:
        return f"{n_distinct} distinct x value(s); L0, k and alpha need at least {_MIN_POINTS}"
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
        return "y is constant; there is no trend to fit"
    return None


def _no_fit(n: int, reason: str) -> PowerLawFit:
    nan = float("nan")
    return PowerLawFit(L0=nan, k=nan, alpha=nan, r2=nan, n_points=n, ill_posed=reason)


def _model(u, a, b, alpha):
    return a + b * np.exp(alpha * u)


def _sse(params, u, z) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        r = z - _model(u, *params)
    value = float(np.sum(r**2))
    return value if math.isfinite(value) else math.inf


def _curve_fit(u, z, p0):
    """One Levenberg-Marquardt run; (params, pcov) or None when it fails. pcov is None when curve_fit could
    not estimate it (it warns instead of raising)."""
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("always", OptimizeWarning)
        try:
            params, pcov = curve_fit(_model, u, z, p0=p0, maxfev=20_000, ftol=1e-14, xtol=1e-14, gtol=1e-14)
        except (RuntimeError, ValueError):
            return None
    if not np.all(np.isfinite(params)):
        return None
    if any(issubclass(w.category, OptimizeWarning) for w in caught):
        pcov = None
    return params, pcov


def _initial_guesses(u: np.ndarray, z: np.ndarray) -> list[tuple[float, float, float]]:
    """Starting points ranked by their error: for each sign of k and a ladder of asymptotes beyond the data,
    ``ln(±(z - a))`` is linear in u, so a straight-line fit gives b and alpha."""
    spread = float(np.ptp(z))
    guesses = []
    for sign in (1.0, -1.0):
        edge = float(np.min(z)) if sign > 0 else float(np.max(z))
        for gap in (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
            a = edge - sign * gap * spread
            slope, intercept = np.polyfit(u, np.log(sign * (z - a)), 1)
            p0 = (a, sign * math.exp(intercept), float(slope))
            guesses.append((_sse(p0, u, z), p0))
    guesses.sort(key=lambda g: g[0])
    return [p0 for _, p0 in guesses]
