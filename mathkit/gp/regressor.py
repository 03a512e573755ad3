"""The estimator: :class:`GPRegressor`, scikit-learn style, with torch inside."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mathkit.gp.backend import LOG_BOUNDS, as_float64
from mathkit.gp.cg import CGBackend
from mathkit.gp.exact import ExactBackend
from mathkit.gp.optimise import (
    SCAN_POINTS, at_bound, best_start, extrapolated_hessian, finite_difference_hessian, lbfgs,
    quasi_newton,
)
from mathkit.gp.ski import SKIDenseBackend, ski_backend
from mathkit.gp.units import Units
from mathkit.kernels import RBF, Kernel

_METHODS = ("auto", "cholesky", "cg", "ski")
#: ``method="auto"`` uses the exact solver up to this many points ...
AUTO_EXACT_MAX = 3000
#: ... and SKI (for 1-D/2-D inputs with a stationary kernel) from this many points on.
AUTO_SKI_MIN = 20000

BACKENDS = {"cholesky": ExactBackend, "cg": CGBackend, "ski": ski_backend}


class GPRegressor:
    r"""Gaussian-process regression, scikit-learn style, with torch inside.

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
        :mod:`mathkit.gp.ski`.
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
            if not (isinstance(self.noise, (int, float)) and math.isfinite(self.noise) and self.noise > 0):
                raise ValueError(f"noise must be None (learned) or a positive finite variance, got {self.noise}")
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.optimizer not in ("lbfgs", None):
            raise ValueError(f"optimizer must be 'lbfgs' or None, got {self.optimizer!r}")

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
        X_t, y_t = _check_Xy(X, y)
        self._torch_out = isinstance(X, torch.Tensor)
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
        if optimise:
            theta = self._optimise(kernel, X_s, y_s, backend, theta.clamp(*LOG_BOUNDS))
        backend.condition(theta)
        self._backend = backend
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

    def _optimise(self, kernel, X, y, backend, theta):
        n = len(y)
        rng = np.random.default_rng(self.random_state)
        perm = torch.from_numpy(rng.permutation(n))
        sizes = [s for s in self.subset_sizes if 2 * s <= n]
        if isinstance(backend, SKIDenseBackend):
            sizes = sizes[:1]  # its steps cost O(m^3) in the grid size: a rough start suffices
        if not sizes and not backend.deterministic:
            sizes = [min(n, min(self.subset_sizes))]  # stochastic objectives need a warm start
        exact = isinstance(backend, ExactBackend)
        scan = min([n, SCAN_POINTS] + list(self.subset_sizes))
        theta = best_start(ExactBackend(kernel, X[perm[:scan]], y[perm[:scan]], backend.noise), theta)
        curvatures = []  # (subset size, Hessian at its optimum)
        for i, size in enumerate(sizes):
            subset = ExactBackend(kernel, X[perm[:size]], y[perm[:size]], backend.noise)
            subset.profile = True
            # a warm start needs no more digits than the full-data steps will fix anyway
            theta = lbfgs(subset.value_and_grad, theta, ftol=1e-7)
            if i >= len(sizes) - 2:  # the last two subsets' curvature models the full data's
                # the profiled objective (exact backend) is flat along the scale, so its Hessian
                # is taken where L-BFGS stopped; the plain one (CG) at the best scale
                at = theta if exact else subset.rescale(theta)
                subset.profile = exact
                flat = subset.scale_direction() if subset.profiling else None
                curvatures.append((size, finite_difference_hessian(subset.value_and_grad, at, flat)))
                subset.profile = True
            theta = subset.rescale(theta)
        backend.profile = backend.deterministic
        if not sizes or not exact and backend.deterministic:
            # Full L-BFGS: the exact path for small n, and 1-D SKI whose steps cost O(m^3).
            theta = lbfgs(backend.value_and_grad, theta)
        else:
            hessian = extrapolated_hessian(curvatures, n)
            flat = backend.scale_direction() if backend.profiling else None
            # a stochastic objective cannot resolve changes much below its probe noise
            theta = quasi_newton(backend.value_and_grad, theta, hessian, self.refine_steps,
                                  value=backend.value if exact else None, flat=flat,
                                  tol=1e-4 if backend.deterministic else 1e-2)
        theta = backend.rescale(theta)
        if backend.profiling and backend.deterministic and at_bound(theta):
            # the profiled scale is unbounded: it carried a variance or the noise past its bound
            # (noiseless data), so finish on the plain likelihood inside the bounds
            backend.profile = False
            theta = lbfgs(backend.value_and_grad, theta)
        return theta

    # ----------------------------------------------------------------- predict
    def predict(self, X, return_std: bool = False):
        """Posterior mean of f at ``X`` (and its standard deviation, noise excluded)."""
        if not hasattr(self, "_backend"):
            raise RuntimeError("GPRegressor is not fitted yet: call fit(X, y) first")
        X_t = _check_X(X, "X")
        if X_t.shape[1] != self.X_train_.shape[1]:
            raise ValueError(f"X has {X_t.shape[1]} columns, the training inputs had {self.X_train_.shape[1]}")
        mean, var = self._backend.predict(self._units.x(X_t), return_std)
        units = self._units
        mean = mean * units.y_scale + units.y_shift
        out = [mean] + ([torch.sqrt(var.clamp_min(0.0)) * units.y_scale] if return_std else [])
        out = [o if self._torch_out else o.cpu().numpy() for o in out]
        return tuple(out) if return_std else out[0]

    def log_marginal_likelihood(self) -> float:
        """log p(y | X, fitted hyperparameters) of ``y`` in the user's units (with
        ``normalize_y=True``, given the prior mean :math:`\\bar y`); an unbiased-in-spirit
        stochastic estimate for ``"cg"`` and 2-D ``"ski"``, the SKI model's exact value for 1-D
        ``"ski"``. The standardised fit's value minus :math:`n \\log s_y`, the Jacobian of
        :math:`y \\mapsto (y - \\bar y) / s_y`."""
        if not hasattr(self, "_backend"):
            raise RuntimeError("GPRegressor is not fitted yet: call fit(X, y) first")
        return float(self._backend.lml) - len(self.X_train_) * math.log(self._units.y_scale)



def _check_X(X, name: str) -> torch.Tensor:
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
