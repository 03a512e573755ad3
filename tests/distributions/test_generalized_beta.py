"""GeneralizedBeta against scipy.stats.beta, scipy.special.betainc and mpmath."""

import math

import mpmath
import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as ss
import torch

from law_helpers import INF, t64

from mathkit.distributions import GeneralizedBeta
from mathkit.losses import censored_nll

mpmath.mp.dps = 50


BETA_CASES = [(2.0, 3.0, 1.0, 3.0), (0.5, 0.7, -1.0, 1.0), (30.0, 2.0, 0.0, 10.0), (1.0, 1.0, 5.0, 6.0), (200.0, 300.0, 0.0, 1.0)]


@pytest.mark.parametrize("case", BETA_CASES)
def test_generalized_beta_matches_scipy(case):
    a, b, low, high = case
    d = GeneralizedBeta(*(t64(v) for v in case))
    ref = ss.beta(a, b, loc=low, scale=high - low)
    u = np.array([1e-12, 1e-6, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-6, 1 - 1e-10])
    x = low + (high - low) * u
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(d.log_prob(xt).numpy(), ref.logpdf(x), rtol=1e-10)
    # mpmath at 50 digits: scipy underflows to -inf in the far tails, where ours stays finite
    # (at the unit point the float x really represents: (x - low)/(high - low) rounds like ours)
    u_eff = (x - low) / (high - low)
    # both tails as lower integrals (I_{1-u}(b, a) for the upper one), so each is
    # exact at 50 digits however small; log1p(-smaller) gives the other log
    lower = [mpmath.betainc(a, b, 0, v, regularized=True) for v in u_eff]
    upper = [mpmath.betainc(b, a, 0, 1 - mpmath.mpf(v), regularized=True) for v in u_eff]
    mp_cdf = [mpmath.log(lo) if lo < up else mpmath.log1p(-up) for lo, up in zip(lower, upper)]
    mp_sf = [mpmath.log(up) if up < lo else mpmath.log1p(-lo) for lo, up in zip(lower, upper)]
    np.testing.assert_allclose(d.log_cdf(xt).numpy(), np.array(mp_cdf, dtype=float), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(d.log_sf(xt).numpy(), np.array(mp_sf, dtype=float), rtol=1e-10, atol=1e-300)
    finite = np.isfinite(ref.logcdf(x))
    np.testing.assert_allclose(d.log_cdf(xt).numpy()[finite], ref.logcdf(x)[finite], rtol=1e-10)
    assert d.mean.item() == pytest.approx(ref.mean(), rel=1e-13)
    assert d.variance.item() == pytest.approx(ref.var(), rel=1e-12)
    assert d.entropy().item() == pytest.approx(ref.entropy(), rel=1e-10, abs=1e-12)
    assert d.log_cdf(t64([low - 1.0, high])).tolist() == [-INF, 0.0]


def test_generalized_beta_samples_gradients_and_ks():
    params = [t64(v, requires_grad=True) for v in (2.0, 5.0, -1.0, 4.0)]
    d = GeneralizedBeta(*params)
    torch.manual_seed(0)
    s = d.rsample((20_000,))
    assert bool(d.support.check(s).all())
    assert ss.ks_2samp(s.detach().numpy(), ss.beta(2, 5, loc=-1, scale=5).rvs(20_000, random_state=0)).pvalue > 1e-3
    s.mean().backward()
    assert all(torch.isfinite(p.grad) for p in params)
    # d/dy log F(y) = p(y)/F(y)
    y = t64([0.0, 1.5], requires_grad=True)
    (grad,) = torch.autograd.grad(d.log_cdf(y).sum(), y)
    torch.testing.assert_close(grad, (d.log_prob(y) - d.log_cdf(y)).exp().detach(), rtol=1e-9, atol=0)


def test_generalized_beta_log_cdf_gradient_in_the_concentrations():
    # against central differences of scipy's regularised incomplete beta (an independent routine)
    a, b = t64(2.5, requires_grad=True), t64(3.5, requires_grad=True)
    y = t64([0.3, 1.1, 1.9])
    grads = torch.autograd.grad(GeneralizedBeta(a, b, 0.0, 2.0).log_cdf(y).sum(), (a, b))
    u, h = y.numpy() / 2, 1e-6
    fd_a = (np.log(sc.betainc(2.5 + h, 3.5, u)) - np.log(sc.betainc(2.5 - h, 3.5, u))).sum() / (2 * h)
    fd_b = (np.log(sc.betainc(2.5, 3.5 + h, u)) - np.log(sc.betainc(2.5, 3.5 - h, u))).sum() / (2 * h)
    assert grads[0].item() == pytest.approx(fd_a, rel=1e-7)
    assert grads[1].item() == pytest.approx(fd_b, rel=1e-7)


# ================================================================ issue 10: known bugs, against independent oracles

def test_generalized_beta_cdf_matches_scipy_betainc_on_a_large_random_batch():
    """20,000 laws at once: the continued fraction used to run all 2,000 terms for such batches."""
    rng = np.random.default_rng(0)
    n = 20_000
    a, b = np.exp(rng.uniform(np.log(0.3), np.log(300), (2, n)))
    x = rng.uniform(0, 1, n)
    d = GeneralizedBeta(t64(a), t64(b), 0.0, 1.0)
    cdf, sf = d.cdf(t64(x)).numpy(), d.log_sf(t64(x)).exp().numpy()
    ref, ref_sf = sc.betainc(a, b, x), sc.betaincc(a, b, x)
    # scipy loses digits below ~1e-280 (it returns 0 at 2e-311); mpmath checks those below
    for got, want in ((cdf, ref), (sf, ref_sf)):
        ok = want > 1e-280
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12, atol=0)
    far = np.argsort(np.minimum(ref, ref_sf))[:5]
    for i in far:
        lower = mpmath.betainc(a[i], b[i], 0, x[i], regularized=True)
        upper = mpmath.betainc(b[i], a[i], 0, 1 - mpmath.mpf(x[i]), regularized=True)
        assert cdf[i] == pytest.approx(float(lower), rel=1e-11)
        assert sf[i] == pytest.approx(float(upper), rel=1e-11)




def test_gradients_at_an_endpoint_are_finite_and_exact():
    # a = 1: the density is finite at low, (b-1) log(1-u) - log B(a, b) - log(h - l) there; torch's
    # xlogy differentiated (a-1)/u = 0/0 and gave NaN for low and high
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (1.0, 2.0, 0.0, 1.0)]
    GeneralizedBeta(*params).log_prob(torch.tensor(0.0, dtype=torch.float64)).backward()
    want = [sc.digamma(3.0) - sc.digamma(1.0), sc.digamma(3.0) - sc.digamma(2.0), 2.0, -1.0]  # (b-1)/(h-l) + 1/(h-l), -1/(h-l)
    np.testing.assert_allclose([p.grad.item() for p in params], want, rtol=1e-12)


def test_censored_points_at_the_ends_leave_the_exact_points_gradients():
    # right-censored at low and left-censored at high contribute log 1 = 0: the gradient is the
    # exact point's alone (the discarded log-densities there are infinite and must not give NaN)
    def grads(y, right, left, n):
        params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (2.0, 3.0, 0.0, 1.0)]
        loss = censored_nll(GeneralizedBeta(*params), torch.tensor(y, dtype=torch.float64),
                            torch.tensor(right), torch.tensor(left), reduction="sum") / n
        loss.backward()
        return [p.grad.item() for p in params]

    got = grads([0.0, 0.3, 1.0], [True, False, False], [False, False, True], 3)
    want = grads([0.3], [False], [False], 3)
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("a, b, u", [(1e-3, 1e5, 1e-6), (1e6, 1e6, 0.5), (1e5, 1e5, 0.5012), (1e-3, 1e3, 1e-4),
                                     (1e4, 3.0, 0.9996), (1e6, 2e6, 0.3336), (200.0, 300.0, 0.41), (9.99, 10.01, 0.5)])
def test_tails_keep_their_digits_at_large_concentrations(a, b, u):
    # lgamma(a) + lgamma(b) - lgamma(a + b) loses ~1e-16 a log a: 6e-8 relative at (1e-3, 1e5), 4e-9 at
    # (1e6, 1e6) before the Stirling-corrected prefactor; scipy's betainc (Boost) is the oracle here
    # (mpmath's series does not converge at these sizes); each side taken where it is the smaller
    d = GeneralizedBeta(t64(a), t64(b))
    lower, upper = sc.betainc(a, b, u), sc.betaincc(a, b, u)
    want_cdf = math.log(lower) if lower < upper else math.log1p(-upper)
    want_sf = math.log(upper) if upper < lower else math.log1p(-lower)
    assert d.log_cdf(t64(u)).item() == pytest.approx(want_cdf, rel=2e-12)
    assert d.log_sf(t64(u)).item() == pytest.approx(want_sf, rel=2e-12)
    # d/du log F = p(u) / F(u), finite
    x = t64(u).requires_grad_(True)
    d.log_cdf(x).backward()
    assert x.grad.item() == pytest.approx(math.exp(d.log_prob(t64(u)).item() - want_cdf), rel=1e-6)


@pytest.mark.parametrize("a, b, points", [(1e-3, 1e5, [1e-7, 1e-6, 1e-5]), (1e5, 1e5, [0.498, 0.5, 0.5013]),
                                          (1e6, 1e6, [0.4995, 0.5]), (30.0, 12.0, [0.6, 0.8]), (1e6, 2.0, [0.999995])])
def test_density_keeps_its_digits_at_large_concentrations(a, b, points):
    # (a-1) log u + (b-1) log(1-u) - log B(a, b): terms of 1e6 cancelling to a few units; 50 digits
    def exact(u):
        a_, b_, u_ = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(u)
        return float((a_ - 1) * mpmath.log(u_) + (b_ - 1) * mpmath.log1p(-u_)
                     - (mpmath.loggamma(a_) + mpmath.loggamma(b_) - mpmath.loggamma(a_ + b_)))

    got = GeneralizedBeta(t64(a), t64(b)).log_prob(t64(points)).numpy()
    np.testing.assert_allclose(got, [exact(u) for u in points], rtol=1e-13, atol=1e-13)
