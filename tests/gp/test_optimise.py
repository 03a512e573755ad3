"""mathkit.gp.optimise: the optimisation strategy and its steps, against closed forms and
scikit-learn's optimum."""

import math

import numpy as np
import pytest
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as sk

from mathkit.data import simulate_smooth_regression
from mathkit.gp import RBF, CGBackend, ExactBackend, SKIDenseBackend
from mathkit.gp.optimise import (
    extrapolated_hessian, finite_difference_hessian, fit_hyperparameters, lbfgs, quasi_newton,
)

SETTINGS = dict(n_probes=16, precond_rank=30, cg_tol=1e-5, max_cg_iter=1000, seed=0, grid_size=None)


def _quadratic(A, b):
    """f(x) = x^T A x / 2 - b^T x, minimised at A^-1 b, with its gradient."""
    return lambda x: (float(0.5 * x @ A @ x - b @ x), A @ x - b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finite_difference_hessian_of_a_quadratic(seed):
    rng = np.random.default_rng(seed)
    G = torch.tensor(rng.standard_normal((4, 4)))
    A = G @ G.T + torch.eye(4, dtype=torch.float64)
    H = finite_difference_hessian(_quadratic(A, torch.zeros(4, dtype=torch.float64)), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(H, A, rtol=1e-6, atol=1e-6)


def test_finite_difference_hessian_is_zero_along_a_flat_direction():
    flat = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    P = torch.eye(3, dtype=torch.float64) - torch.outer(flat, flat) / 2  # projector off `flat`
    A = P @ torch.diag(torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)) @ P
    H = finite_difference_hessian(_quadratic(A, torch.zeros(3, dtype=torch.float64)),
                                  torch.zeros(3, dtype=torch.float64), flat)
    torch.testing.assert_close(H @ flat, torch.zeros(3, dtype=torch.float64), atol=1e-8, rtol=0)
    torch.testing.assert_close(H, A, atol=1e-6, rtol=1e-6)


def test_extrapolated_hessian_is_linear_in_log_n():
    H1, H2 = torch.eye(2, dtype=torch.float64), 2 * torch.eye(2, dtype=torch.float64)
    # from 100 to 1,000 points the curvature rose by 1; to 10,000 it rises by one more
    torch.testing.assert_close(extrapolated_hessian([(100, H1), (1000, H2)], 10_000), 3 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(extrapolated_hessian([(100, H1)], 400), 4 * H1)


def test_quasi_newton_with_the_true_hessian_lands_on_the_minimum():
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    b = torch.tensor([0.3, -0.2], dtype=torch.float64)
    f = _quadratic(A, b)
    step = quasi_newton(f, torch.zeros(2, dtype=torch.float64), A, steps=3, value=lambda x: f(x)[0])
    torch.testing.assert_close(step.theta, torch.linalg.solve(A, b), rtol=1e-10, atol=1e-10)
    assert step.converged


def test_lbfgs_reports_convergence_inside_the_bounds():
    A = torch.diag(torch.tensor([1.0, 10.0], dtype=torch.float64))
    step = lbfgs(_quadratic(A, torch.tensor([1.0, 1.0], dtype=torch.float64)), torch.zeros(2, dtype=torch.float64))
    assert step.converged and "L-BFGS-B" in step.message
    torch.testing.assert_close(step.theta, torch.tensor([1.0, 0.1], dtype=torch.float64), atol=1e-5, rtol=0)


def _standardised(n, seed):
    data = simulate_smooth_regression(n, rng=seed)
    X = torch.tensor((data.X - data.X.mean(0)) / data.X.std())
    y = torch.tensor((data.y - data.y.mean()) / data.y.std())
    return X, y


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_strategy_reaches_scikit_learns_optimum(seed):
    X, y = _standardised(1100, seed)  # two subsets (500, 1000)... only those at most n / 2 run
    backend = ExactBackend(RBF(), X, y, None)
    result = fit_hyperparameters(backend, torch.tensor([0.0, 0.0, math.log(0.1)], dtype=torch.float64),
                                 (300, 500), refine_steps=4, random_state=seed)
    assert result.subset_sizes == (300, 500) and result.converged
    ours = -backend.value(result.theta)
    ref = GaussianProcessRegressor(sk.ConstantKernel() * sk.RBF() + sk.WhiteKernel(0.1), random_state=0)
    ref.fit(X.numpy(), y.numpy())
    assert ours >= ref.log_marginal_likelihood_value_ - 0.05


def test_strategy_follows_declared_capabilities():
    X, y = _standardised(400, 3)
    start = torch.tensor([0.0, 0.0, math.log(0.1)], dtype=torch.float64)
    # a stochastic objective always gets a warm start, even with no subset at most n / 2
    cg = fit_hyperparameters(CGBackend(RBF(), X, y, None, **SETTINGS), start, (300,), 4, 0)
    assert cg.subset_sizes == (300,) and not CGBackend.deterministic
    # 1-D SKI with a dense grid solve: one subset, then L-BFGS on all the data
    ski = fit_hyperparameters(SKIDenseBackend(RBF(), X, y, None, **SETTINGS), start, (50, 100, 150), 4, 0)
    assert ski.subset_sizes == (50,) and "L-BFGS-B" in ski.message
