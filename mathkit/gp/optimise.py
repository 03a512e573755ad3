"""Fitting GP hyperparameters: a scan for a starting point, L-BFGS, and a few Newton steps on
the full data with a Hessian borrowed from nested subsets."""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.optimize
import torch

from mathkit.gp.backend import LOG_BOUNDS, Backend

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
    backend.profile = True
    best, best_value = theta, math.inf
    for c in candidates:
        c = c.clamp(*LOG_BOUNDS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = backend.value(c)
            except np.linalg.LinAlgError:
                continue
        if value < best_value:
            best, best_value = c, value
    return best


def at_bound(theta: torch.Tensor) -> bool:
    low, high = LOG_BOUNDS
    return bool(((theta <= low + 1e-9) | (theta >= high - 1e-9)).any())


def lbfgs(value_and_grad, theta: torch.Tensor, ftol: float = 2.2e-9) -> torch.Tensor:
    """Minimise the negative log marginal likelihood with scipy's L-BFGS-B in log space
    (``ftol``: relative change of the objective at which to stop)."""

    def fun(x):
        value, grad = value_and_grad(torch.from_numpy(x))
        return float(value), grad.numpy()

    res = scipy.optimize.minimize(fun, theta.numpy(), jac=True, method="L-BFGS-B",
                                  bounds=[LOG_BOUNDS] * len(theta), options={"ftol": ftol})
    return torch.from_numpy(res.x)


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
                new = (theta + step).clamp(*LOG_BOUNDS)
                theta = new if value(new) <= current else theta
            break
        step = step * min(1.0, 1.0 / float(step.abs().max()))  # trust region of e in each scale
        for _ in range(4):
            new = (theta + step).clamp(*LOG_BOUNDS)
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
