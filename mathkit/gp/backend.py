"""What every way of evaluating a GP's likelihood shares: hyperparameter layout, the profiled
scale, seeded probes and CG settings."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch

from mathkit.kernels import Kernel
from mathkit.linalg import batched_cg

#: bounds of every log hyperparameter, in standardised units
LOG_BOUNDS = (math.log(1e-5), math.log(1e5))
LOG_2PI = math.log(2 * math.pi)


def as_float64(a) -> torch.Tensor:
    """numpy/list/torch input as a detached float64 tensor (no copy when already one)."""
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


class Backend:
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
        return (theta + math.log(self._best_scale(theta)) * self.scale_direction()).clamp(*LOG_BOUNDS)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.settings.get("seed", 0)))

    def _cg(self, matmul, B: torch.Tensor, precondition):
        """:func:`batched_cg` at the backend's tolerance and iteration limit."""
        return batched_cg(matmul, B, precondition, self.settings["cg_tol"], self.settings["max_cg_iter"])


@contextlib.contextmanager
def one_torch_thread():
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
