"""mathkit.losses against direct scipy computations, and parameter recovery on simulated stock-outs."""

import math

import numpy as np
import pytest
import scipy.stats as ss
import torch
from torch.distributions import Exponential, Normal

from mathkit.distributions import CensoredNormal, TruncatedNormal
from mathkit.losses import censored_nll, gaussian_nll

INF = math.inf
F64 = torch.float64


def t64(values, requires_grad=False):
    return torch.tensor(values, dtype=F64, requires_grad=requires_grad)


def test_gaussian_nll_matches_scipy_and_reduces():
    rng = np.random.default_rng(0)
    y, loc, scale = rng.normal(size=10), rng.normal(size=10), rng.uniform(0.1, 3, size=10)
    ref = -ss.norm.logpdf(y, loc, scale)
    got = gaussian_nll(torch.from_numpy(y), torch.from_numpy(loc), torch.from_numpy(scale), reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-14)
    assert gaussian_nll(torch.from_numpy(y), 0.0, torch.from_numpy(scale)).item() == pytest.approx(
        -ss.norm.logpdf(y, 0.0, scale).mean(), rel=1e-14)
    assert gaussian_nll(torch.from_numpy(y), torch.from_numpy(loc), torch.from_numpy(scale), "sum").item() == pytest.approx(ref.sum(), rel=1e-14)


def test_gaussian_nll_rejects_bad_input():
    with pytest.raises(ValueError, match="scale > 0"):
        gaussian_nll(t64([1.0]), t64([0.0]), t64([0.0]))
    with pytest.raises(ValueError, match="reduction"):
        gaussian_nll(t64([1.0]), t64([0.0]), t64([1.0]), reduction="avg")
    with pytest.raises(ValueError, match="broadcastable"):
        gaussian_nll(t64([1.0, 2.0]), t64([0.0, 1.0, 2.0]), t64([1.0]))


def test_censored_nll_of_the_demand_model_matches_scipy():
    # the book's call: TruncatedNormal(mu, sigma, 0., inf), right-censored where sales hit the stock
    mu, sigma = 12.0, 5.0
    sales = t64([0.5, 3.0, 10.0, 10.0, 14.0, 20.0, 20.0])
    stock = t64([8.0, 8.0, 10.0, 10.0, 30.0, 20.0, 25.0])
    censored = sales >= stock
    got = censored_nll(TruncatedNormal(t64(mu), t64(sigma), 0.0, INF), sales, right_censored=censored, reduction="none")
    ref_law = ss.truncnorm((0 - mu) / sigma, INF, loc=mu, scale=sigma)
    y = sales.numpy()
    ref = -np.where(censored.numpy(), ref_law.logsf(y), ref_law.logpdf(y))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-13)
    assert censored_nll(TruncatedNormal(t64(mu), t64(sigma), 0.0, INF), sales, right_censored=censored).item() == pytest.approx(ref.mean(), rel=1e-13)


def test_censored_nll_float32_book_call_has_finite_gradients():
    mu = torch.tensor(5.0, requires_grad=True)
    sigma = torch.tensor(2.0, requires_grad=True)
    sales = torch.tensor([0.0, 1.0, 4.0, 7.0, 7.0, 30.0])
    stock = torch.tensor([5.0, 5.0, 5.0, 7.0, 7.0, 30.0])
    loss = censored_nll(TruncatedNormal(mu, sigma, 0.0, INF), sales, right_censored=(sales >= stock))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(mu.grad) and torch.isfinite(sigma.grad)


def test_censored_nll_with_torch_normal_and_both_censoring_sides():
    y = t64([-3.0, -1.0, 0.5, 2.0, 40.0])
    left = torch.tensor([True, False, False, False, False])
    right = torch.tensor([False, False, False, True, True])
    loc, scale = t64(0.3), t64(1.5)
    got = censored_nll(Normal(loc, scale), y, right_censored=right, left_censored=left, reduction="none")
    ref_law = ss.norm(0.3, 1.5)
    yn = y.numpy()
    ref = -np.where(left.numpy(), ref_law.logcdf(yn), np.where(right.numpy(), ref_law.logsf(yn), ref_law.logpdf(yn)))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-13)
    # the Tobit law and an uncensored Normal with censoring masks agree
    tobit = CensoredNormal(loc, scale, -3.0, 2.0)
    inner = y[:4]
    np.testing.assert_allclose(
        censored_nll(tobit, inner, reduction="none").numpy(),
        censored_nll(Normal(loc, scale), inner, right_censored=right[:4], left_censored=left[:4], reduction="none").numpy(),
        rtol=1e-13,
    )


def test_censored_nll_broadcasts_a_batch_of_laws():
    d = TruncatedNormal(t64([[1.0], [2.0]]), t64(1.0), 0.0, INF)
    y = t64([0.5, 1.5, 3.0])
    right = torch.tensor([False, False, True])
    out = censored_nll(d, y, right_censored=right, reduction="none")
    assert out.shape == (2, 3)
    assert out[1, 2].item() == pytest.approx(-ss.truncnorm(-2.0, INF, loc=2.0).logsf(3.0), rel=1e-13)


def test_censored_nll_rejects_bad_input():
    d = TruncatedNormal(t64(1.0), t64(1.0), 0.0, INF)
    y = t64([0.5, 1.5])
    with pytest.raises(ValueError, match="boolean"):
        censored_nll(d, y, right_censored=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="boolean"):
        censored_nll(d, y, right_censored=[False, True])
    with pytest.raises(ValueError, match="broadcastable"):
        censored_nll(d, y, right_censored=torch.tensor([False, True, True]))
    with pytest.raises(ValueError, match="both"):
        censored_nll(d, y, right_censored=torch.tensor([True, False]), left_censored=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="reduction"):
        censored_nll(d, y, reduction="mean ")
    with pytest.raises(ValueError, match="broadcastable"):
        censored_nll(TruncatedNormal(t64([1.0, 2.0, 3.0]), t64(1.0), 0.0, INF), y)
    with pytest.raises(TypeError, match="log_sf"):
        censored_nll(Exponential(t64(1.0)), y, right_censored=torch.tensor([False, True]))


def fit(loss_fn, init):
    """Maximum likelihood over (mu, log sigma) by L-BFGS; returns (mu, sigma)."""
    params = t64(init, requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(params[0], params[1].exp())
        loss.backward()
        return loss

    opt.step(closure)
    return params[0].item(), params[1].exp().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_censored_likelihood_recovers_demand_where_the_naive_fit_is_biased(seed):
    # demand ~ N(20, 8^2) truncated at 0, drawn by scipy (an independent sampler);
    # stock varies by day, and a day's sales stop at its stock
    rng = np.random.default_rng(seed)
    mu, sigma, n = 20.0, 8.0, 2000
    demand = ss.truncnorm.rvs(-mu / sigma, INF, loc=mu, scale=sigma, size=n, random_state=rng)
    stock = rng.uniform(12.0, 30.0, size=n)
    sales = torch.from_numpy(np.minimum(demand, stock))
    stocked_out = torch.from_numpy(demand >= stock)

    def censored(m, s):
        return censored_nll(TruncatedNormal(m, s, 0.0, INF), sales, right_censored=stocked_out)

    def naive(m, s):
        return censored_nll(TruncatedNormal(m, s, 0.0, INF), sales)

    mu_c, sigma_c = fit(censored, [10.0, math.log(5.0)])
    mu_n, sigma_n = fit(naive, [10.0, math.log(5.0)])
    assert abs(mu_c - mu) < 1.0 and abs(sigma_c - sigma) < 1.0
    # ignoring the stock-outs underestimates both (measured: mu ~16.7, sigma ~5.6)
    assert mu - mu_n > 3 * abs(mu_c - mu) and mu - mu_n > 2.0
    assert sigma - sigma_n > 3 * abs(sigma_c - sigma)
