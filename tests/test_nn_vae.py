"""Tests of mathkit.nn's VAE: ELBO terms against torch.distributions and scipy, shapes,
gradients, the variance floor, seeds, and the stop at the first non-finite loss."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Normal, kl_divergence

from mathkit import nn as mnn

D, K = 6, 2


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _data(n=20, seed=0, dtype=torch.float64):
    return torch.rand(n, D, generator=_gen(seed), dtype=dtype)


def _vae(seed=0, dtype=torch.float64, **kwargs):
    torch.manual_seed(seed)
    return mnn.VAE(D, K, 8, **kwargs).to(dtype)


# ----------------------------------------------------------------------------- closed forms

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_matches_torch(seed):
    g = _gen(seed)
    loc = 3 * torch.randn(10, 4, generator=g, dtype=torch.float64)
    log_variance = torch.empty(10, 4, dtype=torch.float64).uniform_(-30, 10, generator=g)
    want = kl_divergence(Normal(loc, (0.5 * log_variance).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(mnn.kl_normal_standard(loc, log_variance), want, rtol=1e-12, atol=1e-12)
    assert (mnn.kl_normal_standard(loc, log_variance) >= 0).all()
    assert mnn.kl_normal_standard(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaussian_log_likelihood_matches_torch_and_scipy(seed):
    g = _gen(seed)
    x, loc = torch.randn(2, 7, 5, generator=g, dtype=torch.float64)
    variance = torch.empty(7, 5, dtype=torch.float64).uniform_(1e-8, 50, generator=g)
    got = mnn.gaussian_log_likelihood(x, loc, variance)
    torch.testing.assert_close(got, Normal(loc, variance.sqrt()).log_prob(x).sum(-1), rtol=1e-12, atol=1e-10)
    scipy_ll = stats.norm.logpdf(x.numpy(), loc.numpy(), np.sqrt(variance.numpy())).sum(-1)
    np.testing.assert_allclose(got.numpy(), scipy_ll, rtol=1e-12)


def test_gaussian_log_likelihood_is_unbounded_and_undefined():
    # The pathology chapter 12 shows: at x = mu the density grows without bound as v -> 0,
    # and a negative variance gives NaN.
    x = torch.zeros(1, 3, dtype=torch.float64)
    values = [mnn.gaussian_log_likelihood(x, x, torch.full((1, 3), v, dtype=torch.float64)).item()
              for v in (1e-2, 1e-6, 1e-12)]
    np.testing.assert_allclose(values, [-1.5 * math.log(2 * math.pi * v) for v in (1e-2, 1e-6, 1e-12)], rtol=1e-14)
    assert values[0] < values[1] < values[2]
    assert math.isnan(mnn.gaussian_log_likelihood(x + 1, x, -torch.ones(1, 3, dtype=torch.float64)).item())


@pytest.mark.parametrize("seed", [0, 1])
def test_bernoulli_log_likelihood_matches_torch(seed):
    g = _gen(seed)
    logits = 5 * torch.randn(9, 5, generator=g, dtype=torch.float64)
    x = torch.bernoulli(torch.full((9, 5), 0.5, dtype=torch.float64), generator=g)
    want = Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(mnn.bernoulli_log_likelihood(x, logits), want, rtol=1e-12, atol=1e-12)
    # Extreme logits stay finite and exact: log sigmoid(-200) = -200 to double precision.
    far = mnn.bernoulli_log_likelihood(torch.ones(1, 1, dtype=torch.float64), torch.full((1, 1), -200.0, dtype=torch.float64))
    assert far.item() == pytest.approx(-200.0, rel=1e-15)


# ----------------------------------------------------------------------------- the model

@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_shapes(likelihood):
    model, x = _vae(likelihood=likelihood), _data()
    q = model.encode(x)
    assert q.batch_shape == (20, K)
    p = model.decode(q.rsample())
    assert p.batch_shape == (20, D) and model(x).shape == (20, D)
    terms = model.elbo_terms(x, _gen(0))
    assert terms.log_likelihood.shape == terms.kl.shape == terms.elbo.shape == (20,)
    assert (terms.variance is None) == (likelihood == "bernoulli")
    assert model.sample(5, _gen(1)).shape == (5, D)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("seed", [0, 3])
def test_elbo_terms_match_torch_distributions(likelihood, seed):
    model, x = _vae(seed, likelihood=likelihood), _data(seed=seed)
    terms = model.elbo_terms(x, _gen(seed))
    # Rebuild the same draw from the same generator state, then score it with torch.
    q = model.encode(x)
    z = q.loc + q.scale * torch.randn(q.loc.shape, generator=_gen(seed), dtype=torch.float64)
    want_ll = model.decode(z).log_prob(x).sum(-1)
    want_kl = kl_divergence(q, Normal(torch.zeros_like(q.loc), torch.ones_like(q.loc))).sum(-1)
    torch.testing.assert_close(terms.log_likelihood, want_ll, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.kl, want_kl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.elbo, want_ll - want_kl)


@pytest.mark.parametrize("variance", ["unconstrained", "exp", "softplus"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_start_at_init_variance_with_finite_gradients(variance, dtype):
    model, x = _vae(variance=variance, init_variance=0.3, dtype=dtype), _data(dtype=dtype)
    terms = model.elbo_terms(x, _gen(0))
    torch.testing.assert_close(terms.variance, torch.full_like(terms.variance, 0.3))
    (-terms.elbo.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_floor_enforced_and_exp_unfloored():
    x = _data()
    floored = _vae(variance="softplus", min_variance=0.01)
    free = _vae(variance="exp")
    with torch.no_grad():
        for model in (floored, free):
            model.variance_head.bias.fill_(-1e3)
    assert (floored.elbo_terms(x, _gen(0)).variance == 0.01).all()
    assert (free.elbo_terms(x, _gen(0)).variance == 0).all()
    # The floor bounds the log-likelihood: at most -(D/2) log(2 pi v_min).
    bound = -0.5 * D * math.log(2 * math.pi * 0.01)
    assert (floored.elbo_terms(x, _gen(0)).log_likelihood <= bound).all()


def test_training_keeps_the_floor_and_improves():
    x = _data(200, seed=4)
    model = _vae(variance="softplus", min_variance=0.05)
    history = mnn.fit_vae(model, x, epochs=15, lr=1e-2, batch_size=50, X_val=x[:50], generator=_gen(0))
    assert min(history.min_variance) >= 0.05
    assert np.mean(history.elbo[-4:]) > np.mean(history.elbo[:4])
    assert len(history.elbo) == 15 * 4 and len(history.val_elbo) == 15


def test_same_seed_same_run_whatever_ran_before():
    x = _data(60, seed=5)
    runs = []
    for noise in (False, True):
        if noise:
            torch.randn(1000)  # global RNG use must not change a seeded run
        model = _vae(seed=7)
        runs.append(mnn.fit_vae(model, x, epochs=3, batch_size=16, generator=_gen(11)))
    assert runs[0].elbo == runs[1].elbo and runs[0].min_variance == runs[1].min_variance


def test_unconstrained_variance_stops_at_first_non_finite_loss():
    # Constant features: the likelihood pays for shrinking their variance, and nothing
    # keeps a raw linear output above zero.
    x = torch.cat([_data(200, seed=6)[:, :3], torch.zeros(200, 3, dtype=torch.float64)], 1)
    model = _vae(variance="unconstrained", init_variance=0.05)
    with pytest.raises(mnn.NonFiniteLossError, match="loss must be finite") as info:
        mnn.fit_vae(model, x, epochs=200, lr=1e-2, batch_size=50, generator=_gen(0))
    history = info.value.history
    assert info.value.step == len(history.elbo) - 1
    assert not math.isfinite(history.elbo[-1]) and all(map(math.isfinite, history.elbo[:-1]))
    assert history.min_variance[-1] <= 0
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was not taken


def test_bad_input():
    model = _vae()
    x = _data()
    x[3, 2] = math.nan
    with pytest.raises(ValueError, match=r"X must be finite, got nan at index \(3, 2\)"):
        mnn.fit_vae(model, x)
    with pytest.raises(ValueError, match=r"X_val must have shape \(n, 6\)"):
        mnn.fit_vae(model, _data(), X_val=_data()[:, :4])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mnn.fit_vae(_vae(likelihood="bernoulli"), _data() + 1)
    for kwargs, message in [
        (dict(likelihood="poisson"), "likelihood must be"),
        (dict(variance="relu"), "variance must be one of"),
        (dict(min_variance=0.0), "min_variance must be finite and > 0"),
        (dict(min_variance=0.1, init_variance=0.05), "init_variance must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            mnn.VAE(D, **kwargs)


def test_losses_need_matching_shapes_and_finite_targets():
    x = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"loc must have the shape of x, \(4, 3\), got \(3,\)"):
        mnn.gaussian_log_likelihood(x, torch.zeros(3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="logits must have the shape of x"):
        mnn.bernoulli_log_likelihood(x, torch.zeros(4, 1, dtype=torch.float64))
    x[1, 2] = math.inf
    with pytest.raises(ValueError, match=r"x must be finite, got inf at index \(1, 2\)"):
        mnn.gaussian_log_likelihood(x, torch.zeros_like(x), torch.ones_like(x))


def test_integer_data_promoted_to_the_model_dtype():
    counts = torch.randint(0, 17, (40, D), generator=_gen(8))  # grey levels, as integers
    runs = [mnn.fit_vae(_vae(seed=3, dtype=torch.float32), data, epochs=2, batch_size=20, generator=_gen(9))
            for data in (counts, counts.float())]
    assert runs[0].elbo == runs[1].elbo and all(map(math.isfinite, runs[0].elbo))
    binary = (counts > 8).numpy()  # a boolean numpy array for a Bernoulli decoder
    history = mnn.fit_vae(_vae(likelihood="bernoulli"), binary, epochs=1, batch_size=20, generator=_gen(0))
    assert len(history.elbo) == 2 and math.isnan(history.min_variance[0])
