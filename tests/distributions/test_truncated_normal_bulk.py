"""The bulk branches of TruncatedNormal (masses as differences of erf values, draws by erfinv) and
their switch points: values against mpmath at 50 digits on both sides of every switch, gradients
against finite differences there, and draws that depend on the seed only."""

import math

import mpmath
import numpy as np
import pytest
import scipy.stats as ss
import torch

from law_helpers import F64, INF, t64, tn

from mathkit._standard_normal import BULK
from mathkit.distributions import TruncatedNormal
from mathkit.distributions._truncated_standard_draws import REJECTION_NEEDED, standard_draw_value

mpmath.mp.dps = 50

# the bound c with 2 Phi(-c) = BULK: one-sided intervals [c, inf) are in the bulk just below c
C_BULK = float(-mpmath.sqrt(2) * mpmath.erfinv(BULK - 1))


def mp_mass(a, b):
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    if a > 0:
        a, b = -b, -a
    return mpmath.ncdf(b) - mpmath.ncdf(a)


def mp_log_prob(a, b, z):
    return float(-mpmath.mpf(z) ** 2 / 2 - mpmath.log(mpmath.sqrt(2 * mpmath.pi)) - mpmath.log(mp_mass(a, b)))


def mp_log_cdf(a, b, z, upper=False):
    part = mp_mass(z, b) if upper else mp_mass(a, z)
    return float(mpmath.log(part / mp_mass(a, b)))


# one-sided and two-sided standard intervals whose mass is just above or below the bulk threshold,
# central ones, and a narrow one far out (all four kinds on each side of 0)
SWITCH_INTERVALS = [
    (C_BULK - 1e-3, INF), (C_BULK + 1e-3, INF), (C_BULK - 0.3, INF), (C_BULK + 0.3, INF),
    (-INF, -C_BULK + 1e-3), (-INF, -C_BULK - 1e-3),
    (-0.0098, 0.0098), (-0.0099, 0.0099), (0.5, 0.54), (0.5, 0.52),
    (-2.0, 2.0), (-INF, INF), (-1.0, INF), (3.0, 3.5), (30.0, 30.5),
]


@pytest.mark.parametrize("a, b", SWITCH_INTERVALS)
def test_log_prob_and_log_cdf_match_mpmath_on_both_sides_of_the_bulk_threshold(a, b):
    """Standard form, loc 0 and scale 1: values spread over the interval, including points whose
    mass to the near bound is just above and below the threshold (the log-cdf's own switch)."""
    lo = a if math.isfinite(a) else min(b, 6.0) - 8.0
    hi = b if math.isfinite(b) else max(a, -6.0) + 8.0
    mass = float(mp_mass(a, b))
    inner = []  # the points with mass BULK/2 * (1 +- 1e-3) to the lower bound, where it fits
    for target in (0.5 * BULK * (1 - 1e-3), 0.5 * BULK * (1 + 1e-3)):
        if target < 0.5 * mass:
            inner.append(float(mpmath.findroot(lambda x: mp_mass(a if math.isfinite(a) else -mpmath.inf, x) - target,
                                               lo + 0.01 * (hi - lo))))
    xs = sorted([*np.linspace(lo, hi, 11)[1:-1], *inner])
    d = tn(0.0, 1.0, a, b)
    x = t64(xs)
    for name, ref in [("log_prob", lambda v: mp_log_prob(a, b, v)), ("log_cdf", lambda v: mp_log_cdf(a, b, v)),
                      ("log_sf", lambda v: mp_log_cdf(a, b, v, upper=True))]:
        got = getattr(d, name)(x).tolist()
        for v, g in zip(xs, got):
            want = ref(v)
            assert abs(g - want) <= 1e-13 * max(1.0, abs(want)), (name, a, b, v, g, want)


def test_bulk_and_careful_entries_in_one_long_batch_match_scipy_and_the_gradient_path():
    """A batch longer than one slice, mixing bulk and non-bulk laws element by element (per-element
    loc and scale): values agree with scipy, and the no-gradient path with the autograd path."""
    rng = np.random.default_rng(11)
    n = 150_000
    a = rng.choice([-3.0, 0.0, C_BULK - 0.01, C_BULK + 0.01, 6.0, -40.0], n) + rng.uniform(0, 1e-3, n)
    b = a + rng.choice([0.02, 1.0, INF], n)
    loc, scale = rng.normal(0, 3, n), rng.uniform(0.5, 2.0, n)
    x = loc + scale * ss.truncnorm.rvs(a, b, random_state=rng)
    params = [t64(v) for v in (loc, scale, loc + scale * a, loc + scale * b)]
    for name, ref in [("log_prob", ss.truncnorm.logpdf), ("log_cdf", ss.truncnorm.logcdf)]:
        plain = getattr(TruncatedNormal(*params), name)(t64(x))
        graded = getattr(TruncatedNormal(*(p.clone().requires_grad_(True) for p in params)), name)(t64(x)).detach()
        np.testing.assert_allclose(plain.numpy(), ref(x, a, b, loc=loc, scale=scale), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(plain.numpy(), graded.numpy(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("tail_share", [0.0, 0.3, 0.7, 0.97])
def test_an_entry_does_not_depend_on_the_rest_of_the_batch(tail_share):
    """The same 64 laws and values (bulk and tail ones) give bit-identical log_prob, log_cdf and
    log_sf alone and inside a batch of 200,000 (more than one slice) in which a share of far-tail
    laws decides which branch the batch takes (mostly in the bulk, or mostly outside it)."""
    rng = np.random.default_rng(5)
    k, n = 64, 200_000
    a = np.concatenate([rng.uniform(-3, 1, k // 2), rng.uniform(3, 30, k // 2)])
    b = a + rng.choice([0.05, 1.0, INF], k)
    z = a + np.minimum(b - a, 1.0) * rng.uniform(0.01, 0.99, k)
    others = rng.uniform(size=n) < tail_share
    a_all = np.where(others, rng.uniform(10, 38, n), rng.uniform(-3, 0, n))
    b_all = a_all + rng.exponential(1.0, n)
    z_all = a_all + (b_all - a_all) * rng.uniform(0.01, 0.99, n)
    at = rng.choice(n, k, replace=False)
    a_all[at], b_all[at], z_all[at] = a, b, z
    for name in ("log_prob", "log_cdf", "log_sf"):
        alone = getattr(TruncatedNormal(0.0, 1.0, t64(a), t64(b)), name)(t64(z))
        batch = getattr(TruncatedNormal(0.0, 1.0, t64(a_all), t64(b_all)), name)(t64(z_all))
        assert torch.equal(batch[torch.from_numpy(at)], alone), name


@pytest.mark.parametrize("a, b", [(C_BULK - 1e-3, INF), (C_BULK + 1e-3, INF), (-0.0098, 0.0098), (-0.0099, 0.0099),
                                  (2.95, 3.05), (-1.0, INF)])
def test_gradients_match_finite_differences_at_the_switch_points(a, b):
    params = [t64(v, requires_grad=True) for v in (0.2, 1.3, 0.2 + 1.3 * a, 0.2 + 1.3 * b)]
    lo = a if math.isfinite(a) else min(b, 3.0) - 3.0
    hi = b if math.isfinite(b) else max(a, -3.0) + 3.0
    x = t64(0.2 + 1.3 * np.linspace(lo, hi, 5)[1:-1], requires_grad=True)
    for name in ("log_prob", "log_cdf", "log_sf"):
        assert torch.autograd.gradcheck(lambda m, s, l, h, v: getattr(TruncatedNormal(m, s, l, h), name)(v), (*params, x))

    def draw(m, s, l, h):
        torch.manual_seed(8)
        return TruncatedNormal(m, s, l, h).rsample((64,))

    assert torch.autograd.gradcheck(draw, params)


# intervals whose draws fall on both sides of the erfinv switch (|z| = 3), or wholly on one side
DRAW_INTERVALS = [(-INF, INF), (0.0, INF), (-4.0, 4.0), (2.9, 3.1), (-3.1, -2.9), (-2.0, 2.5), (3.0, 3.5),
                  (-INF, -5.0), (7.9, 8.2), (36.0, 37.0)]


@pytest.mark.parametrize("a, b", DRAW_INTERVALS)
def test_draws_invert_the_cdf_to_mpmath_precision(a, b):
    """standard_draw_value(a, b, u) is the z with Phi(z) = (1-u) Phi(a) + u Phi(b), checked at 50 digits
    for uniforms spread over (0, 1), near its ends, and at the values that put z at +-3."""
    u = [2.0**-53, 1e-9, 1e-4, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-4, 1 - 2.0**-40]
    pa, pb = (mpmath.ncdf(v) for v in (a, b))
    for edge in (-3.0, 3.0):
        if not a < edge < b:
            continue
        w = (mpmath.ncdf(edge) - pa) / (pb - pa)
        if 0 < w < 1:
            u += [float(w) * (1 - 1e-12), float(w) * (1 + 1e-12)]
    z = standard_draw_value(t64([a] * len(u)), t64([b] * len(u)), t64(u)).tolist()
    for ui, zi in zip(u, z):
        w = mpmath.mpf(ui)
        # Phi(z) and Phi(-z), each a sum of positive terms; invert the smaller
        lower = (1 - w) * mpmath.ncdf(a) + w * mpmath.ncdf(b)
        upper = (1 - w) * mpmath.ncdf(-a) + w * mpmath.ncdf(-b)
        ref = float(mp_lower_quantile(lower) if lower < upper else -mp_lower_quantile(upper))
        assert a - 1e-13 <= zi <= b + 1e-13  # (the law clamps against this last rounding)
        assert abs(zi - ref) <= 1e-13 * max(1.0, abs(ref)), (a, b, ui, zi, ref)


def mp_lower_quantile(p):
    """The x <= 0 with Phi(x) = p <= 1/2, at 50 digits, however small p (Newton on log Phi)."""
    x = mpmath.mpf(ss.norm.ppf(float(p))) if float(p) > 0 else -mpmath.sqrt(-2 * mpmath.log(p))
    return mpmath.findroot(lambda t: mpmath.log(mpmath.ncdf(t)) - mpmath.log(p), x)


def test_sample_without_gradients_equals_rsample_with_them_inside_the_rejection_bound():
    """Both paths invert the cdf at the same uniforms (drawn first, one per element) in a batch with
    no interval REJECTION_NEEDED out (near tails included), so the same seed gives the same draws,
    with or without gradients."""
    a = np.array([-INF, 0.0, -4.0, 2.9, -3.1, 3.0, -INF, REJECTION_NEEDED - 0.5])
    b = np.array([INF, INF, 4.0, 3.1, -2.9, 3.5, -5.0, REJECTION_NEEDED])
    loc, scale = np.linspace(-2, 2, len(a)), np.linspace(0.5, 3, len(a))
    params = [t64(v) for v in (loc, scale, loc + scale * a, loc + scale * b)]
    torch.manual_seed(21)
    plain = TruncatedNormal(*params).sample((3000,))
    torch.manual_seed(21)
    graded = TruncatedNormal(*(p.clone().requires_grad_(True) for p in params)).rsample((3000,)).detach()
    np.testing.assert_allclose(plain.numpy(), graded.numpy(), rtol=1e-15, atol=0)


def test_draws_depend_on_the_seed_only():
    """A batch over several slices with every branch (erfinv, careful inversion, rejection on both
    sides): the same seed gives the same draws whatever was computed or drawn in between."""
    rng = np.random.default_rng(4)
    n = 300_000
    intervals = np.array([(-INF, -1.9), (-2.0, 0.0), (-INF, INF), (0.5, INF), (4.0, 4.1), (12.0, INF), (-30.5, -30.0)])
    a, b = intervals[rng.integers(0, len(intervals), n)].T
    d = TruncatedNormal(*(t64(v) for v in (np.zeros(n), np.ones(n), a, b)))
    torch.manual_seed(9)
    first = d.sample()
    d.log_prob(first), d.cdf(first), d.mean, tn(0.0, 1.0, 40.0, INF).sample((1000,))
    TruncatedNormal(t64([0.0]), t64([1.0]), t64([-1.0]), t64([1.0])).sample((12345,))
    torch.manual_seed(9)
    again = d.sample()
    assert torch.equal(first, again)
    assert ((first >= d.low) & (first <= d.high)).all()
    for lo, hi in intervals:
        mask = torch.from_numpy((a == lo) & (b == hi))
        u = ss.truncnorm.cdf(first[mask].numpy(), lo, hi)
        assert ss.kstest(u, "uniform").pvalue > 1e-4, (lo, hi)


def test_parameter_screens_agree_with_the_elementwise_checks():
    """The one-reduction screens of the constraints say "valid" exactly when every element passes."""
    from mathkit.distributions._constraints import finite_positive, finite_real

    cases = [t64([0.0, 1.0]), t64([-1.0, 2.0]), t64([1.0, math.nan]), t64([1.0, INF]), t64([-INF, 1.0]),
             t64([0.0]), t64([1e-320, 1e308]), torch.empty(0, dtype=F64), torch.tensor([[1.0, -0.0], [2.0, 3.0]])]
    for c in (finite_real, finite_positive):
        for v in cases:
            assert c.holds_everywhere(v) == bool(c.check(v).all()), (c, v)
