"""A population of learners whose success stories get published selectively.

Chapter 1 uses it to show survivorship bias: the success rate seen in published
stories is the success rate *conditional on publication*, which Bayes' rule
relates to the true rate (the logic of Wald's bomber analysis;
Mangel & Samaniego, JASA 1984).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mathkit._checks import as_float_array
from mathkit.data._checks import as_generator, check_probability

__all__ = ["LearnerPopulation", "simulate_learners", "published_success_rate"]


@dataclass(frozen=True)
class LearnerPopulation:
    """Simulated learners, one entry per person (boolean arrays of shape ``(n,)``).

    Attributes:
        theory: whether the learner studied the theory.
        success: whether their ML career worked out.
        published: whether they wrote a public story about it.
    """

    theory: np.ndarray
    success: np.ndarray
    published: np.ndarray

    def __len__(self) -> int:
        return self.theory.size

    def true_success_rate(self, theory: bool) -> float:
        """Fraction of successes among all learners of one group."""
        group = self.theory == theory
        return float(self.success[group].mean())

    def published_success_rate(self, theory: bool) -> float:
        """Fraction of successes among the *published* stories of one group."""
        group = (self.theory == theory) & self.published
        if not group.any():
            raise ValueError(f"no published stories in the group theory={theory}")
        return float(self.success[group].mean())


def simulate_learners(
    n: int,
    *,
    theory_share: float = 0.5,
    success_with_theory: float = 0.5,
    success_without_theory: float = 0.2,
    publish_if_success: float = 0.3,
    publish_if_failure: float = 0.01,
    rng: np.random.Generator | int | None = None,
) -> LearnerPopulation:
    r"""Draw ``n`` learners; each studies theory, succeeds and publishes at random.

    Learner :math:`i` studies theory with probability ``theory_share``; succeeds with
    probability ``success_with_theory`` or ``success_without_theory``; and, given the
    outcome, publishes a story with probability ``publish_if_success`` or
    ``publish_if_failure``, whatever the group.

    Args:
        n: number of learners (positive).
        theory_share: probability that a learner studies the theory.
        success_with_theory: success probability of a learner who studied it.
        success_without_theory: success probability of a learner who skipped it.
        publish_if_success: probability that a success is written up.
        publish_if_failure: probability that a failure is written up.
        rng: a ``numpy.random.Generator`` or an int seed; a fresh unseeded one when ``None``.

    Returns:
        A :class:`LearnerPopulation` with boolean arrays of shape ``(n,)``.

    Raises:
        ValueError: ``n`` not a positive integer, a probability outside [0, 1].
        TypeError: ``rng`` neither a seed nor a generator.
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    theory_share = check_probability("theory_share", theory_share)
    p_yes = check_probability("success_with_theory", success_with_theory)
    p_no = check_probability("success_without_theory", success_without_theory)
    pub_s = check_probability("publish_if_success", publish_if_success)
    pub_f = check_probability("publish_if_failure", publish_if_failure)
    rng = as_generator(rng)

    theory = rng.random(n) < theory_share
    success = rng.random(n) < np.where(theory, p_yes, p_no)
    published = rng.random(n) < np.where(success, pub_s, pub_f)
    return LearnerPopulation(theory=theory, success=success, published=published)


def published_success_rate(
    success_rate: float | np.ndarray,
    publish_if_success: float | np.ndarray,
    publish_if_failure: float | np.ndarray,
) -> np.ndarray:
    r"""Success rate among published stories, by Bayes' rule.

    .. math::
        P(S \mid \text{pub}) = \frac{q_S\, p}{q_S\, p + q_F\, (1 - p)}
        = \frac{k\, p}{k\, p + 1 - p}, \qquad k = q_S / q_F,

    with true success rate :math:`p` and publishing probabilities :math:`q_S, q_F`.
    Inputs broadcast; the result is a float array of their common shape.
    """
    p = as_float_array("success_rate", success_rate)
    q_s = as_float_array("publish_if_success", publish_if_success)
    q_f = as_float_array("publish_if_failure", publish_if_failure)
    for name, value in (("success_rate", p), ("publish_if_success", q_s), ("publish_if_failure", q_f)):
        if np.any((value < 0) | (value > 1)):
            raise ValueError(f"{name} must hold probabilities in [0, 1]")
    try:
        np.broadcast_shapes(p.shape, q_s.shape, q_f.shape)
    except ValueError:
        raise ValueError(
            f"success_rate, publish_if_success and publish_if_failure must broadcast together, got shapes "
            f"{p.shape}, {q_s.shape} and {q_f.shape}"
        ) from None
    published_successes = q_s * p
    denominator = published_successes + q_f * (1.0 - p)
    if np.any(denominator == 0):
        raise ValueError("no story is ever published: publish_if_success * success_rate "
                         "+ publish_if_failure * (1 - success_rate) must be positive")
    return published_successes / denominator
