"""mathkit.data.toy: the shared smooth regression data."""

import numpy as np
import pytest

from mathkit.data import simulate_smooth_regression, smooth_function


def test_targets_are_the_closed_form_plus_noise_of_the_stated_sd():
    d = simulate_smooth_regression(20000, noise_sd=0.3, rng=1)
    x = d.X[:, 0]
    np.testing.assert_allclose(d.f, np.sin(2 * x) + 0.3 * np.cos(7 * x), rtol=0, atol=1e-15)
    residual = d.y - d.f
    assert abs(residual.mean()) < 4 * 0.3 / np.sqrt(20000)
    assert abs(residual.std() / 0.3 - 1) < 0.03
    assert d.X.min() >= 0 and d.X.max() <= 10


def test_two_dimensional_components_vary_along_different_axes():
    X = np.array([[1.0, 2.0], [0.5, 3.0]])
    np.testing.assert_allclose(smooth_function(X), np.sin(2 * X[:, 0]) + 0.3 * np.cos(7 * X[:, 1]))
    assert simulate_smooth_regression(5, dims=2, rng=0).X.shape == (5, 2)


def test_same_seed_same_data_and_generator_accepted():
    a, b = simulate_smooth_regression(50, rng=3), simulate_smooth_regression(50, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize("kwargs, match", [(dict(n=0), "n must"), (dict(n=5, noise_sd=-1), "noise_sd"),
                                           (dict(n=5, dims=0), "dims"), (dict(n=5, noise_sd=float("nan")), "noise_sd")])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_smooth_regression(**kwargs)
