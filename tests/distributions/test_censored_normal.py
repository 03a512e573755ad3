"""CensoredNormal (the Tobit law) against scipy.stats.norm and mpmath."""

import math

import mpmath
import numpy as np
import pytest
import scipy.stats as ss
import torch

from law_helpers import INF, t64

from mathkit.distributions import CensoredNormal

mpmath.mp.dps = 50


def test_censored_normal_is_the_tobit_law():
    d = CensoredNormal(t64(1.0), t64(2.0), t64(0.0), t64(3.0))
    y = t64([0.0, 0.5, 2.9, 3.0])
    ref = ss.norm(1.0, 2.0)
    expected = [ref.logcdf(0.0), ref.logpdf(0.5), ref.logpdf(2.9), ref.logsf(3.0)]
    np.testing.assert_allclose(d.log_prob(y).numpy(), expected, rtol=1e-14)
    np.testing.assert_allclose(d.log_cdf(y).numpy(), [ref.logcdf(0.0), ref.logcdf(0.5), ref.logcdf(2.9), 0.0], rtol=1e-14)
    np.testing.assert_allclose(d.log_sf(y).numpy(), [ref.logsf(0.0), ref.logsf(0.5), ref.logsf(2.9), -INF], rtol=1e-14)
    # far tails stay finite: the mass at a bound 40 sd away
    far = CensoredNormal(t64(0.0), t64(1.0), t64(-40.0), t64(40.0))
    assert far.log_prob(t64(40.0)).item() == pytest.approx(ss.norm.logsf(40.0), rel=1e-13)


def test_censored_normal_moments_and_samples():
    d = CensoredNormal(t64([1.0, 0.0]), t64([2.0, 1.0]), t64([0.0, -INF]), t64([3.0, 0.5]))
    # E[clamp(X)] and Var by quadrature of the mixture (scipy), an independent route
    for i, (m, s, lo, hi) in enumerate([(1.0, 2.0, 0.0, 3.0), (0.0, 1.0, -INF, 0.5)]):
        ref = ss.norm(m, s)
        inner = ref.expect(lambda x: x, lb=lo, ub=hi) if math.isfinite(lo) else ref.expect(lambda x: x, ub=hi)
        inner2 = ref.expect(lambda x: x * x, lb=lo, ub=hi) if math.isfinite(lo) else ref.expect(lambda x: x * x, ub=hi)
        p_lo = ref.cdf(lo) if math.isfinite(lo) else 0.0
        mean = inner + p_lo * (lo if math.isfinite(lo) else 0.0) + ref.sf(hi) * hi
        second = inner2 + p_lo * (lo**2 if math.isfinite(lo) else 0.0) + ref.sf(hi) * hi**2
        assert d.mean[i].item() == pytest.approx(mean, rel=1e-9)
        assert d.variance[i].item() == pytest.approx(second - mean**2, rel=1e-8)
    torch.manual_seed(0)
    s = d.rsample((5000,))
    assert bool(d.support.check(s).all())
    assert (s[:, 0] == 0.0).float().mean().item() == pytest.approx(ss.norm(1, 2).cdf(0.0), abs=0.03)
    q = t64([0.1, 0.5, 0.99])
    np.testing.assert_allclose(d.icdf(q.unsqueeze(-1).expand(3, 2))[:, 1].numpy(), np.minimum(ss.norm.ppf(q.numpy()), 0.5))


# ================================================================ GeneralizedBeta

def mp_censored_variance(loc, scale, low, high):
    """Var[clamp(X, low, high)] by 50-digit quadrature in offsets from the lower bound (no cancellation)."""
    loc, scale = mpmath.mpf(loc), mpmath.mpf(scale)
    a, b = (mpmath.mpf(low) - loc) / scale, (mpmath.mpf(high) - loc) / scale
    p_high = mpmath.ncdf(-b)
    if mpmath.isinf(a):  # mirror: offsets from the upper bound instead
        return mp_censored_variance(-loc, scale, -high, -low)
    # the density decays like exp(-a t) from the bound: split the range on that scale
    end = min(b - a, 60)
    step = 1 / max(a, mpmath.mpf(1))
    nodes = sorted({mpmath.mpf(0), end, *(k * step for k in range(1, 40) if k * step < end)})
    # mu - a = E[C - a]: the interior part plus the upper atom, all positive terms
    offset = mpmath.quad(lambda t: t * mpmath.npdf(a + t), nodes) + p_high * (b - a if mpmath.isfinite(b) else 0)
    var = mpmath.ncdf(a) * offset**2 + mpmath.quad(lambda t: (t - offset) ** 2 * mpmath.npdf(a + t), nodes)
    if mpmath.isfinite(b):
        var += p_high * (b - a - offset) ** 2
    return scale**2 * var


@pytest.mark.parametrize("case", [(0.0, 1.0, 8.0, INF), (0.0, 1.0, 30.0, INF), (0.0, 1.0, 30.0, 31.0), (0.0, 2.0, 20.0, 20.002),
                                  (0.0, 1.0, -INF, -30.0), (1.0, 2.0, 0.0, 3.0), (0.0, 1.0, -40.0, 39.0)])
def test_censored_variance_when_one_bound_holds_nearly_all_the_mass(case):
    """E[C^2] - E[C]^2 gave exactly 0 here (and a NaN gradient of the standard deviation)."""
    params = [t64(v, requires_grad=True) for v in case]
    d = CensoredNormal(*params)
    expected = mp_censored_variance(*case)
    assert d.variance.item() == pytest.approx(float(expected), rel=1e-10, abs=1e-300)
    assert d.stddev.item() == pytest.approx(float(mpmath.sqrt(expected)), rel=1e-10)
    grads = torch.autograd.grad(d.stddev, [p for p in params if torch.isfinite(p)])
    assert all(torch.isfinite(g) for g in grads)


