"""mathkit.gp.cg: BBMM predictions, log-likelihood and stochastic gradient against the exact
Cholesky backend at fixed hyperparameters."""

import math

import numpy as np
import pytest
import torch

from mathkit.data import simulate_smooth_regression
from mathkit.gp import RBF, CGBackend, ExactBackend, GPRegressor


def _data(n, seed=0):
    data = simulate_smooth_regression(n, rng=seed)
    return data.X, data.y


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
    X, y = (torch.tensor(a) for a in _data(400, seed=10))
    theta = torch.tensor([math.log(0.4), math.log(0.7), math.log(0.01)], dtype=torch.float64)
    exact = ExactBackend(RBF(), X, y, None).value_and_grad(theta)
    settings = dict(n_probes=64, precond_rank=30, cg_tol=1e-8, max_cg_iter=1000, seed=0)
    cg = CGBackend(RBF(), X, y, None, **settings).value_and_grad(theta)
    # each component is O(n) in size; the stochastic trace estimate is good to a few units
    np.testing.assert_allclose(cg[1].numpy(), exact[1].numpy(), atol=3.0)
    assert cg[0] == pytest.approx(exact[0], abs=1.0)
