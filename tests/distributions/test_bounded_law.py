"""The template every law follows (``_bounded_law``) and the base of the normal laws
(``_normal_on_interval``): torch's contract, validation in torch's wording, and one path per
operation (the same values with or without gradients, the same draws whatever came before)."""

import math

import numpy as np
import pytest
import scipy.stats as ss
import torch

from law_helpers import F64, INF, t64, tn

from mathkit.distributions import CensoredNormal, GeneralizedBeta, TruncatedNormal


@pytest.mark.parametrize("prefix", [(), (2,), (2, 1)])
def test_batch_shapes_expand_and_sample_shapes(prefix):
    loc = torch.zeros(prefix + (3,), dtype=F64)
    for d in (TruncatedNormal(loc, 1.0, -1.0, t64([0.5, 2.0, INF])), CensoredNormal(loc, 1.0, -1.0, 2.0),
              GeneralizedBeta(loc + 2.0, 3.0, -1.0, 2.0)):
        assert d.batch_shape == prefix + (3,) and d.event_shape == ()
        s = d.rsample((4,))
        assert s.shape == (4,) + prefix + (3,)
        assert d.log_prob(s).shape == s.shape and d.log_cdf(s).shape == s.shape and d.log_sf(s).shape == s.shape
        e = d.expand((5,) + prefix + (3,))
        assert e.batch_shape == (5,) + prefix + (3,) and e.sample().shape == e.batch_shape
        torch.testing.assert_close(e.mean[0], d.mean)
        assert bool(d.support.check(s).all())


def test_validation_errors_use_torch_wording():
    with pytest.raises(ValueError, match=r"Expected parameter scale .* to satisfy the constraint FinitePositive\(\)"):
        tn(0.0, -1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"Expected parameter scale .* to satisfy the constraint FinitePositive\(\)"):
        tn(0.0, INF, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"Expected parameter loc .* to satisfy the constraint FiniteReal\(\)"):
        CensoredNormal(t64(-INF), t64(1.0))
    with pytest.raises(ValueError, match="low < high"):
        tn(0.0, 1.0, math.nan, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        tn(0.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        CensoredNormal(t64(0.0), t64(1.0), t64(2.0), t64(1.0))
    with pytest.raises(ValueError, match=r"Expected parameter concentration1"):
        GeneralizedBeta(t64(-1.0), t64(1.0), 0.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        GeneralizedBeta(t64(1.0), t64(1.0), 0.0, INF)
    with pytest.raises(ValueError, match="within the support"):
        tn(0.0, 1.0, 0.0, 1.0).log_prob(t64(1.5))
    with pytest.raises(ValueError, match="within the support"):
        tn(0.0, 1.0, 0.0, 1.0).icdf(t64(1.5))
    # without validation, outside the support is simply impossible
    assert tn(0.0, 1.0, 0.0, 1.0, validate_args=False).log_prob(t64(1.5)).item() == -INF
    # a Python number where a tensor is needed: torch's words for log_prob, for every method
    for d, methods in ((tn(0.0, 1.0, 0.0, 1.0), ("log_prob", "log_cdf", "log_sf", "cdf", "icdf")),
                       (CensoredNormal(t64(0.0), t64(1.0), t64(0.0), t64(1.0)), ("log_cdf", "log_sf", "cdf", "icdf")),
                       (GeneralizedBeta(t64(2.0), t64(3.0)), ("log_cdf", "log_sf", "cdf"))):
        for method in methods:
            with pytest.raises(ValueError, match=f"The value argument to {method} must be a Tensor"):
                getattr(d, method)(0.5)


@pytest.mark.parametrize("law", [TruncatedNormal, CensoredNormal])
def test_values_computed_without_gradients_do_not_cut_later_gradients(law):
    """A moment first computed under no_grad must not be reused, graph-free, when gradients are needed."""
    def fresh():
        return [t64(v, requires_grad=True) for v in (0.5, 1.5, -1.0, 3.0)]

    params = fresh()
    d = law(*params)
    with torch.no_grad():
        d.mean, d.variance  # noqa: B018
    grads = torch.autograd.grad(d.mean + d.variance, params)
    reference = fresh()
    expected = torch.autograd.grad(law(*reference).mean + law(*reference).variance, reference)
    for g, e in zip(grads, expected):
        assert g.item() == pytest.approx(e.item(), rel=1e-14, abs=1e-300)


def _mixed_laws(n, seed):
    """Per-element laws: central, one-sided and far-tail intervals (up to 30 sd out), both sides."""
    rng = np.random.default_rng(seed)
    loc, scale = rng.normal(0.0, 5.0, n), rng.uniform(0.2, 3.0, n)
    a = rng.choice([-3.0, 0.5, 12.0, -30.0], n) + rng.uniform(-1.0, 1.0, n)
    b = a + rng.exponential(2.0, n)
    a[rng.uniform(size=n) < 0.2] = -INF
    b[rng.uniform(size=n) < 0.2] = INF
    x = ss.truncnorm.rvs(a, b, random_state=rng) * scale + loc
    return loc, scale, a, b, x


@pytest.mark.parametrize("law, reference", [
    (TruncatedNormal, lambda x, a, b, loc, scale: (ss.truncnorm.logpdf(x, a, b, loc=loc, scale=scale),
                                                   ss.truncnorm.logcdf(x, a, b, loc=loc, scale=scale),
                                                   ss.truncnorm.logsf(x, a, b, loc=loc, scale=scale))),
    (CensoredNormal, lambda x, a, b, loc, scale: (ss.norm.logpdf(x, loc, scale), ss.norm.logcdf(x, loc, scale),
                                                  ss.norm.logsf(x, loc, scale))),
])
def test_values_with_and_without_gradients_agree_with_scipy_on_long_mixed_batches(law, reference):
    """Over 2^17 elements the values are computed slice by slice without gradients and in one piece
    with them: both must match scipy (inside the support, where the laws have densities)."""
    loc, scale, a, b, x = _mixed_laws(150_000, seed=7)
    params = [t64(v) for v in (loc, scale, loc + scale * a, loc + scale * b)]
    xt = t64(x)
    inside = (x > loc + scale * a) & (x < loc + scale * b)
    expected = reference(x, a, b, loc, scale)
    for grad in (False, True):
        d = law(*(p.clone().requires_grad_(grad) for p in params))
        for name, want in zip(("log_prob", "log_cdf", "log_sf"), expected):
            got = getattr(d, name)(xt).detach().numpy()
            np.testing.assert_allclose(got[inside], want[inside], rtol=1e-9, atol=1e-9, err_msg=f"{name}, grad={grad}")


@pytest.mark.parametrize("law", [TruncatedNormal, CensoredNormal])
def test_icdf_with_and_without_gradients_matches_scipy(law):
    loc, scale, a, b, _ = _mixed_laws(2_000, seed=8)
    a, b = np.clip(a, -25.0, 24.0), np.clip(b, -24.0, 25.0)  # scipy's ppf loses the far tails
    q = np.random.default_rng(8).uniform(size=len(loc))
    params = [t64(v) for v in (loc, scale, loc + scale * a, loc + scale * b)]
    if law is TruncatedNormal:
        want = ss.truncnorm.ppf(q, a, b, loc=loc, scale=scale)
    else:
        want = np.clip(ss.norm.ppf(q, loc, scale), loc + scale * a, loc + scale * b)
    for grad in (False, True):
        got = law(*(p.clone().requires_grad_(grad) for p in params)).icdf(t64(q)).detach().numpy()
        np.testing.assert_allclose((got - loc) / scale, (want - loc) / scale, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("law", [TruncatedNormal, CensoredNormal, GeneralizedBeta])
def test_the_same_seed_gives_the_same_draws_whatever_was_computed_before(law):
    params = (t64([0.5, 2.0, 1.0]), t64([1.5, 0.5, 3.0]), t64([-1.0, 0.0, 9.0]), t64([3.0, 1.0, 40.0]))
    torch.manual_seed(11)
    first = law(*params).sample((1000,))
    d = law(*(p.clone().requires_grad_(True) for p in params))
    d.log_prob(d.rsample((10,))).sum().backward()  # a gradient path, and cached moments
    d.mean, d.variance, d.cdf(t64(0.5))  # noqa: B018
    torch.manual_seed(11)
    again = d.sample((1000,))
    assert torch.equal(first, again)
