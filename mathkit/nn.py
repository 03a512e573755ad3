r"""Small torch models the chapters train: a sequence forecaster with interchangeable heads.

:class:`SequenceForecaster` reads a window of past values and covariates with an
LSTM (Hochreiter & Schmidhuber, *Neural Computation* 1997) or a GRU, and hands its
last hidden state to a *head* that says what the forecast is:

- :class:`PointHead` (``"point"``): a number :math:`\hat y`, trained by mean squared error;
- :class:`GaussianHead` (``"gaussian"``): :math:`\mathcal{N}(\mu, \sigma^2)`, trained by
  :func:`mathkit.losses.gaussian_nll`;
- :class:`TruncatedNormalHead` (``"truncated"``): :math:`\mathcal{N}_{[0,\infty)}(\mu, \sigma^2)`,
  trained by its negative log-likelihood;
- :class:`CensoredTruncatedNormalHead` (``"censored"``): the same law, trained by
  :func:`mathkit.losses.censored_nll` with the stock-out mask;
- :class:`QuantileHead` (``"quantile"``): non-crossing quantiles at fixed levels, trained by
  :func:`mathkit.losses.pinball_loss` (quantile regression, no distribution assumed);
- :class:`NegativeBinomialHead` (``"negbin"``): a negative binomial law for counts, DeepAR's
  head for sales (Salinas et al. 2020), trained by :func:`mathkit.losses.negative_binomial_nll`
  on the counts in their original units.

Scales are :math:`\operatorname{softplus}(\cdot) + \sigma_{\min}`, positive and bounded
away from zero so that float32 training stays finite. :func:`make_windows` cuts series
into training examples and :func:`fit` trains with early stopping on a validation set.

For debugging training (chapter 12): :class:`GradientMonitor` records per-layer gradient
norms through backward hooks; :class:`VAE` and :func:`fit_vae` train a variational
autoencoder (Kingma & Welling 2014) whose Gaussian decoder variance can be left
unconstrained, exponentiated, or a softplus with a floor. Every training loop stops at the
first non-finite loss with a :class:`NonFiniteLossError` that names the step and the likely cause.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch.distributions import Distribution, NegativeBinomial, Normal
from tqdm import tqdm

from mathkit._checks import as_float_array, check_finite, is_integer_number, is_real_number
from mathkit.distributions import TruncatedNormal
from mathkit.losses import censored_nll, gaussian_nll, negative_binomial_nll, pinball_loss

__all__ = [
    "PointHead",
    "GaussianHead",
    "TruncatedNormalHead",
    "CensoredTruncatedNormalHead",
    "QuantileHead",
    "NegativeBinomialHead",
    "SequenceForecaster",
    "Windows",
    "make_windows",
    "TrainingHistory",
    "fit",
]


class PointHead(nn.Module):
    """A point forecast :math:`\\hat y = w^\\top h + b`, trained by mean squared error."""

    def __init__(self, in_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden).squeeze(-1)

    def loss(self, output: Tensor, target: Tensor, right_censored: Tensor | None = None) -> Tensor:
        """Mean squared error; a point forecast has no notion of censoring, so the mask is ignored."""
        return F.mse_loss(output, target)

    def rescale(self, output: Tensor, unit: Tensor) -> Tensor:
        """The forecast in original units, for targets that were divided by ``unit``."""
        return output * unit


class _DistributionHead(nn.Module):
    """Shared parts of heads that output a location and a positive scale."""

    def __init__(self, in_features: int, min_scale: float = 1e-3):
        super().__init__()
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale!r}")
        self.linear = nn.Linear(in_features, 2)
        self.min_scale = float(min_scale)

    def _loc_scale(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        loc, raw_scale = self.linear(hidden).unbind(-1)
        return loc, F.softplus(raw_scale) + self.min_scale


class GaussianHead(_DistributionHead):
    r"""A normal forecast :math:`\mathcal{N}(\mu, \sigma^2)` trained by the Gaussian NLL.

    Args:
        in_features: size of the hidden state.
        mean_activation: ``None`` for an unconstrained mean, or ``"relu"`` to clip it
            at zero (:math:`\mu = \max(0, w^\top h + b)`): the quick fix for negative
            point forecasts, which leaves the interval :math:`\mu \pm z\sigma` free to
            go below zero.
        min_scale: the floor :math:`\sigma_{\min}` added to the softplus scale.
    """

    def __init__(self, in_features: int, mean_activation: str | None = None, min_scale: float = 1e-3):
        super().__init__(in_features, min_scale)
        if mean_activation not in (None, "relu"):
            raise ValueError(f"mean_activation must be None or 'relu', got {mean_activation!r}")
        self.mean_activation = mean_activation

    def forward(self, hidden: Tensor) -> Normal:
        loc, scale = self._loc_scale(hidden)
        if self.mean_activation == "relu":
            loc = F.relu(loc)
        return Normal(loc, scale, validate_args=False)

    def loss(self, output: Normal, target: Tensor, right_censored: Tensor | None = None) -> Tensor:
        """Gaussian negative log-likelihood; treats every target as exactly observed."""
        return gaussian_nll(target, output.loc, output.scale)

    def rescale(self, output: Normal, unit: Tensor) -> Normal:
        """The forecast law in original units, for targets that were divided by ``unit``."""
        return Normal(output.loc * unit, output.scale * unit, validate_args=False)


class TruncatedNormalHead(_DistributionHead):
    r"""A normal law truncated to :math:`[0, \infty)`: non-negative forecasts and intervals.

    The location :math:`\mu` is unconstrained (it may be negative: the law's mean
    :math:`\mu + \sigma \varphi(\alpha) / (1 - \Phi(\alpha))`, :math:`\alpha = -\mu/\sigma`,
    stays positive). Trained by the negative log-likelihood
    :math:`-\log\varphi((y-\mu)/\sigma) + \log\sigma + \log(1 - \Phi(-\mu/\sigma))`.
    """

    def forward(self, hidden: Tensor) -> TruncatedNormal:
        loc, scale = self._loc_scale(hidden)
        return TruncatedNormal(loc, scale, 0.0, math.inf, validate_args=False)

    def loss(self, output: TruncatedNormal, target: Tensor, right_censored: Tensor | None = None) -> Tensor:
        """Negative log-likelihood; treats every target as exactly observed."""
        return -output.log_prob(target).mean()

    def rescale(self, output: TruncatedNormal, unit: Tensor) -> TruncatedNormal:
        """The forecast law in original units, for targets that were divided by ``unit``."""
        return TruncatedNormal(output.loc * unit, output.scale * unit, 0.0, math.inf, validate_args=False)


class CensoredTruncatedNormalHead(TruncatedNormalHead):
    r"""The truncated normal head trained by the censored likelihood (Tobin 1958).

    Exactly observed targets contribute :math:`-\log p(y)`; right-censored ones
    (a stock-out: demand was *at least* the sales) contribute :math:`-\log P(Y \ge y)`.
    """

    def loss(self, output: TruncatedNormal, target: Tensor, right_censored: Tensor | None = None) -> Tensor:
        """Censored negative log-likelihood, :func:`mathkit.losses.censored_nll`."""
        return censored_nll(output, target, right_censored=right_censored)


class QuantileHead(nn.Module):
    r"""Forecasts of fixed quantile levels, trained by the pinball loss (quantile regression).

    The outputs are non-crossing by construction: the lowest level is :math:`a_1`, each next
    one adds :math:`\operatorname{softplus}(a_k)`. No law is assumed; calibration on new data
    comes from the loss alone (or from conformalising, :func:`mathkit.regression.conformalize_interval`).

    Args:
        in_features: size of the hidden state.
        quantiles: increasing levels strictly inside (0, 1).

    Shapes: output ``(batch, k)``, column ``j`` the forecast of ``quantiles[j]``.
    """

    def __init__(self, in_features: int, quantiles=(0.1, 0.5, 0.9)):
        super().__init__()
        levels = torch.as_tensor(quantiles, dtype=torch.get_default_dtype()).reshape(-1)
        if levels.numel() == 0 or not bool(((levels > 0) & (levels < 1)).all()) or not bool((levels.diff() > 0).all()):
            raise ValueError(f"quantiles must be increasing levels strictly inside (0, 1), got {list(quantiles)!r}")
        self.register_buffer("quantiles", levels)
        self.linear = nn.Linear(in_features, levels.numel())

    def forward(self, hidden: Tensor) -> Tensor:
        raw = self.linear(hidden)
        steps = torch.cat([raw[..., :1], F.softplus(raw[..., 1:])], dim=-1)
        return steps.cumsum(-1)

    def loss(self, output: Tensor, target: Tensor, right_censored: Tensor | None = None) -> Tensor:
        """Pinball loss averaged over the levels; censoring is ignored."""
        return pinball_loss(target, output, self.quantiles.to(output.dtype))

    def rescale(self, output: Tensor, unit: Tensor) -> Tensor:
        """The quantiles in original units, for targets that were divided by ``unit``."""
        return output * unit[:, None]


class NegativeBinomialHead(nn.Module):
    r"""A negative binomial law for counts, the head DeepAR uses for sales (Salinas et al. 2020).

    From the hidden state, a mean :math:`\tilde\mu = \operatorname{softplus}(\cdot) + \mu_{\min}` and
    a shape :math:`\tilde\alpha = \operatorname{softplus}(\cdot) + \alpha_{\min}` in scaled units; in
    the series' units :math:`\mu = \nu \tilde\mu` and :math:`\alpha = \tilde\alpha / \sqrt{\nu}` for the
    window's scale :math:`\nu` (DeepAR's rule), and the variance is :math:`\mu + \alpha \mu^2`
    (concentration :math:`r = 1 / \alpha`). Its loss is evaluated on the counts in original
    units (``counts = True`` tells :meth:`SequenceForecaster.loss` so).
    """

    counts = True

    def __init__(self, in_features: int, min_mean: float = 1e-3, min_shape: float = 1e-3):
        super().__init__()
        for name, value in (("min_mean", min_mean), ("min_shape", min_shape)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value!r}")
        self.linear = nn.Linear(in_features, 2)
        self.min_mean, self.min_shape = float(min_mean), float(min_shape)

    @staticmethod
    def _law(mean: Tensor, concentration: Tensor) -> NegativeBinomial:
        # torch's parameterisation: mean = total_count * exp(logits)
        return NegativeBinomial(concentration, logits=mean.log() - concentration.log(), validate_args=False)

    def forward(self, hidden: Tensor) -> NegativeBinomial:
        raw_mean, raw_shape = self.linear(hidden).unbind(-1)
        mean = F.softplus(raw_mean) + self.min_mean
        return self._law(mean, 1.0 / (F.softplus(raw_shape) + self.min_shape))

    def loss(self, output: NegativeBinomial, target: Tensor, right_censored: Tensor | None = None) -> Tensor:
        """Negative binomial NLL of integer counts (``output`` and ``target`` in original units)."""
        return negative_binomial_nll(target, output.mean, output.total_count)

    def rescale(self, output: NegativeBinomial, unit: Tensor) -> NegativeBinomial:
        """The law in original units: mean times ``unit``, shape divided by ``sqrt(unit)``."""
        return self._law(output.mean * unit, output.total_count * unit.sqrt())


HEADS: dict[str, type[nn.Module]] = {
    "point": PointHead,
    "gaussian": GaussianHead,
    "truncated": TruncatedNormalHead,
    "censored": CensoredTruncatedNormalHead,
    "quantile": QuantileHead,
    "negbin": NegativeBinomialHead,
}


class SequenceForecaster(nn.Module):
    """A recurrent network over a window of inputs with a forecasting head.

    Args:
        n_inputs: features per time step of the input window.
        head: a name from ``HEADS`` (``"point"``, ``"gaussian"``, ``"truncated"``,
            ``"censored"``) or a head module that takes the hidden state.
        hidden_size: width of the recurrent state.
        cell: ``"lstm"`` or ``"gru"``.
        **head_options: passed to the head's constructor when ``head`` is a name.

    Shapes: input ``(batch, window, n_inputs)``; output ``(batch,)`` for the point head,
    else a distribution with batch shape ``(batch,)``.
    """

    def __init__(
        self,
        n_inputs: int,
        head: str | nn.Module = "point",
        *,
        hidden_size: int = 32,
        cell: str = "lstm",
        **head_options,
    ):
        super().__init__()
        cells = {"lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in cells:
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        for name, value in (("n_inputs", n_inputs), ("hidden_size", hidden_size)):
            if not is_integer_number(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(head, str):
            if head not in HEADS:
                raise ValueError(f"head must be one of {sorted(HEADS)} or a module, got {head!r}")
            head = HEADS[head](hidden_size, **head_options)
        self.rnn = cells[cell](n_inputs, hidden_size, batch_first=True)
        self.head = head

    def forward(self, inputs: Tensor) -> Tensor | Distribution:
        if inputs.ndim != 3 or inputs.shape[-1] != self.rnn.input_size:
            raise ValueError(
                f"inputs must have shape (batch, window, n_inputs={self.rnn.input_size}), got {tuple(inputs.shape)}"
            )
        states, _ = self.rnn(inputs)
        return self.head(states[:, -1])

    def loss(self, windows: Windows) -> Tensor:
        """The head's training loss on a batch of windows (in scaled units; a count head's in counts)."""
        output = self(windows.inputs)
        if getattr(self.head, "counts", False):
            # a count law's likelihood is defined on the counts themselves, not on count / unit
            counts = torch.round(windows.target * windows.unit)
            return self.head.loss(self.head.rescale(output, windows.unit), counts, windows.right_censored)
        return self.head.loss(output, windows.target, windows.right_censored)

    @torch.no_grad()
    def predict(self, windows: Windows) -> Tensor | Distribution:
        """Forecasts for ``windows`` in the series' original units (windows of another floating
        dtype follow the model's, as in :func:`fit`)."""
        self.eval()
        dtype = next(self.parameters()).dtype
        return self.head.rescale(self(windows.inputs.to(dtype)), windows.unit.to(dtype))


@dataclass(frozen=True)
class Windows:
    """Training examples cut from series: one input window and one target each.

    Attributes:
        inputs: ``(n, window, n_inputs)``: scaled past values, and the covariates one step ahead.
        target: ``(n,)``: the value to forecast, divided by ``unit``.
        unit: ``(n,)``: the series' positive scale (targets in original units = ``target * unit``).
        right_censored: ``(n,)`` boolean: the target is a lower bound, not exact.
        series, time: ``(n,)`` integer: which series and which time step each target is.
    """

    inputs: Tensor
    target: Tensor
    unit: Tensor
    right_censored: Tensor
    series: Tensor
    time: Tensor

    def __len__(self) -> int:
        return self.target.shape[0]

    def __getitem__(self, index) -> Windows:
        return Windows(*(getattr(self, name)[index] for name in self.__dataclass_fields__))

    def between(self, start: int, stop: int) -> Windows:
        """The windows whose target time lies in ``[start, stop)``.

        Raises:
            ValueError: if no window has its target there (an empty split).
        """
        selected = self[(self.time >= start) & (self.time < stop)]
        if len(selected) == 0:
            span = f"[{int(self.time.min())}, {int(self.time.max())}]" if len(self) else "nowhere (no windows)"
            raise ValueError(
                f"no window has its target time in [start, stop) = [{start}, {stop}); target times lie in {span} "
                "(the first target is at time `window`)"
            )
        return selected


def make_windows(
    values: np.ndarray,
    covariates: np.ndarray | None = None,
    *,
    window: int,
    unit: np.ndarray | str,
    right_censored: np.ndarray | None = None,
    series_one_hot: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Windows:
    r"""Cut series into one-step-ahead forecasting examples.

    For target time :math:`t` the input at step :math:`s = 0, \dots, L-1` is
    :math:`(y_{t-L+s} / c,\ x_{t-L+s+1})`: past values only, plus the covariates
    (calendar, promotions) of the *next* day, which are known in advance, so the
    last step carries the target day's covariates. Every target :math:`t \ge L` is used.

    Args:
        values: ``(n_series, n_time)`` observed values, finite (integers are promoted to float).
        covariates: ``(n_series, n_time, k)`` known-in-advance features, finite, or ``None``.
        window: length :math:`L` of the input window (at least 1, below ``n_time``).
        unit: ``(n_series,)`` positive finite scale :math:`c` per series (e.g. its training mean):
            values and targets are divided by it. Fit it on training data only. Or
            ``"window"``: a scale per example, :math:`c = 1 + \text{mean of its window's values}`
            (as in DeepAR, Salinas et al. 2020), so that a series that grows beyond its
            training range still looks familiar to the network; every window's
            :math:`c` must then be positive.
        right_censored: ``(n_series, n_time)`` boolean mask of censored targets, or ``None``.
        series_one_hot: append a one-hot code of the series to the covariates, so that one
            network can learn series-specific behaviour (such as each product's noise level).
        dtype: floating dtype of the tensors.

    Returns:
        :class:`Windows` with ``n_series * (n_time - window)`` examples.

    Raises:
        ValueError: NaN or infinite ``values`` or ``covariates`` (naming the first bad
            index), shapes that do not fit, ``window`` outside ``[1, n_time - 1]``,
            ``unit`` not finite and positive.
        TypeError: a non-floating ``dtype``, non-numeric ``values``.
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch dtype (targets would be truncated), got {dtype!r}")
    values = as_float_array("values", values)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"values must have shape (n_series, n_time) with at least one entry, got {values.shape}")
    n_series, n_time = values.shape
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window < n_time:
        raise ValueError(f"window must be an integer in [1, {n_time - 1}] (n_time - 1), got {window!r}")
    per_window = isinstance(unit, str)
    if per_window and unit != "window":
        raise ValueError(f"unit must be 'window' or {n_series} positive numbers, got {unit!r}")
    unit = np.ones(n_series) if per_window else as_float_array("unit", unit)
    if unit.shape != (n_series,) or not np.all((unit > 0) & np.isfinite(unit)):
        raise ValueError(f"unit must be {n_series} finite positive numbers, got {unit!r}")
    if covariates is None:
        covariates = np.zeros((n_series, n_time, 0))
    covariates = as_float_array("covariates", covariates)
    if covariates.ndim != 3 or covariates.shape[:2] != (n_series, n_time):
        raise ValueError(f"covariates must have shape ({n_series}, {n_time}, k), got {covariates.shape}")
    if series_one_hot:
        codes = np.broadcast_to(np.eye(n_series)[:, None], (n_series, n_time, n_series))
        covariates = np.concatenate([covariates, codes], axis=-1)
    if right_censored is None:
        right_censored = np.zeros((n_series, n_time), dtype=bool)
    right_censored = np.asarray(right_censored)
    if right_censored.dtype != bool or right_censored.shape != values.shape:
        raise ValueError(f"right_censored must be a boolean array of shape {values.shape}")

    scaled = values / unit[:, None]
    steps = np.concatenate([scaled[:, :-1, None], covariates[:, 1:]], axis=-1)  # (series, time-1, 1+k)
    # steps[:, j] pairs y_j with x_{j+1}; the window for target t is steps[:, t-L : t].
    targets = np.arange(window, n_time)
    inputs = np.lib.stride_tricks.sliding_window_view(steps, window, axis=1)[:, targets - window]
    inputs = np.moveaxis(inputs, -1, 2).reshape(-1, window, steps.shape[-1])
    series = np.repeat(np.arange(n_series), targets.size)
    time = np.tile(targets, n_series)
    target, example_unit = scaled[series, time], unit[series]
    if per_window:
        example_unit = 1.0 + inputs[:, :, 0].mean(axis=1)
        if not np.all(example_unit > 0):
            i = int(np.argmin(example_unit))
            raise ValueError(
                "unit='window' divides by 1 + the window's mean, which must be positive: got "
                f"{example_unit[i]:.4g} for series {series[i]} at target time {time[i]}; "
                "pass unit as one positive number per series for values that can be negative"
            )
        inputs = inputs.copy()
        inputs[:, :, 0] /= example_unit[:, None]
        target = target / example_unit
    return Windows(
        inputs=torch.as_tensor(np.ascontiguousarray(inputs), dtype=dtype),
        target=torch.as_tensor(target, dtype=dtype),
        unit=torch.as_tensor(example_unit, dtype=dtype),
        right_censored=torch.as_tensor(right_censored[series, time]),
        series=torch.as_tensor(series),
        time=torch.as_tensor(time),
    )


class NonFiniteLossError(FloatingPointError, ValueError):
    """Training met a loss (or gradient) that is NaN or infinite.

    A ``ValueError`` too: the usual cause is a bad input or setting, named in the message.

    Attributes:
        step: index of the optimisation step whose loss was not finite.
        value: the loss at that step (``nan``, ``inf`` or ``-inf``).
        history: what the training function had recorded before the failure (or ``None``).
    """

    def __init__(self, message: str, step: int, value: float, history=None):
        super().__init__(message)
        self.step = step
        self.value = value
        self.history = history


def check_finite_loss(loss: Tensor, step: int, history=None) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` has a NaN or infinite entry.

    Call it before ``backward()``: a single NaN step writes NaN into every weight, and
    everything after it is noise.
    """
    flat = loss.detach().reshape(-1)
    bad = ~torch.isfinite(flat)
    if bool(bad.any()):
        value = float(flat[bad][0])
        raise NonFiniteLossError(
            f"loss must be finite, got {value} at step {step}; training stopped there", step, value, history
        )


def _check_lr_fits(lr: float, dtype: torch.dtype) -> None:
    """Adam's first step is ``lr / (1 - beta1) = 10 lr``, computed in the weights' dtype: beyond its
    range torch fails with an overflow error that names neither ``lr`` nor the dtype."""
    limit = torch.finfo(dtype).max / 10
    if lr > limit:
        raise ValueError(f"lr must be below {limit:.3g} for {dtype} weights (Adam's first step is 10 lr), got {lr!r}")


def _checked_windows(name: str, windows: Windows, dtype: torch.dtype) -> Windows:
    """``windows`` with finite floating inputs, targets and units in the model's ``dtype``, or a clear error."""
    if not isinstance(windows, Windows):
        raise TypeError(f"{name} must be Windows (see make_windows), got {type(windows).__name__}")
    if len(windows) == 0:
        raise ValueError(f"{name} must hold at least one window, got none (an empty split?)")
    for part in ("inputs", "target", "unit"):
        check_finite(f"{name}.{part}", getattr(windows, part))
    # integer targets are promoted, never truncated; float64 windows follow a float32 model
    cast = {part: getattr(windows, part).to(dtype) for part in ("inputs", "target", "unit")}
    return replace(windows, **cast)


def _likely_cause(model: SequenceForecaster, windows: Windows, name: str, index: Tensor, lr: float) -> str:
    """Why a loss on ``windows`` (positions ``index`` of ``name``) is not finite; inputs are known to be finite."""
    with torch.no_grad():
        output = model(windows.inputs)
    if isinstance(output, Distribution):
        target = windows.target
        if getattr(model.head, "counts", False):
            # a count law is on the counts themselves, as in SequenceForecaster.loss
            output, target = model.head.rescale(output, windows.unit), torch.round(windows.target * windows.unit)
        outside = ~output.support.check(target) & ~windows.right_censored
        if bool(outside.any()):
            i = int(torch.nonzero(outside)[0])
            return (
                f"a target outside the head's support: {name}.target[{int(index[i])}] = "
                f"{target[i].item():.6g} (series {int(windows.series[i])}, time {int(windows.time[i])}) "
                f"has zero density under the {type(output).__name__} law"
            )
    parameters_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    state = "the weights are finite" if parameters_finite else "the weights are no longer finite"
    return f"a learning rate too large (lr={lr:g}): {state}, and the inputs and targets are finite"


def _finite_loss(
    model: SequenceForecaster, windows: Windows, name: str, index: Tensor, where: str, lr: float, step: int
) -> Tensor:
    """The model's loss on ``windows``; a :class:`NonFiniteLossError` naming the likely cause if it is not finite."""
    try:
        loss = model.loss(windows)
    except ValueError as error:  # a loss refusing the model's own non-finite outputs
        raise NonFiniteLossError(
            f"training stopped {where}: the loss could not be computed ({error}); likely cause: "
            f"{_likely_cause(model, windows, name, index, lr)}", step, float("nan")
        ) from error
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLossError(
            f"training stopped at the first non-finite loss ({loss.item()}) {where}; likely cause: "
            f"{_likely_cause(model, windows, name, index, lr)}", step, loss.item()
        )
    return loss


@dataclass
class TrainingHistory:
    """Per-epoch losses of :func:`fit`; the model keeps the weights of ``best_epoch``."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1

    @property
    def best_val_loss(self) -> float:
        return self.val_loss[self.best_epoch]


def fit(
    model: SequenceForecaster,
    train: Windows,
    val: Windows,
    *,
    epochs: int = 100,
    lr: float = 5e-3,
    batch_size: int = 128,
    patience: int = 10,
    max_grad_norm: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> TrainingHistory:
    """Train with Adam and early stopping on the validation loss.

    Each epoch shuffles ``train`` into mini-batches; after it, the loss on ``val`` is
    computed. Training stops once ``patience`` epochs pass without a better validation
    loss, and the model is restored to its best epoch. Gradient norms are clipped at
    ``max_grad_norm`` so a rare extreme batch cannot throw the weights far.

    Args:
        model: the forecaster (trained in place).
        train, val: :class:`Windows` for the gradient steps and for early stopping.
        epochs: maximum number of passes over ``train``.
        lr: Adam's learning rate.
        batch_size: examples per gradient step.
        patience: epochs without improvement before stopping.
        max_grad_norm: clipping threshold for the global gradient norm.
        generator: a ``torch.Generator`` for the shuffling (reproducible runs).
        progress: show a tqdm bar; ``None`` shows it only on an interactive terminal.

    Returns:
        The :class:`TrainingHistory`.

    Raises:
        ValueError: an empty ``train`` or ``val``, non-finite inputs, targets or units
            (naming the first bad index), bad settings; and, during training, at the
            first non-finite loss or gradient, with the epoch, the step and the likely
            cause (a target outside the head's support, a learning rate too large).
        TypeError: ``train``/``val`` not :class:`Windows`, ``generator`` not a ``torch.Generator``.
    """
    for setting, value in (("epochs", epochs), ("patience", patience), ("batch_size", batch_size)):
        if not is_integer_number(value) or value < 1:
            raise ValueError(f"{setting} must be a positive integer, got {value!r}")
    if not (is_real_number(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not (is_real_number(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be a positive number (inf: no clipping), got {max_grad_norm!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    dtype = next(model.parameters()).dtype
    _check_lr_fits(lr, dtype)
    train, val = _checked_windows("train", train, dtype), _checked_windows("val", val, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = TrainingHistory()
    best_state = copy.deepcopy(model.state_dict())
    bar = tqdm(range(epochs), desc="epochs", disable=None if progress is None else not progress, leave=False)
    step = 0
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for batch in order.split(batch_size):
            step += 1
            where = f"at epoch {epoch + 1}, step {step}"
            optimizer.zero_grad()
            loss = _finite_loss(model, train[batch], "train", batch, where, lr, step)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            if not bool(torch.isfinite(norm)):
                raise NonFiniteLossError(
                    f"training stopped at the first non-finite gradient {where} (the loss was {loss.item():.6g}); "
                    f"likely cause: {_likely_cause(model, train[batch], 'train', batch, lr)}", step, loss.item()
                )
            optimizer.step()
            total += loss.item() * batch.numel()
        model.eval()
        with torch.no_grad():
            where = f"on val after epoch {epoch + 1}"
            val_loss = _finite_loss(model, val, "val", torch.arange(len(val)), where, lr, step).item()
        history.train_loss.append(total / len(train))
        history.val_loss.append(val_loss)
        bar.set_postfix(train=history.train_loss[-1], val=val_loss)
        if history.best_epoch < 0 or val_loss < history.best_val_loss:
            history.best_epoch = epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - history.best_epoch >= patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    return history


# ----------------------------------------------------------------------------- debugging (chapter 12)
#
# Appended as a block so that it stays independent of the forecaster above: a monitor of
# per-layer gradient norms, an error for non-finite losses, and a variational autoencoder
# whose decoder variance can be parameterised wrongly on purpose.

__all__ += [
    "NonFiniteLossError",
    "check_finite_loss",
    "GradientMonitor",
    "kl_normal_standard",
    "gaussian_log_likelihood",
    "bernoulli_log_likelihood",
    "ELBOTerms",
    "VAE",
    "VAEHistory",
    "fit_vae",
]


class GradientMonitor:
    r"""Record the gradient norm of every layer of a module, once per backward pass.

    One hook (``torch.autograd.graph.register_multi_grad_hook``) watches all parameters
    of ``module``; when a backward pass has computed their gradients it stores, for each
    group :math:`g` of parameters,

    .. math:: \|\nabla_g L\|_2 = \Big(\sum_{p \in g} \sum_i (\partial L / \partial p_i)^2\Big)^{1/2},

    and the norm over all parameters. These are the gradients of that backward pass
    alone (what ``.grad`` holds after ``zero_grad()`` and one ``backward()``). Norms are
    computed in float64, so that float32 gradients overflow here only when their norm
    exceeds float64's range; an ``inf`` or ``nan`` gradient is recorded as such.

    Args:
        module: the network to watch.
        by: ``"layer"`` groups parameters by the submodule that owns them (``"0"``,
            ``"2"`` in an ``nn.Sequential``; ``"encoder.0"`` in nested modules);
            ``"parameter"`` keeps every parameter tensor on its own (``"0.weight"``).

    Use it as a context manager, or call :meth:`remove` when done::

        with GradientMonitor(model) as monitor:
            ...  # training loop
        monitor.norms()  # (steps, groups) array; monitor.names labels the columns
    """

    def __init__(self, module: nn.Module, by: str = "layer"):
        if by not in ("layer", "parameter"):
            raise ValueError(f"by must be 'layer' or 'parameter', got {by!r}")
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("module must have at least one parameter that requires grad")
        keys = [name.rpartition(".")[0] or name if by == "layer" else name for name, _ in named]
        self.names: list[str] = list(dict.fromkeys(keys))
        self._group = [self.names.index(key) for key in keys]
        self._rows: list[list[float]] = []
        self._totals: list[float] = []
        self._handle = torch.autograd.graph.register_multi_grad_hook([p for _, p in named], self._record)

    def _record(self, grads) -> None:
        # Float64 norms combined by hypot: no square of a large entry or norm overflows.
        parts: list[list[float]] = [[] for _ in self.names]
        for group, grad in zip(self._group, grads):
            if grad is not None:
                parts[group].append(float(torch.linalg.vector_norm(grad.detach(), dtype=torch.float64)))
        row = [math.hypot(*norms) if norms else math.nan for norms in parts]
        self._rows.append(row)
        self._totals.append(math.hypot(*(norm for norms in parts for norm in norms)))

    def norms(self) -> np.ndarray:
        """``(steps, groups)`` gradient norms; ``nan`` where a group got no gradient."""
        return np.array(self._rows, dtype=float).reshape(len(self._rows), len(self.names))

    def total_norms(self) -> np.ndarray:
        """``(steps,)`` norm of the gradient over all parameters."""
        return np.array(self._totals, dtype=float)

    def __len__(self) -> int:
        return len(self._rows)

    def remove(self) -> None:
        """Detach the hook; the recorded norms stay."""
        self._handle.remove()

    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


_LOG_2PI = math.log(2 * math.pi)


def _check_target(x: Tensor, **params: Tensor) -> None:
    """Losses take parameters of exactly the target's shape, and a finite target."""
    for name, value in params.items():
        if value.shape != x.shape:
            raise ValueError(f"{name} must have the shape of x, {tuple(x.shape)}, got {tuple(value.shape)}")
    check_finite("x", x)


def kl_normal_standard(loc: Tensor, log_variance: Tensor) -> Tensor:
    r"""KL divergence from :math:`\mathcal N(\mu, \operatorname{diag}\sigma^2)` to :math:`\mathcal N(0, I)`.

    .. math:: \mathrm{KL} = \tfrac12 \sum_j \big(\sigma_j^2 + \mu_j^2 - 1 - \log\sigma_j^2\big),

    summed over the last dimension (Kingma & Welling 2014, appendix B).
    Shapes: ``(..., d)`` in, ``(...)`` out.
    """
    return 0.5 * (log_variance.exp() + loc.square() - 1.0 - log_variance).sum(-1)


def gaussian_log_likelihood(x: Tensor, loc: Tensor, variance: Tensor) -> Tensor:
    r"""Log-density of ``x`` under independent normals, summed over the last dimension.

    .. math:: \log p(x) = -\tfrac12 \sum_j \Big(\log(2\pi v_j) + \frac{(x_j - \mu_j)^2}{v_j}\Big).

    Takes the *variance* :math:`v` and deliberately does not validate it: a variance
    :math:`\le 0` gives NaN here, which is the failure chapter 12 diagnoses (training
    functions stop at the first non-finite loss). The value also grows without bound as
    :math:`v_j \to 0` at :math:`x_j = \mu_j` (Mattei & Frellsen 2018): only a floor on
    the variance bounds it.

    Shapes: ``x``, ``loc`` and ``variance`` all ``(..., d)``; out ``(...)``.
    """
    _check_target(x, loc=loc, variance=variance)
    return -0.5 * (_LOG_2PI + variance.log() + (x - loc).square() / variance).sum(-1)


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    r"""Bernoulli log-likelihood from logits, summed over the last dimension.

    .. math:: \log p(x) = \sum_j \big(x_j \ell_j - \log(1 + e^{\ell_j})\big),

    computed stably by ``binary_cross_entropy_with_logits``; ``x`` in :math:`[0, 1]`
    (grey levels are used as the "probability of ink", as is common for images).

    Shapes: ``x`` and ``logits`` both ``(..., d)``; out ``(...)``.
    """
    _check_target(x, logits=logits)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


@dataclass(frozen=True)
class ELBOTerms:
    r"""The per-example terms of the evidence lower bound.

    Attributes:
        log_likelihood: ``(n,)`` one-draw estimate of :math:`\E_{q(z|x)} \log p(x \mid z)`.
        kl: ``(n,)`` :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))` in closed form.
        variance: ``(n, d)`` the decoder's variances (``None`` for a Bernoulli decoder).
    """

    log_likelihood: Tensor
    kl: Tensor
    variance: Tensor | None

    @property
    def elbo(self) -> Tensor:
        """``(n,)`` the ELBO, log-likelihood minus KL (a lower bound on :math:`\\log p(x)`)."""
        return self.log_likelihood - self.kl


_VARIANCES = ("unconstrained", "exp", "softplus")


class VAE(nn.Module):
    r"""A variational autoencoder (Kingma & Welling 2014) for flat inputs.

    Encoder: :math:`x \mapsto (\mu, \log\sigma^2)` of :math:`q(z \mid x) = \mathcal N(\mu, \operatorname{diag}\sigma^2)`
    through one hidden tanh layer; prior :math:`p(z) = \mathcal N(0, I)`; decoder: :math:`z \mapsto`
    one hidden tanh layer :math:`\mapsto` the law of :math:`x`:

    - ``likelihood="bernoulli"``: logits :math:`\ell(z)`;
    - ``likelihood="gaussian"``: a mean :math:`\mu(z)` and a variance per feature from a
      linear output :math:`a(z)` through the ``variance`` parameterisation:

      - ``"unconstrained"``: :math:`v = a` (wrong on purpose: nothing keeps it positive);
      - ``"exp"``: :math:`v = e^{a}` (positive, but free to collapse to zero);
      - ``"softplus"``: :math:`v = \log(1 + e^{a}) + v_{\min}` (positive, floored).

    The ELBO :math:`\E_q \log p(x \mid z) - \mathrm{KL}(q \,\|\, p)` is estimated with one
    reparameterised draw :math:`z = \mu + \sigma \varepsilon` (Rezende et al. 2014).

    Args:
        n_features: size :math:`d` of an input.
        n_latent: size of :math:`z`.
        hidden: width of the hidden layers.
        likelihood: ``"gaussian"`` or ``"bernoulli"``.
        variance: the variance parameterisation (Gaussian only).
        min_variance: the floor :math:`v_{\min} > 0` of ``"softplus"``.
        init_variance: every parameterisation starts at this variance (the variance
            head's bias is set so), so that they differ only in what training can do.

    Shapes: inputs ``(n, n_features)``; latents ``(n, n_latent)``.
    """

    def __init__(
        self,
        n_features: int,
        n_latent: int = 2,
        hidden: int = 64,
        *,
        likelihood: str = "gaussian",
        variance: str = "softplus",
        min_variance: float = 1e-3,
        init_variance: float = 1.0,
    ):
        super().__init__()
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
        if variance not in _VARIANCES:
            raise ValueError(f"variance must be one of {_VARIANCES}, got {variance!r}")
        if not (math.isfinite(min_variance) and min_variance > 0):
            raise ValueError(f"min_variance must be finite and > 0, got {min_variance!r}")
        if not (math.isfinite(init_variance) and init_variance > (min_variance if variance == "softplus" else 0)):
            raise ValueError(f"init_variance must be finite and above the variance floor, got {init_variance!r}")
        self.likelihood, self.variance_kind = likelihood, variance
        self.min_variance = float(min_variance)
        self.encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 2 * n_latent))
        self.decoder = nn.Sequential(nn.Linear(n_latent, hidden), nn.Tanh())
        self.loc_head = nn.Linear(hidden, n_features)
        self.variance_head = nn.Linear(hidden, n_features) if likelihood == "gaussian" else None
        if self.variance_head is not None:
            # Zero weights: every example starts at exactly ``init_variance``.
            with torch.no_grad():
                self.variance_head.weight.zero_()
                self.variance_head.bias.fill_(self._raw_for(init_variance))

    def _raw_for(self, variance: float) -> float:
        """The raw output that the parameterisation maps to ``variance``."""
        if self.variance_kind == "unconstrained":
            return variance
        if self.variance_kind == "exp":
            return math.log(variance)
        excess = variance - self.min_variance
        return excess + math.log(-math.expm1(-excess))  # softplus^{-1}

    def encode(self, x: Tensor) -> Normal:
        """:math:`q(z \\mid x)`, batch shape ``(n, n_latent)``."""
        loc, log_variance = self.encoder(x).chunk(2, dim=-1)
        return Normal(loc, (0.5 * log_variance).exp(), validate_args=False)

    def decoder_variance(self, hidden: Tensor) -> Tensor:
        """The decoder's variances from its hidden layer, by the chosen parameterisation."""
        raw = self.variance_head(hidden)
        if self.variance_kind == "unconstrained":
            return raw
        if self.variance_kind == "exp":
            return raw.exp()
        return F.softplus(raw) + self.min_variance

    def decode(self, z: Tensor) -> Distribution:
        """:math:`p(x \\mid z)`: a ``Normal`` (mean and standard deviation) or a ``Bernoulli``."""
        hidden = self.decoder(z)
        if self.likelihood == "bernoulli":
            return torch.distributions.Bernoulli(logits=self.loc_head(hidden), validate_args=False)
        return Normal(self.loc_head(hidden), self.decoder_variance(hidden).sqrt(), validate_args=False)

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> ELBOTerms:
        """The ELBO's terms for a batch, one reparameterised draw per example."""
        loc, log_variance = self.encoder(x).chunk(2, dim=-1)
        eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        z = loc + (0.5 * log_variance).exp() * eps
        hidden = self.decoder(z)
        if self.likelihood == "bernoulli":
            return ELBOTerms(bernoulli_log_likelihood(x, self.loc_head(hidden)), kl_normal_standard(loc, log_variance), None)
        variance = self.decoder_variance(hidden)
        log_likelihood = gaussian_log_likelihood(x, self.loc_head(hidden), variance)
        return ELBOTerms(log_likelihood, kl_normal_standard(loc, log_variance), variance)

    def forward(self, x: Tensor) -> Tensor:
        """The mean reconstruction :math:`\\E[x \\mid z = \\mu(x)]` (the encoder's mean)."""
        return self.decode(self.encode(x).loc).mean

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Means of :math:`p(x \\mid z)` for ``n`` draws of :math:`z` from the prior."""
        dtype = self.loc_head.weight.dtype
        z = torch.randn(n, self.decoder[0].in_features, generator=generator, dtype=dtype)
        return self.decode(z).mean


@dataclass
class VAEHistory:
    """What :func:`fit_vae` recorded.

    Per optimisation step (mean over the batch): ``elbo``, ``log_likelihood``, ``kl``,
    and ``min_variance`` (the smallest decoder variance in the batch; ``nan`` for a
    Bernoulli decoder). Per epoch: ``val_elbo``, the mean ELBO on the validation data
    (empty when none was given).
    """

    elbo: list[float] = field(default_factory=list)
    log_likelihood: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    min_variance: list[float] = field(default_factory=list)
    val_elbo: list[float] = field(default_factory=list)


def _as_data(name: str, X, model: VAE) -> Tensor:
    """``X`` as a finite ``(n, n_features)`` tensor in the model's dtype (integers promoted)."""
    X = torch.as_tensor(X).to(model.loc_head.weight.dtype)
    n_features = model.loc_head.out_features
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (n, {n_features}), got {tuple(X.shape)}")
    check_finite(name, X)
    return X


def fit_vae(
    model: VAE,
    X: Tensor,
    *,
    epochs: int = 50,
    lr: float = 1e-3,
    batch_size: int = 128,
    X_val: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
) -> VAEHistory:
    """Maximise the ELBO with Adam; stop at the first non-finite loss.

    Args:
        model: the :class:`VAE` (trained in place).
        X: ``(n, n_features)`` training data (a tensor or array; converted to the
            model's dtype); for a Bernoulli decoder in :math:`[0, 1]`.
        epochs, lr, batch_size: passes over ``X``, Adam's step size, examples per step.
        X_val: data on which the ELBO is measured after every epoch (optional).
        generator: drives the shuffling and the reparameterisation noise; the same
            generator state gives the same run.
        progress: show a tqdm bar; ``None`` shows it only on an interactive terminal.

    Returns:
        The :class:`VAEHistory`.

    Raises:
        NonFiniteLossError: at the first step whose loss is NaN or infinite, before the
            weights are touched by it; its ``history`` holds everything recorded until then.
    """
    X = _as_data("X", X, model)
    if X_val is not None:
        X_val = _as_data("X_val", X_val, model)
    if model.likelihood == "bernoulli" and not bool(((X >= 0) & (X <= 1)).all()):
        raise ValueError("X must lie in [0, 1] for a Bernoulli decoder")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive integers")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = VAEHistory()
    step = 0
    for _ in tqdm(range(epochs), desc="epochs", disable=None if progress is None else not progress, leave=False):
        model.train()
        for batch in torch.randperm(X.shape[0], generator=generator).split(batch_size):
            terms = model.elbo_terms(X[batch], generator)
            loss = -terms.elbo.mean()
            history.elbo.append(-loss.item())
            history.log_likelihood.append(terms.log_likelihood.mean().item())
            history.kl.append(terms.kl.mean().item())
            history.min_variance.append(math.nan if terms.variance is None else terms.variance.min().item())
            check_finite_loss(loss, step, history)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if X_val is not None:
            model.eval()
            with torch.no_grad():
                history.val_elbo.append(float(model.elbo_terms(X_val, generator).elbo.mean()))
    return history


# ----------------------------------------------------------------------------- small images (chapter 8)
#
# Appended as a block: a small convolutional classifier for grayscale frames, trained from
# scratch the way a careful team would (augmentation, early stopping on a held-out split).

__all__ += ["DefectCNN", "CNNClassifier"]


class DefectCNN(nn.Module):
    r"""A small convolutional network mapping ``(n, height, width)`` frames to defect logits ``(n,)``.

    Each frame is standardised on its own (zero mean, unit variance: lighting level drops
    out), then passes through blocks of 3 x 3 convolution, batch normalisation, ReLU and
    2 x 2 max pooling (channels ``channels``), a global max pool (a defect is small and
    anywhere, so its strongest response counts), dropout and a linear layer. With the
    default ``(8, 16, 32)`` it has about 6,000 weights.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32), dropout: float = 0.2):
        super().__init__()
        blocks, c_in = [], 1
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, 1))

    def forward(self, images: Tensor) -> Tensor:
        x = images.unsqueeze(1)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return self.head(self.features((x - mean) / std)).squeeze(1)


def _dihedral(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """Each frame turned by a random multiple of 90 degrees and mirrored at random (the camera looks
    straight down, so these are the symmetries of the physics)."""
    turns = torch.randint(0, 4, (images.shape[0],), generator=generator)
    flips = torch.rand(images.shape[0], generator=generator) < 0.5
    out = images.clone()
    for k in range(4):
        chosen = turns == k
        out[chosen] = torch.rot90(images[chosen], k, dims=(1, 2))
    out[flips] = out[flips].flip(2)
    return out


class CNNClassifier(ClassifierMixin, BaseEstimator):
    """:class:`DefectCNN` trained from scratch as a scikit-learn classifier of frames.

    ``fit`` holds out ``val_fraction`` of the images (stratified, at least one of each class
    when possible) for early stopping on the validation loss; trains with Adam on the
    binary cross-entropy, with random dihedral augmentation of every batch; stops after
    ``patience`` epochs without improvement and keeps the best epoch's weights. Training
    stops at the first non-finite loss with a :class:`NonFiniteLossError`.

    Args:
        channels, dropout: the architecture (:class:`DefectCNN`).
        epochs, lr, batch_size, patience: the optimisation.
        val_fraction: share of the training images held out for early stopping.
        augment: use the dihedral augmentation.
        random_state: seed of the weights, split, shuffling, augmentation and dropout; the
            same seed gives the same model whatever ran before (the global torch generator
            is left as it was).
        progress: show a tqdm bar; ``None`` shows it only on an interactive terminal.

    Attributes:
        classes_: the two labels seen in ``fit``; ``model_``: the trained :class:`DefectCNN`;
        history_: its :class:`TrainingHistory`.
    """

    def __init__(
        self,
        channels: tuple[int, ...] = (8, 16, 32),
        dropout: float = 0.2,
        epochs: int = 60,
        lr: float = 3e-3,
        batch_size: int = 32,
        patience: int = 10,
        val_fraction: float = 0.2,
        augment: bool = True,
        random_state: int = 0,
        progress: bool | None = None,
    ):
        self.channels = channels
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.augment = augment
        self.random_state = random_state
        self.progress = progress

    def _check_settings(self) -> None:
        for setting in ("epochs", "patience", "batch_size", "random_state"):
            value = getattr(self, setting)
            # batch norm needs two images per batch in training: batches of one would all be skipped
            minimum = {"random_state": 0, "batch_size": 2}.get(setting, 1)
            if not is_integer_number(value) or value < minimum:
                raise ValueError(f"{setting} must be an integer of at least {minimum}, got {value!r}")
        if not (is_real_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        _check_lr_fits(self.lr, torch.float32)
        if not (is_real_number(self.val_fraction) and 0 < self.val_fraction < 1):
            raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {self.val_fraction!r}")

    def fit(self, X, y) -> CNNClassifier:
        """Train on frames ``X`` ``(n, height, width)`` with binary labels ``y`` ``(n,)``."""
        self._check_settings()
        images = _as_frames("X", X, len(self.channels))
        y = np.asarray(y)
        if y.shape != (images.shape[0],):
            raise ValueError(f"y must have shape ({images.shape[0]},) to match X, got {y.shape}")
        if y.dtype.kind == "f":
            as_float_array("y", y)
        self.classes_ = np.unique(y)
        if self.classes_.size != 2:
            raise ValueError(f"y must hold exactly two classes (good, defective), got {self.classes_[:5]!r}")
        target = torch.as_tensor(y == self.classes_[1], dtype=torch.float32)
        counts = [int((target == label).sum()) for label in (0.0, 1.0)]
        if min(counts) < 2:
            # one image of a class leaves the validation part without it (or empty): its loss is NaN
            raise ValueError(f"y must hold at least 2 images of each class (one for the validation part), got "
                             f"{counts[0]} of {self.classes_[0]!r} and {counts[1]} of {self.classes_[1]!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.random_state)
            generator = torch.Generator().manual_seed(self.random_state)
            train, val = _stratified_split(target, self.val_fraction, generator)
            self.model_ = DefectCNN(tuple(self.channels), self.dropout)
            self.history_ = self._train(images, target, train, val, generator)
        return self

    def _train(self, images: Tensor, target: Tensor, train: Tensor, val: Tensor, generator) -> TrainingHistory:
        model, history = self.model_, TrainingHistory()
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        best_state, step = copy.deepcopy(model.state_dict()), 0
        bar = tqdm(range(self.epochs), desc="epochs", disable=None if self.progress is None else not self.progress,
                   leave=False)
        for epoch in bar:
            model.train()
            total = 0.0
            for batch in train[torch.randperm(train.numel(), generator=generator)].split(self.batch_size):
                x = _dihedral(images[batch], generator) if self.augment else images[batch]
                # a batch of one cannot be batch-normalised in training mode
                if x.shape[0] < 2:
                    continue
                loss = F.binary_cross_entropy_with_logits(model(x), target[batch])
                check_finite_loss(loss, step, history)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * batch.numel()
                step += 1
            model.eval()
            with torch.no_grad():
                val_loss = F.binary_cross_entropy_with_logits(model(images[val]), target[val])
            check_finite_loss(val_loss, step, history)
            history.train_loss.append(total / train.numel())
            history.val_loss.append(val_loss.item())
            bar.set_postfix(train=history.train_loss[-1], val=history.val_loss[-1])
            if history.best_epoch < 0 or history.val_loss[-1] < history.best_val_loss:
                history.best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
            elif epoch - history.best_epoch >= self.patience:
                break
        bar.close()
        model.load_state_dict(best_state)
        model.eval()
        return history

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of a defect for each frame, ``(n,)``."""
        check_is_fitted(self)
        images = _as_frames("X", X, len(self.channels))
        with torch.no_grad():
            return torch.cat([self.model_(chunk) for chunk in images.split(512)]).double().numpy()

    def predict_proba(self, X) -> np.ndarray:
        """``(n, 2)``: probabilities of ``classes_[0]`` (good) and ``classes_[1]`` (defective)."""
        p = scipy.special.expit(self.decision_function(X))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        """The more probable class of each frame."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]


def _as_frames(name: str, X, blocks: int) -> Tensor:
    """``X`` as a finite float32 ``(n, height, width)`` tensor with sides of at least 8 and
    ``2 ** blocks`` (each pooling block halves them), or an error naming ``name``."""
    array = as_float_array(name, X)
    side = max(8, 2**blocks)
    if array.ndim != 3 or array.shape[0] < 1 or min(array.shape[1:]) < side:
        raise ValueError(f"{name} must have shape (n_images, height, width) with n_images >= 1 and sides >= {side} "
                         f"({blocks} pooling blocks halve them), got {array.shape}")
    frames = torch.as_tensor(array, dtype=torch.float32)
    check_finite(f"{name} in float32 (the network's dtype)", frames)
    return frames


def _stratified_split(target: Tensor, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices of a training and a validation part; each class contributes ``fraction`` of its
    members (rounded, at least one when it has two or more) to the validation part."""
    train, val = [], []
    for label in (0.0, 1.0):
        members = torch.nonzero(target == label).squeeze(1)
        members = members[torch.randperm(members.numel(), generator=generator)]
        k = min(max(round(fraction * members.numel()), 1), members.numel() - 1) if members.numel() >= 2 else 0
        val.append(members[:k])
        train.append(members[k:])
    return torch.cat(train), torch.cat(val)
