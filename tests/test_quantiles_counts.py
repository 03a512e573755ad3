"""Pinball loss, negative binomial NLL, conformal intervals, the quantile and count heads, NB demand.

Oracles: scikit-learn's ``mean_pinball_loss``, ``scipy.stats.nbinom``, brute-force order
statistics and simulated coverage of exchangeable data.
"""

import math

import mpmath
import numpy as np
import pytest
import scipy.stats as ss
import torch
from sklearn.metrics import mean_pinball_loss

from mathkit.data import simulate_demand
from mathkit.losses import negative_binomial_nll, pinball_loss
from mathkit.nn import NegativeBinomialHead, QuantileHead, SequenceForecaster, fit, make_windows
from mathkit.regression import conformal_quantile, conformalize_interval

F64 = torch.float64


def test_pinball_loss_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    levels = np.array([0.05, 0.5, 0.9])
    pred = rng.normal(size=(50, 3))
    got = pinball_loss(torch.from_numpy(y), torch.from_numpy(pred), levels).item()
    ref = np.mean([mean_pinball_loss(y, pred[:, j], alpha=a) for j, a in enumerate(levels)])
    assert got == pytest.approx(ref, rel=1e-13)
    per_point = pinball_loss(torch.from_numpy(y), torch.from_numpy(pred), levels, reduction="none")
    assert per_point.shape == (50,) and per_point.sum().item() == pytest.approx(50 * ref, rel=1e-12)


def test_pinball_loss_is_minimised_by_the_quantile():
    # the empirical tau-quantile minimises the mean pinball loss over constants (closed form)
    rng = np.random.default_rng(1)
    y = torch.from_numpy(rng.exponential(size=2001))
    grid = torch.linspace(0.0, 5.0, 5001, dtype=F64)
    for tau in (0.1, 0.5, 0.9):
        losses = torch.stack([pinball_loss(y, c.expand(len(y), 1).clone(), [tau]) for c in grid])
        best = grid[int(losses.argmin())].item()
        assert best == pytest.approx(np.quantile(y.numpy(), tau), abs=2e-3)


def test_pinball_loss_rejects_bad_input():
    y = torch.zeros(3)
    with pytest.raises(ValueError, match="quantiles must be levels"):
        pinball_loss(y, torch.zeros(3, 1), [1.0])
    with pytest.raises(ValueError, match=r"pred must have shape \(n, k\) = \(3, 2\)"):
        pinball_loss(y, torch.zeros(3), [0.1, 0.9])
    with pytest.raises(ValueError, match="y must be finite, got nan at index 1"):
        pinball_loss(torch.tensor([0.0, math.nan, 1.0]), torch.zeros(3, 1), [0.5])
    with pytest.raises(ValueError, match="pred must be finite"):
        pinball_loss(y, torch.full((3, 1), math.inf), [0.5])
    # integer observations are promoted, not truncated
    assert pinball_loss(torch.tensor([1, 2]), torch.tensor([[0.5], [0.5]]), [0.5]).item() == pytest.approx(0.5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_negative_binomial_nll_matches_scipy(dtype):
    rng = np.random.default_rng(2)
    mean = rng.uniform(0.01, 300.0, size=200)
    r = rng.uniform(0.05, 1e4, size=200)
    y = rng.negative_binomial(r, r / (r + mean)).astype(float)
    ref = -ss.nbinom.logpmf(y, r, r / (r + mean))
    got = negative_binomial_nll(torch.tensor(y, dtype=dtype), torch.tensor(mean, dtype=dtype),
                                torch.tensor(r, dtype=dtype), reduction="none")
    tol = 1e-10 if dtype == torch.float64 else 2e-3
    np.testing.assert_allclose(got.numpy(), ref, rtol=tol, atol=tol)


def test_negative_binomial_nll_tends_to_poisson_and_has_finite_gradients():
    y = torch.tensor([0.0, 1.0, 7.0, 40.0], dtype=F64)
    mean = torch.tensor([0.5, 1.0, 6.0, 35.0], dtype=F64, requires_grad=True)
    r = torch.full((4,), 1e9, dtype=F64, requires_grad=True)
    got = negative_binomial_nll(y, mean, r, reduction="none")
    np.testing.assert_allclose(got.detach().numpy(), -ss.poisson.logpmf(y.numpy(), mean.detach().numpy()), rtol=1e-6)
    got.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(r.grad).all()
    # the score in the mean: d/dmu (-log p) = (mu - y) / mu for a Poisson
    np.testing.assert_allclose(mean.grad.numpy(), ((mean - y) / mean).detach().numpy(), rtol=1e-6)


def test_negative_binomial_nll_keeps_its_digits_for_large_counts_and_concentrations():
    # lgamma(y + r) - lgamma(r) - lgamma(y + 1) cancels: at r = 1e15 (a Poisson) the textbook form
    # was 0.7 nats off, at counts of 1e15 one nat; mpmath at 60 digits is the oracle
    mpmath.mp.dps = 60

    def exact(y, mu, r):
        y, mu, r = mpmath.mpf(y), mpmath.mpf(mu), mpmath.mpf(r)
        return float(-(mpmath.loggamma(y + r) - mpmath.loggamma(r) - mpmath.loggamma(y + 1)
                       + r * mpmath.log(r / (r + mu)) + y * mpmath.log(mu / (r + mu))))

    cases = [(y, mu, r) for y in (0, 1, 9, 10, 37, 1e3, 1e7, 1e15) for mu in (1e-3, 4.0, 12.0, 1e3, 1e15)
             for r in (1e-8, 0.3, 9.9, 10.0, 1e4, 1e12, 1e15)]
    y, mu, r = (torch.tensor(v, dtype=F64) for v in zip(*cases))
    got = negative_binomial_nll(y, mu, r, reduction="none").numpy()
    want = np.array([exact(*c) for c in cases])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    # float32 inputs are evaluated in float64: a negative-binomial loss is never negative
    big = negative_binomial_nll(torch.tensor([1e7, 16777217.0]), torch.tensor([1e7, 1.6e7]),
                                torch.tensor([100.0, 10.0]), reduction="none")
    assert big.dtype == torch.float32
    np.testing.assert_allclose(big.numpy(), [exact(1e7, 1e7, 100.0), exact(16777217.0, 1.6e7, 10.0)], rtol=1e-6)
    # a tiny mean: -log p(0) = r log1p(mu / r) ~ mu, not 0 * inf = NaN
    tiny = negative_binomial_nll(torch.tensor([0.0]), torch.tensor([1e-38]), torch.tensor([10.0]))
    assert tiny.item() == pytest.approx(1e-38, rel=1e-5)


def test_negative_binomial_nll_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative integer counts, got 1.5 at index 1"):
        negative_binomial_nll(torch.tensor([1.0, 1.5]), 1.0, 1.0)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        negative_binomial_nll(torch.tensor([-1.0]), 1.0, 1.0)
    with pytest.raises(ValueError, match="mean > 0"):
        negative_binomial_nll(torch.tensor([1.0]), torch.tensor([0.0]), 1.0)
    with pytest.raises(ValueError, match="concentration must be finite"):
        negative_binomial_nll(torch.tensor([1.0]), 1.0, torch.tensor([math.nan]))
    with pytest.raises(ValueError, match=r"mean must have the shape of y"):
        negative_binomial_nll(torch.tensor([1.0, 2.0]), torch.ones(2, 1), 1.0)
    # integer counts are accepted as they come
    assert torch.isfinite(negative_binomial_nll(torch.tensor([0, 3]), 2.0, 1.0))


def test_conformal_quantile_is_the_right_order_statistic():
    rng = np.random.default_rng(3)
    for n in (1, 9, 10, 57):
        scores = rng.normal(size=n)
        for c in (0.5, 0.8, 0.9):
            # brute force: the smallest score s with #{scores <= s} >= (n + 1) c
            ok = [s for s in np.sort(scores) if np.sum(scores <= s) >= (n + 1) * c]
            assert conformal_quantile(scores, c) == (ok[0] if ok else math.inf)


def test_conformal_rank_is_read_from_the_decimal_coverage():
    # (n + 1) c = 100 * 0.55 rounds to 55.000000000000007 in floating point: the rank is 55, not 56
    scores = np.arange(1.0, 100.0)
    assert conformal_quantile(scores, 0.55) == 55.0
    assert conformal_quantile(scores, 0.56) == 56.0  # (100 * 0.56 = 56.00000000000001 too)


def test_conformalized_interval_covers_exchangeable_data():
    # heavy-tailed, heteroscedastic data and deliberately bad quantile forecasts: the marginal
    # coverage over many repetitions lies in [c, c + 1/(n + 1)] (Romano et al. 2019, theorem 1)
    rng = np.random.default_rng(4)
    n, reps, c = 40, 4000, 0.8
    x = rng.uniform(0, 3, size=(reps, n + 1))
    y = (1 + x) * rng.standard_t(3, size=(reps, n + 1))
    lo, hi = -0.3 * np.ones_like(x), 0.5 * x
    covered = []
    for i in range(reps):
        a, b = conformalize_interval(lo[i, :n], hi[i, :n], y[i, :n], lo[i, n:], hi[i, n:], c)
        covered.append(a[0] <= y[i, n] <= b[0])
    mc = 3 * math.sqrt(c * (1 - c) / reps)
    assert c - mc <= np.mean(covered) <= c + 1 / (n + 1) + mc


def test_conformal_rejects_bad_input():
    with pytest.raises(ValueError, match="coverage must be a number strictly inside"):
        conformal_quantile([1.0, 2.0], 1.0)
    with pytest.raises(ValueError, match="scores must be finite, got nan at index 1"):
        conformal_quantile([1.0, math.nan], 0.5)
    with pytest.raises(ValueError, match="scores must be a non-empty"):
        conformal_quantile([], 0.5)
    with pytest.raises(ValueError, match="one shape"):
        conformalize_interval([0.0], [1.0, 2.0], [0.5], [0.0], [1.0], 0.5)
    assert conformal_quantile([3, 1, 2], 0.5) == 2.0   # integers promoted


def _tiny_windows(law, seed=0):
    data = simulate_demand(n_products=2, n_days=120, stockout_rate=0.0, rng=seed, law=law, levels=[2.0, 20.0])
    w = make_windows(data.sales, data.features(), window=7, unit="window", series_one_hot=True)
    return data, w.between(0, 80), w.between(80, 120)


def test_quantile_head_is_non_crossing_and_learns_quantiles():
    torch.manual_seed(0)
    head = QuantileHead(4, quantiles=(0.1, 0.5, 0.9))
    out = head(torch.randn(500, 4) * 10)
    assert out.shape == (500, 3) and bool((out.diff(dim=-1) > 0).all())
    with pytest.raises(ValueError, match="increasing levels"):
        QuantileHead(4, quantiles=(0.9, 0.1))
    _, train, val = _tiny_windows("truncated_normal")
    model = SequenceForecaster(train.inputs.shape[-1], "quantile", hidden_size=8, quantiles=(0.1, 0.9))
    fit(model, train, train, epochs=30, lr=2e-2, patience=30, generator=torch.Generator().manual_seed(0))
    q = model.predict(train)
    y = train.target * train.unit
    # trained quantiles are roughly calibrated in sample (simulated truth: 10% and 90%)
    assert abs((y <= q[:, 0]).float().mean().item() - 0.1) < 0.07
    assert abs((y <= q[:, 1]).float().mean().item() - 0.9) < 0.07


def test_negative_binomial_head_rescales_like_deepar_and_trains_on_counts():
    head = NegativeBinomialHead(3)
    with torch.no_grad():
        law = head(torch.randn(5, 3))
    unit = torch.tensor([1.0, 4.0, 9.0, 16.0, 0.25])
    with torch.no_grad():
        big = head.rescale(law, unit)
    np.testing.assert_allclose(big.mean, law.mean * unit, rtol=1e-5)
    np.testing.assert_allclose(big.total_count, law.total_count * unit.sqrt(), rtol=1e-5)
    data, train, val = _tiny_windows("negative_binomial")
    assert np.all(data.demand == np.round(data.demand))
    model = SequenceForecaster(train.inputs.shape[-1], "negbin", hidden_size=8)
    history = fit(model, train, val, epochs=20, lr=1e-2, patience=20, generator=torch.Generator().manual_seed(0))
    assert all(math.isfinite(v) for v in history.val_loss)
    pred = model.predict(val)
    y = torch.round(val.target * val.unit)
    # the mean forecast is in the right range (truth: levels 2 and 20 a day)
    ratio = pred.mean.sum().item() / y.sum().item()
    assert 0.6 < ratio < 1.6
    # the loss on a window equals scipy's NB log-pmf of the counts
    out = model.head.rescale(model(val.inputs[:4]), val.unit[:4])
    r, m = out.total_count.detach().double().numpy(), out.mean.detach().double().numpy()
    ref = -ss.nbinom.logpmf(y[:4].numpy(), r, r / (r + m)).mean()
    assert model.loss(val[:4]).item() == pytest.approx(ref, rel=1e-4)


def test_negative_binomial_demand_moments_and_default_unchanged():
    a = simulate_demand(n_products=3, n_days=400, stockout_rate=0.0, rng=5)
    b = simulate_demand(n_products=3, n_days=400, stockout_rate=0.0, rng=5, law="truncated_normal", concentration=9.0)
    np.testing.assert_array_equal(a.demand, b.demand)
    d = simulate_demand(n_products=2, n_days=20000, stockout_rate=0.0, rng=6, law="negative_binomial",
                        concentration=2.0, levels=[1.0, 30.0], promo_prob=0.0)
    assert np.all(d.demand == np.round(d.demand)) and d.demand.min() == 0
    # standardised residuals against the stated mean and sd: mean 0, variance 1 (scipy's moments)
    z = (d.demand - d.mean_demand) / d.scale
    assert abs(z.mean()) < 0.03 and abs(z.var() - 1) < 0.06
    mu = d.mean_demand[0]
    zero_share = ss.nbinom.pmf(0, 2.0, 2.0 / (2.0 + mu)).mean()
    assert abs(np.mean(d.demand[0] == 0) - zero_share) < 0.02
    with pytest.raises(ValueError, match="law must be"):
        simulate_demand(law="poisson")
    with pytest.raises(ValueError, match="concentration must be a finite positive"):
        simulate_demand(law="negative_binomial", concentration=0.0)
