"""Argument checks shared by the simulators."""

from __future__ import annotations


def check_probability(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it lies in [0, 1] (NaN fails)."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return value
