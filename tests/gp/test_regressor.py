"""GPRegressor as a scikit-learn estimator: check_estimator, clone, Pipeline, cross-validation,
grid search, parameter validation in fit and the optimisation report."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from mathkit.data import simulate_smooth_regression
from mathkit.gp import RBF, GPRegressor
from mathkit.gp.regressor import SKLEARN_EXPECTED_FAILED_CHECKS


def test_passes_scikit_learns_estimator_checks():
    # fixed hyperparameters: the checks are about the estimator's contract (the optimiser is
    # tested in test_optimise.py, and with it all of check_estimator takes minutes)
    results = check_estimator(GPRegressor(RBF(), noise=0.1, optimizer=None), on_fail=None,
                              expected_failed_checks=SKLEARN_EXPECTED_FAILED_CHECKS)
    failed = [r for r in results if r["status"] == "failed"]
    assert not failed, [(r["check_name"], str(r["exception"])[:200]) for r in failed]
    assert {r["check_name"] for r in results if r["status"] == "xfail"} <= set(SKLEARN_EXPECTED_FAILED_CHECKS)


@pytest.mark.parametrize("seed", [0, 1])
def test_clone_refits_to_the_same_predictions(seed):
    data = simulate_smooth_regression(80, rng=seed)
    gp = GPRegressor(RBF(0.5), random_state=seed).fit(data.X, data.y)
    twin = clone(gp)
    assert not hasattr(twin, "kernel_") and twin.get_params()["random_state"] == seed
    np.testing.assert_allclose(twin.fit(data.X, data.y).predict(data.X), gp.predict(data.X), rtol=1e-10)


def test_in_a_pipeline_with_cross_validation_beats_the_mean():
    data = simulate_smooth_regression(120, rng=3)
    pipe = make_pipeline(StandardScaler(), GPRegressor())
    scores = cross_val_score(pipe, data.X, data.y, cv=KFold(3, shuffle=True, random_state=0))
    # the noise is 0.1 on a signal of variance ~0.55: R^2 near 0.98 is reachable
    assert scores.min() > 0.9


def test_grid_search_prefers_a_sensible_fixed_noise():
    data = simulate_smooth_regression(90, rng=4)
    search = GridSearchCV(GPRegressor(RBF(0.4)), {"noise": [1e-2, 10.0]}, cv=3).fit(data.X, data.y)
    assert search.best_params_["noise"] == 1e-2  # the true noise variance is 0.01


def test_set_params_changes_the_fit():
    data = simulate_smooth_regression(40, rng=5)
    gp = GPRegressor(RBF(0.5), noise=0.01, optimizer=None)
    smooth = gp.set_params(noise=1.0).fit(data.X, data.y).predict(data.X)
    rough = gp.set_params(noise=1e-4).fit(data.X, data.y).predict(data.X)
    # more noise, more shrinkage towards the mean
    assert np.std(smooth) < np.std(rough)


def test_reports_its_optimisation():
    data = simulate_smooth_regression(1200, rng=6)
    small = GPRegressor().fit(data.X[:300], data.y[:300])  # no subset at most half the data
    assert small.optimisation_.subset_sizes == () and small.optimisation_.converged
    assert "L-BFGS-B" in small.optimisation_.message and small.n_evaluations_ > 1
    gp = GPRegressor(subset_sizes=(300,), refine_steps=4).fit(data.X, data.y)
    result = gp.optimisation_
    assert result.subset_sizes == (300,) and result.n_subset_evaluations > 0
    # the Newton refinement: one gradient to start, per step at most 4 (step halvings), a last value check
    assert gp.n_evaluations_ == result.n_evaluations and 1 <= result.n_evaluations <= 1 + 4 * 4 + 1
    assert result.message.startswith("Newton") and result.converged == ("below" in result.message)
    fixed = GPRegressor(RBF(), noise=0.1, optimizer=None).fit(data.X[:50], data.y[:50])
    assert fixed.n_evaluations_ == 0 and fixed.optimisation_ is None


@pytest.mark.parametrize("params, match", [
    ({"normalize_y": "yes"}, "normalize_y"),
    ({"subset_sizes": ()}, "subset_sizes"),
    ({"subset_sizes": (1.5,)}, "subset_sizes"),
    ({"refine_steps": -1}, "refine_steps"),
    ({"n_probes": 0}, "n_probes"),
    ({"cg_tol": 2.0}, "cg_tol"),
    ({"random_state": None}, "random_state"),
    ({"noise": True}, "noise"),
])
def test_parameters_are_validated_in_fit(params, match):
    gp = GPRegressor(**params)  # construction stores, fit validates
    with pytest.raises(ValueError, match=match):
        gp.fit(np.zeros((3, 1)), np.arange(3.0))


def test_unfitted_and_wrong_width_inputs_raise():
    with pytest.raises(NotFittedError):
        GPRegressor().predict(np.zeros((2, 1)))
    gp = GPRegressor(RBF(), noise=0.1, optimizer=None).fit(np.random.default_rng(0).random((10, 2)), np.arange(10.0))
    with pytest.raises(ValueError, match="expecting 2 features"):
        gp.predict(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="requires y"):
        GPRegressor().fit(np.zeros((3, 1)), None)


def test_output_type_follows_predict_input():
    data = simulate_smooth_regression(30, rng=7)
    gp = GPRegressor(RBF(), noise=0.1, optimizer=None).fit(torch.tensor(data.X), torch.tensor(data.y))
    mean, sd = gp.predict(data.X, return_std=True)
    assert isinstance(mean, np.ndarray) and isinstance(sd, np.ndarray)
    tensor_mean = gp.predict(torch.tensor(data.X))
    assert isinstance(tensor_mean, torch.Tensor)
    np.testing.assert_allclose(tensor_mean.numpy(), mean, rtol=1e-12)


@pytest.mark.parametrize("method", ["cg", "ski"])  # (the exact fit is the oracle)
def test_a_fixed_noise_is_fitted_around(method):
    # with the noise fixed its term of the stochastic gradient is a constant (CG used to call
    # backward on it and fail); the fit must match the exact one at the same noise
    data = simulate_smooth_regression(150, rng=6)
    exact = GPRegressor(noise=0.01, method="cholesky").fit(data.X, data.y)
    gp = GPRegressor(noise=0.01, method=method, random_state=0).fit(data.X, data.y)
    assert gp.noise_ == 0.01
    np.testing.assert_allclose(gp.kernel_.lengthscale, exact.kernel_.lengthscale, rtol=0.15)
    np.testing.assert_allclose(gp.predict(data.X), exact.predict(data.X), atol=0.02)


@pytest.mark.parametrize("method, n, dims, settings, backend", [
    ("cholesky", 60, 1, {}, "ExactBackend"),
    ("cg", 60, 1, {}, "CGBackend"),
    ("ski", 60, 1, {}, "SKIDenseBackend"),
    ("ski", 300, 1, {"grid_size": 5000}, "SKIGridBackend"),        # closures over the Toeplitz column
    ("ski", 2100, 2, {"grid_size": 45}, "SKIKroneckerBackend"),    # closures over the axis factors
])
def test_fitted_models_pickle_to_the_same_predictions(method, n, dims, settings, backend):
    data = simulate_smooth_regression(n, dims=dims, rng=7)
    gp = GPRegressor(method=method, random_state=0, **settings).fit(data.X, data.y)
    twin = pickle.loads(pickle.dumps(gp))
    assert type(gp.backend_).__name__ == backend and type(twin.backend_) is type(gp.backend_)
    X_new = data.X[:9] + 0.013
    for got, want in zip(twin.predict(X_new, return_std=True), gp.predict(X_new, return_std=True)):
        np.testing.assert_array_equal(got, want)
