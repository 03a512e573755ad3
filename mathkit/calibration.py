r"""Scoring probabilistic binary classifiers: error, decision cost and calibration.

A classifier that outputs :math:`p_i = \hat\Prob(y_i = 1)` is judged here on three things:

- the **error rate** of the decisions :math:`p_i > 1/2`;
- the **cost per item** when the errors cost differently: a missed positive costs
  :math:`c_m`, a false alarm 1. Flagging item :math:`i` costs :math:`1 - p_i` in expectation
  and passing it :math:`c_m p_i`, so with calibrated probabilities the best decision is to
  flag when :math:`p_i > 1 / (1 + c_m)`, and that is the rule used;
- **calibration**: the Brier score :math:`\frac1n \sum_i (p_i - y_i)^2` and the expected
  calibration error, :math:`\sum_b \frac{n_b}{n} \lvert \bar y_b - \bar p_b \rvert` over
  equal-width bins :math:`b` of :math:`p` (Naeini, Cooper & Hauskrecht, AAAI 2015).
"""

from __future__ import annotations

import numpy as np

from mathkit._checks import as_float_array, is_real_number

__all__ = ["reliability_bins", "expected_calibration_error", "expected_cost", "binary_report"]


def _labels_and_probabilities(y, p) -> tuple[np.ndarray, np.ndarray]:
    y, p = as_float_array("y", y), as_float_array("p", p)
    if y.ndim != 1 or y.shape != p.shape or y.size == 0:
        raise ValueError(f"y and p must be non-empty 1-D arrays of the same shape, got {y.shape} and {p.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must hold labels 0 and 1 (or False and True)")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("p must hold probabilities in [0, 1]")
    return y, p


def reliability_bins(y, p, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted probability, observed frequency and count in each of ``bins`` equal-width
    bins of ``p`` (empty bins dropped); ``y`` labels 0/1, ``p`` probabilities, both ``(n,)``."""
    y, p = _labels_and_probabilities(y, p)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    keep = count > 0
    mean_p = np.bincount(which, weights=p, minlength=bins)[keep] / count[keep]
    freq = np.bincount(which, weights=y, minlength=bins)[keep] / count[keep]
    return mean_p, freq, count[keep]


def expected_calibration_error(y, p, bins: int = 10) -> float:
    """Count-weighted mean of ``|observed frequency - mean probability|`` over the bins of :func:`reliability_bins`."""
    mean_p, freq, count = reliability_bins(y, p, bins)
    return float(np.sum(count * np.abs(freq - mean_p)) / np.sum(count))


def expected_cost(y, p, miss_cost: float) -> float:
    """Cost per item of flagging when ``p > 1 / (1 + miss_cost)``: ``miss_cost`` per missed
    positive, 1 per false alarm."""
    y, p = _labels_and_probabilities(y, p)
    if not (is_real_number(miss_cost) and np.isfinite(miss_cost) and miss_cost > 0):
        raise ValueError(f"miss_cost must be a finite positive number, got {miss_cost!r}")
    flag = p > 1.0 / (1.0 + miss_cost)
    return float(np.mean(miss_cost * (y == 1) * ~flag + (y == 0) * flag))


def binary_report(y, p, miss_cost: float = 5.0) -> dict[str, float]:
    """``error`` (threshold 1/2), ``cost`` (:func:`expected_cost`), ``brier`` and ``ece`` in one dict."""
    y, p = _labels_and_probabilities(y, p)
    return dict(
        error=float(np.mean((p > 0.5) != (y == 1))),
        cost=expected_cost(y, p, miss_cost),
        brier=float(np.mean((p - y) ** 2)),
        ece=expected_calibration_error(y, p),
    )
