"""mathkit.numerics.logsumexp against scipy.special.logsumexp and softmax, and the NaN trap of
torch.logsumexp's gradient on slices whose terms are all -inf."""

import math

import numpy as np
import pytest
import scipy.special as sc
import torch

from mathkit.numerics import logsumexp

INF = math.inf


def test_value_matches_scipy_including_extremes():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 300, (20, 7))
    x[0] = -INF                       # empty sum
    x[1, :3] = -INF                   # some terms absent
    x[2] = [700.0, 710.0, 709.5, -1e308, 0, 1, 2]  # exp overflows without the shift
    x[3] = -745.0 - np.arange(7)      # exp underflows without the shift
    for dim in (0, 1):
        ours = logsumexp(torch.tensor(x), dim=dim).numpy()
        np.testing.assert_allclose(ours, sc.logsumexp(x, axis=dim), rtol=1e-15)
    assert logsumexp(torch.tensor(x), dim=1)[0] == -INF


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_is_softmax_and_zero_on_empty_slices(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 5, (6, 4))
    x[2] = -INF
    x[4, 1] = -INF
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    weights = torch.tensor(rng.normal(size=6), dtype=dtype)
    out = logsumexp(xt, dim=1)
    assert out.dtype == dtype
    (torch.where(torch.isfinite(out), out, 0.0) * weights).sum().backward()
    with np.errstate(invalid="ignore"):  # scipy's softmax of the empty row is NaN
        expected = weights.numpy()[:, None] * np.nan_to_num(sc.softmax(x, axis=1), nan=0.0)
    expected[2] = 0.0
    np.testing.assert_allclose(xt.grad.numpy(), expected, rtol=1e-6 if dtype == torch.float32 else 1e-14,
                               atol=1e-7 if dtype == torch.float32 else 1e-15)
    assert torch.all(xt.grad[2] == 0)


def test_torch_logsumexp_has_the_nan_trap_that_this_one_avoids():
    """A masked-out empty row: the loss ignores it, torch's gradient is NaN anyway."""
    x = torch.tensor([[0.5, -INF], [-INF, -INF]], dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([True, False])
    torch.where(keep, torch.logsumexp(x, 1), 0.0).sum().backward()
    assert torch.isnan(x.grad).any()  # if torch fixes this, the helper can go
    x.grad = None
    torch.where(keep, logsumexp(x, 1), 0.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 0.0], [0.0, 0.0]])


def test_masked_loss_gradient_equals_loss_on_the_kept_rows():
    """Partial labels: log of the probability of a candidate set; an empty set is excluded."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(12, 5, dtype=torch.float64, generator=g)
    W = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    candidates = torch.rand(12, 4, generator=g) < 0.5
    candidates[[3, 7]] = False
    logp = torch.log_softmax(X @ W, 1)
    per_row = logsumexp(torch.where(candidates, logp, -INF), 1)
    has = candidates.any(1)
    torch.where(has, per_row, 0.0).sum().backward()
    ours = W.grad.clone()
    W.grad = None
    logp = torch.log_softmax(X[has] @ W, 1)
    torch.logsumexp(torch.where(candidates[has], logp, -INF), 1).sum().backward()
    torch.testing.assert_close(ours, W.grad, rtol=1e-13, atol=1e-14)


def test_gradcheck_keepdim_and_several_dims():
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: logsumexp(t, dim=(0, 2)), (x,))
    out = logsumexp(x, dim=(0, 2), keepdim=True)
    assert out.shape == (1, 4, 1)
    torch.testing.assert_close(out, torch.logsumexp(x, dim=(0, 2), keepdim=True), rtol=1e-15, atol=0)


def test_numbers_and_integers_give_float64_and_complex_is_rejected():
    out = logsumexp(torch.tensor([1, 2, 3]), dim=0)
    assert out.dtype == torch.float64
    assert float(out) == pytest.approx(sc.logsumexp([1, 2, 3]), rel=1e-15)
    with pytest.raises(TypeError, match="x"):
        logsumexp(torch.zeros(2, dtype=torch.complex128), dim=0)
