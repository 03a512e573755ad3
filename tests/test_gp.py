"""mathkit.gp against independent oracles: scikit-learn's GaussianProcessRegressor and
kernels, scipy's dense linear algebra, closed forms, and data drawn from a known prior."""

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk

from mathkit.gp import RBF, GPRegressor, Kernel, Matern, Periodic
from mathkit.linalg import (
    GridInterpolation, _cholesky_, _cholesky_inverse_, _cholesky_solve, batched_cg, lanczos_logdet,
    pivoted_cholesky, toeplitz_matmul,
)


def _data(n, seed=0, noise_sd=0.1, dims=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, (n, dims))
    y = np.sin(2 * X[:, 0]) + 0.3 * np.cos(7 * X[:, -1]) + noise_sd * rng.standard_normal(n)
    return X, y


# scikit-learn spells a scaled kernel as ConstantKernel * kernel
PAIRS = [
    (lambda: RBF(0.7, 1.3), lambda: sk.ConstantKernel(1.3) * sk.RBF(0.7)),
    (lambda: Matern(0.5, 0.9, 2.0), lambda: sk.ConstantKernel(2.0) * sk.Matern(0.9, nu=0.5)),
    (lambda: Matern(1.5, 0.6, 0.8), lambda: sk.ConstantKernel(0.8) * sk.Matern(0.6, nu=1.5)),
    (lambda: Matern(2.5, 1.1, 1.0), lambda: sk.ConstantKernel(1.0) * sk.Matern(1.1, nu=2.5)),
    (lambda: Periodic(0.8, 3.0, 0.5), lambda: sk.ConstantKernel(0.5) * sk.ExpSineSquared(0.8, 3.0)),
    (lambda: RBF(2.0, 1.0) + Matern(1.5, 0.3, 0.2),
     lambda: sk.ConstantKernel(1.0) * sk.RBF(2.0) + sk.ConstantKernel(0.2) * sk.Matern(0.3, nu=1.5)),
    (lambda: RBF(3.0, 1.5) * Periodic(1.0, 2.0, 1.0),
     lambda: sk.ConstantKernel(1.5) * sk.RBF(3.0) * sk.ExpSineSquared(1.0, 2.0)),
]


@pytest.mark.parametrize("ours, theirs", PAIRS)
def test_kernel_matrix_equals_sklearn(ours, theirs):
    X, _ = _data(40, dims=2)
    np.testing.assert_allclose(ours()(torch.tensor(X)).numpy(), theirs()(X), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours().diag(torch.tensor(X)).numpy(), theirs().diag(X), rtol=1e-12)


def test_matern_closed_forms_at_one_lengthscale():
    r = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    s3, s5 = math.sqrt(3), math.sqrt(5)
    assert float(Matern(0.5)(r)[0, 1]) == pytest.approx(math.exp(-1), rel=1e-14)
    assert float(Matern(1.5)(r)[0, 1]) == pytest.approx((1 + s3) * math.exp(-s3), rel=1e-14)
    assert float(Matern(2.5)(r)[0, 1]) == pytest.approx((1 + s5 + 5 / 3) * math.exp(-s5), rel=1e-14)


def test_kernel_gradients_gradcheck():
    X = torch.rand(6, 2, dtype=torch.float64)
    kernel = RBF(0.5, 2.0) + Matern(2.5, 0.7) * Periodic(1.0, 2.0)
    theta = kernel.get_log_params().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: kernel(X, X, t), (theta,))


def test_hyperparameters_read_back_and_bad_values_raise():
    k = RBF(lengthscale=0.3, variance=2.0) + Periodic(period=5.0)
    assert k.k1.lengthscale == pytest.approx(0.3) and k.k2.period == pytest.approx(5.0)
    with pytest.raises(ValueError, match="lengthscale"):
        RBF(lengthscale=-1.0)
    with pytest.raises(ValueError, match="nu"):
        Matern(nu=2.0)
    with pytest.raises(TypeError, match="Kernel"):
        RBF() + 1.0


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


def test_exact_gradient_matches_finite_differences():
    from mathkit.gp import ExactBackend

    X, y = _data(60, seed=4)
    backend = ExactBackend(RBF() + Matern(1.5, 0.5, 0.3), torch.tensor(X), torch.tensor(y), None)
    theta = torch.tensor([0.1, -0.2, -0.5, 0.3, math.log(0.05)], dtype=torch.float64)
    _, grad = backend.value_and_grad(theta)
    for j in range(len(theta)):
        e = torch.zeros_like(theta)
        e[j] = 1e-5
        fd = (backend.value_and_grad(theta + e)[0] - backend.value_and_grad(theta - e)[0]) / 2e-5
        assert float(grad[j]) == pytest.approx(fd, rel=1e-5, abs=1e-6)


def _dense_nll(kernel, X, y, theta, learned_noise, profile):
    """Negative log marginal likelihood by dense torch algebra (slogdet, solve), for autograd."""
    p = kernel.n_params
    K = kernel(X, X, theta[:p])
    noise = torch.exp(theta[p]) if learned_noise else torch.tensor(0.05, dtype=torch.float64)
    K = K + noise * torch.eye(len(X), dtype=torch.float64)
    quad = y @ torch.linalg.solve(K, y)
    logdet = torch.linalg.slogdet(K)[1]
    n = len(y)
    if profile:  # maximised over a common scale c of K: c = y^T K^-1 y / n
        return 0.5 * n * (1 + torch.log(quad / n) + math.log(2 * math.pi)) + 0.5 * logdet
    return 0.5 * quad + 0.5 * logdet + 0.5 * n * math.log(2 * math.pi)


@pytest.mark.parametrize("learned_noise, profile", [(True, False), (True, True), (False, False)])
def test_exact_value_and_gradient_over_row_blocks_match_dense_autograd(learned_noise, profile):
    """n = 700 spans three row blocks of the lower triangle (and a partial one)."""
    from mathkit.gp import ExactBackend

    X, y = _data(700, seed=5)
    X, y = torch.tensor(X), torch.tensor(y)
    kernel = RBF() + Periodic(1.0, 3.0, 0.5)
    backend = ExactBackend(kernel, X, y, None if learned_noise else 0.05)
    backend.profile = profile
    theta = torch.tensor([-0.6, 0.2, 0.1, 1.0, -0.4] + ([math.log(0.03)] if learned_noise else []), dtype=torch.float64)
    value, grad = backend.value_and_grad(theta)
    th = theta.clone().requires_grad_(True)
    dense = _dense_nll(kernel, X, y, th, learned_noise, profile)
    dense.backward()
    assert value == pytest.approx(float(dense.detach()), rel=1e-12)
    np.testing.assert_allclose(grad.numpy(), th.grad.numpy(), rtol=1e-8, atol=1e-8)


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


def test_cg_matches_cholesky_at_fixed_hyperparameters():
    X, y = _data(500, seed=5)
    kw = dict(kernel=RBF(0.4, 0.6), noise=0.01, optimizer=None)
    exact = GPRegressor(method="cholesky", **kw).fit(X, y)
    cg = GPRegressor(method="cg", cg_tol=1e-8, **kw).fit(X, y)
    Xs = np.linspace(0.5, 9.5, 50)[:, None]
    np.testing.assert_allclose(cg.predict(Xs), exact.predict(Xs), atol=1e-5)
    np.testing.assert_allclose(cg.predict(Xs, return_std=True)[1], exact.predict(Xs, return_std=True)[1], atol=1e-5)
    # 16 probes with a rank-30 pivoted-Cholesky preconditioner: the stochastic log det is
    # within 0.5% of |log det| (its spread across probe seeds is ~0.1% here)
    logdet_error = abs(cg.log_marginal_likelihood() - exact.log_marginal_likelihood())
    assert logdet_error < 5e-3 * abs(exact.log_marginal_likelihood()) + 1.0


def test_cg_gradient_estimate_matches_exact_gradient():
    from mathkit.gp import CGBackend, ExactBackend

    X, y = (torch.tensor(a) for a in _data(400, seed=10))
    theta = torch.tensor([math.log(0.4), math.log(0.7), math.log(0.01)], dtype=torch.float64)
    exact = ExactBackend(RBF(), X, y, None).value_and_grad(theta)
    settings = dict(n_probes=64, precond_rank=30, cg_tol=1e-8, max_cg_iter=1000, seed=0)
    cg = CGBackend(RBF(), X, y, None, **settings).value_and_grad(theta)
    # each component is O(n) in size; the stochastic trace estimate is good to a few units
    np.testing.assert_allclose(cg[1].numpy(), exact[1].numpy(), atol=3.0)
    assert cg[0] == pytest.approx(exact[0], abs=1.0)


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
def test_batched_cg_solves_and_its_lanczos_logdet():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((80, 80))
    A = torch.tensor(A @ A.T / 80 + 0.5 * np.eye(80))
    B = torch.randn(80, 100, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = batched_cg(lambda V: A @ V, B, tol=1e-10)
    np.testing.assert_allclose(res.solution.numpy(), scipy.linalg.solve(A.numpy(), B.numpy()), atol=1e-8)
    estimate = lanczos_logdet(res, (B * B).sum(0), range(100))
    assert float(estimate) == pytest.approx(np.linalg.slogdet(A.numpy())[1], rel=0.05)


def test_batched_cg_zero_right_hand_side_is_solved_by_zero():
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    B = torch.tensor([[0.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    res = batched_cg(lambda V: A @ V, B, tol=1e-12)
    assert torch.equal(res.solution[:, 0], torch.zeros(2, dtype=torch.float64))
    assert int(res.n_iter[0]) == 0
    np.testing.assert_allclose(res.solution[:, 1].numpy(), np.linalg.solve(A.numpy(), [1.0, 2.0]), rtol=1e-10)


def test_pivoted_cholesky_full_rank_reproduces_matrix():
    X = torch.rand(30, 1, dtype=torch.float64)
    K = Matern(0.5)(X)
    L = pivoted_cholesky(K.diagonal(), lambda i: K[i], rank=30, tol=0.0)
    np.testing.assert_allclose((L @ L.T).numpy(), K.numpy(), atol=1e-10)


def test_toeplitz_matmul_against_dense():
    col = torch.exp(-torch.linspace(0, 3, 17, dtype=torch.float64) ** 2)
    V = torch.randn(17, 3, dtype=torch.float64)
    dense = torch.tensor(scipy.linalg.toeplitz(col.numpy()))
    np.testing.assert_allclose(toeplitz_matmul(col, V).numpy(), (dense @ V).numpy(), atol=1e-12)
    grid = GridInterpolation(torch.zeros(2), torch.ones(2), (9, 7))
    nodes = grid.nodes()
    K = RBF(0.3)(nodes)
    V = torch.randn(63, 2, dtype=torch.float64)
    np.testing.assert_allclose(toeplitz_matmul(K[0].reshape(9, 7), V).numpy(), (K @ V).numpy(), atol=1e-12)


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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_in_place_cholesky_kernels_against_numpy(dtype):
    """The LAPACK path (float64, contiguous) and the torch fallback (here float32)."""
    rng = np.random.default_rng(6)
    G = rng.standard_normal((50, 50))
    A = G @ G.T + 50 * np.eye(50)
    b = rng.standard_normal(50)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    work = torch.tensor(np.tril(A) + np.triu(np.full((50, 50), np.nan), 1), dtype=dtype)  # lower triangle only
    assert _cholesky_(work)
    L = work.tril().double().numpy()
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=tol, atol=tol * 10)
    inverse = _cholesky_inverse_(work, torch.empty_like(work)).tril().double().numpy()
    np.testing.assert_allclose(inverse, np.tril(np.linalg.inv(A)), rtol=tol * 100, atol=tol)
    x = _cholesky_solve(work.tril(), torch.tensor(b, dtype=dtype)).double().numpy()
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=tol * 100, atol=tol)
    assert not _cholesky_(torch.tensor(-np.eye(3), dtype=dtype))
