"""mathkit.gp against independent oracles: scikit-learn's GaussianProcessRegressor and
kernels, scipy's dense linear algebra, closed forms, and data drawn from a known prior."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk

from mathkit.data import simulate_smooth_regression
from mathkit.gp import RBF, GPRegressor, Kernel
from mathkit.linalg import GridInterpolation
from test_kernels import PAIRS  # the kernel pairs (tests/ is on sys.path under pytest)


def _data(n, seed=0, noise_sd=0.1, dims=1):
    data = simulate_smooth_regression(n, dims=dims, noise_sd=noise_sd, rng=seed)
    return data.X, data.y


def _scaled(kernel, factor):
    """``kernel`` with every variance that scales the whole of k multiplied by ``factor``."""
    theta = kernel.get_log_params() + math.log(factor) * kernel.scale_mask().double()
    kernel.set_log_params(theta)
    return kernel


@pytest.mark.parametrize("ours, theirs", PAIRS)
@pytest.mark.parametrize("normalize_y", [False, True])
def test_log_marginal_likelihood_and_prediction_equal_sklearn(ours, theirs, normalize_y):
    """normalize_y=False: the same zero-mean model. normalize_y=True: scikit-learn's kernel and
    alpha refer to the standardised targets (mean ybar, sd s) and its likelihood is theirs;
    ours are in y's units, so the same model has our variances and noise times s^2 and a
    likelihood lower by the Jacobian n log s."""
    X, y = _data(150, seed=1)
    s2 = float(np.var(y)) if normalize_y else 1.0
    gp = GPRegressor(_scaled(ours(), s2), noise=0.02 * s2, method="cholesky", optimizer=None,
                     normalize_y=normalize_y).fit(X, y)
    ref = GaussianProcessRegressor(theirs(), alpha=0.02, optimizer=None, normalize_y=normalize_y).fit(X, y)
    jacobian = 0.5 * len(y) * math.log(s2)
    assert gp.log_marginal_likelihood() == pytest.approx(ref.log_marginal_likelihood_value_ - jacobian, rel=1e-8)
    Xs = np.linspace(0, 10, 37)[:, None]
    mean, std = gp.predict(Xs, return_std=True)
    ref_mean, ref_std = ref.predict(Xs, return_std=True)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(std, ref_std, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_reaches_sklearn_optimum(seed):
    """The zero-mean model, scikit-learn's default (the constant-mean one: test_gp_invariance)."""
    X, y = _data(200, seed=seed)
    gp = GPRegressor(method="cholesky", normalize_y=False).fit(X, y)
    ref = GaussianProcessRegressor(sk.ConstantKernel() * sk.RBF() + sk.WhiteKernel(0.1), random_state=0).fit(X, y)
    assert gp.log_marginal_likelihood() >= ref.log_marginal_likelihood_value_ - 1e-4
    assert gp.kernel_.lengthscale == pytest.approx(ref.kernel_.k1.k2.length_scale, rel=1e-2)


@pytest.fixture(scope="module")
def exact_fit_1200():
    """n = 1200: a 500-point subset warm start, then full-data quasi-Newton steps."""
    X, y = _data(1200, seed=3)
    return X, y, GPRegressor(method="cholesky").fit(X, y)


def test_subset_warm_start_reaches_full_optimum(exact_fit_1200):
    X, y, gp = exact_fit_1200
    ref = GaussianProcessRegressor(sk.ConstantKernel() * sk.RBF() + sk.WhiteKernel(0.1), random_state=0).fit(X, y)
    assert gp.log_marginal_likelihood() >= ref.log_marginal_likelihood_value_ - 1e-3


def test_duplicate_inputs_get_jitter_with_a_warning():
    X = np.repeat(np.linspace(0, 5, 40), 2)
    y = np.sin(X)
    with pytest.warns(UserWarning, match="jitter"):
        gp = GPRegressor(RBF(1.0, 1.0), noise=1e-300, method="cholesky", optimizer=None).fit(X, y)
    assert np.isfinite(gp.log_marginal_likelihood())
    np.testing.assert_allclose(gp.predict(X[::2]), y[::2], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_hyperparameters_of_the_prior(seed):
    rng = np.random.default_rng(seed)
    X = np.sort(rng.uniform(0, 20, 600))[:, None]
    K = RBF(0.8, 1.5)(torch.tensor(X)).numpy() + 0.05 * np.eye(600)
    y = np.linalg.cholesky(K) @ rng.standard_normal(600)
    gp = GPRegressor(method="cholesky").fit(X, y)
    assert gp.kernel_.lengthscale == pytest.approx(0.8, rel=0.15)
    assert gp.noise_ == pytest.approx(0.05, rel=0.25)
    # the variance is seen through ~25 independent lengthscales only: a factor 2 either way
    assert 1.5 / 2 < gp.kernel_.variance < 1.5 * 2


def test_cg_fit_close_to_exact_fit(exact_fit_1200):
    X, y, exact = exact_fit_1200
    cg = GPRegressor(method="cg", subset_sizes=(500,)).fit(X, y)
    assert cg.kernel_.lengthscale == pytest.approx(exact.kernel_.lengthscale, rel=0.03)
    Xs = np.linspace(0.5, 9.5, 50)
    np.testing.assert_allclose(cg.predict(Xs), exact.predict(Xs), atol=5e-3)


def test_ski_1d_matches_cholesky():
    X, y = _data(800, seed=7)
    kw = dict(kernel=RBF(0.4, 0.6), noise=0.01, optimizer=None)
    exact = GPRegressor(method="cholesky", **kw).fit(X, y)
    ski = GPRegressor(method="ski", grid_size=400, **kw).fit(X, y)
    Xs = np.linspace(X.min(), X.max(), 60)
    m_exact, s_exact = exact.predict(Xs, return_std=True)
    m_ski, s_ski = ski.predict(Xs, return_std=True)
    np.testing.assert_allclose(m_ski, m_exact, atol=1e-4)
    np.testing.assert_allclose(s_ski, s_exact, atol=1e-4)
    assert ski.log_marginal_likelihood() == pytest.approx(exact.log_marginal_likelihood(), abs=0.05)


def test_ski_1d_fit_close_to_exact_fit(exact_fit_1200):
    X, y, exact = exact_fit_1200
    ski = GPRegressor(method="ski").fit(X, y)
    assert ski.kernel_.lengthscale == pytest.approx(exact.kernel_.lengthscale, rel=0.02)
    assert ski.noise_ == pytest.approx(exact.noise_, rel=0.05)


def test_ski_2d_matches_cholesky():
    X, y = _data(200, seed=9, dims=2)
    kw = dict(kernel=RBF(1.5, 0.6), noise=0.05, optimizer=None)
    exact = GPRegressor(method="cholesky", **kw).fit(X, y)
    ski = GPRegressor(method="ski", grid_size=(56, 56), **kw).fit(X, y)
    rng = np.random.default_rng(0)
    Xs = rng.uniform(1, 9, (40, 2))
    np.testing.assert_allclose(ski.predict(Xs), exact.predict(Xs), atol=2e-3)
    np.testing.assert_allclose(ski.predict(Xs, return_std=True)[1], exact.predict(Xs, return_std=True)[1], atol=2e-3)
    assert ski.log_marginal_likelihood() == pytest.approx(exact.log_marginal_likelihood(), rel=0.02)


def test_auto_method_choice():
    X, y = _data(200)
    assert GPRegressor(optimizer=None).fit(X, y).method_ == "cholesky"


def test_torch_in_torch_out_and_numpy_in_numpy_out():
    X, y = _data(50)
    gp = GPRegressor(RBF(), noise=0.1, optimizer=None)
    assert isinstance(gp.fit(X, y).predict(X), np.ndarray)
    assert isinstance(gp.fit(torch.tensor(X), torch.tensor(y)).predict(torch.tensor(X)), torch.Tensor)


@pytest.mark.parametrize("kwargs, X, y, match", [
    ({}, np.zeros((5, 1)), np.zeros(4), "same length"),
    ({}, np.array([[0.0], [np.nan], [1.0]]), np.zeros(3), "NaN"),
    ({}, np.zeros((3, 1)), np.array([0.0, np.inf, 1.0]), "NaN or infinite"),
    ({"method": "ski"}, np.random.default_rng(0).random((20, 3)), np.zeros(20), "1-D and 2-D"),
    ({"noise": 0.0}, np.zeros((3, 1)), np.zeros(3), "positive"),
    ({"noise": -1.0}, np.zeros((3, 1)), np.zeros(3), "positive"),
    ({"method": "qr"}, np.zeros((3, 1)), np.zeros(3), "method"),
])
def test_bad_input_raises_value_error(kwargs, X, y, match):
    with pytest.raises(ValueError, match=match):
        GPRegressor(**kwargs).fit(X, y)


class _NotPSD(Kernel):
    """cos(3 |x - x'|) - 0.5: not positive definite, so Cholesky must fail."""

    _names = ("variance",)

    def __init__(self):
        super().__init__(variance=1.0)

    def _correlation(self, r, params):
        return torch.cos(3 * r) - 0.5


def test_not_positive_definite_names_the_remedy():
    X = np.linspace(0, 5, 30)
    with warnings.catch_warnings(), pytest.raises(np.linalg.LinAlgError, match="increase the noise"):
        warnings.simplefilter("ignore")
        GPRegressor(_NotPSD(), noise=1e-6, method="cholesky", optimizer=None).fit(X, np.zeros(30))


# ------------------------------------------------------------- linear algebra
def test_cubic_interpolation_is_exact_for_quadratics():
    grid = GridInterpolation(torch.tensor([-1.0]), torch.tensor([2.0]), (40,))
    X = torch.linspace(-1, 2, 101, dtype=torch.float64)[:, None]
    idx, w = grid.weights(X)
    f = lambda x: 1 - 2 * x + 3 * x**2  # noqa: E731
    values = GridInterpolation.apply(idx, w, f(grid.nodes()))
    np.testing.assert_allclose(values[:, 0].numpy(), f(X)[:, 0].numpy(), atol=1e-12)
    np.testing.assert_allclose(w.sum(1).numpy(), 1.0, atol=1e-14)
    with pytest.raises(ValueError, match="outside"):
        grid.weights(torch.tensor([[5.0]], dtype=torch.float64))
