r"""Regression by maximum likelihood: any distribution family, its parameters linear in the features.

:class:`LikelihoodRegressor` models the response as a draw from a distribution whose
parameters depend on the features,

.. math::
    y_i \sim p\big(\cdot \mid \theta_1(x_i), \dots, \theta_K(x_i)\big), \qquad
    \theta_k(x) = g_k\big(b_k + x^\top w_k\big) \ \text{(linear)} \quad \text{or} \quad
    \theta_k = g_k(c_k) \ \text{(constant)},

where each :math:`g_k` maps the real line onto the parameter's constraint (``exp`` for a
positive scale, a logistic for a fraction, as chosen by ``torch.distributions.transform_to``),
and fits :math:`b_k, w_k, c_k` by maximising the log-likelihood (censored points contribute
a tail probability, :func:`mathkit.losses.censored_nll`) with exact gradients from torch
autograd and scipy's L-BFGS-B, in float64. With the Normal family and a constant scale
this is ordinary least squares; other families encode what is known about the noise:
non-negative (:func:`truncated_normal`), bounded and skewed (:func:`generalized_beta`,
the Beta regression of Ferrari & Cribari-Neto, 2004), or any torch distribution described
with :class:`Family`. Features enter linearly, so nonlinear shapes come from the features
(``PolynomialFeatures``, ``SplineTransformer`` in a ``Pipeline``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
import numpy as np
import scipy.optimize
import scipy.special
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.distributions import Distribution, Normal, constraints, transform_to

from mathkit._checks import as_float_array, is_integer_number, is_real_number
from mathkit.distributions import GeneralizedBeta, TruncatedNormal
from mathkit.losses import censored_nll

__all__ = [
    "LikelihoodRegressor",
    "Family",
    "Parameter",
    "linear",
    "constant",
    "given",
    "normal",
    "truncated_normal",
    "generalized_beta",
    "FAMILIES",
    "conformal_quantile",
    "conformalize_interval",
]

_F64 = torch.float64
_KINDS = ("linear", "constant", "given")


@dataclass(frozen=True)
class Parameter:
    """How one argument of a family's constructor depends on the features.

    Attributes:
        kind: ``"linear"`` (:math:`g(b + x^\\top w)`, fitted), ``"constant"`` (:math:`g(c)`,
            fitted) or ``"given"`` (``value``, not fitted).
        constraint: the parameter's ``torch.distributions.constraints`` constraint; the map
            :math:`g` is ``transform_to(constraint)`` (identity for ``real``, ``exp`` for
            ``positive``, a logistic for ``unit_interval``).
        value: the value of a ``"given"`` parameter.
    """

    kind: str
    constraint: constraints.Constraint = constraints.real
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Parameter kind must be one of {_KINDS}, got {self.kind!r}")
        if (self.kind == "given") != (self.value is not None):
            raise ValueError("Parameter value must be given exactly when kind is 'given'")
        if self.kind == "given" and math.isnan(float(self.value)):
            raise ValueError("Parameter value must not be NaN (infinite bounds are fine)")

    @property
    def transform(self) -> torch.distributions.transforms.Transform:
        return transform_to(self.constraint)


def linear(constraint: constraints.Constraint = constraints.real) -> Parameter:
    """A parameter :math:`g(b + x^\\top w)`, with :math:`g` = ``transform_to(constraint)``."""
    return Parameter("linear", constraint)


def constant(constraint: constraints.Constraint = constraints.real) -> Parameter:
    """A fitted parameter that does not depend on the features."""
    return Parameter("constant", constraint)


def given(value: float) -> Parameter:
    """A known parameter, passed to the family as is (e.g. a truncation bound)."""
    return Parameter("given", value=float(value))


@dataclass(frozen=True)
class Family:
    """A distribution family described declaratively, for :class:`LikelihoodRegressor`.

    Attributes:
        name: a label for messages.
        build: called with one keyword argument per entry of ``parameters`` (float64 tensors
            of shape ``(n,)`` or scalars), returns a ``torch.distributions.Distribution``
            with batch shape ``(n,)``. A class (``torch.distributions.Gamma``) or a
            module-level function, so that the estimator pickles.
        parameters: ``{argument name: Parameter}``.
        start: optional ``start(y) -> {name: value}``, starting values on the parameter's
            own scale for constants and for the intercepts of linear parameters (slopes
            start at 0); parameters it omits start where their unconstrained value is 0.
        quantile: optional ``quantile(dist, q) -> tensor`` for families without ``icdf``.

    Example: a Gamma response with a log-linear rate and a constant shape::

        Family("gamma", torch.distributions.Gamma,
               {"concentration": constant(constraints.positive),
                "rate": linear(constraints.positive)})
    """

    name: str
    build: Callable[..., Distribution]
    parameters: Mapping[str, Parameter]
    start: Callable[[np.ndarray], dict[str, float]] | None = None
    quantile: Callable[[Distribution, torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if not self.parameters:
            raise ValueError(f"Family {self.name!r} needs at least one parameter")
        for key, spec in self.parameters.items():
            if not isinstance(spec, Parameter):
                raise TypeError(f"Family parameter {key!r} must be a Parameter (linear, constant or given), "
                                f"got {type(spec).__name__}")
        if all(spec.kind == "given" for spec in self.parameters.values()):
            raise ValueError(f"Family {self.name!r} has no parameter to fit")


def _normal_start(y: np.ndarray) -> dict[str, float]:
    return {"loc": float(np.mean(y)), "scale": float(np.std(y)) or 1.0}


def normal() -> Family:
    r"""Normal noise with a linear mean and a constant scale: :math:`y \sim N(x^\top w + b, \sigma^2)`."""
    return Family("normal", Normal, {"loc": linear(), "scale": constant(constraints.positive)}, start=_normal_start)


def truncated_normal(low: float = 0.0, high: float = math.inf) -> Family:
    r"""A normal law with a linear ``loc`` and a constant scale, truncated to the known ``[low, high]``.

    The default ``[0, \infty)`` is the demand law of the book
    (:class:`mathkit.distributions.TruncatedNormal`).
    """
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"truncated_normal needs low < high, got low={low}, high={high}")
    return Family("truncated_normal", TruncatedNormal,
                  {"loc": linear(), "scale": constant(constraints.positive), "low": given(low), "high": given(high)},
                  start=_normal_start)


def _beta_with_mean(fraction, precision, low, width) -> GeneralizedBeta:
    """The Beta on ``[low, low + width]`` with mean ``low + width * fraction``."""
    return GeneralizedBeta(fraction * precision, (1 - fraction) * precision, low, low + width)


def _beta_start(y: np.ndarray, low: float, high: float) -> dict[str, float]:
    fraction = (np.clip(y, low, high) - low) / (high - low)
    mean = min(max(float(np.mean(fraction)), 0.01), 0.99)
    # method of moments: Var = m(1-m)/(1+phi), kept in a safe range
    precision = min(max(mean * (1 - mean) / max(float(np.var(fraction)), 1e-12) - 1, 2.0), 1e3)
    return {"fraction": mean, "precision": precision}


def _beta_quantile(dist: GeneralizedBeta, q: torch.Tensor) -> torch.Tensor:
    a, b, low, high = (t.detach().cpu().numpy() for t in (dist.concentration1, dist.concentration0,
                                                           dist.low, dist.high))
    unit = scipy.special.betaincinv(a, b, q.detach().cpu().numpy())
    return torch.as_tensor(low + (high - low) * unit, dtype=dist.low.dtype)


def generalized_beta(low: float = 0.0, high: float = 1.0) -> Family:
    r"""Beta regression on a known interval: :math:`y \sim \ell + (h-\ell)\,\mathrm{Beta}(\mu\phi, (1-\mu)\phi)`.

    The mean :math:`E[y] = \ell + (h - \ell)\mu(x)` with :math:`\mu(x) = 1/(1 + e^{-(b + x^\top w)})`
    (linear on the logit scale) and a constant precision :math:`\phi > 0` (Ferrari &
    Cribari-Neto, 2004): near either bound the noise is skewed away from it and its
    spread shrinks. The bounds are given, not fitted: the likelihood of a Beta with a
    free bound grows without limit as the bound approaches the most extreme observation
    whenever a shape parameter is below one (a non-regular problem, Smith 1985).
    """
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"generalized_beta needs finite bounds low < high, got low={low}, high={high}")
    params = {"fraction": linear(constraints.unit_interval), "precision": constant(constraints.positive),
              "low": given(low), "width": given(high - low)}
    return Family("generalized_beta", _beta_with_mean, params,
                  start=functools.partial(_beta_start, low=low, high=high), quantile=_beta_quantile)


#: The families a string names: ``LikelihoodRegressor(family="normal")``.
FAMILIES: dict[str, Callable[[], Family]] = {
    "normal": normal,
    "truncated_normal": truncated_normal,
    "generalized_beta": generalized_beta,
}


@contextlib.contextmanager
def _no_validation():
    # Trial parameters of the optimiser may put a training point outside a family's support;
    # the likelihood must then be -inf (handled below), not an exception from torch.
    previous = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(previous)


@dataclass
class _Layout:
    """Where each fitted parameter's unconstrained coefficients sit in the flat vector."""

    family: Family
    n_features: int
    slices: dict[str, slice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        offset = 0
        for key, spec in self.family.parameters.items():
            size = {"linear": self.n_features + 1, "constant": 1, "given": 0}[spec.kind]
            self.slices[key] = slice(offset, offset + size)
            offset += size
        self.size = offset

    def values(self, theta: torch.Tensor, Z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each parameter on its own scale, from the flat vector and the design ``Z = [1, X]``."""
        out = {}
        for key, spec in self.family.parameters.items():
            if spec.kind == "given":
                out[key] = torch.tensor(spec.value, dtype=_F64)
            elif spec.kind == "constant":
                out[key] = spec.transform(theta[self.slices[key]][0])
            else:
                out[key] = spec.transform(Z @ theta[self.slices[key]])
        return out

    def slopes(self, theta: torch.Tensor) -> torch.Tensor:
        parts = [theta[self.slices[k]][1:] for k, s in self.family.parameters.items() if s.kind == "linear"]
        return torch.cat(parts) if parts else theta[:0]

    def start(self, y: np.ndarray) -> torch.Tensor:
        theta = torch.zeros(self.size, dtype=_F64)
        start = self.family.start(y) if self.family.start is not None else {}
        for key, spec in self.family.parameters.items():
            if spec.kind != "given" and key in start:
                value = torch.tensor(float(start[key]), dtype=_F64)
                theta[self.slices[key].start] = spec.transform.inv(value)
        return theta


def _log_likelihood(dist: Distribution, y: torch.Tensor, right, left) -> torch.Tensor:
    """Per-point censored log-likelihood; an exact point outside the support gives -inf."""
    log_lik = -censored_nll(dist, y, right, left, reduction="none")
    exact = torch.ones_like(y, dtype=torch.bool)
    for mask in (right, left):
        if mask is not None:
            exact = exact & ~mask
    return torch.where(exact & ~dist.support.check(y), -math.inf, log_lik)


def _as_mask(name: str, mask, n: int) -> torch.Tensor | None:
    if mask is None:
        return None
    array = np.asarray(mask)
    if array.dtype != bool:
        raise ValueError(f"{name} must be a boolean array, got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like y, got {array.shape}")
    return torch.from_numpy(array.copy())


def _check_finite(name: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        index = np.argwhere(bad)[0]
        where = int(index[0]) if values.ndim == 1 else tuple(int(i) for i in index)
        value = values[tuple(index)]
        raise ValueError(f"{name} must be finite, got {'NaN' if np.isnan(value) else value} at index {where}")


def _inverse_information(nll: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> np.ndarray:
    """Inverse of the observed information (Hessian of the negative log-likelihood) at ``theta``;
    NaN where the Hessian is not positive definite (a parameter the data do not determine)."""
    hessian = torch.autograd.functional.hessian(nll, theta)
    factor, info = torch.linalg.cholesky_ex(hessian)
    if int(info) != 0 or not bool(torch.isfinite(hessian).all()):
        return np.full(hessian.shape, np.nan)
    return torch.cholesky_inverse(factor).numpy()


def _check_finite_y(y) -> None:
    # before scikit-learn's own check, whose message does not say where
    values = np.asarray(y)
    if values.dtype.kind in "fc":
        _check_finite("y", values.reshape(-1))


class LikelihoodRegressor(RegressorMixin, BaseEstimator):
    r"""Fit a distribution family's parameters as functions of the features by maximum likelihood.

    Each parameter of ``family`` is linear in the features (through the link its
    constraint implies), constant, or given; the coefficients maximise

    .. math:: \sum_i \log p\big(y_i \mid \theta(x_i)\big) - \tfrac{\alpha}{2}\sum_k \lVert w_k \rVert^2

    (censored points contribute :math:`\log P(Y > y_i)` or :math:`\log P(Y \le y_i)`),
    by L-BFGS-B with autograd gradients in float64. The features are standardised
    internally (so the fit does not depend on their units); coefficients are reported
    on the original scale. ``predict`` gives the predictive mean, or a quantile.

    Parameters
    ----------
    family : str or Family, default="normal"
        ``"normal"``, ``"truncated_normal"`` (at 0), ``"generalized_beta"`` (on [0, 1]), or
        a :class:`Family` such as ``truncated_normal(low, high)`` or ``generalized_beta(low, high)``.
    alpha : float, default=0.0
        Ridge penalty on the slopes of the standardised features (0 for plain maximum likelihood).
    max_iter : int, default=1000
        Maximum number of L-BFGS-B iterations.
    tol : float, default=1e-8
        Stop when the largest gradient entry of the mean negative log-likelihood is below ``tol``.

    Attributes
    ----------
    family_ : Family, the family fitted (``family`` resolved).
    coef_ : dict of str to ndarray of shape ``(n_features_in_,)``, the slopes of each linear
        parameter on the unconstrained (link) scale.
    intercept_ : dict of str to float, the intercepts of the linear parameters on the link scale.
    constants_ : dict of str to float, the fitted constant parameters on their own scale.
    coef_se_, intercept_se_, constants_se_ : dict, standard errors of the above from the inverse
        observed information (the Hessian of the negative log-likelihood at the optimum; delta
        method for the constants), NaN where the Hessian is singular. Valid for ``alpha=0`` and a
        correctly specified family.
    log_likelihood_ : float, the training log-likelihood at the optimum (censored terms included).
    n_iter_ : int, the number of L-BFGS-B iterations.
    n_features_in_ : int, the number of features seen in ``fit``.
    """

    def __init__(self, family: str | Family = "normal", alpha: float = 0.0, max_iter: int = 1000,
                 tol: float = 1e-8) -> None:
        self.family = family
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    def _resolve_family(self) -> Family:
        if isinstance(self.family, str):
            if self.family not in FAMILIES:
                raise ValueError(f"family must be one of {sorted(FAMILIES)} or a Family, got {self.family!r}")
            return FAMILIES[self.family]()
        if not isinstance(self.family, Family):
            raise TypeError(f"family must be a string or a Family, got {type(self.family).__name__}")
        return self.family

    def _check_params(self) -> None:
        # numbers.Real admits numpy scalars (a GridSearchCV over np.arange); bool is not a number here
        if not (is_real_number(self.alpha) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if not (is_integer_number(self.max_iter) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not (is_real_number(self.tol) and self.tol > 0):
            raise ValueError(f"tol must be a positive number, got {self.tol!r}")

    def fit(self, X, y, right_censored=None, left_censored=None) -> LikelihoodRegressor:
        """Maximise the (censored) log-likelihood of ``y`` given ``X``.

        Args:
            X: array of shape ``(n, d)``.
            y: array of shape ``(n,)``; censored entries hold the censoring value.
            right_censored: boolean ``(n,)``, the true value is at least ``y`` (e.g. sales at the stock level).
            left_censored: boolean ``(n,)``, the true value is at most ``y`` (e.g. a detection limit).

        Raises:
            ValueError: bad parameters, non-finite ``X`` or ``y``, masks that are not boolean
                ``(n,)`` arrays, or ``y`` outside the family's support at the starting point.
        """
        self._check_params()
        family = self._resolve_family()
        _check_finite_y(y)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, ensure_all_finite=False)
        _check_finite("X", X)
        if len(y) < 2:
            # one point has no spread to estimate: every scale parameter would run to 0
            raise ValueError(f"LikelihoodRegressor needs at least 2 samples, got {len(y)} sample")
        if len(y) <= X.shape[1] + 1:
            warnings.warn(f"{len(y)} samples for {X.shape[1] + 1} coefficients (with the intercept): the fit can "
                          "interpolate them, so the likelihood has no maximum and a scale parameter runs towards 0",
                          UserWarning, stacklevel=2)
        right = _as_mask("right_censored", right_censored, len(y))
        left = _as_mask("left_censored", left_censored, len(y))
        self._center = X.mean(axis=0)
        scale = X.std(axis=0)
        self._scale = np.where(scale > 0, scale, 1.0)
        Z = self._design(X)
        y_t = torch.from_numpy(np.array(y))
        layout = _Layout(family, X.shape[1])
        n = len(y)

        def objective(theta: torch.Tensor) -> torch.Tensor:
            dist = family.build(**layout.values(theta, Z))
            nll = -_log_likelihood(dist, y_t, right, left).sum()
            return (nll + 0.5 * self.alpha * layout.slopes(theta).square().sum()) / n

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            theta = torch.from_numpy(x).requires_grad_(True)
            value = objective(theta)
            if not torch.isfinite(value):
                # outside the support: refuse the step (L-BFGS-B's line search backs off)
                return math.inf, np.zeros_like(x)
            (grad,) = torch.autograd.grad(value, theta)
            return float(value.detach()), grad.numpy()

        theta0 = layout.start(y)
        with _no_validation():
            if not math.isfinite(fun(theta0.numpy())[0]):
                raise ValueError(f"y has values outside the support of family {family.name!r}, or on a bound "
                                 "where its density is infinite (the log-likelihood is not finite at the start)")
            result = scipy.optimize.minimize(fun, theta0.numpy(), jac=True, method="L-BFGS-B",
                                             options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": 1e-14})
        if not (np.isfinite(result.x).all() and math.isfinite(result.fun)):
            raise ValueError("the log-likelihood has no finite maximum for these data (the optimiser reached "
                             "non-finite parameters): too few points, or too many censored, for the family")
        if result.status == 1:
            warnings.warn(f"LikelihoodRegressor did not converge in max_iter={self.max_iter} iterations",
                          ConvergenceWarning, stacklevel=2)
        theta = torch.from_numpy(result.x)
        with _no_validation():
            covariance = _inverse_information(lambda t: n * objective(t), theta)
        self.family_ = family
        self._layout = layout
        self._theta = theta
        self.n_iter_ = int(result.nit)
        self.log_likelihood_ = float(-n * result.fun + 0.5 * self.alpha * float(layout.slopes(theta).square().sum()))
        self.coef_, self.intercept_, self.constants_ = {}, {}, {}
        self.coef_se_, self.intercept_se_, self.constants_se_ = {}, {}, {}
        for key, spec in family.parameters.items():
            part, cov = theta[layout.slices[key]].numpy(), covariance[layout.slices[key], layout.slices[key]]
            if spec.kind == "linear":
                # back from standardised features: intercept = v0 - sum v_j c_j / s_j, coef_j = v_j / s_j
                A = np.diag(np.concatenate([[1.0], 1.0 / self._scale]))
                A[0, 1:] = -self._center / self._scale
                value, se = A @ part, np.sqrt(np.diag(A @ cov @ A.T))
                self.intercept_[key], self.coef_[key] = float(value[0]), value[1:]
                self.intercept_se_[key], self.coef_se_[key] = float(se[0]), se[1:]
            elif spec.kind == "constant":
                u = torch.tensor(part[0], requires_grad=True)
                natural = spec.transform(u)
                (slope,) = torch.autograd.grad(natural, u)  # delta method onto the parameter's own scale
                self.constants_[key] = float(natural.detach())
                self.constants_se_[key] = float(abs(slope) * np.sqrt(cov[0, 0]))
        return self

    def _design(self, X: np.ndarray) -> torch.Tensor:
        Xs = (X - self._center) / self._scale
        return torch.from_numpy(np.hstack([np.ones((len(X), 1)), Xs]))

    def predict_distribution(self, X) -> Distribution:
        """The predictive law of ``y`` at each row of ``X``: a torch Distribution with batch shape ``(n,)``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False, ensure_all_finite=False)
        _check_finite("X", X)
        with torch.no_grad():
            return self.family_.build(**self._layout.values(self._theta, self._design(X)))

    def predict(self, X, quantile: float | None = None) -> np.ndarray:
        """The predictive mean at each row of ``X`` or, with ``quantile=q`` in (0, 1), its q-quantile
        (``quantile=0.5``: the median).

        Returns:
            ndarray of shape ``(n,)``.
        """
        dist = self.predict_distribution(X)
        if quantile is None:
            return dist.mean.numpy()
        if isinstance(quantile, (np.ndarray, torch.Tensor)) and quantile.ndim == 0:
            quantile = quantile.item()  # a 0-d array or tensor is a number
        if not (is_real_number(quantile) and 0 < quantile < 1):
            raise ValueError(f"quantile must be a number in (0, 1), got {quantile!r}")
        q = torch.full(dist.batch_shape, float(quantile), dtype=_F64)
        with torch.no_grad():
            if self.family_.quantile is not None:
                return self.family_.quantile(dist, q).numpy()
            try:
                return dist.icdf(q).numpy()
            except NotImplementedError:
                raise NotImplementedError(
                    f"family {self.family_.name!r} has no icdf; give its Family a quantile function") from None

    def log_likelihood(self, X, y, right_censored=None, left_censored=None,
                       reduction: str = "sum") -> float | np.ndarray:
        """Log-likelihood of ``y`` given ``X`` under the fitted model (``-inf`` for a point
        outside the support), censored points contributing their tail probability.

        Args:
            reduction: ``"sum"`` (a float), ``"mean"`` (a float) or ``"none"`` (ndarray ``(n,)``).
        """
        if reduction not in ("sum", "mean", "none"):
            raise ValueError(f"reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
        check_is_fitted(self)
        _check_finite_y(y)
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, reset=False, ensure_all_finite=False)
        _check_finite("X", X)
        right = _as_mask("right_censored", right_censored, len(y))
        left = _as_mask("left_censored", left_censored, len(y))
        with torch.no_grad(), _no_validation():
            dist = self.family_.build(**self._layout.values(self._theta, self._design(X)))
            values = _log_likelihood(dist, torch.from_numpy(np.array(y)), right, left).numpy()
        if reduction == "none":
            return values
        return float(values.sum() if reduction == "sum" else values.mean())


def _check_coverage(coverage: float) -> float:
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float, np.floating)) or not 0 < coverage < 1:
        raise ValueError(f"coverage must be a number strictly inside (0, 1), got {coverage!r}")
    return float(coverage)


def conformal_quantile(scores, coverage: float) -> float:
    r"""The split-conformal threshold of calibration scores (Vovk et al. 2005; Lei et al. 2018).

    For :math:`n` exchangeable nonconformity scores :math:`s_1, \dots, s_n` and a new one
    :math:`s_{n+1}`, the :math:`\lceil (n + 1) c \rceil`-th smallest calibration score
    :math:`\hat q` satisfies :math:`P(s_{n+1} \le \hat q) \ge c`, whatever the scores' law; it is
    :math:`+\infty` when :math:`\lceil (n+1) c \rceil > n` (too few points for that coverage).

    Args:
        scores: ``(n,)`` finite calibration scores (e.g. absolute residuals, possibly divided by
            a predicted scale), at least one.
        coverage: the target probability :math:`c` in (0, 1).

    Raises:
        ValueError: ``scores`` empty, not one-dimensional or not finite; ``coverage`` outside (0, 1).
    """
    coverage = _check_coverage(coverage)
    scores = as_float_array("scores", scores)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty one-dimensional array, got shape {scores.shape}")
    # (n + 1) c as the decimal c means: 100 * 0.55 is 55.000000000000007 in floating point
    product = (scores.size + 1) * coverage
    rank = math.ceil(product - 8 * math.ulp(product))
    return math.inf if rank > scores.size else float(np.partition(scores, rank - 1)[rank - 1])


def conformalize_interval(cal_lower, cal_upper, cal_y, lower, upper, coverage: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Conformalised quantile regression (CQR, Romano, Patterson & Candès 2019).

    Quantile forecasts :math:`[\hat q_{lo}(x), \hat q_{hi}(x)]` are widened (or narrowed) by the
    conformal threshold :math:`\hat q` (:func:`conformal_quantile`) of the calibration scores
    :math:`s_i = \max(\hat q_{lo}(x_i) - y_i,\ y_i - \hat q_{hi}(x_i))`, giving
    :math:`[\hat q_{lo}(x) - \hat q,\ \hat q_{hi}(x) + \hat q]`, which covers a new exchangeable
    point with probability at least ``coverage`` (marginally, not for each :math:`x`).

    Args:
        cal_lower, cal_upper, cal_y: ``(n,)`` quantile forecasts and outcomes on calibration data
            that was not used to fit the quantiles' model.
        lower, upper: ``(m,)`` quantile forecasts to be conformalised.
        coverage: the target probability in (0, 1).

    Returns:
        The conformalised ``(lower, upper)``, float64 arrays of shape ``(m,)``.

    Raises:
        ValueError: arrays not finite, calibration arrays of different shapes, ``lower`` and
            ``upper`` of different shapes, ``coverage`` outside (0, 1).
    """
    cal = [as_float_array(name, v) for name, v in (("cal_lower", cal_lower), ("cal_upper", cal_upper), ("cal_y", cal_y))]
    if not (cal[0].shape == cal[1].shape == cal[2].shape) or cal[2].ndim != 1:
        raise ValueError(
            "cal_lower, cal_upper and cal_y must be one-dimensional of one shape, got "
            f"{cal[0].shape}, {cal[1].shape}, {cal[2].shape}"
        )
    lower, upper = as_float_array("lower", lower), as_float_array("upper", upper)
    if lower.shape != upper.shape:
        raise ValueError(f"lower and upper must have one shape, got {lower.shape} and {upper.shape}")
    margin = conformal_quantile(np.maximum(cal[0] - cal[2], cal[2] - cal[1]), coverage)
    return lower - margin, upper + margin
