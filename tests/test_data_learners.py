"""The learner simulator against the closed form of Bayes' rule and binomial tests."""

import numpy as np
import pytest
from scipy import stats

from mathkit.data import published_success_rate, simulate_learners


def _binomial_pvalue(successes: np.ndarray, p: float) -> float:
    return stats.binomtest(int(successes.sum()), successes.size, p).pvalue


def test_same_seed_gives_same_population():
    a = simulate_learners(1000, rng=np.random.default_rng(3))
    b = simulate_learners(1000, rng=np.random.default_rng(3))
    for field in ("theory", "success", "published"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_true_rates_match_parameters():
    pop = simulate_learners(200_000, theory_share=0.3, success_with_theory=0.6,
                            success_without_theory=0.15, rng=np.random.default_rng(0))
    assert _binomial_pvalue(pop.theory, 0.3) > 1e-3
    assert _binomial_pvalue(pop.success[pop.theory], 0.6) > 1e-3
    assert _binomial_pvalue(pop.success[~pop.theory], 0.15) > 1e-3


@pytest.mark.parametrize("q_s, q_f", [(0.3, 0.01), (0.5, 0.5), (0.05, 0.2)])
def test_published_rate_matches_bayes_rule(q_s, q_f):
    p = 0.2
    pop = simulate_learners(400_000, success_without_theory=p, publish_if_success=q_s,
                            publish_if_failure=q_f, rng=np.random.default_rng(1))
    stories = pop.success[~pop.theory & pop.published]
    # Bayes' rule written out by hand, independent of the library's formula
    expected = q_s * p / (q_s * p + q_f * (1 - p))
    assert _binomial_pvalue(stories, expected) > 1e-3
    assert pop.published_success_rate(theory=False) == pytest.approx(stories.mean())


def test_published_success_rate_closed_form_values():
    # odds form: posterior odds = prior odds * (q_s / q_f)
    assert published_success_rate(0.2, 0.3, 0.01) == pytest.approx((0.25 * 30) / (1 + 0.25 * 30))
    assert published_success_rate(0.2, 0.1, 0.1) == pytest.approx(0.2)  # no asymmetry, no bias
    np.testing.assert_allclose(published_success_rate([0.0, 1.0], 0.5, 0.5), [0.0, 1.0])
    assert published_success_rate(np.full((2, 3), 0.5), 0.4, 0.1).shape == (2, 3)


@pytest.mark.parametrize("kwargs, name", [
    ({"theory_share": 1.5}, "theory_share"),
    ({"success_with_theory": -0.1}, "success_with_theory"),
    ({"publish_if_failure": float("nan")}, "publish_if_failure"),
])
def test_bad_probabilities_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        simulate_learners(10, **kwargs)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, float("nan")])
def test_bad_n_raises(n):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        simulate_learners(n)


def test_seed_and_generator_give_the_same_population():
    # one rule for every simulator: an int seed or a numpy Generator
    a = simulate_learners(500, rng=21)
    b = simulate_learners(500, rng=np.random.default_rng(21))
    c = simulate_learners(500, rng=22)
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(a.published, b.published)
    assert not np.array_equal(a.success, c.success)


@pytest.mark.parametrize("rng, error", [("0", TypeError), (1.5, TypeError), (True, TypeError), (-2, ValueError)])
def test_bad_rng_raises_naming_rng(rng, error):
    with pytest.raises(error, match="rng"):
        simulate_learners(10, rng=rng)


def test_bad_rates_raise():
    with pytest.raises(ValueError, match="success_rate must be finite, got nan at index 1"):
        published_success_rate([0.5, float("nan")], 0.3, 0.1)
    with pytest.raises(ValueError, match=r"shapes \(2,\), \(3,\)"):
        published_success_rate([0.5, 0.4], [0.3, 0.2, 0.1], 0.1)
    with pytest.raises(TypeError, match="publish_if_failure"):
        published_success_rate(0.5, 0.3, "0.1")
    with pytest.raises(ValueError, match="publish_if_success"):
        published_success_rate(0.5, 1.2, 0.1)
    with pytest.raises(ValueError, match="no story is ever published"):
        published_success_rate(0.0, 0.5, 0.0)


def test_empty_published_group_raises():
    pop = simulate_learners(50, publish_if_success=0.0, publish_if_failure=0.0,
                            rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="no published stories"):
        pop.published_success_rate(theory=True)


def test_scalar_arguments_give_a_scalar_rate():
    # odds 1 : 4 times the asymmetry 30 -> 30 : 4 (a 0-d result, so float() works on it)
    rate = published_success_rate(0.2, 0.3, 0.01)
    assert np.ndim(rate) == 0
    assert float(rate) == pytest.approx(30 / 34, rel=1e-12)
