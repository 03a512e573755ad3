r"""Gaussian-process regression from an exact Cholesky solve to a million points.

:class:`GPRegressor` fits a GP with constant mean :math:`\bar y` (or zero) and Gaussian noise
by maximising the log marginal likelihood (Rasmussen & Williams 2006, eq. 2.30)

.. math:: \log p(y \mid X, \theta) = -\tfrac12 r^\top \hat K^{-1} r - \tfrac12 \log|\hat K|
          - \tfrac n2 \log 2\pi, \qquad \hat K = K_\theta(X, X) + \sigma^2 I,\quad
          r = y - \bar y,

computed on standardised data so that no choice of units can stall the fit, with one of
three ways to handle :math:`\hat K`:

- ``"cholesky"``: exact, :math:`O(n^3)` time and :math:`O(n^2)` memory.
- ``"cg"``: BBMM (Gardner et al. 2018): batched preconditioned conjugate gradients,
  stochastic Lanczos quadrature for the log-determinant, stochastic trace estimates for the
  gradient; only kernel-matrix products are needed, computed in row blocks.
- ``"ski"``: KISS-GP (Wilson & Nickisch 2015) for 1-D and 2-D inputs:
  :math:`K \approx W K_{UU} W^\top` with a regular grid ``U`` and sparse cubic interpolation
  weights ``W``. In 1-D, :math:`W^\top W` and :math:`W^\top y` are computed once and each
  likelihood evaluation costs :math:`O(m^3)` in the grid size ``m``, independent of ``n``;
  on 2-D grids the block-Toeplitz grid kernel is multiplied by FFT inside CG.

Kernels (:class:`RBF`, :class:`Matern`, :class:`Periodic`, ``+``, ``*``) live in
:mod:`mathkit.kernels` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import numpy as np
import scipy.optimize
import torch

from mathkit import kernels
from mathkit.linalg import (
    GridInterpolation, _cholesky_, _cholesky_inverse_, _cholesky_solve, batched_cg, lanczos_logdet,
    pivoted_cholesky, toeplitz_matmul,
)
from mathkit.kernels import RBF, Kernel, Matern, Periodic, Product, Sum

__all__ = ["GPRegressor", "Kernel", "RBF", "Matern", "Periodic", "Sum", "Product", "kernels"]

_METHODS = ("auto", "cholesky", "cg", "ski")
#: ``method="auto"`` uses the exact solver up to this many points ...
AUTO_EXACT_MAX = 3000
#: ... and SKI (for 1-D/2-D inputs with a stationary kernel) from this many points on.
AUTO_SKI_MIN = 20000
_LOG_BOUNDS = (math.log(1e-5), math.log(1e5))
#: starting points are compared on at most this many points
_SCAN_POINTS = 500
#: candidate lengthscales (geometric mean of the kernel's length parameters), in units of X's spread
_SCAN_LENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
#: candidate noise variances, as fractions of the kernel's variance
_SCAN_NOISES = (0.01, 0.1, 0.5)
#: rows per block in elementwise passes over an n x n kernel matrix
_ROW_BLOCK = 256


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
        in 1-D, :math:`\min(150, \max(20, 2 n^{1/4}))` per axis in 2-D).
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
    Every fit runs on :math:`(X - m_x)/s_x` and :math:`(y - m_y)/s_y` (:class:`_Units`: column
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
            if bool((X.amax(0) == X.amin(0)).any()):
                raise ValueError("method='ski' needs X to vary along every column (it lays a grid over its range)")
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

        The work is done in standardised units (see :class:`_Units`); hyperparameters go in and
        come out in the units of ``X`` and ``y``."""
        self._check_params()
        X_t, y_t = _check_Xy(X, y)
        self._torch_out = isinstance(X, torch.Tensor)
        self.X_train_ = X_t
        kernel = (self.kernel or RBF()).clone()
        self._units = units = _Units(X_t, y_t, kernel, self.normalize_y)
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
            theta = self._optimise(kernel, X_s, y_s, backend, theta.clamp(*_LOG_BOUNDS))
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
        scan = min([n, _SCAN_POINTS] + list(self.subset_sizes))
        theta = _best_start(ExactBackend(kernel, X[perm[:scan]], y[perm[:scan]], backend.noise), theta)
        curvatures = []  # (subset size, Hessian at its optimum)
        for i, size in enumerate(sizes):
            subset = ExactBackend(kernel, X[perm[:size]], y[perm[:size]], backend.noise)
            subset.profile = True
            # a warm start needs no more digits than the full-data steps will fix anyway
            theta = _lbfgs(subset.value_and_grad, theta, ftol=1e-7)
            if i >= len(sizes) - 2:  # the last two subsets' curvature models the full data's
                # the profiled objective (exact backend) is flat along the scale, so its Hessian
                # is taken where L-BFGS stopped; the plain one (CG) at the best scale
                at = theta if exact else subset.rescale(theta)
                subset.profile = exact
                flat = subset.scale_direction() if subset.profiling else None
                curvatures.append((size, _finite_difference_hessian(subset.value_and_grad, at, flat)))
                subset.profile = True
            theta = subset.rescale(theta)
        backend.profile = backend.deterministic
        if not sizes or not exact and backend.deterministic:
            # Full L-BFGS: the exact path for small n, and 1-D SKI whose steps cost O(m^3).
            theta = _lbfgs(backend.value_and_grad, theta)
        else:
            hessian = _extrapolated_hessian(curvatures, n)
            flat = backend.scale_direction() if backend.profiling else None
            # a stochastic objective cannot resolve changes much below its probe noise
            theta = _quasi_newton(backend.value_and_grad, theta, hessian, self.refine_steps,
                                  value=backend.value if exact else None, flat=flat,
                                  tol=1e-4 if backend.deterministic else 1e-2)
        theta = backend.rescale(theta)
        if backend.profiling and backend.deterministic and _at_bound(theta):
            # the profiled scale is unbounded: it carried a variance or the noise past its bound
            # (noiseless data), so finish on the plain likelihood inside the bounds
            backend.profile = False
            theta = _lbfgs(backend.value_and_grad, theta)
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


class _Units:
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
        spread = float((X - self.x_shift).square().mean(0).mean().sqrt())
        self.x_scale = spread if kernel.rescalable and spread > 0 else 1.0
        constant = bool((y == y[0]).all())
        # exactly the constant when y is constant, so that its residuals are exactly 0
        self.y_shift = (float(y[0]) if constant else float(y.mean())) if center_y else 0.0
        spread = float((y - self.y_shift).square().mean().sqrt())
        self.y_scale = spread if spread > 0 else abs(self.y_shift) or 1.0

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


# ---------------------------------------------------------------------- helpers
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


def _best_start(backend: "ExactBackend", theta: torch.Tensor) -> torch.Tensor:
    """The most likely of ``theta`` and of its variants on a grid: all length parameters
    multiplied by one factor that puts their geometric mean at each of ``_SCAN_LENGTHS``
    (standardised units) and, when learned, the noise at each of ``_SCAN_NOISES`` times the
    kernel's variance. ``backend`` holds a random subset; the common scale is profiled out.

    The likelihood of a GP has local optima (a long lengthscale with all variation called noise
    is the usual one); a start a fixed number of data spreads away, or in the wrong units, lands
    there. Comparing values costs one Cholesky of the subset each, no gradients.
    """
    kernel, p = backend.kernel, backend.kernel.n_params
    lengths = torch.cat([kernel.length_mask().double(), torch.zeros(len(theta) - p, dtype=theta.dtype)])
    candidates = [theta]
    if lengths.any():
        centre = float((theta * lengths).sum() / lengths.sum())
        candidates += [theta + (math.log(g) - centre) * lengths for g in _SCAN_LENGTHS]
    if backend.noise is None:
        log_var = math.log(float(kernel.diag(backend.X[:1], theta[:p])[0]))
        candidates = [theta] + [torch.cat([c[:-1], torch.tensor([log_var + math.log(r)], dtype=theta.dtype)])
                                for c in candidates for r in _SCAN_NOISES]
    backend.profile = True
    best, best_value = theta, math.inf
    for c in candidates:
        c = c.clamp(*_LOG_BOUNDS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = backend.value(c)
            except np.linalg.LinAlgError:
                continue
        if value < best_value:
            best, best_value = c, value
    return best


def _at_bound(theta: torch.Tensor) -> bool:
    low, high = _LOG_BOUNDS
    return bool(((theta <= low + 1e-9) | (theta >= high - 1e-9)).any())


def _lbfgs(value_and_grad, theta: torch.Tensor, ftol: float = 2.2e-9) -> torch.Tensor:
    """Minimise the negative log marginal likelihood with scipy's L-BFGS-B in log space
    (``ftol``: relative change of the objective at which to stop)."""

    def fun(x):
        value, grad = value_and_grad(torch.from_numpy(x))
        return float(value), grad.numpy()

    res = scipy.optimize.minimize(fun, theta.numpy(), jac=True, method="L-BFGS-B",
                                  bounds=[_LOG_BOUNDS] * len(theta), options={"ftol": ftol})
    return torch.from_numpy(res.x)


def _extrapolated_hessian(curvatures: list[tuple[int, torch.Tensor]], n: int) -> torch.Tensor:
    """Hessian of the full-data objective from those of the last two nested subsets (each at
    its own optimum), extrapolated linearly in log n (a single subset's scaled by n / n_subset).

    Random subsets of one domain add information ever more slowly (infill asymptotics): at
    n = 3,000 on the benchmark data, 500 -> 1,000 -> 3,000 points raised the lengthscale
    curvature 745 -> 844 -> 951; linear extrapolation in n overshot by 30%, in log n by 5%.
    """
    if len(curvatures) == 1:
        size, H = curvatures[0]
        return H * (n / size)
    (n_prev, H_prev), (n_last, H_last) = curvatures[-2:]
    slope = (H_last - H_prev) / math.log(n_last / n_prev)
    return H_last + slope * math.log(n / n_last)


def _finite_difference_hessian(value_and_grad, theta: torch.Tensor, flat: torch.Tensor | None = None,
                               eps: float = 1e-4) -> torch.Tensor:
    """Hessian of the negative log likelihood by forward differences of its exact gradient.

    ``flat``: a direction along which the objective is constant (a profiled scale); only the
    directions orthogonal to it are differenced, and the Hessian is zero along it.
    """
    p = len(theta)
    basis = torch.eye(p, dtype=theta.dtype)
    if flat is not None:
        # orthonormal basis of the complement of `flat`: the last p - 1 columns of a QR
        basis = torch.linalg.qr(torch.cat([flat[:, None], basis], 1)).Q[:, 1:p]
    _, g0 = value_and_grad(theta)
    columns = torch.stack([(value_and_grad(theta + eps * b)[1] - g0) / eps for b in basis.T], 1)
    H = columns @ basis.T
    return 0.5 * (H + H.T)


def _quasi_newton(value_and_grad, theta, hessian, steps: int, value=None,
                  flat: torch.Tensor | None = None, tol: float = 1e-4) -> torch.Tensor:
    """A few Newton steps on the full data with a borrowed Hessian, updated by BFGS.

    The Hessian extrapolated from the subsets models the full likelihood's curvature well
    enough that two or three exact-gradient steps close most of the remaining gap. Stops
    when the predicted decrease :math:`\\frac12 g^\\top H^{-1} g` is below ``tol`` nats.
    ``value`` (deterministic objectives only) is the objective without its gradient: steps
    must lower it, and the last, small step is taken without a gradient evaluation when it
    does (for the exact GP a Cholesky, a third of the cost of a gradient). ``flat`` is a
    direction the objective does not change along (a profiled scale); steps are kept
    orthogonal to it.
    """
    project = (lambda v: v) if flat is None else (lambda v: v - (v @ flat) / (flat @ flat) * flat)
    evals, evecs = torch.linalg.eigh(hessian)
    H = evecs @ torch.diag(evals.clamp_min(1e-6 * evals.abs().max())) @ evecs.T
    current, grad = value_and_grad(theta)
    for _ in range(steps):
        step = project(-torch.linalg.lstsq(H, grad[:, None]).solution[:, 0])
        if 0.5 * float(-grad @ step) < tol:
            if value is not None:
                new = (theta + step).clamp(*_LOG_BOUNDS)
                theta = new if value(new) <= current else theta
            break
        step = step * min(1.0, 1.0 / float(step.abs().max()))  # trust region of e in each scale
        for _ in range(4):
            new = (theta + step).clamp(*_LOG_BOUNDS)
            new_value, new_grad = value_and_grad(new)
            if value is None or new_value <= current:
                break
            step = step / 2
        else:
            warnings.warn("GP refinement could not improve the likelihood; keeping the subset fit")
            break
        s, yk = new - theta, new_grad - grad
        if float(s @ yk) > 0:
            Hs = H @ s
            H = H - torch.outer(Hs, Hs) / (s @ Hs) + torch.outer(yk, yk) / (s @ yk)
        theta, current, grad = new, new_value, new_grad
    return theta


# --------------------------------------------------------------------- backends
_LOG_2PI = math.log(2 * math.pi)


def as_float64(a) -> torch.Tensor:
    """numpy/list/torch input as a detached float64 tensor (no copy when already one)."""
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


class _Backend:
    """One way of evaluating the likelihood. ``value_and_grad`` returns the *negative* log
    marginal likelihood and its gradient in the log hyperparameters; ``condition`` stores
    what ``predict`` needs at the final hyperparameters."""

    #: whether value_and_grad is exact (line searches may compare values)
    deterministic = True

    def __init__(self, kernel: Kernel, X: torch.Tensor, y: torch.Tensor, noise: float | None,
                 **settings: Any) -> None:
        self.kernel, self.X, self.y, self.noise = kernel, X, y, noise
        self.settings = settings

    def _split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.kernel.n_params
        noise = torch.exp(theta[p]) if self.noise is None else torch.tensor(float(self.noise), dtype=theta.dtype)
        return theta[:p], noise

    #: with a learned noise, optimise the likelihood maximised over a common scale c of the
    #: kernel variances and the noise, :math:`\\hat c = y^\\top \\hat K^{-1} y / n` in closed
    #: form: this removes the flattest direction of the likelihood surface.
    profile = False

    @property
    def profiling(self) -> bool:
        return self.profile and self.noise is None

    def scale_direction(self) -> torch.Tensor:
        """Direction in log-parameter space that multiplies :math:`\\hat K` by a constant."""
        return torch.cat([self.kernel.scale_mask(), torch.ones(1, dtype=torch.bool)]).to(torch.float64)

    def rescale(self, theta: torch.Tensor) -> torch.Tensor:
        """Move ``theta`` to the best common scale (what the profiled objective implies)."""
        if not self.profiling:
            return theta
        return (theta + math.log(self._best_scale(theta)) * self.scale_direction()).clamp(*_LOG_BOUNDS)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.settings.get("seed", 0)))

    def _cg(self, matmul, B: torch.Tensor, precondition):
        """:func:`batched_cg` at the backend's tolerance and iteration limit."""
        return batched_cg(matmul, B, precondition, self.settings["cg_tol"], self.settings["max_cg_iter"])


@contextlib.contextmanager
def _one_torch_thread():
    """Keep torch's own work on one thread while LAPACK (scipy's OpenBLAS) uses all cores.

    OpenBLAS workers busy-wait for a while after each call; a second torch thread competing
    with them made exact-GP evaluations up to 4x slower on 2 cores, while the elementwise
    work around the factorisations is small. The previous setting is restored on exit.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ExactBackend(_Backend):
    """Cholesky of the full kernel matrix; gradient :math:`\\tfrac12\\operatorname{tr}
    ((\\alpha\\alpha^\\top - \\hat K^{-1})\\,\\partial\\hat K/\\partial\\theta)` (R&W eq. 5.9).

    The two ``n x n`` matrices (the factor, and :math:`\\hat K^{-1}` for the gradient) live in
    buffers kept across evaluations, and every elementwise pass over the kernel runs on row
    blocks of the lower triangle: a fresh ``n x n`` temporary costs a page fault per 4 kB, as
    much as the arithmetic on it, and autograd through a full kernel matrix makes a dozen.
    """

    def _buffer(self, name: str) -> torch.Tensor:
        """The ``n x n`` buffer ``name`` ("factor" or "inverse"), allocated on first use."""
        key = f"_{name}_buffer"
        if key not in self.__dict__:
            setattr(self, key, torch.zeros(len(self.y), len(self.y), dtype=self.y.dtype))
        return self.__dict__[key]

    def _lower_blocks(self):
        """Row blocks ``(rows, stop)`` covering the lower triangle: ``K[rows, :stop]``."""
        n = len(self.y)
        for start in range(0, n, _ROW_BLOCK):
            stop = min(start + _ROW_BLOCK, n)
            yield slice(start, stop), stop

    def _factor(self, theta: torch.Tensor) -> torch.Tensor:
        """Lower Cholesky factor of :math:`\\hat K`, built and factored in place in the buffer,
        with a jitter ladder when rounding makes it indefinite."""
        kt, noise = self._split(theta.detach())
        K = self._buffer("factor")
        for jitter in (0.0, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6):
            with torch.no_grad():
                for rows, stop in self._lower_blocks():
                    K[rows, :stop] = self.kernel(self.X[rows], self.X[:stop], kt)
            K.diagonal().add_(noise + jitter * float(K.diagonal().mean()))
            if _cholesky_(K):
                if jitter:
                    warnings.warn(f"kernel matrix needed jitter {jitter:g} x its mean diagonal to factor")
                return K
        raise np.linalg.LinAlgError(
            "the kernel matrix is not positive definite even with jitter 1e-6 x its mean diagonal; "
            "increase the noise variance (or use noise=None to learn it) or remove duplicate inputs")

    @_one_torch_thread()
    def _solve(self, theta: torch.Tensor):
        L = self._factor(theta)
        alpha = _cholesky_solve(L, self.y)
        nll = 0.5 * self.y @ alpha + torch.log(L.diagonal()).sum() + 0.5 * len(self.y) * _LOG_2PI
        self._last = (theta.detach().clone(), L, alpha, float(nll))
        return L, alpha, float(nll)

    def _objective(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """Factor, :math:`\\alpha = \\hat K^{-1} y`, the objective and the common scale it implies."""
        L, alpha, nll = self._solve(theta)
        scale = 1.0
        if self.profiling:
            # max over c of log N(y | 0, c K): c = y^T K^-1 y / n (envelope theorem for the gradient)
            n = len(self.y)
            scale = float(self.y @ alpha) / n
            nll = 0.5 * n * (1 + math.log(scale) + _LOG_2PI) + float(torch.log(L.diagonal()).sum())
        return L, alpha, nll, scale

    def value(self, theta: torch.Tensor) -> float:
        return self._objective(theta)[2]

    def value_and_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        # optimisers often ask again for the point they stopped at
        memo = getattr(self, "_memo", None)
        if memo is None or memo[0] != self.profile or not torch.equal(memo[1], theta):
            self._memo = (self.profile, theta.detach().clone(), *self._value_and_grad(theta))
        return self._memo[2], self._memo[3].clone()

    @_one_torch_thread()
    def _value_and_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        L, alpha, nll, scale = self._objective(theta)
        W = _cholesky_inverse_(L, out=self._buffer("inverse"))
        W.neg_().addr_(alpha, alpha, alpha=1.0 / scale)  # alpha alpha^T / c - K^-1 (lower triangle used)
        return nll, self._trace_gradient(W, theta)

    def _trace_gradient(self, W: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        r"""Gradient of :math:`-\tfrac12\sum_{ij} W_{ij}\hat K_{ij}(\theta)` for symmetric ``W``
        given by its lower triangle, by autograd on one row block at a time:
        :math:`\tfrac12\sum_{ij} = \sum_{i>j} + \tfrac12\sum_{i=j}`."""
        th = theta.detach().clone().requires_grad_(True)
        kt, noise = self._split(th)
        if noise.requires_grad:  # a learned noise variance
            (-0.5 * noise * W.diagonal().sum()).backward()
        for rows, stop in self._lower_blocks():
            start = rows.start
            K = self.kernel(self.X[rows], self.X[:stop], kt)
            on_diagonal = W[rows, start:stop].tril(-1)
            on_diagonal.diagonal().copy_(0.5 * W[rows, start:stop].diagonal())
            (-((K[:, :start] * W[rows, :start]).sum() + (K[:, start:] * on_diagonal).sum())).backward()
        return th.grad if th.grad is not None else torch.zeros_like(th)

    def _best_scale(self, theta: torch.Tensor) -> float:
        cached = getattr(self, "_last", None)
        if cached is None or not torch.equal(cached[0], theta):
            self._solve(theta)
        _, L, alpha, _ = self._last
        scale = float(self.y @ alpha) / len(self.y)
        new = theta + math.log(scale) * self.scale_direction()
        # the factor of c K is sqrt(c) L: condition() at the rescaled point needs no new Cholesky
        nll = 0.5 * len(self.y) * (1 + math.log(scale) + _LOG_2PI) + float(torch.log(L.diagonal()).sum())
        if torch.equal(new.clamp(*_LOG_BOUNDS), new):  # rescale() clamps: a clamped point needs its own solve
            self._last = (new, L * math.sqrt(scale), alpha / scale, nll)
        return scale

    def condition(self, theta: torch.Tensor) -> None:
        cached = getattr(self, "_last", None)
        if cached is not None and torch.equal(cached[0], theta):
            _, self.L, self.alpha, nll = cached
        else:
            self.L, self.alpha, nll = self._solve(theta)
        self.L.tril_()  # the factor as a proper triangular matrix
        self.theta, self.lml = theta, -nll
        for key in ("_factor_buffer", "_inverse_buffer", "_last", "_memo"):  # predict needs self.L only
            self.__dict__.pop(key, None)

    def predict(self, Xs: torch.Tensor, return_std: bool):
        kt, _ = self._split(self.theta)
        means, variances = [], []
        for rows in torch.split(torch.arange(len(Xs)), 2048):
            Ks = self.kernel(Xs[rows], self.X, kt)
            means.append(Ks @ self.alpha)
            if return_std:
                V = torch.linalg.solve_triangular(self.L, Ks.T, upper=False)
                variances.append(self.kernel.diag(Xs[rows], kt) - (V**2).sum(0))
        return torch.cat(means), (torch.cat(variances) if return_std else None)


class CGBackend(_Backend):
    """BBMM (Gardner et al. 2018): everything through products with :math:`\\hat K`, in row
    blocks (cached while the matrix fits in ``cache_entries``)."""

    deterministic = False
    cache_entries = 1.5e8

    def _blocks(self, A: torch.Tensor, B: torch.Tensor):
        rows = max(1, int(2**23 // max(len(B), 1)))
        return torch.split(torch.arange(len(A)), rows)

    def _operator(self, kt: torch.Tensor, noise: torch.Tensor):
        X = self.X
        blocks = self._blocks(X, X)
        cache = [self.kernel(X[b], X, kt) for b in blocks] if len(X) ** 2 <= self.cache_entries else None

        def matmul(V: torch.Tensor) -> torch.Tensor:
            parts = [(cache[i] if cache else self.kernel(X[b], X, kt)) @ V for i, b in enumerate(blocks)]
            return torch.cat(parts) + noise * V

        return matmul

    def _preconditioner(self, kt: torch.Tensor, noise: torch.Tensor):
        """Woodbury inverse and log-det of :math:`P = L_k L_k^\\top + \\sigma^2 I`."""
        X = self.X
        Lk = pivoted_cholesky(self.kernel.diag(X, kt), lambda i: self.kernel(X[i:i + 1], X, kt)[0],
                              int(self.settings["precond_rank"]))
        k = Lk.shape[1]
        Lc = torch.linalg.cholesky(noise * torch.eye(k, dtype=X.dtype) + Lk.T @ Lk)

        def solve(R: torch.Tensor) -> torch.Tensor:
            return (R - Lk @ torch.cholesky_solve(Lk.T @ R, Lc)) / noise

        logdet = (len(X) - k) * torch.log(noise) + 2 * torch.log(Lc.diagonal()).sum()
        return Lk, solve, logdet

    def _solve_all(self, kt, noise):
        n, t = len(self.y), int(self.settings["n_probes"])
        matmul = self._operator(kt, noise)
        Lk, precond, logdet_p = self._preconditioner(kt, noise)
        g = self._generator()
        Z = Lk @ torch.randn(Lk.shape[1], t, generator=g, dtype=torch.float64) \
            + torch.sqrt(noise) * torch.randn(n, t, generator=g, dtype=torch.float64)
        res = self._cg(matmul, torch.cat([self.y[:, None], Z], 1), precond)
        PZ = precond(Z)
        logdet = logdet_p + lanczos_logdet(res, (Z * PZ).sum(0), range(1, t + 1))
        alpha = res.solution[:, 0]
        nll = 0.5 * self.y @ alpha + 0.5 * logdet + 0.5 * n * _LOG_2PI
        self.cg_iterations_ = int(res.n_iter.max())
        return alpha, res.solution[:, 1:], PZ, float(nll), matmul, precond

    def value_and_grad(self, theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        th = theta.detach().clone().requires_grad_(True)
        kt, noise = self._split(th)
        with torch.no_grad():
            solved = self._solve_all(kt.detach(), noise.detach())
        self._last = (theta.detach().clone(), solved)
        alpha, U, PZ, nll, _, _ = solved
        # d(-lml) = -1/2 a^T dK a + 1/2 tr(K^-1 dK), the trace as E[(K^-1 z)^T dK (P^-1 z)].
        right = torch.cat([alpha[:, None], PZ], 1)
        coef = torch.full((right.shape[1],), 0.5 / PZ.shape[1], dtype=torch.float64)
        coef[0] = -0.5
        left = torch.cat([alpha[:, None], U], 1) * coef
        for b in self._blocks(self.X, self.X):
            (left[b] * (self.kernel(self.X[b], self.X, kt) @ right)).sum().backward()
        (noise * (left * right).sum()).backward()
        return nll, th.grad

    def condition(self, theta: torch.Tensor) -> None:
        cached = getattr(self, "_last", None)
        if cached is not None and torch.equal(cached[0], theta):
            solved = cached[1]
        else:
            with torch.no_grad():
                solved = self._solve_all(*self._split(theta))
        self.alpha, _, _, nll, self._matmul, self._precond = solved
        self.theta, self.lml = theta, -nll

    def predict(self, Xs: torch.Tensor, return_std: bool):
        kt, _ = self._split(self.theta)
        means, variances = [], []
        for rows in self._blocks(Xs, self.X):
            Ks = self.kernel(Xs[rows], self.X, kt)
            means.append(Ks @ self.alpha)
            if return_std:
                # exact up to the CG tolerance; costs one batched solve per block of test points
                V = self._cg(self._matmul, Ks.T.contiguous(), self._precond).solution
                variances.append(self.kernel.diag(Xs[rows], kt) - (Ks.T * V).sum(0))
        return torch.cat(means), (torch.cat(variances) if return_std else None)


def _band_transpose_matmul(diagonals: list[torch.Tensor], M: torch.Tensor) -> torch.Tensor:
    """:math:`C^\\top M` for lower-banded ``C`` given by its diagonals ``C.diagonal(-d)``."""
    out = diagonals[0][:, None] * M
    for d, c in enumerate(diagonals[1:], start=1):
        out = out + torch.nn.functional.pad(c[:, None] * M[d:], (0, 0, 0, d))
    return out


class _SKIBase(_Backend):
    """Grid, interpolation weights and the grid kernel's first row (shared by both SKI paths)."""

    def __init__(self, kernel, X, y, noise, **settings):
        super().__init__(kernel, X, y, noise, **settings)
        self.grid = GridInterpolation(X.min(0).values, X.max(0).values, self._grid_shape(len(X), X.shape[1]))
        self.idx, self.w = self.grid.weights(X)
        self.nodes = self.grid.nodes()

    def _grid_shape(self, n: int, d: int) -> tuple[int, ...]:
        size = self.settings.get("grid_size")
        if size is None:
            size = min(1000, max(100, int(4 * math.sqrt(n)))) if d == 1 else min(150, max(20, int(2 * n**0.25)))
        shape = (size,) * d if isinstance(size, (int, np.integer)) else tuple(size)
        if len(shape) != d:
            raise ValueError(f"grid_size must be an int or have one entry per input column ({d}), got {size}")
        return shape

    def _first_row(self, kt: torch.Tensor) -> torch.Tensor:
        """:math:`k(u_0, u_j)` for all grid nodes: the grid kernel is (block-)Toeplitz."""
        return self.kernel(self.nodes[:1], self.nodes, kt)[0]


class SKIDenseBackend(_SKIBase):
    r"""1-D SKI with :math:`A = W^\top W = C C^\top` (banded Cholesky) computed once.

    By Sylvester's determinant identity and the push-through identity, with
    :math:`B = \sigma^2 I + C^\top K_{UU} C` and :math:`c = C^{-1} W^\top y`:

    .. math:: y^\top \hat K^{-1} y = \sigma^{-2}(y^\top y - c^\top c) + c^\top B^{-1} c,\qquad
              \log|\hat K| = (n - m)\log\sigma^2 + \log|B|,

    so each evaluation is one :math:`m \times m` Cholesky, independent of ``n``.
    """

    def __init__(self, kernel, X, y, noise, **settings):
        super().__init__(kernel, X, y, noise, **settings)
        m = self.grid.m
        A = torch.zeros(m * m, dtype=torch.float64)
        b = torch.zeros(m, dtype=torch.float64)
        for rows in torch.split(torch.arange(len(X)), 2**18):  # bounded memory at n = 10^6
            i, w = self.idx[rows], self.w[rows]
            A.index_add_(0, (i[:, :, None] * m + i[:, None, :]).reshape(-1), (w[:, :, None] * w[:, None, :]).reshape(-1))
            b.index_add_(0, i.reshape(-1), (w * y[rows, None]).reshape(-1))
        A = A.reshape(m, m)
        self.active = torch.nonzero(A.diagonal() > 0)[:, 0]  # nodes no data point touches drop out
        C, info = torch.linalg.cholesky_ex(A[self.active][:, self.active])
        if int(info) != 0:
            raise ValueError("W^T W is singular for this grid (too many grid points between data "
                             "points); pass a smaller grid_size")
        self.C = C
        self.diagonals = [C.diagonal(-d) for d in range(4)]
        self.c = torch.linalg.solve_triangular(C, b[self.active, None], upper=False)[:, 0]
        self.yty = float(y @ y)
        self.offsets = (self.active[:, None] - self.active[None, :]).abs()

    def _nll(self, theta: torch.Tensor):
        kt, noise = self._split(theta)
        K = self._first_row(kt)[self.offsets]
        B = _band_transpose_matmul(self.diagonals, _band_transpose_matmul(self.diagonals, K).T)
        B = B + noise * torch.eye(len(B), dtype=B.dtype)
        LB = torch.linalg.cholesky(B)
        v = torch.cholesky_solve(self.c[:, None], LB)[:, 0]
        n, m = len(self.y), len(self.c)
        quad = (self.yty - self.c @ self.c) / noise + self.c @ v
        logdet = (n - m) * torch.log(noise) + 2 * torch.log(LB.diagonal()).sum()
        if self.profiling:
            return 0.5 * (n * (1 + torch.log(quad / n)) + logdet + n * _LOG_2PI), LB, v, quad
        return 0.5 * (quad + logdet + n * _LOG_2PI), LB, v, quad

    def _best_scale(self, theta):
        with torch.no_grad():
            return float(self._nll(theta)[3]) / len(self.y)

    def value_and_grad(self, theta):
        th = theta.detach().clone().requires_grad_(True)
        nll = self._nll(th)[0]
        nll.backward()
        return float(nll.detach()), th.grad

    def condition(self, theta):
        self.profile = False  # the final state is the plain likelihood at rescaled theta
        with torch.no_grad():
            nll, LB, v, _ = self._nll(theta)
            kt, _ = self._split(theta)
            first = self._first_row(kt)
            all_nodes = torch.arange(self.grid.m)
            K_all_act = first[(all_nodes[:, None] - self.active[None, :]).abs()]
            self.beta = K_all_act @ (self.C @ v)  # K_UU W^T K^-1 y
            G = torch.linalg.solve_triangular(LB, (K_all_act @ self.C).T, upper=False)
            # W^T K^-1 W = C B^-1 C^T, so the posterior grid covariance is K_UU - G^T G.
            self.grid_cov = first[(all_nodes[:, None] - all_nodes[None, :]).abs()] - G.T @ G
        self.theta, self.lml = theta, -float(nll)

    def predict(self, Xs, return_std):
        idx, w = self.grid.weights(Xs)
        mean = (self.beta[idx] * w).sum(1)
        if not return_std:
            return mean, None
        var = torch.einsum("na,nab,nb->n", w, self.grid_cov[idx[:, :, None], idx[:, None, :]], w)
        return mean, var


class SKIGridBackend(_SKIBase):
    r"""SKI by conjugate gradients: :math:`\hat K v = W (K_{UU} (W^\top v)) + \sigma^2 v`, with
    :math:`K_{UU}` Toeplitz (1-D) or block-Toeplitz (2-D) multiplied by FFT, stochastic
    Lanczos log-determinant and trace gradients as in BBMM (Wilson & Nickisch 2015)."""

    deterministic = False

    def _ops(self, kt, noise):
        first = self._first_row(kt).reshape(self.grid.shape)

        def grid_kernel(V):
            return toeplitz_matmul(first, V)

        def matmul(V):
            return GridInterpolation.apply(self.idx, self.w, grid_kernel(self.grid.apply_transpose(self.idx, self.w, V))) + noise * V

        return grid_kernel, matmul

    def _solve_all(self, kt, noise, extra=None):
        t = int(self.settings["n_probes"])
        Z = torch.randn(len(self.y), t, generator=self._generator(), dtype=torch.float64)
        _, matmul = self._ops(kt, noise)
        res = self._cg(matmul, torch.cat([self.y[:, None], Z], 1), None)
        # log|K| = n log s2 + log|K / s2|: probes then only see the few eigenvalues above the noise
        logdet = len(self.y) * torch.log(noise) + lanczos_logdet(res, (Z * Z).sum(0), range(1, t + 1), scale=noise)
        alpha = res.solution[:, 0]
        nll = 0.5 * self.y @ alpha + 0.5 * logdet + 0.5 * len(self.y) * _LOG_2PI
        self.cg_iterations_ = int(res.n_iter.max())
        return alpha, res.solution[:, 1:], Z, float(nll)

    def value_and_grad(self, theta):
        th = theta.detach().clone().requires_grad_(True)
        kt, noise = self._split(th)
        with torch.no_grad():
            alpha, U, Z, nll = self._solve_all(kt.detach(), noise.detach())
        left = torch.cat([alpha[:, None], U], 1)
        coef = torch.full((left.shape[1],), 0.5 / Z.shape[1], dtype=torch.float64)
        coef[0] = -0.5
        left = left * coef
        right = torch.cat([alpha[:, None], Z], 1)
        grid_kernel, _ = self._ops(kt, noise)
        WtL = self.grid.apply_transpose(self.idx, self.w, left)
        WtR = self.grid.apply_transpose(self.idx, self.w, right)
        surrogate = (WtL * grid_kernel(WtR)).sum() + noise * (left * right).sum()
        surrogate.backward()
        return nll, th.grad

    def condition(self, theta):
        kt, noise = self._split(theta)
        with torch.no_grad():
            self.alpha, _, _, nll = self._solve_all(kt, noise)
            self._grid_kernel, self._matmul = self._ops(kt, noise)
            self.beta = self._grid_kernel(self.grid.apply_transpose(self.idx, self.w, self.alpha[:, None]))[:, 0]
        self.theta, self.lml = theta, -nll

    def predict(self, Xs, return_std):
        idx, w = self.grid.weights(Xs)
        mean = (self.beta[idx] * w).sum(1)
        if not return_std:
            return mean, None
        variances = []
        for rows in torch.split(torch.arange(len(Xs)), 256):
            Ws = torch.zeros(self.grid.m, len(rows), dtype=torch.float64)
            Ws.scatter_add_(0, idx[rows].T, w[rows].T)  # columns W_*^T
            KWs = self._grid_kernel(Ws)
            cross = GridInterpolation.apply(self.idx, self.w, KWs)
            V = self._cg(self._matmul, cross, None).solution
            variances.append((Ws * KWs).sum(0) - (cross * V).sum(0))
        return mean, torch.cat(variances)


def _ski_backend(kernel, X, y, noise, **settings):
    probe = _SKIBase.__new__(_SKIBase)
    probe.settings = settings
    shape = probe._grid_shape(len(X), X.shape[1])
    dense = X.shape[1] == 1 and shape[0] <= 4000
    return (SKIDenseBackend if dense else SKIGridBackend)(kernel, X, y, noise, **settings)


BACKENDS = {"cholesky": ExactBackend, "cg": CGBackend, "ski": _ski_backend}
