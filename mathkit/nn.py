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
  :func:`mathkit.losses.censored_nll` with the stock-out mask.

Scales are :math:`\operatorname{softplus}(\cdot) + \sigma_{\min}`, positive and bounded
away from zero so that float32 training stays finite. :func:`make_windows` cuts series
into training examples and :func:`fit` trains with early stopping on a validation set.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Normal
from tqdm import tqdm

from mathkit._checks import as_float_array, check_finite
from mathkit.distributions import TruncatedNormal
from mathkit.losses import censored_nll, gaussian_nll

__all__ = [
    "PointHead",
    "GaussianHead",
    "TruncatedNormalHead",
    "CensoredTruncatedNormalHead",
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


HEADS: dict[str, type[nn.Module]] = {
    "point": PointHead,
    "gaussian": GaussianHead,
    "truncated": TruncatedNormalHead,
    "censored": CensoredTruncatedNormalHead,
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
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
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
        """The head's training loss on a batch of windows (in scaled units)."""
        return self.head.loss(self(windows.inputs), windows.target, windows.right_censored)

    @torch.no_grad()
    def predict(self, windows: Windows) -> Tensor | Distribution:
        """Forecasts for ``windows`` in the series' original units."""
        self.eval()
        return self.head.rescale(self(windows.inputs), windows.unit)


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
        outside = ~output.support.check(windows.target) & ~windows.right_censored
        if bool(outside.any()):
            i = int(torch.nonzero(outside)[0])
            return (
                f"a target outside the head's support: {name}.target[{int(index[i])}] = "
                f"{windows.target[i].item():.6g} (series {int(windows.series[i])}, time {int(windows.time[i])}) "
                f"has zero density under the {type(output).__name__} law"
            )
    parameters_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    state = "the weights are finite" if parameters_finite else "the weights are no longer finite"
    return f"a learning rate too large (lr={lr:g}): {state}, and the inputs and targets are finite"


def _finite_loss(
    model: SequenceForecaster, windows: Windows, name: str, index: Tensor, where: str, lr: float
) -> Tensor:
    """The model's loss on ``windows``; a ValueError naming the likely cause if it is not finite."""
    try:
        loss = model.loss(windows)
    except ValueError as error:  # a loss refusing the model's own non-finite outputs
        raise ValueError(
            f"training stopped {where}: the loss could not be computed ({error}); likely cause: "
            f"{_likely_cause(model, windows, name, index, lr)}"
        ) from error
    if not bool(torch.isfinite(loss)):
        raise ValueError(
            f"training stopped at the first non-finite loss ({loss.item()}) {where}; likely cause: "
            f"{_likely_cause(model, windows, name, index, lr)}"
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
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{setting} must be a positive integer, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not (isinstance(max_grad_norm, (int, float)) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be a positive number (inf: no clipping), got {max_grad_norm!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    dtype = next(model.parameters()).dtype
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
            loss = _finite_loss(model, train[batch], "train", batch, where, lr)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            if not bool(torch.isfinite(norm)):
                raise ValueError(
                    f"training stopped at the first non-finite gradient {where} (the loss was {loss.item():.6g}); "
                    f"likely cause: {_likely_cause(model, train[batch], 'train', batch, lr)}"
                )
            optimizer.step()
            total += loss.item() * batch.numel()
        model.eval()
        with torch.no_grad():
            where = f"on val after epoch {epoch + 1}"
            val_loss = _finite_loss(model, val, "val", torch.arange(len(val)), where, lr).item()
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
