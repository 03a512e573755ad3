"""Argument checks shared by the simulators."""

from __future__ import annotations

import math

import numpy as np


def check_probability(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it lies in [0, 1] (NaN fails)."""
    value = _real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return value


def check_positive(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is finite and positive."""
    value = _real(name, value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return value


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """``value`` as an int, or an error naming ``name`` unless it is an integer of at least ``minimum``.

    Integral floats (``730.0``) pass; booleans, fractions, NaN and strings do not.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not (math.isfinite(value) and value == int(value) and value >= minimum):
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """The random generator every simulator draws from: a ``numpy.random.Generator`` as given,
    a fresh one seeded by a non-negative int seed, or an unseeded one for ``None``."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
        raise TypeError(f"rng must be an int seed, a numpy.random.Generator or None, got {type(rng).__name__}")
    if rng < 0:
        raise ValueError(f"rng must be a non-negative seed, got {rng!r}")
    return np.random.default_rng(int(rng))


def _real(name: str, value: float) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)
