"""The standardised units every GP fit works in."""

from __future__ import annotations

import math

import torch

from mathkit.kernels import Kernel


def _root_mean_square(v: torch.Tensor) -> float:
    r""":math:`\sqrt{\operatorname{mean}(v^2)}` over all entries, scaled by :math:`\max|v|` first so that
    it neither overflows (entries above ~1e154) nor underflows (below ~1e-154)."""
    largest = float(v.abs().max()) if v.numel() else 0.0
    if largest == 0.0 or not math.isfinite(largest):
        return largest
    return largest * float((v / largest).square().mean().sqrt())


class Units:
    r"""The affine map from the user's units to the standardised ones every fit works in.

    .. math:: \tilde x = (x - m_x) / s_x, \qquad \tilde y = (y - m_y) / s_y,

    with :math:`m_x` the column means of X (when the kernel is stationary; otherwise 0),
    :math:`s_x` the root mean square of the columns' standard deviations (one factor for all
    columns, so that an isotropic kernel stays isotropic in the user's units; 1 when X does not
    vary or the kernel is not ``rescalable``), :math:`m_y` the mean of y (``center_y``;
    otherwise 0) and :math:`s_y` the root mean square of :math:`y - m_y` (:math:`|m_y|` when
    that is 0, and 1 when both are). The kernel's length parameters (``length_mask``) are then
    divided by :math:`s_x`, kernel variances and the noise variance by :math:`s_y^2`: the model is the
    same, only its numbers are of order one, whatever the units.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, kernel: Kernel, center_y: bool) -> None:
        self.x_shift = X.mean(0) if kernel.stationary else torch.zeros(X.shape[1], dtype=X.dtype)
        spread = _root_mean_square(X - self.x_shift)
        self.x_scale = spread if kernel.rescalable and spread > 0 else 1.0
        constant = bool((y == y[0]).all())
        # exactly the constant when y is constant, so that its residuals are exactly 0
        self.y_shift = (float(y[0]) if constant else float(y.mean())) if center_y else 0.0
        spread = _root_mean_square(y - self.y_shift)
        self.y_scale = spread if spread > 0 else abs(self.y_shift) or 1.0
        if not -700.0 < 2 * math.log(self.y_scale) < 709.0:
            # the variances (kernel's and noise) are in y's units squared
            raise ValueError(f"y's spread ({self.y_scale:.3g}) squared is outside float64's range, so the model's "
                             "variances cannot be represented: rescale y (e.g. to its standard deviation)")

    def x(self, X: torch.Tensor) -> torch.Tensor:
        return (X - self.x_shift) / self.x_scale

    def y(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_shift) / self.y_scale

    def log_factors(self, kernel: Kernel, learned_noise: bool) -> torch.Tensor:
        """Log of the factor by which each log hyperparameter (kernel's, then the noise when
        learned) in the user's units exceeds its standardised value."""
        log_x, log_y2 = math.log(self.x_scale), 2 * math.log(self.y_scale)
        factors = log_x * kernel.length_mask().double() + log_y2 * kernel.scale_mask().double()
        return torch.cat([factors, torch.full((int(learned_noise),), log_y2, dtype=torch.float64)])
