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

from mathkit._checks import check_finite
from mathkit._log_gamma import log_negative_binomial
from mathkit.numerics import log_ndtr

__all__ = ["gaussian_nll", "censored_nll", "log_cdf", "log_sf", "pinball_loss", "negative_binomial_nll"]

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


def _as_loss_tensor(name: str, value, like: torch.Tensor | None = None) -> torch.Tensor:
    """``value`` as a floating tensor: integer or boolean input is promoted to torch's default dtype.

    A Python number or list takes the dtype and device of ``like`` (the observations), as a
    Python scalar does in torch's arithmetic: ``0.2`` next to float64 data stays 0.2, not
    its float32 rounding.
    """
    if isinstance(value, torch.Tensor) and value.is_complex():
        raise TypeError(f"{name} must be real, got dtype {value.dtype}")
    if not isinstance(value, torch.Tensor) and isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a tensor or a real number, got {type(value).__name__}")
    if like is not None and not isinstance(value, torch.Tensor):
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    tensor = torch.as_tensor(value)
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def _check_y(y) -> torch.Tensor:
    y = _as_loss_tensor("y", y)
    if y.numel() == 0:
        raise ValueError(f"y must hold at least one observation, got shape {tuple(y.shape)}")
    check_finite("y", y)
    return y


def _check_same_shape(name: str, shape: torch.Size, y: torch.Tensor) -> None:
    # exact shapes, not broadcasting: y of shape (n, 1) against loc of shape (n,) would
    # otherwise become n^2 terms; a scalar stands for the same value at every point
    if shape != y.shape and len(shape) > 0:
        raise ValueError(
            f"{name} must have the shape of y or be a scalar: got {name} of shape {tuple(shape)} "
            f"and y of shape {tuple(y.shape)}"
        )


def gaussian_nll(y: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Negative log-likelihood of ``y`` under :math:`N(\mu, \sigma^2)`, elementwise then reduced.

    .. math:: -\log p(y) = \tfrac12\Big(\frac{y-\mu}{\sigma}\Big)^2 + \log\sigma + \tfrac12\log 2\pi.

    Unlike ``torch.nn.functional.gaussian_nll_loss`` it takes the standard
    deviation (not the variance), keeps the constant, so values are true
    negative log-likelihoods (comparable with other laws), and never clamps.

    Args:
        y: observations, finite and non-empty; integer or boolean input is promoted
            to torch's default floating dtype.
        loc, scale: finite, ``scale > 0``; each of exactly ``y``'s shape, or a scalar.
            Shapes must match exactly: no broadcasting, since ``y`` of shape ``(n, 1)``
            against ``loc`` of shape ``(n,)`` would silently give :math:`n^2` terms.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``, as in ``torch.nn.functional``.

    Raises:
        ValueError: if ``y`` is empty or not finite, ``loc`` or ``scale`` is not finite,
            ``scale`` has a non-positive entry, a shape differs from ``y``'s, or
            ``reduction`` is unknown.
    """
    _check_reduction(reduction)
    y = _check_y(y)
    loc, scale = _as_loss_tensor("loc", loc, like=y), _as_loss_tensor("scale", scale, like=y)
    for name, value in (("loc", loc), ("scale", scale)):
        _check_same_shape(name, value.shape, y)
        check_finite(name, value)
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
    if mask.shape != y.shape:
        # a larger mask would count points twice, a smaller one would censor several at once
        raise ValueError(
            f"{name} must be a boolean mask of exactly the shape of y: got {name} of shape "
            f"{tuple(mask.shape)} and y of shape {tuple(y.shape)}"
        )
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
            ``Normal`` through :func:`log_sf`/:func:`log_cdf`); its batch shape is
            exactly ``y``'s (one law per point) or ``()`` (one law for all points).
        y: observations, finite and non-empty (integers are promoted to floating point).
        right_censored, left_censored: boolean masks of exactly ``y``'s shape, or None.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Returns:
        The reduced loss, or the elementwise loss of ``y``'s shape for ``"none"``.

    Raises:
        ValueError: ``y`` empty or not finite, masks not boolean or not of ``y``'s
            shape, a point censored on both sides, a batch shape other than ``y``'s
            or ``()``, unknown ``reduction``.
        TypeError: ``dist`` is not a distribution or lacks a needed ``log_cdf``/``log_sf``.
    """
    _check_reduction(reduction)
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a torch.distributions.Distribution, got {type(dist).__name__}")
    y = _check_y(y)
    if dist.event_shape:
        raise ValueError(f"dist must be univariate (event_shape ()), got event_shape {tuple(dist.event_shape)}")
    _check_same_shape("dist.batch_shape", dist.batch_shape, y)
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
    return _reduce(-log_lik, reduction)


def pinball_loss(y, pred, quantiles, reduction: str = "mean") -> torch.Tensor:
    r"""Pinball (quantile) loss of predicted quantiles, the loss of quantile regression (Koenker & Bassett 1978).

    .. math:: \rho_\tau(y - q) = \max\bigl(\tau (y - q),\ (\tau - 1)(y - q)\bigr),

    minimised in expectation by the :math:`\tau`-quantile of :math:`Y`. Each column of
    ``pred`` is the forecast of one level; the loss is averaged over the levels, then
    reduced over observations (``reduction="mean"`` equals scikit-learn's
    ``mean_pinball_loss`` averaged over the levels).

    Args:
        y: ``(n,)`` observations, finite and non-empty (integers promoted).
        pred: ``(n, k)`` predicted quantiles, finite.
        quantiles: ``(k,)`` levels, each strictly inside (0, 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``"none"`` gives the ``(n,)`` per-point loss).

    Raises:
        ValueError: ``y`` empty or not finite, ``y`` not one-dimensional, ``pred`` not of shape
            ``(n, k)``, a level outside (0, 1), unknown ``reduction``.
    """
    _check_reduction(reduction)
    y = _check_y(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional (n,), got shape {tuple(y.shape)}")
    pred = _as_loss_tensor("pred", pred, like=y)
    levels = _as_loss_tensor("quantiles", quantiles, like=y).reshape(-1)
    if not bool(((levels > 0) & (levels < 1)).all()) or levels.numel() == 0:
        raise ValueError(f"quantiles must be levels strictly inside (0, 1), got {levels.tolist()}")
    if pred.shape != (y.shape[0], levels.numel()):
        raise ValueError(
            f"pred must have shape (n, k) = ({y.shape[0]}, {levels.numel()}) for y of shape {tuple(y.shape)} "
            f"and {levels.numel()} quantiles, got {tuple(pred.shape)}"
        )
    check_finite("pred", pred)
    diff = y[:, None] - pred
    return _reduce(torch.maximum(levels * diff, (levels - 1) * diff).mean(-1), reduction)


def negative_binomial_nll(y, mean, concentration, reduction: str = "mean") -> torch.Tensor:
    r"""Negative log-likelihood of counts ``y`` under the negative binomial with a given mean.

    With mean :math:`\mu` and concentration :math:`r` (variance :math:`\mu + \mu^2 / r`; a Poisson
    as :math:`r \to \infty`), the law used for sales counts by DeepAR (Salinas et al. 2020):

    .. math::
        -\log p(y) = -\log\Gamma(y + r) + \log\Gamma(r) + \log\Gamma(y + 1)
                     + r \log\bigl(1 + \mu / r\bigr) - y \log\frac{\mu}{\mu + r},

    evaluated in float64 (whatever the inputs' dtype) without the cancellation of those
    ``lgamma`` terms (``mathkit._log_gamma.log_negative_binomial``), so that large counts and
    large concentrations (the Poisson limit) keep their digits.

    Args:
        y: observed counts: finite, non-negative, integer-valued (any dtype; promoted to floating).
        mean, concentration: finite and positive; each of exactly ``y``'s shape, or a scalar.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.

    Raises:
        ValueError: ``y`` empty, not finite, negative or not integer-valued; ``mean`` or
            ``concentration`` not finite or not positive; a shape differing from ``y``'s;
            unknown ``reduction``.
    """
    _check_reduction(reduction)
    y = _check_y(y)
    bad = (y < 0) | (y != torch.round(y))
    if bool(bad.any()):
        i = int(torch.nonzero(bad.reshape(-1))[0])
        raise ValueError(f"y must be non-negative integer counts, got {y.reshape(-1)[i].item()} at index {i}")
    mean, r = _as_loss_tensor("mean", mean, like=y), _as_loss_tensor("concentration", concentration, like=y)
    for name, value in (("mean", mean), ("concentration", r)):
        _check_same_shape(name, value.shape, y)
        check_finite(name, value)
        if not bool((value > 0).all()):
            raise ValueError(f"Expected parameter {name} of negative_binomial_nll to satisfy the constraint {name} > 0")
    # in float64 whatever the inputs' dtype (float32 rounds the terms of counts ~1e7 by whole nats)
    log_lik = log_negative_binomial(*(t.to(torch.float64) for t in (y, mean, r)))
    return _reduce(-log_lik, reduction).to(y.dtype)
