"""mathkit.regression.LikelihoodRegressor against closed forms (least squares), scipy's laws,
simulated truth for every family, censored data (chapter 05's model), and scikit-learn's machinery."""

import math
import warnings

import numpy as np
import pytest
import scipy.stats as ss
import torch
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.utils.estimator_checks import check_estimator
from torch.distributions import Distribution, Gamma, Normal, constraints

from mathkit.data import simulate_demand
from mathkit.regression import (
    Family, LikelihoodRegressor, Parameter, constant, generalized_beta, given, linear, truncated_normal,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    # these fits are small: a second torch thread only spins (several times slower on a loaded machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def linear_data(seed, n=400, scale=0.7):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.01] + [0.0, 5.0, 3.0]  # mixed units and offsets
    y = X @ [1.0, -0.2, 30.0] + 2.0 + scale * rng.normal(size=n)
    return X, y


def beta_data(seed, n, coef=(0.4, 0.8, -0.5), precision=8.0, low=-2.0, high=6.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=n)
    mu = 1 / (1 + np.exp(-(coef[0] + coef[1] * x + coef[2] * x**2)))
    y = low + (high - low) * rng.beta(mu * precision, (1 - mu) * precision)
    return np.column_stack([x, x**2]), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_normal_family_is_least_squares_with_mle_variance(seed):
    X, y = linear_data(seed)
    model = LikelihoodRegressor().fit(X, y)
    ols = LinearRegression().fit(X, y)
    np.testing.assert_allclose(model.coef_["loc"], ols.coef_, rtol=1e-6)
    assert model.intercept_["loc"] == pytest.approx(ols.intercept_, rel=1e-6, abs=1e-6)
    rss = np.sum((y - ols.predict(X)) ** 2)
    assert model.constants_["scale"] == pytest.approx(math.sqrt(rss / len(y)), rel=1e-6)
    np.testing.assert_allclose(model.predict(X), ols.predict(X), rtol=1e-7, atol=1e-6)
    assert model.score(X, y) == pytest.approx(ols.score(X, y), rel=1e-9)
    # the log-likelihood is scipy's at the MLE
    ref = ss.norm.logpdf(y, ols.predict(X), math.sqrt(rss / len(y))).sum()
    assert model.log_likelihood(X, y) == pytest.approx(ref, rel=1e-8)
    assert model.log_likelihood_ == pytest.approx(ref, rel=1e-8)


def test_predictions_follow_affine_changes_of_units():
    X, y = linear_data(3)
    base = LikelihoodRegressor().fit(X, y).predict(X)
    rescaled = LikelihoodRegressor().fit(X * [1e3, 1e-2, 7.0] - 50.0, 3.0 * y + 100.0)
    np.testing.assert_allclose(rescaled.predict(X * [1e3, 1e-2, 7.0] - 50.0), 3.0 * base + 100.0, rtol=1e-6)


def test_ridge_penalty_matches_ridge_at_the_fitted_scale():
    # sum r^2/(2 s^2) + alpha/2 |w|^2 on standardised features is ridge with lambda = alpha s^2
    X, y = linear_data(4, n=60)
    Xs = StandardScaler().fit_transform(X)
    model = LikelihoodRegressor(alpha=5.0).fit(Xs, y)
    ridge = Ridge(alpha=5.0 * model.constants_["scale"] ** 2).fit(Xs, y)
    np.testing.assert_allclose(model.coef_["loc"], ridge.coef_, rtol=1e-5)
    assert np.linalg.norm(model.coef_["loc"]) < np.linalg.norm(LinearRegression().fit(Xs, y).coef_)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_truncated_normal_family_recovers_coefficients(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 3, size=(4000, 1))
    loc = 0.5 + 1.5 * x[:, 0]
    y = ss.truncnorm.rvs(-loc / 2.0, np.inf, loc=loc, scale=2.0, random_state=rng)
    model = LikelihoodRegressor(truncated_normal(0.0)).fit(x, y)
    assert model.intercept_["loc"] == pytest.approx(0.5, abs=0.25)
    assert model.coef_["loc"][0] == pytest.approx(1.5, abs=0.12)
    assert model.constants_["scale"] == pytest.approx(2.0, abs=0.08)
    # the predictive mean is the truncated normal's, which least squares on y estimates without bias
    np.testing.assert_allclose(model.predict(x).mean(), y.mean(), rtol=0.02)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generalized_beta_family_recovers_coefficients(seed):
    X, y = beta_data(seed, 4000)
    model = LikelihoodRegressor(generalized_beta(-2.0, 6.0)).fit(X, y)
    assert model.intercept_["fraction"] == pytest.approx(0.4, abs=0.08)
    np.testing.assert_allclose(model.coef_["fraction"], [0.8, -0.5], atol=0.08)
    assert model.constants_["precision"] == pytest.approx(8.0, rel=0.08)


def test_generalized_beta_quantiles_and_likelihood_match_scipy():
    X, y = beta_data(5, 300)
    model = LikelihoodRegressor(generalized_beta(-2.0, 6.0)).fit(X, y)
    dist = model.predict_distribution(X[:20])
    a, b = dist.concentration1.numpy(), dist.concentration0.numpy()
    law = ss.beta(a, b, loc=-2.0, scale=8.0)
    for q in (0.05, 0.5, 0.95):
        np.testing.assert_allclose(model.predict(X[:20], quantile=q), law.ppf(q), rtol=1e-10)
    np.testing.assert_allclose(model.predict(X[:20]), law.mean(), rtol=1e-12)
    np.testing.assert_allclose(model.log_likelihood(X[:20], y[:20], reduction="none"), law.logpdf(y[:20]), rtol=1e-10)
    # a point outside the known support is impossible under the model
    outside = model.log_likelihood(X[:2], np.array([6.5, -3.0]), reduction="none")
    assert np.all(outside == -np.inf)


def test_normal_quantiles_match_scipy():
    X, y = linear_data(6)
    model = LikelihoodRegressor().fit(X, y)
    loc, scale = model.predict(X), model.constants_["scale"]
    for q in (0.1, 0.5, 0.975):
        np.testing.assert_allclose(model.predict(X, quantile=q), ss.norm.ppf(q, loc, scale), rtol=1e-10, atol=1e-10)


def gamma_family():
    return Family("gamma", Gamma, {"concentration": constant(constraints.positive),
                                   "rate": linear(constraints.positive)})


@pytest.mark.parametrize("seed", [0, 1])
def test_any_torch_family_through_the_factory(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(3000, 1))
    rate = np.exp(0.3 - 0.9 * x[:, 0])
    y = rng.gamma(3.0, 1.0 / rate)
    model = LikelihoodRegressor(gamma_family()).fit(x, y)
    assert model.intercept_["rate"] == pytest.approx(0.3, abs=0.06)
    assert model.coef_["rate"][0] == pytest.approx(-0.9, abs=0.06)
    assert model.constants_["concentration"] == pytest.approx(3.0, rel=0.07)
    dist = model.predict_distribution(x[:5])
    assert isinstance(dist, Gamma) and dist.batch_shape == (5,)
    np.testing.assert_allclose(model.predict(x[:5]), dist.mean.numpy())
    with pytest.raises(NotImplementedError, match="quantile"):
        model.predict(x[:5], quantile=0.5)


def test_left_censored_normal_recovers_coefficients_where_least_squares_is_biased():
    # a detection limit: values below 0 are recorded as 0 (the Tobit model)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 2, size=(3000, 1))
    latent = 0.2 + 1.0 * x[:, 0] + rng.normal(size=3000)
    y = np.maximum(latent, 0.0)
    model = LikelihoodRegressor().fit(x, y, left_censored=latent <= 0)
    assert model.coef_["loc"][0] == pytest.approx(1.0, abs=0.07)
    assert model.constants_["scale"] == pytest.approx(1.0, abs=0.05)
    assert LinearRegression().fit(x, y).coef_[0] < 0.85  # attenuated by the clipping


@pytest.mark.parametrize("seed", [9, 10, 11])
def test_censored_demand_model_of_chapter_05(seed):
    # chapter 05's law, TruncatedNormal(mu, sigma, 0, inf) with stock-outs right-censored, linear in
    # the calendar features and time: the naive fit under-forecasts demand, the censored one does not
    data = simulate_demand(n_products=2, n_days=730, stockout_rate=0.3, rng=seed)
    features = np.column_stack([data.features()[1], np.arange(730) / 365])
    sales, stock, truth = data.sales[1], data.stock[1], data.mean_demand[1]
    censored = LikelihoodRegressor("truncated_normal").fit(features, sales, right_censored=sales >= stock)
    naive = LikelihoodRegressor("truncated_normal").fit(features, sales)
    bias_censored = np.mean(censored.predict(features) - truth)
    bias_naive = np.mean(naive.predict(features) - truth)
    assert bias_naive < -0.05 * truth.mean()
    assert abs(bias_censored) < abs(bias_naive) / 3


def test_scikit_learn_machinery():
    X, y = beta_data(8, 200)
    x = X[:, :1]
    pipe = make_pipeline(PolynomialFeatures(2, include_bias=False), LikelihoodRegressor(generalized_beta(-2.0, 6.0)))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and scores.mean() > 0.3
    assert pipe.fit(x, y).predict(x, quantile=0.5).shape == (200,)
    grid = GridSearchCV(make_pipeline(PolynomialFeatures(include_bias=False), LikelihoodRegressor()),
                        {"polynomialfeatures__degree": [1, 2]}, cv=3).fit(x, y)
    assert grid.best_params_["polynomialfeatures__degree"] == 2  # the truth is curved
    model = LikelihoodRegressor(alpha=0.5).fit(x, y)
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "coef_")
    np.testing.assert_array_equal(twin.fit(x, y).predict(x), model.predict(x))


def test_check_estimator_passes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(LikelihoodRegressor(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed, failed
    assert sum(r["status"] == "passed" for r in results) > 40


def test_numpy_and_torch_scalars_are_numbers():
    # a grid search over np.arange hands the estimator numpy integers; a quantile may be a 0-d tensor
    X, y = linear_data(1, n=60)
    plain = LikelihoodRegressor(alpha=1.0).fit(X, y)
    numpy_alpha = LikelihoodRegressor(alpha=np.int64(1), tol=np.float32(1e-6)).fit(X, y)
    np.testing.assert_allclose(numpy_alpha.predict(X), plain.predict(X), rtol=1e-6)
    median = plain.predict(X, quantile=0.5)
    for q in (np.float32(0.5), np.float64(0.5), np.array(0.5), torch.tensor(0.5)):
        np.testing.assert_allclose(plain.predict(X, quantile=q), median)
    grid = GridSearchCV(LikelihoodRegressor(), {"alpha": np.arange(3)}, cv=3, error_score="raise").fit(X, y)
    assert grid.best_params_["alpha"] in (0, 1, 2)
    for bad in ({"alpha": True}, {"max_iter": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LikelihoodRegressor(**bad).fit(X, y)


def test_too_few_points_raise_instead_of_fitting_nan():
    with pytest.raises(ValueError, match="at least 2 samples, got 1 sample"):
        LikelihoodRegressor().fit(np.array([[1.0, 2.0]]), np.array([3.0]))
    with pytest.warns(UserWarning, match="3 samples for 3 coefficients"):
        LikelihoodRegressor().fit(np.array([[1.0, 2.0], [2.0, 0.5], [0.0, 1.0]]), np.array([3.0, 1.0, 2.0]))


def test_integer_inputs_are_promoted():
    X, y = linear_data(2, n=50)
    as_float = LikelihoodRegressor().fit(np.round(X), np.round(y)).predict(np.round(X))
    as_int = LikelihoodRegressor().fit(np.round(X).astype(int), np.round(y).astype(int)).predict(np.round(X).astype(int))
    np.testing.assert_allclose(as_int, as_float)


def test_bad_input_names_the_argument():
    X, y = linear_data(1, n=30)
    with pytest.raises(ValueError, match=r"X must be finite, got NaN at index \(1, 1\)"):
        LikelihoodRegressor().fit(np.where(np.arange(90).reshape(30, 3) == 4, np.nan, X), y)
    with pytest.raises(ValueError, match=r"X must be finite, got inf at index \(0, 2\)"):
        LikelihoodRegressor().fit(X, y).predict(np.where(np.arange(90).reshape(30, 3) == 2, np.inf, X))
    with pytest.raises(ValueError, match=r"y must be finite, got NaN at index 3"):
        LikelihoodRegressor().fit(X, np.where(np.arange(30) == 3, np.nan, y))
    with pytest.raises(ValueError, match="right_censored must be a boolean array"):
        LikelihoodRegressor().fit(X, y, right_censored=np.zeros(30))
    with pytest.raises(ValueError, match=r"left_censored must have shape \(30,\)"):
        LikelihoodRegressor().fit(X, y, left_censored=np.zeros(29, dtype=bool))
    with pytest.raises(ValueError, match="both right_censored and left_censored"):
        LikelihoodRegressor().fit(X, y, np.ones(30, dtype=bool), np.ones(30, dtype=bool))
    with pytest.raises(ValueError, match="family must be one of"):
        LikelihoodRegressor("laplace").fit(X, y)
    with pytest.raises(TypeError, match="family must be a string or a Family"):
        LikelihoodRegressor(Normal).fit(X, y)
    for bad in ({"alpha": -1.0}, {"alpha": math.nan}, {"max_iter": 0}, {"tol": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LikelihoodRegressor(**bad).fit(X, y)
    with pytest.raises(ValueError, match="outside the support"):
        LikelihoodRegressor("truncated_normal").fit(X, y - 100.0)
    model = LikelihoodRegressor().fit(X, y)
    for q in (0.0, 1.0, 1.5, "median"):
        with pytest.raises(ValueError, match="quantile must be a number in"):
            model.predict(X, quantile=q)
    with pytest.raises(ValueError, match="reduction"):
        model.log_likelihood(X, y, reduction="avg")
    with pytest.raises(ValueError, match="3 features"):
        model.predict(X[:, :2])


def test_family_descriptions_are_checked():
    with pytest.raises(ValueError, match="kind must be one of"):
        Parameter("quadratic")
    with pytest.raises(ValueError, match="NaN"):
        given(math.nan)
    with pytest.raises(ValueError, match="no parameter to fit"):
        Family("fixed", Normal, {"loc": given(0.0), "scale": given(1.0)})
    with pytest.raises(TypeError, match="must be a Parameter"):
        Family("bad", Normal, {"loc": "linear"})
    with pytest.raises(ValueError, match="low < high"):
        generalized_beta(1.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        truncated_normal(2.0, 1.0)


def test_predict_distribution_is_a_torch_distribution_in_float64():
    X, y = linear_data(0, n=40)
    dist = LikelihoodRegressor().fit(X, y).predict_distribution(X[:7])
    assert isinstance(dist, Distribution) and dist.batch_shape == (7,) and dist.mean.dtype == torch.float64


def test_normal_standard_errors_are_the_least_squares_ones():
    # at the MLE the observed information of the mean coefficients is Z'Z / s^2, that of s is 2n / s^2
    X, y = linear_data(5, n=80)
    model = LikelihoodRegressor().fit(X, y)
    Z = np.column_stack([np.ones(len(X)), X])
    s = model.constants_["scale"]
    se = s * np.sqrt(np.diag(np.linalg.inv(Z.T @ Z)))
    assert model.intercept_se_["loc"] == pytest.approx(se[0], rel=1e-5)
    np.testing.assert_allclose(model.coef_se_["loc"], se[1:], rtol=1e-5)
    assert model.constants_se_["scale"] == pytest.approx(s / math.sqrt(2 * len(y)), rel=1e-5)


def test_standard_errors_give_intervals_with_their_coverage():
    # 95% Wald intervals from the inverse Hessian, over 100 simulated Gamma data sets
    hits = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        x = rng.uniform(-1, 1, size=(300, 1))
        y = rng.gamma(3.0, 1.0 / np.exp(0.3 - 0.9 * x[:, 0]))
        model = LikelihoodRegressor(gamma_family()).fit(x, y)
        hits.append([abs(model.coef_["rate"][0] + 0.9) < 1.96 * model.coef_se_["rate"][0],
                     abs(model.constants_["concentration"] - 3.0) < 1.96 * model.constants_se_["concentration"]])
    coverage = np.mean(hits, axis=0)
    assert np.all((coverage > 0.88) & (coverage < 0.995)), coverage


def test_undetermined_coefficients_have_nan_standard_errors():
    X, y = linear_data(0, n=40)
    model = LikelihoodRegressor().fit(np.column_stack([X, np.ones(40)]), y)   # a constant column
    assert np.isnan(model.coef_se_["loc"]).all()
