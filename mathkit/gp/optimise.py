"""Fitting GP hyperparameters: a scan for a starting point, L-BFGS, and a few Newton steps on
the full data with a Hessian borrowed from nested subsets.

:func:`fit_hyperparameters` is the strategy :class:`~mathkit.gp.GPRegressor` calls; it reads
only the capabilities a backend declares (:class:`~mathkit.gp.backend.Backend`), never its type.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.optimize
import torch

from mathkit.gp.backend import LOG_BOUNDS, Backend
from mathkit.gp.exact import ExactBackend

#: starting points are compared on at most this many points
SCAN_POINTS = 500
#: candidate lengthscales (geometric mean of the kernel's length parameters), in units of X's spread
_SCAN_LENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
#: candidate noise variances, as fractions of the kernel's variance
_SCAN_NOISES = (0.01, 0.1, 0.5)


def best_start(backend: Backend, theta: torch.Tensor) -> torch.Tensor:
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
    best, best_value = theta, math.inf
    for c in candidates:
        c = c.clamp(*LOG_BOUNDS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = backend.value(c, profile=True)
            except np.linalg.LinAlgError:
                continue
        if value < best_value:
            best, best_value = c, value
    return best


def at_bound(theta: torch.Tensor) -> bool:
    low, high = LOG_BOUNDS
    return bool(((theta <= low + 1e-9) | (theta >= high - 1e-9)).any())


def _pairs(bounds: tuple[torch.Tensor, torch.Tensor] | None, p: int) -> list[tuple[float, float]]:
    """``(low, high)`` per parameter, as scipy takes them."""
    if bounds is None:
        return [LOG_BOUNDS] * p
    return [(float(lo), float(hi)) for lo, hi in zip(*bounds)]


class Step(NamedTuple):
    """Where one optimisation stage stopped, and whether it met its own convergence test."""

    theta: torch.Tensor
    converged: bool
    message: str


def lbfgs(value_and_grad, theta: torch.Tensor, ftol: float = 2.2e-9,
          bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> Step:
    """Minimise the negative log marginal likelihood with scipy's L-BFGS-B in log space
    (``ftol``: relative change of the objective at which to stop; ``bounds``: per-parameter
    lower and upper bounds, ``LOG_BOUNDS`` for all when None)."""

    def fun(x):
        value, grad = value_and_grad(torch.from_numpy(x))
        return float(value), grad.numpy()

    res = scipy.optimize.minimize(fun, theta.numpy(), jac=True, method="L-BFGS-B",
                                  bounds=_pairs(bounds, len(theta)), options={"ftol": ftol})
    return Step(torch.from_numpy(res.x), bool(res.success), f"L-BFGS-B: {res.message}")


def extrapolated_hessian(curvatures: list[tuple[int, torch.Tensor]], n: int) -> torch.Tensor:
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


def finite_difference_hessian(value_and_grad, theta: torch.Tensor, flat: torch.Tensor | None = None,
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


def quasi_newton(value_and_grad, theta, hessian, steps: int, value=None,
                  flat: torch.Tensor | None = None, tol: float = 1e-4,
                  bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> Step:
    """A few Newton steps on the full data with a borrowed Hessian, updated by BFGS.

    The Hessian extrapolated from the subsets models the full likelihood's curvature well
    enough that two or three exact-gradient steps close most of the remaining gap. Stops
    when the predicted decrease :math:`\\frac12 g^\\top H^{-1} g` is below ``tol`` nats.
    ``value`` (deterministic objectives only) is the objective without its gradient: steps
    must lower it, and the last, small step is taken without a gradient evaluation when it
    does (for the exact GP a Cholesky, a third of the cost of a gradient). ``flat`` is a
    direction the objective does not change along (a profiled scale); steps are kept
    orthogonal to it. Steps are clamped to ``bounds`` (``LOG_BOUNDS`` when None).
    """
    low, high = bounds if bounds is not None else LOG_BOUNDS
    project = (lambda v: v) if flat is None else (lambda v: v - (v @ flat) / (flat @ flat) * flat)
    evals, evecs = torch.linalg.eigh(hessian)
    H = evecs @ torch.diag(evals.clamp_min(1e-6 * evals.abs().max())) @ evecs.T
    current, grad = value_and_grad(theta)
    for _ in range(steps):
        step = project(-torch.linalg.lstsq(H, grad[:, None]).solution[:, 0])
        if 0.5 * float(-grad @ step) < tol:
            if value is not None:
                new = (theta + step).clamp(low, high)
                theta = new if value(new) <= current else theta
            return Step(theta, True, f"Newton: predicted decrease below {tol:g}")
        step = step * min(1.0, 1.0 / float(step.abs().max()))  # trust region of e in each scale
        for _ in range(4):
            new = (theta + step).clamp(low, high)
            new_value, new_grad = value_and_grad(new)
            if value is None or new_value <= current:
                break
            step = step / 2
        else:
            warnings.warn("GP refinement could not improve the likelihood; keeping the subset fit")
            return Step(theta, False, "Newton: no step lowered the objective")
        s, yk = new - theta, new_grad - grad
        if float(s @ yk) > 0:
            Hs = H @ s
            H = H - torch.outer(Hs, Hs) / (s @ Hs) + torch.outer(yk, yk) / (s @ yk)
        theta, current, grad = new, new_value, new_grad
    return Step(theta, False, f"Newton: {steps} steps taken, predicted decrease still above {tol:g}")


@dataclass(frozen=True)
class OptimisationResult:
    """What :func:`fit_hyperparameters` did (``GPRegressor.optimisation_``)."""

    theta: torch.Tensor  #: optimised log hyperparameters, standardised units
    n_evaluations: int  #: objective evaluations on all n points (with or without gradient)
    n_subset_evaluations: int  #: evaluations on the warm-start subsets (the start scan's not counted)
    subset_sizes: tuple[int, ...]  #: the nested subsets fitted before the full data
    converged: bool  #: whether the last stage met its convergence test
    message: str  #: the last stage's own account


class _Counted:
    """A backend's objective with its evaluations counted (the optimiser's bookkeeping)."""

    def __init__(self, backend: Backend, profile: bool) -> None:
        self.backend, self.profile, self.count = backend, profile, 0

    def value_and_grad(self, theta: torch.Tensor):
        self.count += 1
        return self.backend.value_and_grad(theta, self.profile)

    def value(self, theta: torch.Tensor) -> float:
        self.count += 1
        return self.backend.value(theta, self.profile)


def fit_hyperparameters(backend: Backend, theta: torch.Tensor, subset_sizes: tuple[int, ...],
                        refine_steps: int, random_state: int) -> OptimisationResult:
    """Minimise ``backend``'s negative log marginal likelihood from ``theta`` (standardised
    log hyperparameters): the strategy, chosen by what the backend declares.

    1. :func:`best_start` on a random subset of at most :data:`SCAN_POINTS` points.
    2. A warm start on nested random subsets (those of ``subset_sizes`` at most half the data,
       the first ``backend.warm_start_subsets`` of them), each fitted exactly by L-BFGS on the
       profiled likelihood; a stochastic objective always gets one.
    3. On all the data: L-BFGS when there was no subset or ``backend.cheap_full_evaluation``
       (deterministic objectives); for a stochastic one with ``cheap_full_evaluation``, the start
       scan again on all the data, then at most ``refine_steps`` :func:`quasi_newton` steps with a
       finite-difference Hessian of its own; otherwise at most ``refine_steps`` :func:`quasi_newton` steps with the Hessian
       :func:`extrapolated_hessian` borrows from the last two subsets.
    4. Bounds: ``backend.log_bounds()`` on all the data (the subsets' exact fits use the
       wide ``LOG_BOUNDS``; their result is clamped into the backend's). The profiled scale is unbounded, so a deterministic fit that ends with a
       hyperparameter at its bound is finished by L-BFGS on the plain likelihood.
    """
    X, y, kernel, n = backend.X, backend.y, backend.kernel, len(backend.y)
    perm = torch.from_numpy(np.random.default_rng(random_state).permutation(n))
    sizes = [s for s in subset_sizes if 2 * s <= n][: backend.warm_start_subsets]
    if not sizes and not backend.deterministic:
        sizes = [min(n, min(subset_sizes))]  # stochastic objectives need a warm start
    profile = backend.can_profile
    full = _Counted(backend, profile)
    subset_calls = 0
    scan = min([n, SCAN_POINTS] + list(subset_sizes))
    theta = best_start(ExactBackend(kernel, X[perm[:scan]], y[perm[:scan]], backend.noise), theta)
    curvatures = []  # (subset size, Hessian at its optimum)
    for i, size in enumerate(sizes):
        subset = ExactBackend(kernel, X[perm[:size]], y[perm[:size]], backend.noise)
        fitted = _Counted(subset, True)
        # a warm start needs no more digits than the full-data steps will fix anyway
        theta = lbfgs(fitted.value_and_grad, theta, ftol=1e-7).theta
        if i >= len(sizes) - 2:  # the last two subsets' curvature models the full data's
            # a profiled objective is flat along the scale, so its Hessian is taken where
            # L-BFGS stopped; the plain one at the best scale
            at = theta if backend.profiles(profile) else subset.rescale(theta)
            hessian_of = _Counted(subset, backend.profiles(profile))
            flat = subset.scale_direction() if backend.profiles(profile) else None
            curvatures.append((size, finite_difference_hessian(hessian_of.value_and_grad, at, flat)))
            fitted.count += hessian_of.count
        subset_calls += fitted.count
        theta = subset.rescale(theta)
    bounds = backend.log_bounds()
    theta = theta.clamp(*bounds)
    if backend.deterministic and (not sizes or backend.cheap_full_evaluation):
        step = lbfgs(full.value_and_grad, theta, bounds=bounds)
    elif backend.cheap_full_evaluation:
        # the full data may prefer another basin than the subsets (a feature they call noise):
        # scan on all of it, then Newton steps with its own curvature
        flat = backend.scale_direction() if backend.profiles(profile) else None
        theta = best_start(backend, theta).clamp(*bounds)
        hessian = finite_difference_hessian(full.value_and_grad, theta, flat)
        step = quasi_newton(full.value_and_grad, theta, hessian, refine_steps, value=full.value,
                            flat=flat, tol=1e-2, bounds=bounds)
    else:
        flat = backend.scale_direction() if backend.profiles(profile) else None
        # a stochastic objective cannot resolve changes much below its probe noise
        step = quasi_newton(full.value_and_grad, theta, extrapolated_hessian(curvatures, n), refine_steps,
                            value=full.value if backend.cheap_value else None, flat=flat,
                            tol=1e-4 if backend.deterministic else 1e-2, bounds=bounds)
    theta = backend.rescale(step.theta).clamp(*bounds)
    if backend.profiles(profile) and backend.deterministic and at_bound(theta):
        # the profiled scale carried a variance or the noise past its bound (noiseless data):
        # finish on the plain likelihood inside the bounds
        full.profile = False
        step = lbfgs(full.value_and_grad, theta, bounds=bounds)
        theta = step.theta
    return OptimisationResult(theta, full.count, subset_calls, tuple(sizes), step.converged, step.message)
