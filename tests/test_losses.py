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
    with pytest.raises(ValueError, match=r"loc .*shape \(3,\).*y of shape \(2,\)"):
        gaussian_nll(t64([1.0, 2.0]), t64([0.0, 1.0, 2.0]), t64([1.0, 1.0]))


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


def test_censored_nll_takes_one_law_per_point_or_one_for_all():
    y = t64([0.5, 1.5, 3.0])
    right = torch.tensor([False, False, True])
    locs = np.array([1.0, 2.0, 0.5])
    per_point = censored_nll(TruncatedNormal(t64(locs), t64(1.0), 0.0, INF), y, right_censored=right, reduction="none")
    laws = [ss.truncnorm(-m, INF, loc=m) for m in locs]
    ref = [-laws[0].logpdf(0.5), -laws[1].logpdf(1.5), -laws[2].logsf(3.0)]
    np.testing.assert_allclose(per_point.numpy(), ref, rtol=1e-13)
    one = censored_nll(TruncatedNormal(t64(2.0), t64(1.0), 0.0, INF), y, right_censored=right, reduction="none")
    law = ss.truncnorm(-2.0, INF, loc=2.0)
    np.testing.assert_allclose(one.numpy(), [-law.logpdf(0.5), -law.logpdf(1.5), -law.logsf(3.0)], rtol=1e-13)
    # a batch of laws that would broadcast against y into a table is refused, naming both shapes
    with pytest.raises(ValueError, match=r"dist.batch_shape .*\(2, 1\).*y of shape \(3,\)"):
        censored_nll(TruncatedNormal(t64([[1.0], [2.0]]), t64(1.0), 0.0, INF), y, right_censored=right)


def test_censored_nll_rejects_bad_input():
    d = TruncatedNormal(t64(1.0), t64(1.0), 0.0, INF)
    y = t64([0.5, 1.5])
    with pytest.raises(ValueError, match="boolean"):
        censored_nll(d, y, right_censored=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="boolean"):
        censored_nll(d, y, right_censored=[False, True])
    with pytest.raises(ValueError, match=r"right_censored .*shape \(3,\)"):
        censored_nll(d, y, right_censored=torch.tensor([False, True, True]))
    with pytest.raises(ValueError, match="both"):
        censored_nll(d, y, right_censored=torch.tensor([True, False]), left_censored=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="reduction"):
        censored_nll(d, y, reduction="mean ")
    with pytest.raises(ValueError, match="dist.batch_shape"):
        censored_nll(TruncatedNormal(t64([1.0, 2.0, 3.0]), t64(1.0), 0.0, INF), y)
    with pytest.raises(TypeError, match="log_sf"):
        censored_nll(Exponential(t64(1.0)), y, right_censored=torch.tensor([False, True]))


def test_losses_refuse_shapes_that_would_broadcast_into_a_table():
    # y of shape (n, 1) against loc of shape (n,) would give n^2 terms
    y = t64([[1.0], [2.0], [3.0]])
    loc, scale = t64([1.0, 2.0, 3.0]), t64([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"loc .*\(3,\).*y of shape \(3, 1\)"):
        gaussian_nll(y, loc, scale)
    with pytest.raises(ValueError, match="dist.batch_shape"):
        censored_nll(Normal(loc, scale), y)
    # a larger mask would count points twice
    with pytest.raises(ValueError, match=r"left_censored .*\(2, 3\)"):
        censored_nll(Normal(loc, scale), loc, left_censored=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="right_censored"):
        censored_nll(Normal(loc, scale), loc, right_censored=torch.tensor(True))


@pytest.mark.parametrize("bad, where", [(math.nan, "index 1"), (INF, "index 1"), (-INF, "index 1")])
def test_losses_name_a_non_finite_y_and_its_index(bad, where):
    y = t64([0.5, bad, 1.0])
    with pytest.raises(ValueError, match=f"y must be finite, got .* at {where}"):
        gaussian_nll(y, 0.0, 1.0)
    with pytest.raises(ValueError, match=f"y must be finite, got .* at {where}"):
        censored_nll(TruncatedNormal(t64(1.0), t64(1.0), 0.0, INF), y,
                     right_censored=torch.tensor([False, True, False]))


def test_losses_refuse_empty_input_and_non_finite_parameters():
    empty = torch.zeros(0, dtype=F64)
    with pytest.raises(ValueError, match="y must hold at least one observation"):
        gaussian_nll(empty, empty, empty)
    with pytest.raises(ValueError, match="y must hold at least one observation"):
        censored_nll(Normal(t64(0.0), t64(1.0)), empty)
    with pytest.raises(ValueError, match="loc must be finite"):
        gaussian_nll(t64([1.0, 2.0]), t64([0.0, math.nan]), 1.0)
    with pytest.raises(ValueError, match="scale must be finite"):
        gaussian_nll(t64([1.0, 2.0]), 0.0, t64([1.0, INF]))
    with pytest.raises(TypeError, match="dist"):
        censored_nll(t64([0.0]), t64([1.0]))


def test_integer_observations_are_promoted_not_truncated():
    y = torch.tensor([0, 1, 3])
    got = gaussian_nll(y, torch.tensor(1), torch.tensor(2), reduction="none")
    assert got.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(got.numpy(), -ss.norm.logpdf([0, 1, 3], 1, 2), rtol=1e-6)
    law = ss.truncnorm(-2.0, INF, loc=2.0)
    got = censored_nll(TruncatedNormal(t64(2.0), t64(1.0), 0.0, INF), y,
                       right_censored=torch.tensor([False, False, True]), reduction="none")
    np.testing.assert_allclose(got.numpy(), [-law.logpdf(0), -law.logpdf(1), -law.logsf(3)], rtol=1e-13)


def test_censored_nll_works_for_any_law_with_log_cdf_and_log_sf():
    class Logistic(torch.distributions.TransformedDistribution):
        """A logistic law built from torch parts, given its log cdf and log survival by hand."""

        def __init__(self, loc, scale):
            base = torch.distributions.Uniform(torch.zeros_like(loc), torch.ones_like(loc))
            transforms = [torch.distributions.SigmoidTransform().inv,
                          torch.distributions.AffineTransform(loc, scale)]
            super().__init__(base, transforms)
            self.loc, self.scale = loc, scale

        def log_cdf(self, value):
            return torch.nn.functional.logsigmoid((value - self.loc) / self.scale)

        def log_sf(self, value):
            return torch.nn.functional.logsigmoid(-(value - self.loc) / self.scale)

    y = t64([-2.0, 0.3, 1.0, 4.0])
    left, right = torch.tensor([True, False, False, False]), torch.tensor([False, False, False, True])
    got = censored_nll(Logistic(t64(0.5), t64(1.5)), y, right_censored=right, left_censored=left, reduction="none")
    law = ss.logistic(0.5, 1.5)
    ref = [-law.logcdf(-2.0), -law.logpdf(0.3), -law.logpdf(1.0), -law.logsf(4.0)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)


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
