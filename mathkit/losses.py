r"""Likelihood losses: the Gaussian negative log-likelihood and censored likelihoods.

``censored_nll`` is the likelihood of Tobin (1958) for data that are only
partly observed: a sale that hit the stock level says "demand was *at least*
this", a measurement at a detection limit says "*at most* this". Each point
contributes the log-density where it was observed exactly and the log of a tail
probability where it was censored, so the fitted law describes the latent
quantity, not the clipped record.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Normal

from mathkit.numerics import log_ndtr

__all__ = ["gaussian_nll", "censored_nll", "log_cdf", "log_sf"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Expected reduction to be one of {_REDUCTIONS}, got {reduction!r}")


def _broadcast_shape(name: str, shape: torch.Size, y: torch.Tensor) -> torch.Size:
    try:
        return torch.broadcast_shapes(shape, y.shape)
    except RuntimeError:
        raise ValueError(
            f"Expected {name} (shape {tuple(shape)}) to be broadcastable with y (shape {tuple(y.shape)})"
        ) from None


def gaussian_nll(y: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Negative log-likelihood of ``y`` under :math:`N(\mu, \sigma^2)`, elementwise then reduced.

    .. math:: -\log p(y) = \tfrac12\Big(\frac{y-\mu}{\sigma}\Big)^2 + \log\sigma + \tfrac12\log 2\pi.

    Unlike ``torch.nn.functional.gaussian_nll_loss`` it takes the standard
    deviation (not the variance), keeps the constant, so values are true
    negative log-likelihoods (comparable with other laws), and never clamps.

    Args:
        y, loc, scale: broadcastable tensors; ``scale > 0``.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``, as in ``torch.nn.functional``.

    Raises:
        ValueError: if ``scale`` has a non-positive entry, shapes do not broadcast,
            or ``reduction`` is unknown.
    """
    _check_reduction(reduction)
    y, loc, scale = (torch.as_tensor(v) for v in (y, loc, scale))
    for name, value in (("loc", loc), ("scale", scale)):
        _broadcast_shape(name, value.shape, y)
    if not bool((scale > 0).all()):
        raise ValueError("Expected parameter scale of gaussian_nll to satisfy the constraint scale > 0")
    z = (y - loc) / scale
    return _reduce(0.5 * z * z + torch.log(scale) + _HALF_LOG_2PI, reduction)


def log_cdf(dist: Distribution, value: torch.Tensor) -> torch.Tensor:
    r""":math:`\log P(Y \le y)` from ``dist.log_cdf`` or, for torch's ``Normal``, from ``log_ndtr``.

    Raises:
        TypeError: for a distribution with neither.
    """
    if hasattr(dist, "log_cdf"):
        return dist.log_cdf(value)
    if isinstance(dist, Normal):
        return log_ndtr((value - dist.loc) / dist.scale)
    raise TypeError(f"{type(dist).__name__} has no log_cdf; censored_nll needs it for left-censored points")


def log_sf(dist: Distribution, value: torch.Tensor) -> torch.Tensor:
    r""":math:`\log P(Y > y)` from ``dist.log_sf`` or, for torch's ``Normal``, from ``log_ndtr`` reflected.

    Raises:
        TypeError: for a distribution with neither.
    """
    if hasattr(dist, "log_sf"):
        return dist.log_sf(value)
    if isinstance(dist, Normal):
        return log_ndtr((dist.loc - value) / dist.scale)
    raise TypeError(f"{type(dist).__name__} has no log_sf; censored_nll needs it for right-censored points")


def _mask(name: str, mask: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.zeros((), dtype=torch.bool, device=y.device)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"Expected {name} to be a boolean tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    _broadcast_shape(name, mask.shape, y)
    return mask


def censored_nll(
    dist: Distribution,
    y: torch.Tensor,
    right_censored: torch.Tensor | None = None,
    left_censored: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Negative censored log-likelihood (Tobin, 1958) of observations ``y`` under ``dist``.

    .. math::
        -\ell = -\sum_{i\ \text{exact}} \log p(y_i)
                -\sum_{i\ \text{right-censored}} \log P(Y > y_i)
                -\sum_{i\ \text{left-censored}} \log P(Y \le y_i)

    (per element before the reduction). Right-censored means "the true value is
    at least ``y``", e.g. a sale equal to the stock on hand. The book's demand
    model is ``censored_nll(TruncatedNormal(mu, sigma, 0., inf), sales,
    right_censored=(sales >= stock))``.

    Args:
        dist: a distribution with ``log_prob`` and, for the censored points,
            ``log_sf``/``log_cdf`` (all of :mod:`mathkit.distributions`, and torch's
            ``Normal`` through :func:`log_sf`/:func:`log_cdf`); its batch shape
            broadcasts with ``y``.
        y: observations.
        right_censored, left_censored: boolean masks broadcastable with ``y``, or None.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Returns:
        The reduced loss, or the elementwise loss in the broadcast shape for ``"none"``.

    Raises:
        ValueError: masks not boolean or not broadcastable, a point censored on
            both sides, shapes that do not broadcast, unknown ``reduction``.
        TypeError: ``dist`` lacks a needed ``log_cdf``/``log_sf``.
    """
    _check_reduction(reduction)
    y = torch.as_tensor(y)
    _broadcast_shape("dist.batch_shape", dist.batch_shape, y)
    right = _mask("right_censored", right_censored, y)
    left = _mask("left_censored", left_censored, y)
    if bool((right & left).any()):
        raise ValueError("A point cannot be both right_censored and left_censored")
    exact = ~(right | left)
    # torch.where picks each point's term; the terms not picked get zero gradient
    # (mathkit's log-space functions turn 0 * inf into 0, not NaN)
    log_lik = torch.where(exact, dist.log_prob(y), 0.0)
    # the tails are only required of dist when some point needs them
    if bool(right.any()):
        log_lik = torch.where(right, log_sf(dist, y), log_lik)
    if bool(left.any()):
        log_lik = torch.where(left, log_cdf(dist, y), log_lik)
    shape = torch.broadcast_shapes(dist.batch_shape, y.shape, right.shape, left.shape)
    return _reduce(-log_lik.expand(shape), reduction)
