"""Tests of mathkit.nn: windowing without look-ahead, heads against scipy, training helper."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from mathkit import nn as mnn


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny recurrent nets run fastest on one thread; two threads on a busy 2-core
    # machine spend most of their time waiting for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hidden(n=5, size=4, seed=0):
    return torch.randn(n, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- windows

def test_make_windows_layout_by_hand():
    values = np.arange(12, dtype=float).reshape(2, 6)  # series 0: 0..5, series 1: 6..11
    covariates = 100 + np.arange(12, dtype=float).reshape(2, 6, 1)
    w = mnn.make_windows(values, covariates, window=3, unit=np.array([1.0, 2.0]), dtype=torch.float64)
    assert len(w) == 2 * 3 and w.inputs.shape == (6, 3, 2)
    # Series 1, target time 4: past values 7, 8, 9 (at t = 1, 2, 3) divided by 2,
    # each paired with the covariate of the following day (t = 2, 3, 4).
    i = int(np.flatnonzero((w.series.numpy() == 1) & (w.time.numpy() == 4))[0])
    np.testing.assert_array_equal(w.inputs[i, :, 0].numpy(), [3.5, 4.0, 4.5])
    np.testing.assert_array_equal(w.inputs[i, :, 1].numpy(), [108.0, 109.0, 110.0])
    assert w.target[i].item() == 10 / 2 and w.unit[i].item() == 2.0


def test_window_unit_is_one_plus_the_window_mean():
    values = np.arange(20, dtype=float).reshape(2, 10)
    w = mnn.make_windows(values, window=4, unit="window", dtype=torch.float64)
    i = int(np.flatnonzero((w.series.numpy() == 1) & (w.time.numpy() == 7))[0])
    past = values[1, 3:7]  # 13, 14, 15, 16
    c = 1.0 + past.mean()
    assert w.unit[i].item() == pytest.approx(c)
    np.testing.assert_allclose(w.inputs[i, :, 0].numpy(), past / c)
    assert w.target[i].item() * w.unit[i].item() == pytest.approx(values[1, 7])
    with pytest.raises(ValueError, match="unit"):
        mnn.make_windows(values, window=4, unit="series")


def test_series_one_hot_codes_each_series():
    w = mnn.make_windows(np.ones((3, 10)), np.zeros((3, 10, 2)), window=4, unit=np.ones(3), series_one_hot=True)
    assert w.inputs.shape[-1] == 1 + 2 + 3
    codes = w.inputs[:, :, 3:]
    torch.testing.assert_close(codes, torch.eye(3)[w.series][:, None].expand_as(codes))


def test_windows_never_see_the_target_or_later_values():
    rng = np.random.default_rng(0)
    values = rng.random((3, 40))
    later = values.copy()
    later[:, 25:] += 100.0  # change the target day t = 25 and everything after it
    a = mnn.make_windows(values, window=7, unit=np.ones(3))
    b = mnn.make_windows(later, window=7, unit=np.ones(3))
    upto = a.time <= 25
    torch.testing.assert_close(a.inputs[upto], b.inputs[upto])
    assert not torch.equal(a.target[upto], b.target[upto])


def test_windows_between_and_censoring_mask():
    values = np.ones((2, 20))
    mask = np.zeros((2, 20), dtype=bool)
    mask[1, 15] = True
    w = mnn.make_windows(values, window=5, unit=np.ones(2), right_censored=mask)
    sub = w.between(10, 16)
    assert sorted(set(sub.time.tolist())) == list(range(10, 16)) and len(sub) == 12
    assert sub.right_censored.sum().item() == 1
    assert sub.right_censored[(sub.series == 1) & (sub.time == 15)].item()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(window=0), "window"),
        (dict(window=5, unit=np.array([1.0, -1.0])), "unit"),
        (dict(window=5, right_censored=np.zeros((2, 10))), "right_censored"),
        (dict(window=5, covariates=np.zeros((2, 9, 1))), "covariates"),
    ],
)
def test_make_windows_bad_input(kwargs, match):
    kwargs.setdefault("unit", np.ones(2))
    with pytest.raises(ValueError, match=match):
        mnn.make_windows(np.ones((2, 10)), **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_make_windows_names_the_first_non_finite_value(bad):
    values = np.ones((2, 10))
    values[1, 6] = bad
    values[1, 8] = np.nan
    with pytest.raises(ValueError, match=r"values must be finite, got .* at index \(1, 6\)"):
        mnn.make_windows(values, window=3, unit=np.ones(2))
    covariates = np.zeros((2, 10, 2))
    covariates[0, 4, 1] = bad
    with pytest.raises(ValueError, match=r"covariates must be finite, got .* at index \(0, 4, 1\)"):
        mnn.make_windows(np.ones((2, 10)), covariates, window=3, unit=np.ones(2))


@pytest.mark.parametrize(
    "unit, match",
    [(np.array([1.0, np.inf]), "unit must be finite, got inf at index 1"),
     (np.array([1.0, np.nan]), "unit must be finite, got nan at index 1"),
     (np.array([0.0, 1.0]), "unit must be 2 finite positive numbers"),
     (np.ones(3), "unit must be 2 finite positive numbers")],
)
def test_make_windows_unit_must_be_finite_and_positive(unit, match):
    # unit = inf used to divide a series down to zeros
    with pytest.raises(ValueError, match=match):
        mnn.make_windows(np.ones((2, 10)), window=3, unit=unit)


def test_integer_series_are_promoted_and_integer_dtypes_refused():
    counts = np.array([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])
    w = mnn.make_windows(counts, window=3, unit=np.array([2, 4]))
    # targets in original units are the counts exactly, not counts // unit
    np.testing.assert_array_equal((w.target * w.unit).numpy(), counts[w.series.numpy(), w.time.numpy()])
    assert w.target.dtype == torch.float32
    with pytest.raises(TypeError, match="dtype must be a floating"):
        mnn.make_windows(counts, window=3, unit=np.ones(2), dtype=torch.int64)


@pytest.mark.parametrize("window", [2.0, 2.5, True, 8, -1])
def test_window_must_be_an_integer_below_the_series_length(window):
    with pytest.raises(ValueError, match=r"window must be an integer in \[1, 7\]"):
        mnn.make_windows(np.ones((2, 8)), window=window, unit=np.ones(2))


def test_window_unit_refuses_a_non_positive_scale():
    values = np.full((2, 12), 1.0)
    values[1] = -3.0  # 1 + window mean = -2: the per-window scale would flip signs
    with pytest.raises(ValueError, match="unit='window'.*series 1"):
        mnn.make_windows(values, window=4, unit="window")


def test_empty_splits_raise_clearly():
    w = mnn.make_windows(np.ones((2, 20)), window=5, unit=np.ones(2))
    with pytest.raises(ValueError, match=r"no window has its target time in \[start, stop\) = \[0, 5\).*\[5, 19\]"):
        w.between(0, 5)
    with pytest.raises(ValueError, match="values must have shape"):
        mnn.make_windows(np.ones((0, 20)), window=5, unit=np.ones(0))


# ----------------------------------------------------------------------------- heads

@pytest.mark.parametrize("name", ["point", "gaussian", "truncated", "censored"])
def test_forecaster_output_shapes(name):
    model = mnn.SequenceForecaster(3, name, hidden_size=8)
    out = model(torch.randn(5, 7, 3))
    assert (out if name == "point" else out.mean).shape == (5,)


@pytest.mark.parametrize("name", ["gaussian", "truncated", "censored"])
@pytest.mark.parametrize("bias", [-200.0, 0.0, 200.0])
def test_scales_positive_and_finite_for_extreme_raw_outputs(name, bias):
    head = mnn.HEADS[name](4)
    with torch.no_grad():
        head.linear.bias.fill_(bias)
    dist = head(_hidden())
    assert torch.all(dist.scale >= head.min_scale) and torch.all(torch.isfinite(dist.scale))


def test_gaussian_head_loss_matches_scipy():
    head = mnn.GaussianHead(4).double()
    dist = head(_hidden().double())
    y = torch.linspace(-2, 3, 5, dtype=torch.float64)
    expected = -stats.norm.logpdf(y.numpy(), dist.loc.detach().numpy(), dist.scale.detach().numpy()).mean()
    assert head.loss(dist, y).item() == pytest.approx(expected, rel=1e-10)


def test_relu_mean_is_never_negative_but_the_interval_can_be():
    head = mnn.GaussianHead(4, mean_activation="relu")
    with torch.no_grad():
        head.linear.bias.copy_(torch.tensor([-5.0, 0.0]))
    dist = head(_hidden())
    assert torch.all(dist.mean >= 0)
    assert torch.all(dist.icdf(torch.tensor(0.1)) < 0)


def test_truncated_head_loss_and_mean_match_scipy():
    head = mnn.TruncatedNormalHead(4).double()
    with torch.no_grad():
        head.linear.bias.copy_(torch.tensor([-1.0, 0.0]))  # locations around -1: truncation matters
    dist = head(_hidden().double())
    loc, scale = dist.loc.detach().numpy(), dist.scale.detach().numpy()
    y = torch.linspace(0.1, 3, 5, dtype=torch.float64)
    a = -loc / scale
    expected = -stats.truncnorm.logpdf(y.numpy(), a, np.inf, loc=loc, scale=scale).mean()
    assert head.loss(dist, y).item() == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(dist.mean.detach().numpy(), stats.truncnorm.mean(a, np.inf, loc=loc, scale=scale), rtol=1e-9)


def test_censored_head_uses_survival_on_censored_targets():
    head = mnn.CensoredTruncatedNormalHead(4).double()
    dist = head(_hidden().double())
    loc, scale = dist.loc.detach().numpy(), dist.scale.detach().numpy()
    y = torch.linspace(0.2, 2, 5, dtype=torch.float64)
    censored = torch.tensor([True, False, True, False, False])
    a = -loc / scale
    logpdf = stats.truncnorm.logpdf(y.numpy(), a, np.inf, loc=loc, scale=scale)
    logsf = stats.truncnorm.logsf(y.numpy(), a, np.inf, loc=loc, scale=scale)
    expected = -np.where(censored.numpy(), logsf, logpdf).mean()
    assert head.loss(dist, y, censored).item() == pytest.approx(expected, rel=1e-9)
    # Ignoring the mask (the uncensored head) gives a different, larger-likelihood-of-y loss.
    assert mnn.TruncatedNormalHead.loss(head, dist, y).item() == pytest.approx(-logpdf.mean(), rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_censored_gradient_finite_with_everything_censored(dtype):
    torch.manual_seed(0)
    model = mnn.SequenceForecaster(2, "censored", hidden_size=8).to(dtype)
    x = torch.randn(64, 6, 2, dtype=dtype)
    # Targets from just above zero to far in the right tail of any plausible forecast.
    y = torch.cat([torch.full((32,), 1e-3, dtype=dtype), torch.linspace(5, 60, 32, dtype=dtype)])
    windows = mnn.Windows(x, y, torch.ones_like(y), torch.ones(64, dtype=torch.bool),
                          torch.zeros(64, dtype=torch.long), torch.arange(64))
    loss = model.loss(windows)
    loss.backward()
    assert torch.isfinite(loss)
    for p in model.parameters():
        assert torch.all(torch.isfinite(p.grad))


def test_rescale_gives_quantiles_in_original_units():
    head = mnn.TruncatedNormalHead(4).double()
    dist = head(_hidden().double())
    unit = torch.linspace(0.5, 20, 5, dtype=torch.float64)
    big = head.rescale(dist, unit)
    loc, scale = (dist.loc * unit).detach().numpy(), (dist.scale * unit).detach().numpy()
    expected = stats.truncnorm.ppf(0.9, -loc / scale, np.inf, loc=loc, scale=scale)
    np.testing.assert_allclose(big.icdf(torch.tensor(0.9, dtype=torch.float64)).detach().numpy(), expected, rtol=1e-8)
    point = mnn.PointHead(4)
    torch.testing.assert_close(point.rescale(torch.ones(5), unit.float()), unit.float())


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(head="poisson"), "head"), (dict(cell="rnn"), "cell"), (dict(head="gaussian", mean_activation="tanh"), "mean_activation")],
)
def test_forecaster_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mnn.SequenceForecaster(3, **kwargs)


# ----------------------------------------------------------------------------- training

def _iid_windows(n, loc, scale, cap, seed):
    """Targets iid from N(loc, scale^2) truncated at zero, censored at ``cap``; inputs are noise."""
    rng = np.random.default_rng(seed)
    y = stats.truncnorm.rvs(-loc / scale, np.inf, loc=loc, scale=scale, size=n, random_state=rng)
    censored = y > cap
    sales = np.minimum(y, cap)
    x = torch.as_tensor(rng.standard_normal((n, 3, 1)), dtype=torch.float32)
    return mnn.Windows(x, torch.as_tensor(sales, dtype=torch.float32), torch.ones(n), torch.as_tensor(censored),
                       torch.zeros(n, dtype=torch.long), torch.arange(n))


def test_censored_head_recovers_the_mean_that_mse_underestimates():
    # Truth: N(2, 1) truncated at 0, mean 2.055; sales capped at 2.5 (about 31% censored).
    loc, scale, cap = 2.0, 1.0, 2.5
    true_mean = stats.truncnorm.mean(-loc / scale, np.inf, loc=loc, scale=scale)
    train, val = _iid_windows(1500, loc, scale, cap, 1), _iid_windows(500, loc, scale, cap, 2)
    means = {}
    for name in ("point", "censored"):
        torch.manual_seed(0)
        model = mnn.SequenceForecaster(1, name, hidden_size=4)
        mnn.fit(model, train, val, epochs=40, lr=2e-2, batch_size=250, patience=10,
                generator=torch.Generator().manual_seed(0), progress=False)
        out = model.predict(val)
        means[name] = float((out if name == "point" else out.mean).mean())
    assert abs(means["censored"] - true_mean) < 0.12, means
    assert means["point"] < true_mean - 0.2, means  # the censored sales average about 1.8


def test_fit_early_stopping_restores_the_best_epoch():
    train, val = _iid_windows(300, 1.0, 1.0, 10.0, 3), _iid_windows(100, 1.0, 1.0, 10.0, 4)
    torch.manual_seed(0)
    model = mnn.SequenceForecaster(1, "gaussian", hidden_size=4)
    history = mnn.fit(model, train, val, epochs=200, lr=0.05, patience=3, progress=False,
                      generator=torch.Generator().manual_seed(0))
    assert history.best_epoch == int(np.argmin(history.val_loss))
    assert len(history.val_loss) <= history.best_epoch + 1 + 3
    with torch.no_grad():
        assert model.loss(val).item() == pytest.approx(history.best_val_loss, rel=1e-6)


def test_fit_bad_input():
    w = _iid_windows(10, 1.0, 1.0, 10.0, 0)
    model = mnn.SequenceForecaster(1, "point", hidden_size=4)
    with pytest.raises(ValueError, match="val must hold at least one window"):
        mnn.fit(model, w, w[:0])
    with pytest.raises(ValueError, match="train must hold at least one window"):
        mnn.fit(model, w[:0], w)
    for setting, value in [("lr", 0.0), ("lr", math.inf), ("lr", math.nan), ("epochs", 2.5), ("batch_size", 0),
                           ("max_grad_norm", -1.0)]:
        with pytest.raises(ValueError, match=setting):
            mnn.fit(model, w, w, **{setting: value})
    with pytest.raises(TypeError, match="generator"):
        mnn.fit(model, w, w, generator=np.random.default_rng(0))


def _with(windows, **parts):
    return mnn.Windows(**{name: parts.get(name, getattr(windows, name)) for name in windows.__dataclass_fields__})


@pytest.mark.parametrize("part, index", [("inputs", (3, 1, 0)), ("target", 7), ("unit", 2)])
def test_fit_refuses_non_finite_windows_before_training(part, index):
    # NaN inputs used to train on NaN losses, or to be blamed on the Gaussian head's scale
    w = _iid_windows(20, 1.0, 1.0, 10.0, 0)
    bad = getattr(w, part).clone()
    bad[index] = math.nan
    model = mnn.SequenceForecaster(1, "gaussian", hidden_size=4)
    before = [p.detach().clone() for p in model.parameters()]
    where = str(index).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=rf"val.{part} must be finite, got nan at index {where}"):
        mnn.fit(model, w, _with(w, **{part: bad}), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fit_stops_at_the_first_loss_of_a_target_outside_the_support():
    # a truncated-at-zero head cannot give a negative target any density: -log p = inf
    w = _iid_windows(40, 1.0, 1.0, 10.0, 0)
    target = w.target.clone()
    target[23] = -0.5
    model = mnn.SequenceForecaster(1, "truncated", hidden_size=4)
    with pytest.raises(ValueError, match=r"first non-finite loss \(inf\) at epoch 1, step 2.*"
                                         r"outside the head's support: train.target\[23\] = -0.5"):
        mnn.fit(model, _with(w, target=target), w, batch_size=20, generator=torch.Generator().manual_seed(0),
                progress=False)


def test_fit_blames_a_learning_rate_too_large():
    # MSE on float32 overflows once Adam's steps of size lr put the output near 1e30
    w = _iid_windows(40, 1.0, 1.0, 10.0, 0)
    torch.manual_seed(0)
    model = mnn.SequenceForecaster(1, "point", hidden_size=4)
    with pytest.raises(ValueError, match=r"non-finite loss.*after epoch 1.*learning rate too large \(lr=1e\+30\)"):
        mnn.fit(model, w, w, lr=1e30, epochs=3, progress=False)


def test_fit_names_a_learning_rate_beyond_the_weights_range():
    # Adam's first step, 10 lr, overflowed float32 inside torch with an error naming neither
    w = _iid_windows(40, 1.0, 1.0, 10.0, 0)
    model = mnn.SequenceForecaster(1, "point", hidden_size=4)
    with pytest.raises(ValueError, match=r"lr must be below 3.4e\+37 for torch.float32 weights"):
        mnn.fit(model, w, w, lr=1e38, progress=False)


def test_fit_promotes_integer_targets_and_follows_the_model_dtype():
    w = _iid_windows(60, 3.0, 1.0, 10.0, 0)
    counts = _with(w, target=w.target.round().long(), inputs=w.inputs.double())
    histories = []
    for windows in (counts, _with(w, target=w.target.round())):
        torch.manual_seed(0)
        model = mnn.SequenceForecaster(1, "gaussian", hidden_size=4)
        histories.append(mnn.fit(model, windows, windows, epochs=3, progress=False,
                                 generator=torch.Generator().manual_seed(0)))
    assert histories[0].train_loss == pytest.approx(histories[1].train_loss, rel=1e-6)
    with pytest.raises(ValueError, match="patience"):
        mnn.fit(model, w, w, patience=0)


def test_predict_follows_the_model_dtype_as_fit_does():
    w = _iid_windows(60, 3.0, 1.0, 10.0, 0)
    torch.manual_seed(0)
    model = mnn.SequenceForecaster(1, "gaussian", hidden_size=4)
    wide = _with(w, inputs=w.inputs.double(), unit=w.unit.double())
    mnn.fit(model, wide, wide, epochs=1, progress=False)
    torch.testing.assert_close(model.predict(wide).mean, model.predict(w).mean)


def test_count_head_failures_are_not_blamed_on_valid_counts():
    # a count law is on target * unit: a valid count was reported as "outside the head's support"
    values = np.abs(np.random.default_rng(1).normal(5.0, 2.0, (3, 60))).round()
    w = mnn.make_windows(values, window=8, unit=values.mean(1))
    model = mnn.SequenceForecaster(1, "negbin", hidden_size=8)
    with torch.no_grad():
        model.head.linear.bias.fill_(math.nan)
    with pytest.raises(ValueError, match="the weights are no longer finite") as caught:
        mnn.fit(model, w.between(0, 45), w.between(45, 60), epochs=1, progress=False)
    assert "outside the head's support" not in str(caught.value)


def test_min_scale_must_be_positive():
    with pytest.raises(ValueError, match="min_scale"):
        mnn.GaussianHead(4, min_scale=0.0)
    assert math.isfinite(mnn.TruncatedNormalHead(4).min_scale)
