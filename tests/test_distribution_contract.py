"""PyTorch's generic distribution checks, as one loop over every law and a table of examples.

Each check runs on every example of the table: mathkit's three laws (float32 and float64,
scalar and batched, infinite, far (30 sd) and narrow (1e-3 sd) bounds) and torch's own
``Normal`` and ``Beta`` as controls, which must pass the same loop. A check that needs an
operation a law does not offer (``Beta.cdf``, ``CensoredNormal.entropy``) skips it on
``NotImplementedError``, as PyTorch's suite does. Oracles are independent of the code under
test: finite differences (``torch.autograd.gradcheck`` in float64), scipy quadrature of the
density, Monte Carlo averages, and the implicit-reparameterisation identity
:math:`dx/d\\theta = -(\\partial F/\\partial\\theta)/p(x)`.

The project's own rules on bad input (integer parameters promoted, finite parameters,
-inf / 0 / 1 outside the support with validation off, NaN data) form a second loop over
mathkit's laws only, since torch's laws do not follow them.
"""

import math
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.integrate as si
import torch
from torch.distributions import Beta, Normal, biject_to, transform_to

from mathkit.distributions import CensoredNormal, GeneralizedBeta, TruncatedNormal

INF = math.inf


@dataclass(frozen=True)
class Example:
    law: type
    params: tuple  # floats or lists, one per constructor argument
    dtype: torch.dtype = torch.float64

    @property
    def id(self) -> str:
        return f"{self.law.__name__}{self.params}-{str(self.dtype)[6:]}"

    def tensors(self, dtype=None, requires_grad=False) -> list[torch.Tensor]:
        return [torch.tensor(p, dtype=dtype or self.dtype, requires_grad=requires_grad) for p in self.params]

    def make(self, *params, **kwargs):
        return self.law(*(params or self.tensors()), **kwargs)


def _tn_like(law):
    return [
        Example(law, (0.3, 1.7, -1.0, 2.5)),
        Example(law, (-1.0, 0.5, -2.0, 0.0)),  # the interval centred on loc (icdf gradients)
        Example(law, ([0.0, 1.0, -1.0], [1.0, 2.0, 0.5], [-INF, 0.0, -INF], [INF, INF, -1.5])),  # infinite bounds
        Example(law, ([0.0, 2.0], [1.0, 0.5], [30.0, -INF], [INF, -13.0])),  # far: 30 sd out
        Example(law, (0.0, 1.0, 30.0, 31.0)),
        Example(law, ([0.0, 0.0], [1.0, 2.0], [-5e-4, 20.0], [5e-4, 20.002])),  # narrow: width 1e-3 sd
        Example(law, (0.3, 1.7, -1.0, 2.5), torch.float32),
        Example(law, ([0.0, 1.0], [1.0, 2.0], [-INF, 0.0], [1.0, INF]), torch.float32),
        Example(law, (0.0, 1.0, 30.0, INF), torch.float32),
    ]


EXAMPLES = [
    *_tn_like(TruncatedNormal),
    *_tn_like(CensoredNormal),
    Example(GeneralizedBeta, (2.0, 3.0, 1.0, 3.0)),
    Example(GeneralizedBeta, ([0.5, 30.0, 200.0], [0.7, 2.0, 300.0], [-1.0, 0.0, 0.0], [1.0, 10.0, 1.0])),
    Example(GeneralizedBeta, (2.0, 5.0, 1000.0, 1000.001)),  # narrow, far from 0
    Example(GeneralizedBeta, (2.0, 3.0, 1.0, 3.0), torch.float32),
    Example(Normal, (0.3, 1.7)),
    Example(Normal, ([0.0, -3.0], [1.0, 0.01])),
    Example(Normal, (0.3, 1.7), torch.float32),
    Example(Beta, (2.0, 3.0)),
    Example(Beta, ([0.5, 30.0], [0.7, 2.0])),
    Example(Beta, (2.0, 3.0), torch.float32),
]
MIXED = (CensoredNormal,)  # laws with atoms at their finite bounds
MATHKIT = [e for e in EXAMPLES if e.law in (TruncatedNormal, CensoredNormal, GeneralizedBeta)]


def each(examples):
    return pytest.mark.parametrize("ex", examples, ids=[e.id for e in examples])


def optional(fn, *args):
    """``fn(*args)``, or ``None`` where the law does not offer the operation."""
    try:
        return fn(*args)
    except NotImplementedError:
        return None


def eps(dtype):
    return torch.finfo(dtype).eps


def bounds(d):
    """Support bounds as float64 tensors of the batch shape."""
    support = d.support
    low = getattr(support, "lower_bound", -INF)
    high = getattr(support, "upper_bound", INF)
    return (torch.as_tensor(low, dtype=torch.float64).expand(d.batch_shape),
            torch.as_tensor(high, dtype=torch.float64).expand(d.batch_shape))


def interior_points(d, n=3):
    """``n`` points per batch element well inside the support: interior quantiles where the
    law has an icdf, else points of its range; shape (n, *batch). Margins leave room for the
    finite-difference steps at the bounds."""
    low, high = bounds(d.expand(d.batch_shape))
    q = torch.tensor([0.3, 0.5, 0.7], dtype=torch.float64)[:n].reshape((n,) + (1,) * len(d.batch_shape))
    x = optional(lambda: d.icdf(q.to(d.mean.dtype).expand((n,) + d.batch_shape)).double())
    span_low, span_high = torch.where(torch.isfinite(low), low, -1e3), torch.where(torch.isfinite(high), high, 1e3)
    fallback = span_low + (span_high - span_low) * q
    if x is None:
        return fallback
    width = (high - low).clamp(max=1e300)
    inside = (x - low > 1e-3 * width) & (high - x > 1e-3 * width)
    # mixed laws (atoms at the bounds): between the bounds instead, nearer the low one
    return torch.where(inside, x, torch.where(torch.isfinite(width), fallback, low + 1.0 + q))


# ================================================================ validation
@each(EXAMPLES)
def test_validation_errors(ex):
    names = list(ex.law.arg_constraints)
    for i, name in enumerate(names):
        params = ex.tensors()
        params[i] = torch.full_like(params[i], math.nan)
        with pytest.raises(ValueError, match="Expected parameter"):
            ex.make(*params, validate_args=True)
    d = ex.make(validate_args=True)
    low, high = bounds(d)
    with pytest.raises(ValueError, match="Expected value argument"):
        d.log_prob(torch.full(d.batch_shape, math.nan, dtype=ex.dtype))
    if torch.isfinite(high).all():
        with pytest.raises(ValueError, match="within the support"):
            d.log_prob((high + 1.0).to(ex.dtype))
    if torch.isfinite(low).all():
        with pytest.raises(ValueError, match="within the support"):
            d.log_prob((low - 1.0).to(ex.dtype))


# ================================================================ shapes, expand, broadcasting, pickle
@each(EXAMPLES)
def test_shapes_and_dtypes(ex):
    d = ex.make()
    batch = torch.broadcast_shapes(*(torch.tensor(p).shape for p in ex.params))
    assert d.batch_shape == batch and d.event_shape == ()
    s = d.sample((4, 2))
    assert s.shape == (4, 2) + batch and s.dtype == ex.dtype
    assert d.rsample().shape == batch
    for out in (d.log_prob(s), optional(d.cdf, s)):
        assert out is None or (out.shape == s.shape and out.dtype == ex.dtype)
    for out in (d.mean, d.variance, d.stddev, optional(d.entropy)):
        assert out is None or (out.shape == batch and out.dtype == ex.dtype)


@each(EXAMPLES)
def test_expand(ex):
    d = ex.make()
    e = d.expand((3,) + d.batch_shape)
    assert e.batch_shape == (3,) + d.batch_shape and e.sample().shape == e.batch_shape
    assert e.sample((2,)).shape == (2, 3) + d.batch_shape
    x = interior_points(d, 1)[0].to(ex.dtype)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x).expand(e.batch_shape))
    torch.testing.assert_close(e.mean, d.mean.expand(e.batch_shape))
    torch.testing.assert_close(e.variance, d.variance.expand(e.batch_shape))


@each(EXAMPLES)
def test_broadcasting_of_each_parameter(ex):
    d = ex.make()
    x = interior_points(d, 1)[0].to(ex.dtype)
    for i in range(len(ex.params)):
        params = ex.tensors()
        params[i] = torch.stack([params[i], params[i]])  # one parameter gets a leading axis of 2
        b = ex.make(*params)
        assert b.batch_shape == torch.broadcast_shapes((2,) + params[i].shape[1:], d.batch_shape)
        torch.testing.assert_close(b.log_prob(x), d.log_prob(x).expand(b.batch_shape))
        torch.testing.assert_close(b.mean, d.mean.expand(b.batch_shape))


@each(EXAMPLES)
def test_pickle_round_trip(ex):
    d = ex.make()
    x = interior_points(d, 2).to(ex.dtype)
    d.mean  # noqa: B018 - whatever a law has cached travels with it or is recomputed alike
    c = pickle.loads(pickle.dumps(d))
    assert type(c) is type(d) and c.batch_shape == d.batch_shape
    torch.testing.assert_close(c.log_prob(x), d.log_prob(x), rtol=0, atol=0)
    torch.testing.assert_close(c.variance, d.variance, rtol=0, atol=0)
    torch.manual_seed(0)
    first = d.sample((5,))
    torch.manual_seed(0)
    assert torch.equal(c.sample((5,)), first)


# ================================================================ support, cdf and icdf
@each(EXAMPLES)
def test_samples_inside_the_support(ex):
    d = ex.make()
    torch.manual_seed(1)
    for s in (d.sample((2000,)), d.rsample((2000,))):
        assert bool(torch.isfinite(s).all()) and bool(d.support.check(s).all())


@each(EXAMPLES)
def test_cdf_and_icdf_round_trips(ex):
    d = ex.make()
    q = torch.tensor([1e-6, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-6], dtype=ex.dtype)
    q = q.reshape((-1,) + (1,) * len(d.batch_shape)).expand((-1,) + d.batch_shape)
    x = optional(d.icdf, q)
    if x is None or optional(d.cdf, x) is None:
        pytest.skip(f"{ex.law.__name__} has no icdf or cdf")
    assert bool(d.support.check(x).all())
    density = d.log_prob(x).double().exp()
    # x is rounded to its dtype and comes from a standardised quantile (a few ulp of the parent
    # law's scale): the cdf moves by the density times that much
    scale = getattr(d, "scale", d.stddev).double()
    tol = 16 * eps(ex.dtype) * (1.0 + density * (x.double().abs() + scale))
    F = d.cdf(x).double()
    assert bool((F >= q.double() - tol).all())  # the smallest x with F(x) >= q
    low, high = bounds(d)
    continuous = (x.double() > low) & (x.double() < high)  # not at an atom on a bound
    assert bool(((F - q.double()).abs() <= tol)[continuous].all()), (F - q.double()).abs().max()
    # icdf(cdf(x)) = x, at atoms too (the smallest quantile of the atom's level), where F(x) is
    # not rounded to 0 or 1 (an atom holding all but 1e-198 of the mass has F = 1 in floats)
    resolved = (F > 1e-12) & (F < 1 - 1e-12)
    xq = d.icdf(d.cdf(x))
    std = d.stddev.double().clamp(min=1e-300)
    rel = (xq.double() - x.double()).abs() / (std + x.double().abs())
    assert bool((rel <= (1e-9 if ex.dtype == torch.float64 else 1e-3))[resolved].all()), rel.max()


@each(EXAMPLES)
def test_cdf_is_monotone_and_bounded(ex):
    d = ex.make()
    torch.manual_seed(2)
    s = d.sample((500,)).sort(0).values
    F = optional(d.cdf, s)
    if F is None:
        pytest.skip(f"{ex.law.__name__} has no cdf")
    assert bool(((F >= 0) & (F <= 1)).all()) and bool((torch.diff(F, dim=0) >= 0).all())


# ================================================================ gradients against finite differences
def _gradcheck(fn, inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@each([e for e in EXAMPLES if e.dtype == torch.float64])
@pytest.mark.parametrize("op", ["log_prob", "cdf", "icdf", "mean", "variance", "stddev", "entropy"])
def test_gradients_against_finite_differences(ex, op):
    d = ex.make()
    if op in ("log_prob", "cdf"):
        arg = interior_points(d)
    elif op == "icdf":
        arg = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64).reshape((3,) + (1,) * len(d.batch_shape))
        arg = arg.expand((3,) + d.batch_shape).clone()
    else:
        arg = None
    if optional(lambda: d.entropy() if op == "entropy" else getattr(d, op)(arg) if arg is not None else getattr(d, op)) is None:
        pytest.skip(f"{ex.law.__name__} has no {op}")
    params = ex.tensors(requires_grad=True)
    # infinite bounds are not differentiated (a finite-difference step cannot move them)
    wrt = [p for p in params if bool(torch.isfinite(p).all())]

    def fn(*free):
        it = iter(free[: len(wrt)])
        full = [next(it) if any(p is w for w in wrt) else p.detach() for p in params]
        law = ex.law(*full, validate_args=False)
        if op == "entropy":
            return law.entropy()
        out = getattr(law, op)
        return out(free[-1]) if arg is not None else out

    _gradcheck(fn, (*wrt, *(() if arg is None else (arg.requires_grad_(True),))))


@each([e for e in EXAMPLES if e.dtype == torch.float64])
def test_rsample_gradient_is_the_implicit_reparameterisation(ex):
    """dx/dtheta = -(dF/dtheta)/p(x) at the drawn x, with dF/dtheta by central differences."""
    params = ex.tensors(requires_grad=True)
    d = ex.make(*params)
    if optional(d.cdf, d.mean) is None:
        pytest.skip(f"{ex.law.__name__} has no cdf")
    torch.manual_seed(4)
    x = d.rsample((3,))
    low, high = bounds(d)
    # draws on an atom (censored at a bound) do not move with theta; nor can the bounds step past a draw
    margin = 1e-5 * (1.0 + torch.maximum(low.abs(), high.abs()))
    inside = (x > low + margin) & (x < high - margin)
    for i, p in enumerate(params):
        if not bool(torch.isfinite(p).all()):
            continue
        (grad,) = torch.autograd.grad(x[inside].sum(), p, retain_graph=True)
        h = 1e-7 * (1.0 + p.detach().abs())
        expected = torch.zeros_like(p.detach()).expand(x.shape).clone()
        for k in range(p.numel()):
            unit = torch.zeros(p.numel(), dtype=p.dtype)
            unit[k] = 1.0
            step = (h.reshape(-1) * unit).reshape(p.shape)
            moved = [q.detach() + (step if j == i else 0) for j, q in enumerate(params)]
            back = [q.detach() - (step if j == i else 0) for j, q in enumerate(params)]
            with torch.no_grad():
                dF = (ex.law(*moved).cdf(x) - ex.law(*back).cdf(x)) / (2 * step.reshape(-1)[k])
                expected += -dF / d.log_prob(x).exp()
        expected = torch.where(inside, expected, 0.0).sum_to_size(p.shape)
        # torch's Beta (inside GeneralizedBeta) approximates its reparameterisation gradient (~1e-4)
        rtol = 1e-3 if ex.law is GeneralizedBeta else 1e-5
        torch.testing.assert_close(grad, expected, rtol=rtol, atol=1e-7)


# ================================================================ moments and entropy
def _quadrature(d64, fn):
    """E[fn(X)] for the float64 law ``d64`` (scalar batch) by scipy's adaptive quadrature of its
    density, plus the atoms at the bounds (mass cdf(low) and 1 - cdf(high^-)) for mixed laws."""
    low, high = (float(b) for b in bounds(d64))
    mean, std = float(d64.mean), float(d64.stddev)

    def density(x):
        # the continuous part: a node that rounds onto a bound must not pick up an atom's mass
        if x <= low or x >= high:
            return 0.0
        return math.exp(float(d64.log_prob(torch.tensor(x, dtype=torch.float64))))

    def integrand(x):
        p = density(x)
        return 0.0 if p == 0.0 else fn(x) * p

    # finite ends as they are; an infinite one 60 sd beyond the mean, or 60 scales of the parent
    # law beyond the other end (a law with an atom may hold its continuous part far from its mean)
    scale = float(getattr(d64, "scale", d64.stddev))
    lo = low if math.isfinite(low) else min(mean - 60 * std, high - 60 * scale)
    hi = high if math.isfinite(high) else max(mean + 60 * std, low + 60 * scale)
    inner_points = [p for p in (mean - std, mean, mean + std) if lo < p < hi]
    value = si.quad(integrand, lo, hi, points=inner_points or None, epsabs=0.0, epsrel=1e-12, limit=400)[0]
    if type(d64) in MIXED:  # the atoms: log_prob at a finite bound is the log of its mass
        for end in (low, high):
            if math.isfinite(end):
                mass = math.exp(float(d64.log_prob(torch.tensor(end, dtype=torch.float64))))
                value += fn(end) * mass if mass > 0 else 0.0
    return value


def _scalars(ex):
    """Float64 scalar laws, one per batch element, and the law under test's values at that element."""
    d = ex.make()
    flat = [torch.tensor(p, dtype=torch.float64).expand(d.batch_shape).reshape(-1) for p in ex.params]
    for k in range(d.batch_shape.numel()):
        yield k, ex.law(*(p[k] for p in flat))


@each(EXAMPLES)
def test_moments_and_entropy_against_quadrature(ex):
    d = ex.make()
    entropy = optional(d.entropy)
    has_entropy = entropy is not None
    mean, var, ent = (t.double().reshape(-1) for t in (d.mean, d.variance, entropy if has_entropy else d.mean))
    rtol = 1e-8 if ex.dtype == torch.float64 else 1e-5
    for k, d64 in _scalars(ex):
        total = _quadrature(d64, lambda x: 1.0)
        assert total == pytest.approx(1.0, rel=1e-9)
        centre = float(d64.mean)  # any constant: the integrand x - centre keeps quad's tolerance relative to the spread
        m = centre + _quadrature(d64, lambda x: x - centre)
        v = _quadrature(d64, lambda x: (x - m) ** 2)
        scale = abs(m) + math.sqrt(v)
        assert abs(float(mean[k]) - m) <= rtol * scale + 1e-300, (float(mean[k]), m)
        assert float(var[k]) == pytest.approx(v, rel=max(rtol, 1e-7), abs=torch.finfo(ex.dtype).tiny)
        if has_entropy:
            h = _quadrature(d64, lambda x: -float(d64.log_prob(torch.tensor(x, dtype=torch.float64))))
            assert float(ent[k]) == pytest.approx(h, rel=max(rtol, 1e-8), abs=max(rtol, 1e-8))


@each(EXAMPLES)
def test_moments_and_entropy_against_monte_carlo(ex):
    d = ex.make()
    torch.manual_seed(3)
    s = d.sample((40_000,)).double()
    n = s.shape[0]
    mean, var = d.mean.double(), d.variance.double()
    se_mean = s.std(0) / math.sqrt(n)
    assert bool(((s.mean(0) - mean).abs() <= 5 * se_mean + 1e-6 * (mean.abs() + var.sqrt()) + 1e-300).all())
    dev2 = (s - mean) ** 2
    # (a variance below 1e-12 (|mean| + 1)^2 comes from events too rare for any sample)
    tol = 5 * dev2.std(0) / math.sqrt(n) + 1e-4 * var + 1e-12 * (mean.abs() + 1) ** 2
    assert bool(((dev2.mean(0) - var).abs() <= tol).all())
    entropy = optional(d.entropy)
    if entropy is not None:
        nlp = -d.log_prob(s.to(ex.dtype)).double()
        tol = 5 * nlp.std(0) / math.sqrt(n) + 1e-5 * (1.0 + entropy.double().abs())
        assert bool(((nlp.mean(0) - entropy.double()).abs() <= tol).all())


# ================================================================ optimisation inside the support
@each(EXAMPLES)
@pytest.mark.parametrize("registry", [transform_to, biject_to], ids=["transform_to", "biject_to"])
def test_transform_to_the_support(ex, registry):
    d = ex.make()
    t = registry(d.support)
    torch.manual_seed(5)
    x = torch.randn((6,) + d.batch_shape, dtype=ex.dtype, requires_grad=True)
    y = t(x)
    assert bool(torch.isfinite(y).all()) and bool(d.support.check(y).all())
    assert bool(torch.isfinite(t.log_abs_det_jacobian(x, y)).all())
    low, high = bounds(d)
    tol = 1e-6 if ex.dtype == torch.float64 else 1e-2
    inner = (y.double() - low > 1e-12 * (1 + low.abs())) & (high - y.double() > 1e-12 * (1 + high.abs()))
    torch.testing.assert_close(t.inv(y)[inner], x[inner], rtol=tol, atol=tol)
    # a few steps of gradient ascent on the log-density stay finite and inside
    loss = -d.log_prob(y).sum()
    (grad,) = torch.autograd.grad(loss, x)
    assert bool(torch.isfinite(grad).all())
    z = torch.zeros(d.batch_shape, dtype=ex.dtype, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        (-d.log_prob(t(z)).sum()).backward()
        opt.step()
    assert bool(torch.isfinite(z).all()) and bool(d.support.check(t(z)).all())


# ================================================================ reproducibility
@each(EXAMPLES)
def test_same_seed_same_draws_whatever_ran_before(ex):
    def fresh():
        return ex.make(*ex.tensors(requires_grad=True))

    torch.manual_seed(7)
    reference = fresh().sample((50,))
    x = interior_points(ex.make(), 2).to(ex.dtype)
    calls = [lambda d: d.log_prob(x), lambda d: d.mean, lambda d: d.variance, lambda d: optional(d.entropy),
             lambda d: optional(d.cdf, x), lambda d: d.rsample((3,)), lambda d: d.sample((3,))]
    for call in calls:
        for grad_mode in (True, False):
            d = fresh()
            with torch.set_grad_enabled(grad_mode):
                call(d)
            torch.manual_seed(7)
            assert torch.equal(d.sample((50,)), reference)


# ================================================================ the project's rules on bad input (mathkit only)
OPS = ["log_prob", "cdf", "log_cdf", "log_sf"]


@each([e for e in MATHKIT if e.dtype == torch.float64])
@pytest.mark.parametrize("kind", [torch.int64, torch.int32, torch.bool])
def test_integer_parameters_are_promoted(ex, kind):
    """Integer tensors behave as the same values in torch's default float dtype (like Python numbers)."""
    if kind is torch.bool:  # 0 and 1 where they fit the law: loc 0, scale 1, bounds (low, 1) or (0, 1)
        shape = np.broadcast_shapes(*(np.shape(p) for p in ex.params))
        values = [np.full(shape, v) for v in (1.0, 1.0, 0.0, 1.0)]
        if ex.law is not GeneralizedBeta:
            values[0] = np.zeros(shape)
            values[2] = np.where(np.isfinite(ex.params[2]), 0.0, -INF) + values[0]
    else:
        values = [np.where(np.isfinite(p), np.round(np.asarray(p, dtype=float) * 4 + 8), p) for p in ex.params]
    low, high = np.broadcast_arrays(values[2], values[3])
    if not (low < high).all():
        pytest.skip("rounding made the bounds meet")
    default = torch.get_default_dtype()
    # integer tensors where the values are finite; infinite bounds stay in the default float dtype
    as_int = [torch.tensor(v).to(kind) if np.isfinite(v).all() else torch.tensor(v, dtype=default) for v in values]
    as_float = [torch.tensor(v, dtype=default) for v in values]
    d_int, d_float = ex.law(*as_int), ex.law(*as_float)
    assert d_int.mean.dtype == torch.get_default_dtype()
    x = interior_points(d_float, 3)
    for op in OPS:
        torch.testing.assert_close(getattr(d_int, op)(x), getattr(d_float, op)(x), rtol=0, atol=0)
    for name in ("mean", "variance"):
        torch.testing.assert_close(getattr(d_int, name), getattr(d_float, name), rtol=0, atol=0)


@each(MATHKIT)
def test_infinite_location_scale_or_concentration_fail_validation(ex):
    names = [n for n, c in ex.law.arg_constraints.items() if not isinstance(c, type(torch.distributions.constraints.dependent))]
    for i, name in enumerate(names):
        for bad in (INF, -INF):
            params = ex.tensors()
            params[i] = torch.full_like(params[i], bad)
            with pytest.raises(ValueError, match=f"Expected parameter {name}"):
                ex.make(*params, validate_args=True)


@each(MATHKIT)
@pytest.mark.parametrize("validate", [True, False])
def test_outside_the_support_gives_minus_inf_zero_one(ex, validate):
    d = ex.make(validate_args=validate)
    low, high = bounds(d)
    expected = {"cdf": (0.0, 1.0), "log_cdf": (-INF, 0.0), "log_sf": (0.0, -INF), "log_prob": (-INF, -INF)}
    for side, point in ((0, low - 1.0 - low.abs()), (1, high + 1.0 + high.abs())):
        point = point.to(ex.dtype)
        finite = torch.isfinite(point)
        for op in OPS:
            if op == "log_prob" and validate:
                if bool(finite.any()):
                    with pytest.raises(ValueError, match="within the support"):
                        d.log_prob(torch.where(finite, point, 0.0 * point + d.mean))
                continue
            out = getattr(d, op)(point)
            assert bool((out[finite] == expected[op][side]).all()), (op, side, out)


@each(MATHKIT)
def test_nan_data(ex):
    x = torch.full(ex.make().batch_shape, math.nan, dtype=ex.dtype)
    on, off = ex.make(validate_args=True), ex.make(validate_args=False)
    for op in [*OPS, "icdf"]:
        if op == "icdf" and optional(off.icdf, torch.full_like(x, 0.5)) is None:
            continue
        with pytest.raises(ValueError, match="Expected value argument"):
            getattr(on, op)(x)
        if op == "icdf":
            with pytest.raises(ValueError, match="Expected value argument"):
                on.icdf(torch.full_like(x, 1.5))
        assert bool(torch.isnan(getattr(off, op)(x)).all()), op
