"""mathkit.numerics against mpmath at 50 digits and scipy.special, far into the tails."""

import math

import mpmath
import numpy as np
import pytest
import scipy.special as sc
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mathkit.numerics import log1mexp, log_diff_exp, log_ndtr, log_normal_mass, log_normal_pdf, ndtri_exp

mpmath.mp.dps = 50
INF = math.inf
F64 = torch.float64

# |x| up to 40 standard deviations plus a few far beyond (mpmath is exact there too).
X_GRID = sorted({*np.linspace(-40, 40, 161).tolist(), -1e5, -1e3, -200.0, -38.5, -1e-8, 1e-8, 8.3, 13.0})


def t64(values, requires_grad=False):
    return torch.tensor(values, dtype=F64, requires_grad=requires_grad)


def mp_log_ndtr(x):
    # log1p of the upper tail keeps log Phi(x) ~ -Phi(-x) exact for large x at 50 digits
    return mpmath.log(mpmath.ncdf(x)) if x < 0 else mpmath.log1p(-mpmath.ncdf(-x))


def mp_inverse_mills(x):
    return mpmath.npdf(x) / mpmath.exp(mp_log_ndtr(x))


def mp_log_mass(a, b):
    # Reflect to the side where the endpoint probabilities are small, so 50 digits suffice.
    if a > 0:
        a, b = -b, -a
    return mpmath.log(mpmath.ncdf(b) - mpmath.ncdf(a))


def rel_err(got, ref):
    got = np.asarray(got, dtype=float)
    ref = np.asarray([float(r) for r in ref])
    return np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)


# ---------------------------------------------------------------- log_ndtr
def test_log_ndtr_values_match_mpmath():
    got = log_ndtr(t64(X_GRID)).numpy()
    err = rel_err(got, [mp_log_ndtr(x) for x in X_GRID])
    # log Phi(x) ~ -exp(-x^2/2)/... for large x has condition number ~x^2 in x;
    # 3e-13 is eps * 40^2, the floor that rounding x*x alone imposes.
    assert err.max() < 3e-13, (X_GRID[err.argmax()], err.max())


def test_log_ndtr_matches_scipy():
    x = np.linspace(-50, 37, 1741)  # beyond 37 scipy rounds subnormal results to 0
    np.testing.assert_allclose(log_ndtr(torch.from_numpy(x)).numpy(), sc.log_ndtr(x), rtol=3e-13, atol=0)


def test_log_ndtr_gradient_matches_mpmath_in_both_tails():
    x = t64(X_GRID, requires_grad=True)
    log_ndtr(x).sum().backward()
    err = rel_err(x.grad.numpy(), [mp_inverse_mills(v) for v in X_GRID])
    # the upper tail gradient underflows to subnormals beyond x ~ 37; compare where it is normal
    normal = np.abs([float(mp_inverse_mills(v)) for v in X_GRID]) > 1e-300
    assert err[normal].max() < 1e-13


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_log_ndtr_gradient_is_finite_far_in_the_lower_tail(dtype):
    # torch's own backward gives inf (float64) or 0 (float32) here; the truth is ~ -x.
    x = torch.tensor([-1e10, -1e20, -1e30], dtype=dtype, requires_grad=True)
    log_ndtr(x).sum().backward()
    torch.testing.assert_close(x.grad, -x.detach(), rtol=1e-6, atol=0)


def test_log_ndtr_float32_keeps_relative_accuracy_in_the_upper_tail():
    x = [3.0, 7.0, 9.0, 12.0, -10.0, -30.0]
    got = log_ndtr(torch.tensor(x, dtype=torch.float32))
    assert got.dtype == torch.float32
    assert rel_err(got.numpy(), [mp_log_ndtr(v) for v in x]).max() < 2e-7


def test_log_ndtr_limits_and_gradcheck():
    out = log_ndtr(t64([-INF, INF]))
    assert out[0] == -INF and out[1] == 0
    assert torch.autograd.gradcheck(log_ndtr, (t64([-30.0, -3.0, 0.5, 6.0], requires_grad=True),))


# ---------------------------------------------------------------- log1mexp
def test_log1mexp_matches_mpmath_on_both_sides_of_the_switch():
    x = [-1e-300, -1e-20, -1e-10, -0.1, -0.6931, -math.log(2), -0.6932, -1.0, -10.0, -40.0, -700.0, -1e4]
    got = log1mexp(t64(x))
    err = rel_err(got.numpy(), [mpmath.log(-mpmath.expm1(v)) if v > -1 else mpmath.log1p(-mpmath.exp(v)) for v in x])
    assert err.max() < 1e-15


def test_log1mexp_gradient_and_limits():
    x = t64([-1e-10, -0.5, -0.7, -5.0, -800.0], requires_grad=True)
    log1mexp(x).sum().backward()
    ref = [-1 / mpmath.expm1(-v) for v in x.detach().tolist()]
    assert rel_err(x.grad.numpy(), ref).max() < 1e-14
    assert log1mexp(0.0).item() == -INF and log1mexp(-INF).item() == 0.0
    assert torch.autograd.gradcheck(log1mexp, (t64([-1e-3, -0.6, -0.8, -20.0], requires_grad=True),))


def test_log1mexp_rejects_positive_input():
    with pytest.raises(ValueError, match="x <= 0"):
        log1mexp(t64([-1.0, 1e-300]))


# ---------------------------------------------------------------- log_diff_exp
def test_log_diff_exp_matches_mpmath():
    pairs = [(0.0, -1e-12), (-700.0, -700.5), (-800.0, -1e4), (5.0, 4.9999), (1e3, 10.0), (-3.0, -INF)]
    got = log_diff_exp(t64([p[0] for p in pairs]), t64([p[1] for p in pairs]))
    ref = [mpmath.log(mpmath.exp(a) - mpmath.exp(b)) for a, b in pairs]
    assert rel_err(got.numpy(), ref).max() < 1e-14


def test_log_diff_exp_edges_and_gradients():
    a = t64([-2.0, -INF, 1.0, -1.0], requires_grad=True)
    b = t64([-2.0, -INF, -INF, -3.0], requires_grad=True)
    out = log_diff_exp(a, b)
    assert out[0] == -INF and out[1] == -INF and out[2] == 1.0
    # the -inf entries masked out downstream must not poison the gradient with NaN
    torch.where(torch.isfinite(out), out, 0.0).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert a.grad[2] == 1.0 and b.grad[2] == 0.0
    # d/da log(e^a - e^b) = e^a / (e^a - e^b)
    assert a.grad[3].item() == pytest.approx(1 / (1 - math.exp(-2.0)), rel=1e-14)


def test_log_diff_exp_rejects_a_below_b():
    with pytest.raises(ValueError, match="a >= b"):
        log_diff_exp(t64([0.0, 1.0]), 0.5)


# ---------------------------------------------------------------- ndtri_exp
Y_GRID = [-1e5, -2000.0, -800.0, -745.0, -700.1, -699.9, -100.0, -10.0, -2.0, -0.7, -0.5, -0.1, -1e-5, -1e-12, -1e-20]


def mp_ndtri_exp(y):
    # Solve log Phi(x) = y at 50 digits from scipy's estimate (or an asymptotic start).
    start = sc.ndtri_exp(y) if y > -1e4 else -math.sqrt(-2 * y - math.log(-2 * y))
    return mpmath.findroot(lambda x: mp_log_ndtr(x) - y, mpmath.mpf(start), tol=1e-45)


def test_ndtri_exp_matches_mpmath_and_beats_or_equals_scipy():
    got = ndtri_exp(t64(Y_GRID)).numpy()
    ref = [mp_ndtri_exp(y) for y in Y_GRID]
    ours, scipys = rel_err(got, ref), rel_err(sc.ndtri_exp(np.array(Y_GRID)), ref)
    assert ours.max() < 1e-14, (Y_GRID[ours.argmax()], ours.max())
    assert ours.max() <= scipys.max() + 1e-15


def test_ndtri_exp_matches_scipy_on_a_dense_grid():
    y = -np.logspace(-30, 4, 3001)
    np.testing.assert_allclose(ndtri_exp(torch.from_numpy(y)).numpy(), sc.ndtri_exp(y), rtol=1e-12, atol=0)


def test_ndtri_exp_limits_gradient_and_float32():
    assert ndtri_exp(t64([0.0, -INF])).tolist() == [INF, -INF]
    y = t64([-1e4, -50.0, -0.3, -1e-9], requires_grad=True)
    x = ndtri_exp(y)
    x.sum().backward()
    ref = [1 / mp_inverse_mills(v) for v in x.detach().tolist()]
    assert rel_err(y.grad.numpy(), ref).max() < 1e-12
    assert torch.autograd.gradcheck(ndtri_exp, (t64([-300.0, -4.0, -0.2], requires_grad=True),))
    y32 = ndtri_exp(torch.tensor([-800.0, -3.0, -1e-6]))
    assert y32.dtype == torch.float32
    assert rel_err(y32.numpy(), [mp_ndtri_exp(v) for v in (-800.0, -3.0, -1e-6)]).max() < 1e-6


def test_ndtri_exp_rejects_positive_input():
    with pytest.raises(ValueError, match="y <= 0"):
        ndtri_exp(0.1)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-1e6, max_value=-1e-300))
def test_ndtri_exp_inverts_log_ndtr(y):
    x = ndtri_exp(t64(y))
    # the round trip is as good as log_ndtr's conditioning (~x^2 eps) allows
    assert abs(log_ndtr(x).item() - y) <= 1e-12 * abs(y) + 1e-300


# ---------------------------------------------------------------- log_normal_mass
MASS_CASES = [
    (-INF, INF), (-INF, 0.0), (0.0, INF), (-INF, -40.0), (40.0, INF), (-INF, 40.0), (-40.0, INF),
    (38.0, 40.0), (-40.0, -39.0), (39.0, 40.0), (0.5, 0.9), (-1.0, 1.0), (-1e-9, 2e-9), (-40.0, 40.0),
    (-3.0, 35.0), (5.0, 5.5), (-20.0, -19.999), (1e-10, 3e-10), (-0.3, 1e-12), (10.0, 10.0 + 1e-3),
    # short intervals far out, where differences of tail probabilities cancel (quadrature)
    (29.17703625200609, 29.177037727970895), (-36.485913334452846, -36.48591217442085), (-3.0, -3.0 + 1e-9),
]


def test_log_normal_mass_matches_mpmath():
    a, b = t64([c[0] for c in MASS_CASES]), t64([c[1] for c in MASS_CASES])
    got = log_normal_mass(a, b).numpy()
    ref = [mp_log_mass(*c) for c in MASS_CASES]
    err = np.abs(got - np.array([float(r) for r in ref]))
    tol = 1e-13 * np.maximum(np.abs([float(r) for r in ref]), 1.0)
    bad = [(MASS_CASES[i], err[i]) for i in np.flatnonzero(err > tol)]
    assert not bad, bad


def test_log_normal_mass_gradients_match_mpmath_and_vanish_at_infinite_bounds():
    a = t64([c[0] for c in MASS_CASES], requires_grad=True)
    b = t64([c[1] for c in MASS_CASES], requires_grad=True)
    log_normal_mass(a, b).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    for i, (lo, hi) in enumerate(MASS_CASES):
        mass = mpmath.exp(mp_log_mass(lo, hi))
        ref_a = -mpmath.npdf(lo) / mass if math.isfinite(lo) else 0
        ref_b = mpmath.npdf(hi) / mass if math.isfinite(hi) else 0
        assert a.grad[i].item() == pytest.approx(float(ref_a), rel=1e-11, abs=1e-300), (lo, hi)
        assert b.grad[i].item() == pytest.approx(float(ref_b), rel=1e-11, abs=1e-300), (lo, hi)


def test_log_normal_mass_empty_interval_and_gradcheck():
    assert log_normal_mass(t64([2.0, -2.0, 0.0, INF]), t64([2.0, -2.0, 0.0, INF])).eq(-INF).all()
    a = t64([-INF, -2.0, 3.0, -1.0, -39.0], requires_grad=True)
    b = t64([0.5, INF, 4.0, 1.5, -38.0], requires_grad=True)
    assert torch.autograd.gradcheck(log_normal_mass, (a, b))


def test_log_normal_mass_dtype_broadcasting_and_errors():
    out = log_normal_mass(torch.zeros(3, 1, dtype=torch.float32), torch.ones(4))
    assert out.shape == (3, 4) and out.dtype == torch.float32
    assert log_normal_mass(1.0, 2).dtype == F64
    with pytest.raises(ValueError, match="a <= b"):
        log_normal_mass(t64([0.0, 2.0]), 1.0)
    with pytest.raises(TypeError, match="a"):
        log_normal_mass("0", 1.0)
    with pytest.raises(TypeError, match="real"):
        log_normal_mass(torch.zeros(2, dtype=torch.complex64), 1.0)


finite = st.floats(min_value=-40.0, max_value=40.0)


@settings(max_examples=200, deadline=None)
@given(finite, st.floats(min_value=1e-6, max_value=80.0), st.floats(min_value=1e-6, max_value=10.0))
def test_log_normal_mass_grows_with_the_interval_and_has_finite_gradients(a, width, extra):
    b = a + width
    lo, hi = t64(a, requires_grad=True), t64(b, requires_grad=True)
    inner = log_normal_mass(lo, hi)
    inner.backward()
    assert torch.isfinite(lo.grad) and torch.isfinite(hi.grad)
    assert lo.grad <= 0 <= hi.grad
    outer = log_normal_mass(t64(a - extra), t64(b + extra))
    assert inner.item() <= outer.item() <= 0.0


def test_log_normal_pdf_is_the_normal_log_density():
    x = np.array([-40.0, -1.0, 0.0, 3.5])
    np.testing.assert_allclose(log_normal_pdf(torch.from_numpy(x)).numpy(), -0.5 * x**2 - 0.5 * np.log(2 * np.pi))


def test_log_normal_mass_on_a_random_grid_within_40_sd():
    rng = np.random.default_rng(0)
    ends = np.sort(rng.uniform(-40, 40, size=(300, 2)), axis=1)
    got = log_normal_mass(torch.from_numpy(ends[:, 0]), torch.from_numpy(ends[:, 1])).numpy()
    ref = np.array([float(mp_log_mass(a, b)) for a, b in ends])
    assert np.all(np.abs(got - ref) <= 1e-13 * np.maximum(np.abs(ref), 1.0))


def test_masked_out_infinities_do_not_poison_gradients():
    # entries dropped by a torch.where downstream get zero gradient even where the
    # local derivative is infinite (x = -inf, y = 0, an empty interval)
    x = t64([-INF, 1.0], requires_grad=True)
    y = t64([0.0, -1.0], requires_grad=True)
    a, b = t64([2.0, -1.0], requires_grad=True), t64([2.0, 1.0], requires_grad=True)
    keep = torch.tensor([False, True])
    total = sum(torch.where(keep, f, 0.0).sum() for f in (log_ndtr(x), ndtri_exp(y), log_normal_mass(a, b)))
    total.backward()
    for t in (x, y, a, b):
        assert torch.isfinite(t.grad).all() and t.grad[0] == 0
