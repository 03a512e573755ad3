"""mathkit.gp.exact: the Cholesky likelihood and its gradient against finite differences and
dense autograd (slogdet, solve), over several row blocks."""

import math

import numpy as np
import pytest
import torch

from mathkit.data import simulate_smooth_regression
from mathkit.gp import ExactBackend, GPRegressor, Matern, Periodic, RBF


def _data(n, seed=0):
    data = simulate_smooth_regression(n, rng=seed)
    return data.X, data.y


def test_exact_gradient_matches_finite_differences():
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
    X, y = _data(700, seed=5)
    X, y = torch.tensor(X), torch.tensor(y)
    kernel = RBF() + Periodic(1.0, 3.0, 0.5)
    backend = ExactBackend(kernel, X, y, None if learned_noise else 0.05)
    theta = torch.tensor([-0.6, 0.2, 0.1, 1.0, -0.4] + ([math.log(0.03)] if learned_noise else []), dtype=torch.float64)
    value, grad = backend.value_and_grad(theta, profile=profile)
    th = theta.clone().requires_grad_(True)
    dense = _dense_nll(kernel, X, y, th, learned_noise, profile)
    dense.backward()
    assert value == pytest.approx(float(dense.detach()), rel=1e-12)
    np.testing.assert_allclose(grad.numpy(), th.grad.numpy(), rtol=1e-8, atol=1e-8)


def test_jitter_is_reported_once_per_fit():
    # a noise far below the kernel's rounding needs jitter at every evaluation: one warning, not one each
    x = np.linspace(0.0, 1.0, 200)
    with pytest.warns(UserWarning, match="needed jitter") as record:
        GPRegressor(RBF(1.0), noise=1e-15).fit(x, np.sin(6 * x))
    assert sum("needed jitter" in str(w.message) for w in record) == 1
