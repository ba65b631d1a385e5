import math
import warnings

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning

from matrixeval.errors import MatrixEvalError
from matrixeval.report import fit as fit_module
from matrixeval.report.fit import PowerLawFit, fit_power_law, predict

SIZES = np.geomspace(1e7, 1e10, 8)
LENGTHS = np.array([16, 32, 64, 128, 256, 512, 1024, 2048], dtype=float)


@pytest.mark.parametrize(
    "L0, k, alpha, x",
    [
        (0.4, 2.0, -0.3, SIZES),  # entropy-like scaling law
        (1.69, 406.4, -0.34, SIZES),  # Chinchilla-like loss law
        (3.0, -5.0, -0.2, SIZES),  # metric rising towards its asymptote
        (0.1, 1e-3, 0.25, SIZES),  # positive exponent
        (2.0, 0.5, -0.05, SIZES),  # shallow exponent
        (0.8, -0.3, -0.5, LENGTHS),  # against context length
    ],
)
def test_recovers_noiseless_parameters_within_one_percent(L0, k, alpha, x):
    result = fit_power_law(x, L0 + k * x**alpha)
    assert result.ok, result.ill_posed
    assert result.L0 == pytest.approx(L0, rel=1e-2, abs=1e-9)
    assert result.k == pytest.approx(k, rel=1e-2)
    assert result.alpha == pytest.approx(alpha, rel=1e-2)
    assert result.r2 == pytest.approx(1.0, abs=1e-9)
    assert result.n_points == x.size


def test_noisy_data_fits_close_to_the_truth():
    rng = np.random.default_rng(0)
    y = 0.4 + 2.0 * SIZES**-0.3 + rng.normal(0, 1e-4, SIZES.size)
    result = fit_power_law(SIZES, y)
    assert result.ok
    assert 0.95 < result.r2 < 1.0
    np.testing.assert_allclose(predict(result, SIZES), 0.4 + 2.0 * SIZES**-0.3, atol=3e-4)


@pytest.mark.parametrize(
    "x, y, reason",
    [
        (SIZES[:3], 0.4 + SIZES[:3] ** -0.3, "at least 4"),
        ([1e7, 1e7, 1e8, 1e8, 1e9], [1.0, 1.01, 0.9, 0.91, 0.8], "3 distinct x"),
        (SIZES, np.full(SIZES.size, 0.61), "constant"),
        ([-1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], "positive"),
        (SIZES, np.r_[np.nan, np.ones(SIZES.size - 1)], "NaN"),
    ],
)
def test_ill_posed_inputs_give_no_parameters_and_a_reason(x, y, reason):
    result = fit_power_law(x, y)
    assert not result.ok
    assert reason in result.ill_posed
    assert all(math.isnan(v) for v in (result.L0, result.k, result.alpha, result.r2))
    with pytest.raises(MatrixEvalError, match="without parameters"):
        predict(result, 1e8)


def test_logarithmic_data_is_flagged_alpha_near_zero():
    result = fit_power_law(SIZES, np.log(SIZES))
    assert not result.ok and "alpha" in result.ill_posed


def test_non_convergence_is_reported(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev reached")

    monkeypatch.setattr(fit_module, "curve_fit", fail)
    result = fit_power_law(SIZES, 0.4 + 2.0 * SIZES**-0.3)
    assert "did not converge" in result.ill_posed
    assert math.isnan(result.alpha)


def test_infinite_covariance_is_reported(monkeypatch):
    real_curve_fit = fit_module.curve_fit

    def warn_like_scipy(*args, **kwargs):
        params, pcov = real_curve_fit(*args, **kwargs)
        warnings.warn("Covariance of the parameters could not be estimated", OptimizeWarning)
        return params, np.full_like(pcov, np.inf)

    monkeypatch.setattr(fit_module, "curve_fit", warn_like_scipy)
    result = fit_power_law(SIZES, 0.4 + 2.0 * SIZES**-0.3)
    assert "covariance is infinite" in result.ill_posed


def test_mismatched_lengths_raise():
    with pytest.raises(MatrixEvalError, match="equal length"):
        fit_power_law([1, 2, 3, 4], [1, 2, 3])


def test_predict_matches_the_formula():
    fit = PowerLawFit(L0=0.4, k=2.0, alpha=-0.3, r2=1.0, n_points=8)
    assert predict(fit, 1e8) == pytest.approx(0.4 + 2.0 * 1e8**-0.3)
    assert isinstance(predict(fit, 1e8), float)
    np.testing.assert_allclose(predict(fit, SIZES), 0.4 + 2.0 * SIZES**-0.3)
    with pytest.raises(MatrixEvalError, match="positive"):
        predict(fit, [0.0, 1.0])


def test_standard_errors_match_a_direct_fit_in_the_original_units():
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(0)
    y = 0.4 + 2.0 * SIZES**-0.3 + rng.normal(0, 1e-3, SIZES.size)
    result = fit_power_law(SIZES, y)
    assert result.ok and result.caution is None
    # independent: scipy's own covariance of (L0, k, alpha), fitted directly in the original parametrisation
    params, pcov = curve_fit(lambda x, L0, k, a: L0 + k * x**a, SIZES, y, p0=(result.L0, result.k, result.alpha),
                             maxfev=20_000)
    np.testing.assert_allclose(params, (result.L0, result.k, result.alpha), rtol=1e-4)
    np.testing.assert_allclose((result.L0_stderr, result.k_stderr, result.alpha_stderr), np.sqrt(np.diag(pcov)),
                               rtol=1e-3)


def test_noiseless_fit_has_tiny_standard_errors_and_no_caution():
    result = fit_power_law(SIZES, 0.4 + 2.0 * SIZES**-0.3)
    assert result.caution is None
    assert result.alpha_stderr < 1e-6 and result.L0_stderr < 1e-6


@pytest.mark.parametrize("y, expected", [
    ([0.5, 0.52, 0.49, 0.51, 0.5, 0.53, 0.48, 0.5], ["poor fit: R²=0.06", "alpha not determined"]),  # noise only
    ([0.61, 0.60, 0.62, 0.60, 0.61, 0.59, 0.60, 0.35], ["extreme alpha=3.83", "extreme k=-1.2e-39"]),  # one outlier
])
def test_fits_that_mean_nothing_carry_a_caution(y, expected):
    result = fit_power_law(SIZES, np.array(y))
    assert result.ok  # a converged least-squares optimum, but ...
    for text in expected:
        assert text in result.caution
