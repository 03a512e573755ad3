"""mathkit.kernels: values against scikit-learn's kernels and closed forms, gradients in the
log hyperparameters against scikit-learn's and autograd's finite-difference check, bad input."""

import math

import numpy as np
import pytest
import torch
from sklearn.gaussian_process import kernels as sk

from mathkit.data import simulate_smooth_regression
from mathkit.kernels import RBF, Matern, Periodic

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
    X = simulate_smooth_regression(40, dims=2, rng=0).X
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




@pytest.mark.parametrize("ours, theirs", [
    (lambda: RBF(0.7, 1.3), lambda: sk.ConstantKernel(1.3) * sk.RBF(0.7)),
    (lambda: Matern(1.5, 0.6, 0.8), lambda: sk.ConstantKernel(0.8) * sk.Matern(0.6, nu=1.5)),
    (lambda: Matern(2.5, 1.1, 2.0), lambda: sk.ConstantKernel(2.0) * sk.Matern(1.1, nu=2.5)),
])
def test_log_parameter_gradients_equal_sklearn(ours, theirs):
    """scikit-learn differentiates in log(variance), log(lengthscale); ours are ordered
    (lengthscale, variance)."""
    X = simulate_smooth_regression(12, dims=2, rng=1).X
    kernel = ours()
    theta = kernel.get_log_params().requires_grad_(True)
    jac = torch.autograd.functional.jacobian(lambda t: kernel(torch.tensor(X), None, t), theta)
    _, ref = theirs()(X, eval_gradient=True)
    np.testing.assert_allclose(jac.numpy()[..., ::-1], ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
@pytest.mark.parametrize("make, name", [
    (lambda v: RBF(lengthscale=v), "lengthscale"),
    (lambda v: RBF(variance=v), "variance"),
    (lambda v: Periodic(period=v), "period"),
    (lambda v: Matern(1.5, lengthscale=v), "lengthscale"),
])
def test_non_positive_or_non_finite_hyperparameters_raise(make, name, bad):
    with pytest.raises(ValueError, match=f"{name} must be a finite positive number"):
        make(bad)


def test_stationary_kernels_depend_on_differences_only():
    X = torch.tensor(simulate_smooth_regression(15, dims=2, rng=2).X)
    shift = torch.tensor([[123.0, -4.5]], dtype=torch.float64)
    kernel = RBF(0.8) * Periodic(1.2, 3.0) + Matern(0.5, 2.0)
    torch.testing.assert_close(kernel(X + shift), kernel(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: RBF(0.7, 1.9), lambda: RBF(0.5, 2.0) * RBF(1.3, 0.4)])
def test_grid_factors_kronecker_product_is_the_kernel_on_the_grid(make):
    kernel = make()
    axes = [torch.linspace(-1.0, 2.0, 7, dtype=torch.float64), torch.linspace(0.5, 4.0, 5, dtype=torch.float64)]
    nodes = torch.cartesian_prod(*axes)
    F = kernel.grid_factors(axes)
    np.testing.assert_allclose(torch.kron(F[0], F[1]).numpy(), kernel(nodes, nodes).numpy(), rtol=1e-12, atol=1e-14)
    theta = kernel.get_log_params().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: torch.kron(*kernel.grid_factors(axes, t)), (theta,))


def test_only_product_kernels_are_separable():
    assert RBF().separable and (RBF() * RBF()).separable
    assert not Matern().separable and not (RBF() + RBF()).separable and not (RBF() * Matern()).separable
    with pytest.raises(NotImplementedError, match="not separable"):
        Matern().grid_factors([torch.zeros(3, dtype=torch.float64)])
