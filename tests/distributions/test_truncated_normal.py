"""TruncatedNormal against mpmath at 50 digits, scipy.stats.truncnorm, and its own identities."""

import math

import mpmath
import numpy as np
import pytest
import scipy.stats as ss
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from law_helpers import INF, t64, tn

from mathkit.distributions import TruncatedNormal

mpmath.mp.dps = 50


# ================================================================ mpmath oracle for TruncatedNormal
def mp_mass(a, b):
    """Phi(b) - Phi(a) at 50 digits, reflected so the endpoint probabilities are small."""
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    if a > 0:
        a, b = -b, -a
    return mpmath.ncdf(b) - mpmath.ncdf(a)


def mp_npdf(x):
    return mpmath.mpf(0) if mpmath.isinf(x) else mpmath.npdf(x)


def mp_times_npdf(x):
    return mpmath.mpf(0) if mpmath.isinf(x) else x * mpmath.npdf(x)


class MpTruncNorm:
    def __init__(self, loc, scale, low, high):
        self.loc, self.scale = mpmath.mpf(loc), mpmath.mpf(scale)
        self.a, self.b = (mpmath.mpf(low) - self.loc) / self.scale, (mpmath.mpf(high) - self.loc) / self.scale
        self.mass = mp_mass(self.a, self.b)

    def z(self, x):
        return (mpmath.mpf(x) - self.loc) / self.scale

    def log_prob(self, x):
        return mpmath.log(mpmath.npdf(self.z(x)) / (self.scale * self.mass))

    def log_cdf(self, x):
        return mpmath.log(mp_mass(self.a, self.z(x)) / self.mass)

    def log_sf(self, x):
        return mpmath.log(mp_mass(self.z(x), self.b) / self.mass)

    def mean(self):
        return self.loc + self.scale * (mp_npdf(self.a) - mp_npdf(self.b)) / self.mass

    def variance(self):
        r = (mp_npdf(self.a) - mp_npdf(self.b)) / self.mass
        return self.scale**2 * (1 + (mp_times_npdf(self.a) - mp_times_npdf(self.b)) / self.mass - r**2)

    def entropy(self):
        spread = (mp_times_npdf(self.a) - mp_times_npdf(self.b)) / self.mass
        return mpmath.log(mpmath.sqrt(2 * mpmath.pi * mpmath.e) * self.scale * self.mass) + spread / 2


# (loc, scale, low, high): the extreme cases of the issue plus ordinary ones
CASES = [
    (0.0, 1.0, 38.0, 40.0),
    (0.0, 1.0, -40.0, -39.0),
    (100.0, 1e-3, 100.0005, 100.0009),
    (0.0, 1.0, -INF, -38.0),
    (0.0, 1.0, 35.0, INF),
    (0.0, 1.0, -40.0, 40.0),
    (0.0, 1.0, -INF, INF),
    (2.0, 3.0, -1.0, 11.0),
    (-3.0, 0.5, 5.0, 5.5),
    (10.0, 4.0, 0.0, INF),
    (0.0, 1.0, 13.0, 15.0),
    (0.0, 2.0, -80.0, -79.0),
]


def points(loc, scale, low, high):
    lo = low if math.isfinite(low) else min(high, loc + 10 * scale) - 10 * scale
    hi = high if math.isfinite(high) else max(low, loc - 10 * scale) + 10 * scale
    return np.linspace(lo, hi, 9)[1:-1].tolist()


def worst_errors():
    """Worst absolute errors of log-quantities, and relative errors of moments, over CASES."""
    worst = dict(log_prob=0.0, log_cdf=0.0, log_sf=0.0, entropy=0.0, mean=0.0, variance=0.0)
    for case in CASES:
        d, ref = tn(*case), MpTruncNorm(*case)
        x = points(*case)
        for name in ("log_prob", "log_cdf", "log_sf"):
            got = getattr(d, name)(t64(x)).tolist()
            err = max(abs(g - float(getattr(ref, name)(v))) for g, v in zip(got, x))
            worst[name] = max(worst[name], err)
        worst["mean"] = max(worst["mean"], abs(d.mean.item() - float(ref.mean())) / abs(float(ref.mean()) or 1.0))
        worst["variance"] = max(worst["variance"], abs(d.variance.item() / float(ref.variance()) - 1))
        worst["entropy"] = max(worst["entropy"], abs(d.entropy().item() - float(ref.entropy())))
    return worst


def test_truncated_normal_matches_mpmath_within_40_standard_deviations():
    worst = worst_errors()
    print("worst errors vs mpmath (50 digits):", worst)
    assert max(worst[k] for k in ("log_prob", "log_cdf", "log_sf", "entropy")) < 1e-12, worst
    assert worst["mean"] < 1e-14 and worst["variance"] < 1e-12, worst


@pytest.mark.parametrize(
    "low, high", [(29.17703625200609, 29.177037727970895), (-36.485913334452846, -36.48591217442085),
                  (-1e-6, 1e-6), (-5.88163499916439, -5.881632570724897), (0.5, 0.9), (5.0, 5.3), (-0.4, 0.6)]
)
def test_short_intervals_keep_moments_and_density_exact(low, high):
    # the closed forms subtract nearly equal numbers here (a variance ~ width^2/12 out of O(1) terms)
    d, ref = tn(0.0, 1.0, low, high), MpTruncNorm(0.0, 1.0, low, high)
    assert d.mean.item() == pytest.approx(float(ref.mean()), rel=1e-14, abs=1e-15)
    assert d.variance.item() == pytest.approx(float(ref.variance()), rel=1e-13)
    assert d.entropy().item() == pytest.approx(float(ref.entropy()), abs=1e-12)
    mid = (low + high) / 2
    assert d.log_prob(t64(mid)).item() == pytest.approx(float(ref.log_prob(mid)), abs=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_icdf_brackets_the_50_digit_quantile(case):
    d, ref = tn(*case), MpTruncNorm(*case)
    loc, scale, low, high = case
    for q in (1e-300, 1e-12, 0.1, 0.5, 0.9, 1 - 1e-12):
        x = d.icdf(t64(q)).item()
        assert low <= x <= high
        # the true quantile lies within the rounding of loc + scale * z of x:
        # F(x - tol) <= q <= F(x + tol), with F at 50 digits
        tol = 1e-14 * (abs(loc) + scale * max(1.0, abs(x - loc) / scale))
        below, above = x - tol, x + tol
        log_q = mpmath.log(q)
        assert below <= low or ref.log_cdf(below) <= log_q, (q, x)
        assert above >= high or log_q <= ref.log_cdf(above), (q, x)


@pytest.mark.parametrize("low, high", [(-INF, -30.0), (-40.0, -30.0), (-INF, -10.0), (-INF, 0.0), (-35.0, 2.0)])
def test_icdf_at_tiny_q_on_lower_tails_matches_50_digits(low, high):
    # q * Z below float64's range (q = 1e-300 on (-inf, -30]) used to give -inf or low: the target
    # probability is now taken to log space too, not only a tiny mass
    d, ref = tn(0.0, 1.0, low, high), MpTruncNorm(0.0, 1.0, low, high)
    for q in (1e-300, 1e-200, 1e-150, 1e-100, 1e-20):
        log_target = mpmath.log(q) + mpmath.log(mp_mass(ref.a, ref.b))
        if math.isfinite(low):
            log_target = mpmath.log(mpmath.ncdf(ref.a) + mpmath.exp(log_target))
        want = max(low, float(mpmath.findroot(lambda z: mpmath.log(mpmath.ncdf(z)) - log_target, -20.0)))
        assert d.icdf(t64(q)).item() == pytest.approx(want, rel=1e-13), q


# ================================================================ scipy test-suite values
def test_scipy_truncnorm_tail_regressions():
    assert tn(0.0, 1.0, 13.0, 15.0).cdf(t64(14.0)).item() == pytest.approx(0.9999987259565643, rel=1e-14)
    assert tn(0.0, 1.0, 8.0, INF).cdf(t64(8.3)).item() == pytest.approx(0.9163220907327540, rel=1e-14)


@pytest.mark.parametrize("low, high", [(39.0, 40.0), (-40.0, -39.0)])
def test_scipy_medium_tail_values(low, high):
    d = tn(0.0, 1.0, low, high)
    pdf_near, pdf_far = 3.90256074e01, 2.73349092e-16
    pdf = d.log_prob(t64([low, high])).exp().tolist()
    expected = [pdf_near, pdf_far] if low > 0 else [pdf_far, pdf_near]
    assert pdf == pytest.approx(expected, rel=1e-8)
    assert d.icdf(t64([0.0, 0.5, 1.0])).tolist() == pytest.approx([low, math.copysign(39.01775731, low), high], abs=1e-8)
    mid = t64((low + high) / 2)
    small, big = (d.log_sf(mid), d.log_cdf(mid)) if low > 0 else (d.log_cdf(mid), d.log_sf(mid))
    assert small.exp().item() == pytest.approx(2.961048103554866e-09, rel=1e-12)
    assert big.exp().item() == pytest.approx(0.9999999970389126, rel=1e-15)
    # reflection: cdf(x; a, b) = sf(-x; -b, -a)
    x = t64(np.linspace(low, high, 11))
    mirrored = tn(0.0, 1.0, -high, -low)
    torch.testing.assert_close(d.log_cdf(x), mirrored.log_sf(-x), rtol=1e-13, atol=1e-300)


def test_scipy_logcdf_near_zero_gh17064():
    low, high = t64([-INF, -INF, -8.0, -INF, 10.0]), t64([INF, INF, 8.0, 10.0, INF])
    x = t64([10.0, 7.5, 7.5, 9.0, 20.0])
    expected = [-7.619853024160525e-24, -3.190891672910947e-14, -3.128682067168231e-14, -1.1285122074235991e-19, -3.61374964828753e-66]
    np.testing.assert_allclose(TruncatedNormal(t64(0.0), t64(1.0), low, high).log_cdf(x).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(TruncatedNormal(t64(0.0), t64(1.0), -high, -low).log_sf(-x).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "a, b, mean, var",
    [(-30, 30, 0.0, 1.0), (-3, 3, 0.0, 0.9733369246625415), (0, INF, 0.7978845608028654, 0.3633802276324187),
     (-INF, 0, -0.7978845608028654, 0.3633802276324187), (-1, 3, 0.282786110727154, 0.6161417353578293),
     (-10, -9, -9.108456288012409, 0.011448805821636248)],
)
def test_scipy_moment_table(a, b, mean, var):
    d = tn(0.0, 1.0, float(a), float(b))
    assert d.mean.item() == pytest.approx(mean, rel=1e-13, abs=1e-15)
    assert d.variance.item() == pytest.approx(var, rel=1e-12)


def test_matches_scipy_truncnorm_on_random_parameters():
    rng = np.random.default_rng(1)
    n = 500
    loc, scale = rng.normal(0, 5, n), rng.uniform(0.1, 3, n)
    ends = np.sort(rng.normal(0, 20, (n, 2)), axis=1)
    low, high = ends[:, 0], ends[:, 1]
    x = low + rng.uniform(0, 1, n) * (high - low)
    a, b = (low - loc) / scale, (high - loc) / scale
    d = TruncatedNormal(*(torch.from_numpy(v) for v in (loc, scale, low, high)))
    ref = ss.truncnorm(a, b, loc=loc, scale=scale)
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(d.log_prob(xt).numpy(), ref.logpdf(x), rtol=1e-11)
    np.testing.assert_allclose(d.log_cdf(xt).numpy(), ref.logcdf(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d.mean.numpy(), ref.mean(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_samples_stay_in_the_support_and_cdf_inverts_icdf(case):
    torch.manual_seed(0)
    d = tn(*case)
    s = d.sample((2000,))
    assert bool(((s >= case[2]) & (s <= case[3])).all())
    q = t64(np.linspace(0.01, 0.99, 25))
    x = d.icdf(q)
    # up to the rounding of x = loc + scale * z: (density) * (a few ulp of |x|, |loc|, |scale z|)
    loc = case[0]
    spread = x.abs() + abs(loc) + (x - loc).abs()
    tol = (d.log_prob(x).exp() * spread).max().item() * 4e-16 + 1e-14
    torch.testing.assert_close(d.cdf(x), q, rtol=0, atol=tol)


def test_cdf_derivative_is_the_density():
    d = tn(1.0, 2.0, -3.0, 8.0)
    x = t64(np.linspace(-2.9, 7.9, 30), requires_grad=True)
    (grad,) = torch.autograd.grad(d.cdf(x).sum(), x)
    torch.testing.assert_close(grad, d.log_prob(x.detach()).exp(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", [(0.0, 1.0, -1.0, 2.0), (3.0, 2.0, 0.0, INF), (0.0, 1.0, 38.0, 40.0)])
def test_entropy_against_monte_carlo(case):
    torch.manual_seed(1)
    d = tn(*case)
    s = d.sample((200_000,))
    lp = -d.log_prob(s)
    assert abs(d.entropy().item() - lp.mean().item()) < 4 * lp.std().item() / math.sqrt(len(s)) + 1e-12


def test_gradcheck_log_prob_and_rsample():
    params = [t64(v, requires_grad=True) for v in (0.3, 1.7, -1.0, 2.5)]
    x = t64([-0.5, 0.0, 1.9], requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, s, lo, hi, v: TruncatedNormal(m, s, lo, hi).log_prob(v), (*params, x))

    def draw(m, s, lo, hi):
        torch.manual_seed(3)
        return TruncatedNormal(m, s, lo, hi).rsample((5,))

    assert torch.autograd.gradcheck(draw, params)
    far = [t64(v, requires_grad=True) for v in (0.0, 1.0, 38.0, 40.0)]
    assert torch.autograd.gradcheck(draw, far)


def test_gradients_are_finite_with_infinite_bounds():
    # with a short interval in the batch too, whose moments take the quadrature route
    loc, scale = t64([0.0, 1.0, -2.0, 0.0], requires_grad=True), t64([1.0, 2.0, 0.5, 1.0], requires_grad=True)
    low, high = t64([-INF, 0.0, -INF, 20.0], requires_grad=True), t64([INF, INF, -30.0, 20.001], requires_grad=True)
    d = TruncatedNormal(loc, scale, low, high)
    torch.manual_seed(0)
    s = d.rsample((3,))
    total = d.log_prob(s.detach()).sum() + d.log_cdf(s.detach()).sum() + d.log_sf(s.detach()).sum()
    total = total + s.sum() + d.mean.sum() + d.variance.sum() + d.entropy().sum()
    total.backward()
    for p in (loc, scale, low, high):
        assert torch.isfinite(p.grad).all(), p.grad
    assert low.grad[0] == 0 and high.grad[0] == 0


def test_rsample_gradient_matches_the_implicit_reparameterisation():
    # dx/dtheta = -(dF/dtheta)/(dF/dx) at fixed u: an independent route to the same gradient
    torch.manual_seed(5)
    params = [t64(v, requires_grad=True) for v in (0.5, 1.5, -1.0, 3.0)]
    d = TruncatedNormal(*params)
    x = d.rsample((6,))
    grads = torch.autograd.grad(x.sum(), params)
    x0 = x.detach().requires_grad_(True)
    cdf = TruncatedNormal(*params).cdf(x0)
    for i in range(6):
        dF = torch.autograd.grad(cdf[i], [*params, x0], retain_graph=True)
        implicit = [-g / dF[-1][i] for g in dF[:-1]]
        if i == 0:
            expected = implicit
        else:
            expected = [e + g for e, g in zip(expected, implicit)]
    for g, e in zip(grads, expected):
        assert g.item() == pytest.approx(e.item(), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("case", [(0.0, 1.0, -1.0, 2.0), (0.0, 1.0, 3.0, INF), (0.0, 1.0, 38.0, 40.0), (5.0, 2.0, -INF, -3.0)])
def test_two_sample_ks_against_scipy_sampler(case):
    torch.manual_seed(2)
    loc, scale, low, high = case
    ours = tn(*case).sample((20_000,)).numpy()
    theirs = ss.truncnorm.rvs((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale, size=20_000,
                              random_state=np.random.default_rng(2))
    assert ss.ks_2samp(ours, theirs).pvalue > 1e-3


@pytest.mark.parametrize("a, b", [(3.0, INF), (5.0, 5.01), (8.0, INF), (9.0, 9.05), (-12.0, -10.0), (-INF, -8.5),
                                  (20.0, 20.001), (37.9, 38.3)])
def test_samples_near_and_far_match_the_cdf(a, b):
    """`sample` inverts the cdf for near intervals and uses Robert's exponential rejection from
    8 sd out; either way the draws, mapped through scipy's cdf, must be uniform (one-sample KS,
    200,000 draws)."""
    torch.manual_seed(4)
    draws = tn(0.0, 1.0, a, b).sample((200_000,)).numpy()
    assert draws.min() >= a and draws.max() <= b
    u = ss.truncnorm.cdf(draws, a, b)
    assert ss.kstest(u, "uniform").pvalue > 1e-3


def test_near_tails_drawn_by_rejection_in_a_batch_with_far_ones_match_the_cdf():
    """A far interval in the batch sends the near-tail ones (3 to 8 sd out, either side, one- or
    two-sided) to rejection as well: every column's draws, mapped through scipy's cdf, are uniform
    (one-sample KS, 100,000 draws each), and central ones, still inverted, too."""
    a = np.array([3.5, 5.0, -6.0, -INF, 0.5, -1.0, 10.0, 3.0])
    b = np.array([INF, 5.5, -4.0, -3.2, 2.0, INF, INF, 3.001])
    torch.manual_seed(8)
    draws = tn(0.0, 1.0, a, b).sample((100_000,)).numpy()
    for j in range(len(a)):
        assert a[j] <= draws[:, j].min() and draws[:, j].max() <= b[j]
        assert ss.kstest(ss.truncnorm.cdf(draws[:, j], a[j], b[j]), "uniform").pvalue > 1e-3, (a[j], b[j])


def _random_laws(n, seed):
    rng = np.random.default_rng(seed)
    loc, scale = rng.normal(0.0, 5.0, n), rng.uniform(0.2, 3.0, n)
    a = rng.uniform(-6.0, 6.0, n)
    b = a + rng.exponential(2.0, n)
    a[rng.uniform(size=n) < 0.2] = -INF
    b[rng.uniform(size=n) < 0.2] = INF
    x = ss.truncnorm.rvs(a, b, random_state=rng) * scale + loc
    return loc, scale, a, b, x


def test_long_batches_without_gradients_match_scipy_and_the_gradient_path():
    """Over 2^17 elements and without gradients, log_prob/log_cdf/log_sf run slice by slice
    (one pass, no n-sized intermediates); they must agree with scipy and with the autograd
    path taken when the parameters require gradients."""
    loc, scale, a, b, x = _random_laws(300_000, seed=5)
    params = [t64(v) for v in (loc, scale, loc + scale * a, loc + scale * b)]
    xt = t64(x)
    for name, ref in [("log_prob", ss.truncnorm.logpdf), ("log_cdf", ss.truncnorm.logcdf), ("log_sf", ss.truncnorm.logsf)]:
        fused = getattr(TruncatedNormal(*params), name)(xt)
        cached = getattr(TruncatedNormal(*(p.clone().requires_grad_(True) for p in params)), name)(xt).detach()
        expected = ref(x, a, b, loc=loc, scale=scale)
        np.testing.assert_allclose(fused.numpy(), expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(fused.numpy(), cached.numpy(), rtol=1e-13, atol=1e-13)


def test_float32_moderate_tails():
    d = TruncatedNormal(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5]), torch.tensor([-2.0, 4.0]), torch.tensor([INF, 6.0]))
    x = torch.tensor([0.3, 4.2])
    ref = ss.truncnorm([-2.0, 6.0], [INF, 10.0], loc=[0.0, 1.0], scale=[1.0, 0.5])
    assert d.log_prob(x).dtype == torch.float32 and d.sample((10,)).dtype == torch.float32
    np.testing.assert_allclose(d.log_prob(x).numpy(), ref.logpdf(x.numpy()), rtol=1e-6)
    np.testing.assert_allclose(d.log_sf(x).numpy(), ref.logsf(x.numpy()), rtol=1e-6)
    np.testing.assert_allclose(d.mean.numpy(), ref.mean(), rtol=1e-6)
    s = d.sample((1000,))
    assert bool(d.support.check(s).all())


# ================================================================ property-based
bound = st.floats(min_value=-40.0, max_value=40.0)


@settings(max_examples=60, deadline=None)
@given(st.floats(-5, 5), st.floats(0.05, 5), bound, st.floats(1e-3, 30.0), st.booleans(), st.booleans())
def test_properties_monotone_cdf_finite_gradients_samples_inside(loc, scale, a, width, lower_inf, upper_inf):
    low = -INF if lower_inf else loc + scale * a
    high = INF if upper_inf else loc + scale * (a + width)
    params = [t64(v, requires_grad=True) for v in (loc, scale, low, high)]
    d = TruncatedNormal(*params)
    x = d.icdf(t64(np.linspace(0.0, 1.0, 21)))
    cdf = d.cdf(x.detach())
    assert bool((torch.diff(cdf) >= -1e-12).all())
    torch.manual_seed(0)
    s = d.rsample((50,))
    assert bool(((s >= low) & (s <= high)).all())
    total = d.log_prob(s.detach()).sum() + s.sum() + d.mean + d.entropy()
    total.backward()
    assert all(torch.isfinite(p.grad) for p in params)


def mp_truncnorm_icdf(q, loc, scale, low, high):
    """x with F(x) = q for N(loc, scale^2) on [low, high], at the working precision of mpmath."""
    loc, scale = mpmath.mpf(loc), mpmath.mpf(scale)
    a, b = (mpmath.mpf(low) - loc) / scale, (mpmath.mpf(high) - loc) / scale
    p = mpmath.ncdf(a) + mpmath.mpf(q) * (mpmath.ncdf(b) - mpmath.ncdf(a))
    return loc + scale * mpmath.sqrt(2) * mpmath.erfinv(2 * p - 1)


@pytest.mark.parametrize("case", [(-1.0, 0.5, -2.0, 0.0, 0.3), (0.0, 1.0, -1e-3, 1e-3, 0.3), (0.0, 1.0, -1e-3, 1e-3, 0.5),
                                  (2.0, 3.0, -1.0, 5.0, 0.9), (0.0, 1.0, 3.0, 5.0, 0.2), (0.0, 1.0, -1.0, 1.0, 0.5)])
def test_icdf_gradients_match_50_digit_finite_differences(case):
    """Intervals centred on loc used to get d/dloc = 1 (a tie in the case split halved each bound's share)."""
    params = [t64(v, requires_grad=True) for v in case]
    x = TruncatedNormal(*params[:4]).icdf(params[4])
    grads = torch.autograd.grad(x, params)
    with mpmath.workdps(60):
        h = mpmath.mpf(10) ** -25
        for i, g in enumerate(grads):
            up, down = [mpmath.mpf(v) for v in case], [mpmath.mpf(v) for v in case]
            up[i] += h
            down[i] -= h
            fd = (mp_truncnorm_icdf(up[4], *up[:4]) - mp_truncnorm_icdf(down[4], *down[:4])) / (2 * h)
            assert g.item() == pytest.approx(float(fd), rel=1e-9, abs=1e-12), (i, g.item(), float(fd))
    if case[2] == -1e-3:  # a narrow interval around loc: the quantile barely moves with loc
        assert abs(grads[0].item()) < 1e-6

