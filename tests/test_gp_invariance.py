"""mathkit.gp does not care about units: predictions transform as the data do under
X -> aX + b and y -> cy + d, hyperparameters come back in the user's units, and a refit at the
reported hyperparameters reproduces the fit. Oracles: scikit-learn's GaussianProcessRegressor
(at fixed hyperparameters in the user's units, and its optimum on unit-scale data), closed forms
for a single point, and the unit-scale fit itself mapped through the change of units."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk

from mathkit.data import simulate_smooth_regression
from mathkit.gp import RBF, GPRegressor, Matern, Periodic

sys.path.insert(0, str(Path(__file__).parent))
from gp_units_sweep import errors  # noqa: E402


def _data(n=40, seed=0, dims=1):
    data = simulate_smooth_regression(n, dims=dims, rng=seed)
    return data.X, data.y


XS = np.linspace(0.3, 9.7, 23)[:, None]


def _close(ours, reference, spread, rtol):
    """Largest deviation relative to ``spread`` (the reference's scale), below rtol."""
    err = float(np.max(np.abs(np.asarray(ours) - np.asarray(reference)))) / spread
    assert err < rtol, err


# Scales 1e-8 .. 1e8 of either sign; offsets up to 1e6 data widths (float64 then still carries
# ~10 digits of the data: beyond that the user's own numbers have lost them) and up to 2e9 outright.
scales = st.builds(lambda e, s: s * 10.0**e, st.floats(-8, 8), st.sampled_from([1.0, -1.0]))
offsets = st.sampled_from([0.0, 1.0, -37.5, 1e4, 1e6, 1.7e9])


def _offset(raw, scale, width):
    return raw if abs(raw) <= 1e6 * abs(scale) * width else math.copysign(1e6 * abs(scale) * width, raw)


@pytest.fixture(scope="module")
def unit_fits():
    X, y = _data()
    return X, y, {m: GPRegressor(method=m).fit(X, y).predict(XS, return_std=True) for m in ("cholesky", "cg")}


def _check_transformed_fit(method, unit_fits, a, b, c, d):
    X, y, fits = unit_fits
    b, d = _offset(b, a, 10.0), _offset(d, c, float(np.ptp(y)))
    mean, sd = GPRegressor(method=method).fit(a * X + b, c * y + d).predict(a * XS + b, return_std=True)
    ref_mean, ref_sd = fits[method]
    _close((mean - d) / c, ref_mean, np.std(y), 1e-6)
    _close(sd / abs(c), ref_sd, ref_sd.max(), 1e-6)


@settings(max_examples=30, deadline=None)
@given(a=scales, b=offsets, c=scales, d=offsets)
def test_exact_fit_predictions_transform_with_the_data(unit_fits, a, b, c, d):
    _check_transformed_fit("cholesky", unit_fits, a, b, c, d)


@settings(max_examples=6, deadline=None)
@given(a=scales, b=offsets, c=scales, d=offsets)
def test_cg_fit_predictions_transform_with_the_data(unit_fits, a, b, c, d):
    _check_transformed_fit("cg", unit_fits, a, b, c, d)


def test_hostile_units_sweep_exact():
    """The 20 variants of tests/gp_units_sweep.py (unit-scale fit as reference), exact method."""
    worst = {name: max(m, s) for name, m, s in errors("cholesky", n=60)}
    assert max(worst.values()) < 1e-6, worst


def test_two_columns_with_their_own_offsets_and_a_common_scale():
    X, y = _data(50, dims=2)
    Xs = np.random.default_rng(1).uniform(1, 9, (15, 2))
    shift = np.array([1.7e9, -3e4])
    ref_mean, ref_sd = GPRegressor(method="cholesky").fit(X, y).predict(Xs, return_std=True)
    gp = GPRegressor(method="cholesky").fit(3600 * X + shift, 1e-4 * y)
    mean, sd = gp.predict(3600 * Xs + shift, return_std=True)
    _close(mean / 1e-4, ref_mean, np.std(y), 1e-6)
    _close(sd / 1e-4, ref_sd, ref_sd.max(), 1e-6)


# --------------------------------------------------- scikit-learn at fixed hyperparameters
@settings(max_examples=25, deadline=None)
@given(a=scales, b=offsets, c=scales, d=offsets, normalize_y=st.booleans(),
       which=st.sampled_from(["rbf", "matern", "periodic + rbf"]))
def test_fixed_hyperparameters_in_user_units_equal_sklearn(a, b, c, d, normalize_y, which):
    """Our kernel and noise in the user's units against scikit-learn on the user's y (centred by
    its mean for normalize_y=True: the constant prior mean), with no standardisation there."""
    X, y = _data(30, seed=2)
    b, d = _offset(b, a, 10.0), _offset(d, c, float(np.ptp(y)))
    Xu, yu, Xsu = a * X + b, c * y + d, a * XS + b
    la, c2 = abs(a), c * c
    ours, theirs = {
        "rbf": (RBF(0.7 * la, 1.3 * c2), sk.ConstantKernel(1.3 * c2, "fixed") * sk.RBF(0.7 * la, "fixed")),
        "matern": (Matern(1.5, 0.9 * la, 0.5 * c2),
                   sk.ConstantKernel(0.5 * c2, "fixed") * sk.Matern(0.9 * la, "fixed", nu=1.5)),
        "periodic + rbf": (Periodic(0.8, 3.0 * la, 0.5 * c2) + RBF(4.0 * la, 0.2 * c2),
                           sk.ConstantKernel(0.5 * c2, "fixed") * sk.ExpSineSquared(0.8, 3.0 * la, "fixed", "fixed")
                           + sk.ConstantKernel(0.2 * c2, "fixed") * sk.RBF(4.0 * la, "fixed")),
    }[which]
    gp = GPRegressor(ours, noise=0.02 * c2, method="cholesky", optimizer=None, normalize_y=normalize_y).fit(Xu, yu)
    mean_y = float(np.mean(yu)) if normalize_y else 0.0
    ref = GaussianProcessRegressor(theirs, alpha=0.02 * c2, optimizer=None).fit(Xu, yu - mean_y)
    mean, sd = gp.predict(Xsu, return_std=True)
    ref_mean, ref_sd = ref.predict(Xsu, return_std=True)
    _close(mean - mean_y, ref_mean, np.sqrt(np.mean((yu - mean_y) ** 2)), 1e-6)  # the targets' scale
    _close(sd, ref_sd, ref_sd.max(), 1e-6)
    assert gp.log_marginal_likelihood() == pytest.approx(ref.log_marginal_likelihood_value_, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("a, b, c, d", [(3600.0, 1.7e9, 1e-6, 5.0), (1e-6, 0.0, 1e4, -2e7)])
def test_fit_in_hostile_units_reaches_sklearn_optimum_on_friendly_data(seed, a, b, c, d):
    """scikit-learn's normalize_y=True model is ours (constant mean ybar, scale s); on unit-scale
    data its optimum, mapped to the hostile units, is where our fit in those units must land."""
    X, y = _data(120, seed=seed)
    ref = GaussianProcessRegressor(sk.ConstantKernel() * sk.RBF() + sk.WhiteKernel(0.1), normalize_y=True,
                                   random_state=0).fit(X, y)
    gp = GPRegressor(method="cholesky").fit(a * X + b, c * y + d)
    s2 = float(np.var(y)) * c * c
    jacobian = 0.5 * len(y) * math.log(s2)
    assert gp.log_marginal_likelihood() >= ref.log_marginal_likelihood_value_ - jacobian - 1e-4
    assert gp.kernel_.lengthscale == pytest.approx(a * ref.kernel_.k1.k2.length_scale, rel=1e-2)
    assert gp.kernel_.variance == pytest.approx(s2 * ref.kernel_.k1.k1.constant_value, rel=2e-2)
    assert gp.noise_ == pytest.approx(s2 * ref.kernel_.k2.noise_level, rel=2e-2)


@pytest.mark.parametrize("a, c", [(1.0, 1.0), (1e6, 1e-3)])
def test_noiseless_data_reach_sklearn_optimum_with_the_noise_at_its_bound(a, c):
    """Noise-free data put the noise on its lower bound (1e-5 of y's variance): the fit must
    still be the bounded optimum, not a profiled scale pushed past the bound."""
    X = np.random.default_rng(3).uniform(0, 10, (80, 1))
    y = np.sin(X[:, 0])
    ref = GaussianProcessRegressor(sk.ConstantKernel() * sk.RBF() + sk.WhiteKernel(0.1), normalize_y=True,
                                   random_state=0).fit(X, y)
    gp = GPRegressor(method="cholesky").fit(a * X, c * y)
    jacobian = 0.5 * len(y) * math.log(float(np.var(y)) * c * c)
    assert gp.log_marginal_likelihood() >= ref.log_marginal_likelihood_value_ - jacobian - 1e-3
    assert gp.noise_ == pytest.approx(1e-5 * float(np.var(y)) * c * c, rel=1e-6)


# ------------------------------------------------------------------- refit consistency
@pytest.mark.parametrize("method", ["cholesky", "cg", "ski"])
@pytest.mark.parametrize("a, b, c, d", [(1.0, 0.0, 1.0, 0.0), (3600.0, 1.7e9, 1e3, 1e4), (1e-7, 0.0, 1e-6, 0.0)])
def test_refit_at_reported_hyperparameters_reproduces_the_fit(method, a, b, c, d):
    X, y = _data(300, seed=4)
    Xu, yu, Xsu = a * X + b, c * y + d, a * XS + b
    gp = GPRegressor(Matern(2.5) if method != "ski" else None, method=method).fit(Xu, yu)
    again = GPRegressor(gp.kernel_, noise=gp.noise_, method=method, optimizer=None).fit(Xu, yu)
    assert again.log_marginal_likelihood() == pytest.approx(gp.log_marginal_likelihood(), rel=1e-9, abs=1e-9)
    (mean, sd), (mean2, sd2) = gp.predict(Xsu, return_std=True), again.predict(Xsu, return_std=True)
    _close(mean2, mean, abs(c) * np.std(y), 1e-8)
    _close(sd2, sd, sd.max(), 1e-6 if method == "cg" else 1e-8)  # CG's sd: solves to cg_tol


def test_reported_hyperparameters_are_in_user_units():
    """The lengthscale in seconds, the Periodic's period in seconds and its lengthscale unitless,
    variances and noise in y's units squared: the fit in hours, mapped."""
    X, y = _data(150, seed=5)
    kernel = Periodic(1.0, 3.0, 1.0) * RBF(5.0, 1.0)
    hours = GPRegressor(kernel, method="cholesky").fit(X, y)
    scaled = kernel.clone()
    scaled.set_log_params(kernel.get_log_params() + math.log(3600) * kernel.length_mask().double()
                          + math.log(1e-6) * kernel.scale_mask().double())
    seconds = GPRegressor(scaled, method="cholesky").fit(3600 * X + 1.7e9, 1e-3 * y)
    k_h, k_s = hours.kernel_, seconds.kernel_
    assert k_s.k1.period == pytest.approx(3600 * k_h.k1.period, rel=1e-6)
    assert k_s.k2.lengthscale == pytest.approx(3600 * k_h.k2.lengthscale, rel=1e-6)
    assert k_s.k1.lengthscale == pytest.approx(k_h.k1.lengthscale, rel=1e-6)
    assert k_s.k1.variance == pytest.approx(1e-6 * k_h.k1.variance, rel=1e-6)
    assert k_s.k2.variance == pytest.approx(k_h.k2.variance, rel=1e-6)  # a product scales by one factor
    assert seconds.noise_ == pytest.approx(1e-6 * hours.noise_, rel=1e-6)
    # the densities of y and of 1e-3 y differ by the Jacobian n log(1e-3)
    assert seconds.log_marginal_likelihood() == pytest.approx(
        hours.log_marginal_likelihood() - len(y) * math.log(1e-3), rel=1e-8)


# ------------------------------------------------------------------------ degenerate data
@pytest.mark.parametrize("method", ["cholesky", "cg"])
@pytest.mark.parametrize("value", [0.0, 3.5, -1.7e9, 1e-8])
@pytest.mark.parametrize("normalize_y", [True, False])
def test_constant_y_predicts_the_constant_with_a_finite_sd(method, value, normalize_y):
    X, _ = _data(50)
    gp = GPRegressor(method=method, normalize_y=normalize_y).fit(X, np.full(50, value))
    mean, sd = gp.predict(XS, return_std=True)
    np.testing.assert_allclose(mean, value, rtol=1e-12 if normalize_y else 1e-3, atol=1e-300)
    assert np.all(np.isfinite(sd)) and np.all(sd >= 0) and math.isfinite(gp.log_marginal_likelihood())


def test_single_point_is_the_prior_around_it():
    """Closed form: v = s^2 = y0^2, noise v / 10, lengthscale 1 in X's units."""
    gp = GPRegressor().fit(np.array([[2.0]]), np.array([-4.0]))
    v = 16.0
    assert gp.kernel_.variance == pytest.approx(v) and gp.noise_ == pytest.approx(v / 10)
    assert gp.kernel_.lengthscale == pytest.approx(1.0)
    x = np.array([2.0, 3.0, 1e3])
    mean, sd = gp.predict(x, return_std=True)
    k = v * np.exp(-0.5 * (x - 2.0) ** 2)
    np.testing.assert_allclose(mean, -4.0, rtol=1e-14)
    np.testing.assert_allclose(sd, np.sqrt(v - k**2 / (v + v / 10)), rtol=1e-12)


@pytest.mark.parametrize("copies", [2, 5])
def test_duplicated_inputs_reach_sklearn_optimum(copies):
    X, y = _data(40, seed=6)
    X = np.repeat(X, copies, axis=0)
    y = np.repeat(y, copies) + 0.1 * np.random.default_rng(7).standard_normal(len(X))
    gp = GPRegressor(method="cholesky", normalize_y=False).fit(1e-5 * X + 1e3, y)
    ref = GaussianProcessRegressor(sk.ConstantKernel() * sk.RBF() + sk.WhiteKernel(0.1), random_state=0).fit(X, y)
    assert gp.log_marginal_likelihood() >= ref.log_marginal_likelihood_value_ - 1e-4
    assert gp.kernel_.lengthscale == pytest.approx(1e-5 * ref.kernel_.k1.k2.length_scale, rel=1e-2)


def test_hourly_timestamps_learn_the_daily_cycle():
    """Two weeks of hourly Unix times; the truth has a 12-hour lengthscale in seconds."""
    rng = np.random.default_rng(8)
    t = 1.7e9 + 3600.0 * np.arange(24 * 14)
    y = 20 + 5 * np.sin(2 * np.pi * (t - 1.7e9) / 86400) + 0.5 * rng.standard_normal(len(t))
    gp = GPRegressor(method="cholesky").fit(t, y)
    assert 3 * 3600 < gp.kernel_.lengthscale < 48 * 3600
    assert gp.noise_ == pytest.approx(0.25, rel=0.3)
    t_new = t[:-1] + 1800.0
    truth = 20 + 5 * np.sin(2 * np.pi * (t_new - 1.7e9) / 86400)
    assert np.sqrt(np.mean((gp.predict(t_new) - truth) ** 2)) < 0.3


def test_ski_offset_costs_no_precision():
    """1-D SKI at fixed hyperparameters on hours and on Unix seconds: the same predictions."""
    X, y = _data(500, seed=9)
    X[:2, 0] = 0.0, 10.0
    hours = GPRegressor(RBF(0.5, 0.7), noise=0.01, method="ski", optimizer=None).fit(X, y)
    seconds = GPRegressor(RBF(1800.0, 0.7), noise=0.01, method="ski", optimizer=None).fit(3600 * X + 1.7e9, y)
    mean, sd = hours.predict(XS, return_std=True)
    mean2, sd2 = seconds.predict(3600 * XS + 1.7e9, return_std=True)
    _close(mean2, mean, np.std(y), 1e-8)
    _close(sd2, sd, sd.max(), 1e-8)


@pytest.mark.parametrize("method", ["cholesky", "cg", "ski"])
@pytest.mark.parametrize("a, c", [(1e160, 1.0), (1e-300, 1.0), (1.0, 1e150), (1.0, 1e-150), (1e-300, 1e-150)])
def test_magnitudes_near_float64s_limits_transform_with_the_data(method, a, c):
    # spreads are measured without squaring first: |X| or |y| beyond ~1e154 (or below ~1e-154) used
    # to overflow (underflow) there, giving NaN predictions or a constant one
    X, y = _data(30, seed=4)
    gp = GPRegressor(method=method, random_state=0)
    mean, sd = gp.fit(X, y).predict(XS, return_std=True)
    mean_u, sd_u = gp.fit(a * X, c * y).predict(a * XS, return_std=True)
    np.testing.assert_allclose(mean_u / c, mean, rtol=1e-6, atol=1e-6 * np.abs(mean).max())
    np.testing.assert_allclose(sd_u / c, sd, rtol=1e-6)


@pytest.mark.parametrize("c", [1e160, 1e-160])
def test_y_whose_variance_float64_cannot_hold_is_refused(c):
    X, y = _data(30, seed=4)
    with pytest.raises(ValueError, match="y's spread .* rescale y"):
        GPRegressor().fit(X, c * y)


@pytest.mark.parametrize("method", ["cholesky", "cg", "ski"])
@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_matern_far_from_the_data_is_the_prior(method, nu):
    # at an infinite scaled distance (1 + s) e^{-s} was inf * 0 = NaN; it is 0
    X, y = _data(30, seed=5)
    gp = GPRegressor(Matern(nu), method=method, random_state=0).fit(X, y)
    mean, sd = gp.predict(np.array([[1e150], [1e300]]), return_std=True)
    prior_sd = math.sqrt(gp.kernel_.variance)
    np.testing.assert_allclose(sd, prior_sd, rtol=1e-6)
    np.testing.assert_allclose(mean, mean[0], rtol=1e-12)  # the same prior mean at both points
    assert abs(mean[0] - y.mean()) < 1e-6 * y.std()
