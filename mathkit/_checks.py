"""Argument checks shared across mathkit; every message names the argument and the constraint."""

from __future__ import annotations

import numbers

import numpy as np
import torch


def is_integer_number(value: object) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real_number(value: object) -> bool:
    """A real number: a Python or numpy int or float (a grid search over ``np.arange`` hands numpy
    scalars to estimators), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _index(flat: int, shape: tuple[int, ...]) -> str:
    position = np.unravel_index(flat, shape) if shape else ()
    return str(int(position[0])) if len(position) == 1 else str(tuple(int(i) for i in position))


def check_finite(name: str, value: torch.Tensor | np.ndarray) -> None:
    """A ValueError naming ``name``, the first non-finite entry and its index, unless every entry is finite.

    Example message: ``y must be finite, got nan at index 3``.
    """
    tensor = torch.as_tensor(value).detach()
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        flat = int(torch.nonzero(~finite.reshape(-1))[0])
        bad = tensor.reshape(-1)[flat].item()
        raise ValueError(f"{name} must be finite, got {bad} at index {_index(flat, tuple(tensor.shape))}")


def as_float_array(name: str, value) -> np.ndarray:
    """``value`` as a finite float64 numpy array (integers and booleans promoted), or an error naming ``name``."""
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {array.dtype}")
    # a copy when strided: torch (behind check_finite) refuses views with negative strides, e.g.
    # np.rot90's (not np.ascontiguousarray, which turns a 0-d array into shape (1,))
    array = np.require(array.astype(float, copy=False), requirements="C")
    check_finite(name, array)
    return array
