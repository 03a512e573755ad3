"""The estimator: :class:`GPRegressor`, scikit-learn style, with torch inside."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from mathkit._checks import is_integer_number, is_real_number
from mathkit.gp.backend import LOG_BOUNDS, as_float64
from mathkit.gp.cg import CGBackend
from mathkit.gp.exact import ExactBackend
from mathkit.gp.optimise import OptimisationResult, fit_hyperparameters
from mathkit.gp.ski import ski_backend
from mathkit.gp.units import Units
from mathkit.kernels import RBF, Kernel

_METHODS = ("auto", "cholesky", "cg", "ski")
#: ``method="auto"`` uses the exact solver up to this many points ...
AUTO_EXACT_MAX = 3000
#: ... and SKI (for 1-D/2-D inputs with a stationary kernel) from this many points on.
AUTO_SKI_MIN = 20000

BACKENDS = {"cholesky": ExactBackend, "cg": CGBackend, "ski": ski_backend}

#: scikit-learn's ``check_estimator`` checks that do not apply to :class:`GPRegressor`, with
#: the reason (scikit-learn 1.9 takes them as ``check_estimator(..., expected_failed_checks=)``;
#: estimator tags cannot declare them any more).
SKLEARN_EXPECTED_FAILED_CHECKS = {
    "check_fit1d": "a 1-D X is n points with one input column, as documented (GP inputs are "
                   "often scalar), so fitting it does not raise",
    "check_fit2d_predict1d": "a 1-D X is n points with one input column (see check_fit1d), so "
                             "the error names the feature count, not 'Reshape your data'",
}


class GPRegressor(RegressorMixin, BaseEstimator):
    r"""Gaussian-process regression, a scikit-learn estimator with torch inside.

    Parameters
    ----------
    kernel : Kernel, optional
        Prior covariance; its hyperparameters, in the units of X and y, are the starting point
        of the fit. Default ``None``: an ``RBF`` starting from the data's own scales
        (lengthscale :math:`s_x`, variance :math:`s_y^2`, see Units below).
    noise : float, optional
        Noise *variance* :math:`\sigma^2` in y's units squared. ``None`` (default) learns it,
        starting from :math:`s_y^2 / 10`; a float fixes it (scikit-learn's ``alpha``).
    method : {"auto", "cholesky", "cg", "ski"}
        ``"auto"``: Cholesky for ``n <= 3000``; SKI for ``n >= 20000`` with 1-D/2-D inputs
        and a stationary kernel; CG otherwise.
    normalize_y : bool
        The prior mean: ``True`` (default) the constant :math:`\bar y`, the mean of the
        training targets, so that fits do not depend on where y's zero is; ``False`` zero, in
        the user's units (scikit-learn's default model; choose it when 0 is a meaningful prior
        mean, e.g. for residuals). Either way the fit itself runs on standardised data (see
        below), so hyperparameters are always in the user's units and
        ``log_marginal_likelihood()`` is that of the user's ``y`` (unlike scikit-learn's
        ``normalize_y=True``, whose kernel and likelihood refer to the standardised targets).
    optimizer : {"lbfgs", None}
        ``None`` keeps the given hyperparameters.
    subset_sizes : tuple of int
        Nested random subsets fitted exactly first (a warm start); the full data then gets
        at most ``refine_steps`` quasi-Newton steps, with a Hessian extrapolated from the last two
        subsets (one subset: scaled by ``n / n_subset``).
        Hyperparameters are intensive (they do not grow with ``n``), so a subset lands close.
    grid_size : int or tuple of int, optional
        SKI grid points per axis (default from ``n``: :math:`\min(1000, \max(100, 4\sqrt n))`
        in 1-D, :math:`\min(64, \max(20, 2 n^{1/4}))` per axis in 2-D). The grid spans the
        training inputs plus a tenth of their range on each side; predictions off the grid use
        exact cross-covariances with its nodes (the prior far from the data), see
        ``mathkit.gp.ski``.
    n_probes, precond_rank, cg_tol, max_cg_iter : CG and SKI-CG settings.
    random_state : int
        Seeds the subsets and probe vectors, so fits are reproducible.

    Attributes
    ----------
    kernel_ : Kernel with fitted hyperparameters (``kernel_.lengthscale``, ...), in the units
        of X (lengthscales; a Periodic's period, its lengthscale being a pure number) and of y
        squared (variances).
    noise_ : float, fitted (or fixed) noise variance, in y's units squared.
    method_ : str, the method used.
    n_features_in_ : int, columns of the training X.
    X_train_ : torch.Tensor, the training inputs (float64, ``(n, d)``).
    n_evaluations_ : int, likelihood evaluations on all n points during the fit (0 with
        ``optimizer=None``).
    optimisation_ : :class:`~mathkit.gp.optimise.OptimisationResult` or None: where the
        optimiser stopped, whether it converged, and its evaluation counts (None when
        nothing was optimised).
    backend_ : Backend, the one that conditioned the posterior at the fitted hyperparameters
        (``ExactBackend``, ``CGBackend``, ``SKIDenseBackend``, ``SKIGridBackend`` or
        ``SKIKroneckerBackend``: its class says which route ran; an SKI backend's ``grid``
        holds the interpolation grid), in standardised units.

    Inputs may be numpy arrays (``predict`` then returns numpy) or torch tensors (``predict``
    returns tensors); X of shape ``(n,)`` is n points with one input column.

    Units
    -----
    Every fit runs on :math:`(X - m_x)/s_x` and :math:`(y - m_y)/s_y` (:class:`Units`: column
    means, one common spread for X, the mean and spread of y), with hyperparameters bounded to
    :math:`[10^{-5}, 10^5]` in those units. So predictions transform as the data do under
    :math:`X \to aX + b` (``a`` one number, ``b`` one per column; per-column factors in 1-D)
    and :math:`y \to cy + d` (``d`` with ``normalize_y=True``), and a refit at the reported
    ``kernel_`` and ``noise_`` with ``optimizer=None`` reproduces ``predict`` and
    ``log_marginal_likelihood()``. Degenerate data get defined answers: a constant y has no
    maximum-likelihood variance (the likelihood grows as variance and noise shrink), so the
    starting hyperparameters are kept, with :math:`s_y = |\bar y|` (1 for y = 0): the mean
    is the constant everywhere, the sd finite. A single point is the prior around its value
    at that scale, with lengthscale 1 in X's units (one point has no spread to measure).
    Duplicated inputs are fine with a learned or positive noise.
    """

    def __init__(self, kernel: Kernel | None = None, noise: float | None = None,
                 method: str = "auto", normalize_y: bool = True, *, optimizer: str | None = "lbfgs",
                 subset_sizes: tuple[int, ...] = (500, 1000, 2000), refine_steps: int = 4,
                 grid_size: int | tuple[int, ...] | None = None, n_probes: int = 16,
                 precond_rank: int = 30, cg_tol: float = 1e-5, max_cg_iter: int = 1000,
                 random_state: int = 0) -> None:
        self.kernel = kernel
        self.noise = noise
        self.method = method
        self.normalize_y = normalize_y
        self.optimizer = optimizer
        self.subset_sizes = subset_sizes
        self.refine_steps = refine_steps
        self.grid_size = grid_size
        self.n_probes = n_probes
        self.precond_rank = precond_rank
        self.cg_tol = cg_tol
        self.max_cg_iter = max_cg_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if self.kernel is not None and not isinstance(self.kernel, Kernel):
            raise TypeError(f"kernel must be a mathkit.gp Kernel, got {type(self.kernel).__name__}")
        if self.noise is not None:
            if not (is_real_number(self.noise) and math.isfinite(self.noise) and self.noise > 0):
                raise ValueError(f"noise must be None (learned) or a positive finite variance, got {self.noise}")
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.optimizer not in ("lbfgs", None):
            raise ValueError(f"optimizer must be 'lbfgs' or None, got {self.optimizer!r}")
        if not isinstance(self.normalize_y, (bool, np.bool_)):
            raise ValueError(f"normalize_y must be True or False, got {self.normalize_y!r}")
        sizes = self.subset_sizes
        if not (isinstance(sizes, (tuple, list)) and len(sizes) > 0
                and all(is_integer_number(s) and s >= 2 for s in sizes)):
            raise ValueError(f"subset_sizes must be a non-empty tuple of integers >= 2, got {sizes!r}")
        for name in ("refine_steps", "n_probes", "precond_rank", "max_cg_iter"):
            value = getattr(self, name)
            if not (is_integer_number(value) and value >= (0 if name == "refine_steps" else 1)):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'refine_steps' else 'positive'} "
                                 f"integer, got {value!r}")
        if not (is_real_number(self.cg_tol) and 0 < self.cg_tol < 1):
            raise ValueError(f"cg_tol must be a number in (0, 1), got {self.cg_tol!r}")
        if not is_integer_number(self.random_state):
            raise ValueError(f"random_state must be an integer seed, got {self.random_state!r}")

    def _resolve_method(self, X: torch.Tensor, kernel: Kernel) -> str:
        n, d = X.shape
        if self.method == "ski":
            if d > 2:
                raise ValueError(f"method='ski' supports 1-D and 2-D inputs, got X with {d} columns")
            if not kernel.stationary:
                raise ValueError("method='ski' needs a stationary kernel")
            return "ski"
        if self.method != "auto":
            return self.method
        if n <= AUTO_EXACT_MAX:
            return "cholesky"
        if n >= AUTO_SKI_MIN and d <= 2 and kernel.stationary:
            return "ski"
        return "cg"

    def _settings(self) -> dict[str, Any]:
        return dict(grid_size=self.grid_size, n_probes=self.n_probes, precond_rank=self.precond_rank,
                    cg_tol=self.cg_tol, max_cg_iter=self.max_cg_iter, seed=self.random_state)

    # --------------------------------------------------------------------- fit
    def fit(self, X, y) -> "GPRegressor":
        """Maximise the log marginal likelihood over the kernel hyperparameters (and the
        noise variance when ``noise=None``). ``X``: ``(n,)`` or ``(n, d)``; ``y``: ``(n,)``.

        The work is done in standardised units (see :class:`Units`); hyperparameters go in and
        come out in the units of ``X`` and ``y``."""
        self._check_params()
        if y is None:
            raise ValueError("GPRegressor requires y to be passed, but the target y is None")
        X_t, y_t = _check_Xy(self._validated(X, reset=True), _as_1d(y))
        self.n_features_in_ = X_t.shape[1]
        self.X_train_ = X_t
        kernel = (self.kernel or RBF()).clone()
        self._units = units = Units(X_t, y_t, kernel, self.normalize_y)
        X_s, y_s = units.x(X_t), units.y(y_t)
        self.method_ = self._resolve_method(X_s, kernel)
        learned = self.noise is None
        offsets = units.log_factors(kernel, learned)
        theta = self._initial_theta(kernel) - offsets
        noise = None if learned else self.noise / units.y_scale**2
        backend = BACKENDS[self.method_](kernel, X_s, y_s, noise, **self._settings())
        # constant y (residuals exactly 0): the likelihood grows without bound as the variance
        # and noise shrink; nothing to learn, so the starting hyperparameters stay
        optimise = self.optimizer is not None and len(theta) > 0 and bool(y_s.any())
        self.optimisation_: OptimisationResult | None = None
        if optimise:
            self.optimisation_ = fit_hyperparameters(backend, theta.clamp(*LOG_BOUNDS), tuple(self.subset_sizes),
                                                     self.refine_steps, self.random_state)
            theta = self.optimisation_.theta
        self.n_evaluations_ = self.optimisation_.n_evaluations if optimise else 0
        backend.condition(theta)
        self.backend_ = backend
        self.kernel_ = kernel
        if optimise or self.kernel is None:
            kernel.set_log_params((theta + offsets)[: kernel.n_params])
        self.noise_ = self.noise if not learned else math.exp(float(theta[-1] + offsets[-1]))
        self.noise_ = float(self.noise_)
        return self

    def _initial_theta(self, kernel: Kernel) -> torch.Tensor:
        """Starting log hyperparameters in the user's units: the given kernel's, or for
        ``kernel=None`` unit lengthscale and variance in standardised units (the scales of X
        and y); a learned noise starts at a tenth of y's variance."""
        start = torch.zeros(kernel.n_params + (self.noise is None), dtype=torch.float64)
        if self.noise is None:
            start[-1] = math.log(1e-1)
        start += self._units.log_factors(kernel, self.noise is None)
        if self.kernel is not None:
            start[: kernel.n_params] = kernel.get_log_params()
        return start

    # ----------------------------------------------------------------- predict
    def predict(self, X, return_std: bool = False):
        """Posterior mean of f at ``X`` (and its standard deviation, noise excluded): numpy
        arrays for numpy input, tensors for tensor input."""
        check_is_fitted(self)
        X_t = _check_X(self._validated(X, reset=False), "X")
        if X_t.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X_t.shape[1]} features, but GPRegressor is expecting "
                             f"{self.n_features_in_} features as input")
        mean, var = self.backend_.predict(self._units.x(X_t), return_std)
        units = self._units
        mean = mean * units.y_scale + units.y_shift
        out = [mean] + ([torch.sqrt(var.clamp_min(0.0)) * units.y_scale] if return_std else [])
        out = [o if isinstance(X, torch.Tensor) else o.cpu().numpy() for o in out]
        return tuple(out) if return_std else out[0]

    def _validated(self, X, reset: bool):
        """Non-tensor ``X`` through scikit-learn's input checks (sparse, complex and
        non-numeric data are refused, feature names recorded); finiteness is checked after,
        with this module's messages."""
        if isinstance(X, torch.Tensor):
            return X
        X = np.asarray(X) if isinstance(X, (list, tuple)) else X
        if isinstance(X, np.ndarray) and X.dtype.kind in "biuf":
            _check_X(X, "X")  # shape and finiteness, with messages that name X
            X = X.reshape(-1, 1) if X.ndim == 1 else X
        return validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False)

    def log_marginal_likelihood(self) -> float:
        """log p(y | X, fitted hyperparameters) of ``y`` in the user's units (with
        ``normalize_y=True``, given the prior mean :math:`\\bar y`); an unbiased-in-spirit
        stochastic estimate for ``"cg"`` and 2-D ``"ski"``, the SKI model's exact value for 1-D
        ``"ski"``. The standardised fit's value minus :math:`n \\log s_y`, the Jacobian of
        :math:`y \\mapsto (y - \\bar y) / s_y`."""
        check_is_fitted(self)
        return float(self.backend_.lml) - len(self.X_train_) * math.log(self._units.y_scale)


def _as_1d(y):
    """A column vector ``(n, 1)`` as ``(n,)`` (scikit-learn's convention, with its warning)."""
    if isinstance(y, torch.Tensor):
        return y
    y = np.asarray(y)
    if not y.flags.writeable:
        y = y.copy()  # torch refuses to share read-only memory
    return column_or_1d(y, warn=True) if y.ndim == 2 and y.shape[1] == 1 else y


def _check_X(X, name: str) -> torch.Tensor:
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = X.copy()  # torch refuses to share read-only memory
    X_t = as_float64(X)
    if X_t.ndim == 1:
        X_t = X_t[:, None]
    if X_t.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, d), got {tuple(X_t.shape)}")
    if X_t.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row")
    if not torch.isfinite(X_t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return X_t


def _check_Xy(X, y) -> tuple[torch.Tensor, torch.Tensor]:
    X_t = _check_X(X, "X")
    y_t = as_float64(y)
    if y_t.ndim != 1:
        raise ValueError(f"y must have shape (n,), got {tuple(y_t.shape)}")
    if len(y_t) != len(X_t):
        raise ValueError(f"X and y must have the same length, got {len(X_t)} and {len(y_t)}")
    if not torch.isfinite(y_t).all():
        raise ValueError("y contains NaN or infinite values")
    return X_t, y_t
