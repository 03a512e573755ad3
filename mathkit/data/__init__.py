"""Data sets with known truth: simulators, and small real data shipped in the package."""

from mathkit.data.learners import LearnerPopulation, published_success_rate, simulate_learners

__all__ = ["LearnerPopulation", "published_success_rate", "simulate_learners"]
