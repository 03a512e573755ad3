"""What every way of evaluating a GP's likelihood shares: hyperparameter layout, the profiled
scale, seeded probes, CG settings, the stochastic trace gradient and the block-size rule."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

from mathkit.kernels import Kernel
from mathkit.linalg import batched_cg

#: bounds of every log hyperparameter, in standardised units
LOG_BOUNDS = (math.log(1e-5), math.log(1e5))
LOG_2PI = math.log(2 * math.pi)
#: entries of one block-sized temporary (2^23 float64 = 64 MiB), see :func:`block_rows`
BLOCK_ENTRIES = 2**23


def as_float64(a) -> torch.Tensor:
    """numpy/list/torch input as a detached float64 tensor (no copy when already one)."""
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def block_rows(width: int) -> int:
    """Rows per block when a loop over rows (or columns) builds ``rows x width`` temporaries:
    as many as keep one temporary within :data:`BLOCK_ENTRIES`, at least one.

    The one rule for every predict loop: blocks big enough that each matrix product runs at
    BLAS speed, small enough that memory stays bounded whatever the number of test points."""
    return max(1, BLOCK_ENTRIES // max(int(width), 1))


class ProbeSolves(NamedTuple):
    """One stochastic (BBMM) pass at fixed hyperparameters: the solves with :math:`\\hat K`
    that give the objective and, by :func:`stochastic_trace_gradient`, its gradient."""

    alpha: torch.Tensor  #: :math:`\hat K^{-1} y`, shape (n,)
    probe_solves: torch.Tensor  #: :math:`\hat K^{-1} z_i` for probes :math:`z_i \sim N(0, P)`, (n, t)
    weighted_probes: torch.Tensor  #: :math:`P^{-1} z_i` (the probes when :math:`P = I`), (n, t)
    nll: float  #: the stochastic estimate of the negative log marginal likelihood
    matmul: Callable[[torch.Tensor], torch.Tensor] | None = None  #: :math:`V \mapsto \hat K V`
    precondition: Callable[[torch.Tensor], torch.Tensor] | None = None  #: :math:`R \mapsto P^{-1} R`


def stochastic_trace_gradient(theta: torch.Tensor, split, solved: ProbeSolves,
                              bilinear: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                                                 Iterable[torch.Tensor]]) -> torch.Tensor:
    r"""Gradient of the negative log marginal likelihood in ``theta`` from CG solves (BBMM,
    Gardner et al. 2018, eq. 4), with probes :math:`z_i \sim N(0, P)`, :math:`i = 1..t`:

    .. math:: \partial(-\log p) \approx -\tfrac12 \alpha^\top \partial\hat K\,\alpha
              + \tfrac1{2t}\sum_{i=1}^t (\hat K^{-1} z_i)^\top \partial\hat K\, (P^{-1} z_i),

    unbiased for :math:`\tfrac12\operatorname{tr}(\hat K^{-1}\partial\hat K)` since
    :math:`E[P^{-1} z z^\top] = I`; the vectors come from ``solved``. Both terms are
    one bilinear form :math:`\sum_j l_j^\top \hat K(\theta) r_j`, differentiated by autograd.

    ``split(theta)`` gives ``(kernel_theta, noise)``; ``bilinear(kt, noise, L, R)`` yields
    scalar pieces summing to :math:`\sum_j L_{:j}^\top \hat K R_{:j}` (several pieces let a
    backend free each block's graph before building the next).
    """
    th = theta.detach().clone().requires_grad_(True)
    kt, noise = split(th)
    alpha, t = solved.alpha[:, None], solved.weighted_probes.shape[1]
    coef = torch.full((t + 1,), 0.5 / t, dtype=alpha.dtype)
    coef[0] = -0.5
    left = torch.cat([alpha, solved.probe_solves], 1) * coef
    right = torch.cat([alpha, solved.weighted_probes], 1)
    for piece in bilinear(kt, noise, left, right):
        if piece.requires_grad:  # a fixed noise's piece is a constant: no gradient to add
            piece.backward()
    return th.grad if th.grad is not None else torch.zeros_like(th)


class Backend:
    """One way of evaluating the likelihood. ``value_and_grad(theta, profile)`` returns the
    *negative* log marginal likelihood and its gradient in the log hyperparameters;
    ``condition`` stores what ``predict`` needs at the final hyperparameters.

    Capabilities, declared by each backend for the optimiser (``mathkit.gp.optimise``) to
    read, so that no caller needs to know which backend it holds:
    """

    #: the objective is exact (line searches may compare values; L-BFGS may be used)
    deterministic = True
    #: ``profile=True`` is supported: the objective maximised over a common scale of the
    #: kernel variances and the noise (see ``rescale``)
    can_profile = True
    #: an evaluation costs little next to an exact subset's: after the warm start, L-BFGS on all
    #: the data (a deterministic objective), or a start scan, a finite-difference Hessian and
    #: Newton steps on all the data (a stochastic one), rather than a few Newton steps with a
    #: Hessian borrowed from the subsets
    cheap_full_evaluation = False
    #: how many of the nested subsets suit its warm start (None: all)
    warm_start_subsets: int | None = None
    #: the objective without gradient is much cheaper than with it (``value`` is worth calling)
    cheap_value = False

    #: attributes that hold functions built at the conditioned hyperparameters (closures, which
    #: pickle cannot store): left out of the pickled state and rebuilt by ``_rebuild_operators``
    operator_attributes: tuple[str, ...] = ()

    def __init__(self, kernel: Kernel, X: torch.Tensor, y: torch.Tensor, noise: float | None,
                 **settings: Any) -> None:
        self.kernel, self.X, self.y, self.noise = kernel, X, y, noise
        self.settings = settings

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self.operator_attributes}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.operator_attributes and "theta" in state:  # conditioned: predict needs them
            with torch.no_grad():
                self._rebuild_operators(*self._split(self.theta))

    def _rebuild_operators(self, kt: torch.Tensor, noise: torch.Tensor) -> None:
        """Set ``operator_attributes`` at the kernel parameters ``kt`` and the noise (after unpickling)."""
        raise NotImplementedError

    def _split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.kernel.n_params
        noise = torch.exp(theta[p]) if self.noise is None else torch.tensor(float(self.noise), dtype=theta.dtype)
        return theta[:p], noise

    def profiles(self, profile: bool) -> bool:
        r"""Whether ``profile=True`` changes this backend's objective: with a learned noise,
        the likelihood maximised over a common scale c of the kernel variances and the noise,
        :math:`\hat c = y^\top \hat K^{-1} y / n` in closed form, which removes the flattest
        direction of the likelihood surface. A fixed noise pins the scale."""
        return profile and self.can_profile and self.noise is None

    def log_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds of each log hyperparameter (shape ``(p,)`` each, ``p`` the
        kernel's parameters plus a learned noise): ``LOG_BOUNDS`` for every one, unless a
        backend cannot represent part of that range (SKI: lengthscales below half a grid cell)."""
        p = self.kernel.n_params + (self.noise is None)
        return (torch.full((p,), LOG_BOUNDS[0], dtype=torch.float64),
                torch.full((p,), LOG_BOUNDS[1], dtype=torch.float64))

    def value(self, theta: torch.Tensor, profile: bool = False) -> float:
        """The objective alone (for backends with ``cheap_value``; otherwise its gradient's cost)."""
        return self.value_and_grad(theta, profile)[0]

    def scale_direction(self) -> torch.Tensor:
        """Direction in log-parameter space that multiplies :math:`\\hat K` by a constant."""
        return torch.cat([self.kernel.scale_mask(), torch.ones(1, dtype=torch.bool)]).to(torch.float64)

    def rescale(self, theta: torch.Tensor) -> torch.Tensor:
        """Move ``theta`` to the best common scale (what the profiled objective implies)."""
        if not self.profiles(True):
            return theta
        return (theta + math.log(self._best_scale(theta)) * self.scale_direction()).clamp(*LOG_BOUNDS)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.settings.get("seed", 0)))

    def _cg(self, matmul, B: torch.Tensor, precondition):
        """:func:`batched_cg` at the backend's tolerance and iteration limit."""
        return batched_cg(matmul, B, precondition, self.settings["cg_tol"], self.settings["max_cg_iter"])
