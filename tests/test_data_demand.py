"""Tests of the demand simulator: censoring identities, controllable stock-outs, determinism."""

import numpy as np
import pytest
from scipy import stats

from mathkit.data import simulate_demand


@pytest.fixture(scope="module")
def data():
    return simulate_demand(n_products=5, n_days=400, stockout_rate=0.25, rng=7)


def test_shapes_and_splits(data):
    for name in ("demand", "sales", "stock", "stockout", "promo", "loc", "scale", "mean_demand"):
        assert getattr(data, name).shape == (5, 400), name
    assert data.features().shape == (5, 400, len(data.feature_names))
    s = data.splits
    assert (s["train"].start, s["train"].stop, s["val"].stop, s["test"].stop) == (0, 240, 320, 400)
    assert s["val"].start == s["train"].stop and s["test"].start == s["val"].stop


def test_sales_are_demand_censored_at_stock(data):
    assert np.all(data.demand >= 0)
    assert np.all(data.sales <= data.stock)
    assert np.all(data.sales <= data.demand)
    # A stock-out day sells exactly the stock; any other day sells exactly the demand.
    np.testing.assert_array_equal(data.sales[data.stockout], data.stock[data.stockout])
    np.testing.assert_array_equal(data.sales[~data.stockout], data.demand[~data.stockout])
    np.testing.assert_array_equal(data.stockout, data.demand > data.stock)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.4])
def test_stockout_rate_is_controllable(rate):
    d = simulate_demand(n_products=4, n_days=500, stockout_rate=rate, rng=1)
    np.testing.assert_allclose(d.stockout.mean(axis=1), rate, atol=0.01)
    if rate == 0.0:
        np.testing.assert_array_equal(d.sales, d.demand)


def test_stockouts_fall_on_busy_days():
    d = simulate_demand(n_products=4, n_days=730, stockout_rate=0.2, promo_prob=0.15, rng=3)
    assert d.stockout[d.promo].mean() > 2 * d.stockout[~d.promo].mean()


def test_same_seed_same_data_and_generators_accepted():
    a = simulate_demand(n_days=60, rng=11)
    b = simulate_demand(n_days=60, rng=np.random.default_rng(11))
    c = simulate_demand(n_days=60, rng=12)
    np.testing.assert_array_equal(a.sales, b.sales)
    assert not np.array_equal(a.sales, c.sales)


def test_demand_follows_the_stated_truncated_normal():
    # Probability integral transform with scipy's truncnorm: uniform if the draws follow it.
    d = simulate_demand(n_products=6, n_days=730, rng=5)
    lower = -d.loc / d.scale
    u = stats.truncnorm.cdf(d.demand, lower, np.inf, loc=d.loc, scale=d.scale)
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    np.testing.assert_allclose(d.demand.mean(), d.mean_demand.mean(), rtol=0.02)


def test_low_volume_products_sit_near_zero():
    d = simulate_demand(n_products=6, n_days=365, rng=0)
    assert d.mean_demand[0].mean() < 3 and d.mean_demand[-1].mean() > 20
    assert (d.demand[0] < 0.5).mean() > 0.1


def test_features_one_hot_weekday_and_promo(data):
    f = data.features()
    np.testing.assert_array_equal(f[..., :7].sum(-1), 1.0)
    np.testing.assert_array_equal(f[0, :7, :7], np.eye(7))  # day 0 is a Monday
    np.testing.assert_array_equal(f[..., 7], data.promo)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_products=0), "n_products"),
        (dict(n_days=10), "n_days"),
        (dict(noise=0.0), "noise"),
        (dict(promo_prob=1.5), "promo_prob"),
        (dict(stockout_rate=1.0), "stockout_rate"),
        (dict(stockout_rate=-0.1), "stockout_rate"),
        (dict(levels=np.ones(3)), "levels"),
        (dict(split=(0.5, 0.5, 0.0)), "split"),
        (dict(n_products=float("nan")), "n_products"),
        (dict(n_days=100.5), "n_days"),
        (dict(noise=float("inf")), "noise"),
        (dict(noise=float("nan")), "noise"),
        (dict(levels=np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0])), "levels must be finite, got nan at index 2"),
        (dict(levels=np.array([1.0, 2.0, np.inf, 4.0, 5.0, 6.0])), "levels"),
        (dict(split=(0.6, 0.2, float("nan"))), "split"),
        # 30 days split 0.98 / 0.01 / 0.01 rounds the validation period to no day at all
        (dict(n_days=30, split=(0.98, 0.01, 0.01)), "leaves the val period empty"),
        (dict(rng=-1), "rng"),
    ],
)
def test_bad_input_raises(kwargs, match):
    kwargs.setdefault("rng", 0)
    with pytest.raises(ValueError, match=match):
        simulate_demand(**kwargs)


@pytest.mark.parametrize("kwargs, match", [(dict(rng="seed"), "rng"), (dict(rng=np.random.RandomState(0)), "rng"),
                                           (dict(n_days="730"), "n_days"), (dict(noise="1"), "noise")])
def test_wrong_types_raise_type_errors(kwargs, match):
    with pytest.raises(TypeError, match=match):
        simulate_demand(**kwargs)


def test_integral_counts_and_integer_levels_are_accepted():
    a = simulate_demand(n_products=3, n_days=60, levels=np.array([1, 5, 20]), rng=4)
    b = simulate_demand(n_products=np.int64(3), n_days=60.0, levels=np.array([1.0, 5.0, 20.0]), rng=np.int64(4))
    np.testing.assert_array_equal(a.sales, b.sales)
    assert a.sales.dtype == np.float64 and a.n_days == 60
