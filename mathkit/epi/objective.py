r"""The negative log-likelihood of the SIR model for counts, with its score and information.

The counts :math:`y_k` at times :math:`t_k` have log-mean :math:`\eta_k(\theta)` (log prevalence
:math:`\log I(t_k)`, or the log of the new infections :math:`S(t_{k-1}) - S(t_k)`) and are Poisson,
or negative binomial with size :math:`\phi` (variance :math:`\mu + \mu^2/\phi`). With
:math:`\ell_k(\eta_k, \rho)` the log-probability of count :math:`k` and :math:`\rho = \log\phi`,
the chain rule gives

.. math::

    \nabla_\theta \ell = J^\top \partial_\eta \ell, \qquad
    -\nabla^2_\theta \ell = J^\top \mathrm{diag}(-\partial^2_\eta \ell)\, J
        - \sum_k \partial_{\eta_k} \ell\, \nabla^2_\theta \eta_k,

with :math:`J = \partial\eta/\partial\theta`. The first term alone is the Gauss-Newton
(Fisher-scoring) information, positive semi-definite everywhere, that the optimiser steps with;
the full observed information, at the optimum, gives the intervals. :math:`J` and
:math:`\nabla^2\eta` come from central differences of one batched ODE solve: the batch shares
its step sequence, so the differences are those of one smooth discretised map (agreeing with
forward-mode autograd to about 1e-8 relative) at the cost of a single solve.
"""

from __future__ import annotations

from dataclasses import dataclass
import itertools

import numpy as np
import torch

from mathkit.epi.optimise import Derivatives
from mathkit.epi.solver import solve_log_sir

__all__ = ["OBSERVED", "LIKELIHOODS", "log_expected_counts", "SIRObjective"]

OBSERVED = ("prevalence", "incidence")
LIKELIHOODS = ("poisson", "negbin")
# relative accuracy of the solves inside the fit: far below any sampling noise
FIT_RTOL = 1e-7
# central-difference step in the log-parameters
_STEP = 1e-4


def log_expected_counts(
    beta: torch.Tensor,
    gamma: torch.Tensor,
    population: torch.Tensor,
    i0: torch.Tensor,
    t: torch.Tensor,
    observed: str,
    rtol: float = FIT_RTOL,
    max_steps: int | None = None,
) -> torch.Tensor:
    """Log of the expected count at each time: log I(t), or log of S's drop since the last time.

    ``max_steps`` bounds the solver's steps (``None``: the solver's default); beyond it the solve
    raises :class:`~mathkit.epi.solver.SolveBudgetError`.
    """
    times = t if observed == "prevalence" else torch.cat((t.new_zeros(1), t))
    state = solve_log_sir(beta, gamma, population, i0, torch.zeros_like(i0), times, rtol, max_steps)
    if observed == "prevalence":
        return state[..., 0]
    log_s = state[..., 1]
    # S(t_{k-1}) - S(t_k) = -S(t_{k-1}) expm1(log S(t_k) - log S(t_{k-1})), without cancellation
    drop = (-torch.expm1(log_s.diff(dim=-1))).clamp_min(torch.finfo(log_s.dtype).tiny)
    return log_s[..., :-1] + drop.log()


def _count_log_prob(y: torch.Tensor, log_mean: torch.Tensor, log_size: torch.Tensor | None) -> torch.Tensor:
    """Log-probability of each count, Poisson or negative binomial with size exp(log_size)."""
    if log_size is None:
        return torch.distributions.Poisson(log_mean.exp(), validate_args=False).log_prob(y)
    law = torch.distributions.NegativeBinomial(
        log_size.exp(), logits=log_mean - log_size, validate_args=False
    )
    return law.log_prob(y)


class _CountDerivatives:
    """Per-count log-probability and its first and second derivatives in (eta, rho), shape (n,)."""

    def __init__(self, y: torch.Tensor, log_mean: torch.Tensor, log_size: float | None):
        eta = log_mean.detach().clone().requires_grad_(True)
        inputs = [eta]
        rho = None
        if log_size is not None:
            # one rho per count keeps every term elementwise, so each gradient is a vector of partials
            rho = torch.full_like(eta, log_size).requires_grad_(True)
            inputs.append(rho)
        log_prob = _count_log_prob(y, eta, rho)
        first = torch.autograd.grad(log_prob.sum(), inputs, create_graph=True)
        self.log_prob = log_prob.detach()
        self.d_eta = first[0].detach()
        self.d_eta2 = torch.autograd.grad(first[0].sum(), eta, retain_graph=True)[0]
        if rho is not None:
            self.d_rho = first[1].detach()
            self.d_eta_rho, self.d_rho2 = torch.autograd.grad(first[1].sum(), (eta, rho))


@dataclass(frozen=True)
class SIRObjective:
    r"""Negative log-likelihood of counts under the SIR model, in log-parameters.

    ``theta = (log beta, log gamma, [log i0 if i0 is None], [log dispersion if negbin])``.
    ``max_steps`` bounds each ODE solve (``None``: the solver's default); a solve over it raises
    :class:`~mathkit.epi.solver.SolveBudgetError`.
    """

    times: torch.Tensor
    counts: torch.Tensor
    population: float
    observed: str
    negbin: bool
    i0: float | None
    max_steps: int | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return ("beta", "gamma") + (("i0",) if self.i0 is None else ()) + (
            ("dispersion",) if self.negbin else ()
        )

    @property
    def n_curve(self) -> int:
        """How many parameters move the expected curve (all but the dispersion)."""
        return 2 if self.i0 is not None else 3

    def log_means(self, curve: torch.Tensor) -> torch.Tensor:
        """Log expected counts for curve parameters of shape ``batch + (n_curve,)``."""
        log_i0 = curve[..., 2] if self.i0 is None else torch.full_like(curve[..., 0], np.log(self.i0))
        population = torch.tensor(self.population, dtype=torch.float64)
        return log_expected_counts(
            curve[..., 0].exp(), curve[..., 1].exp(), population, log_i0.exp(), self.times, self.observed,
            max_steps=self.max_steps,
        )

    def negative_log_likelihood(self, theta: np.ndarray) -> float:
        """The objective at one point (no derivatives): one ODE solve."""
        theta_t = torch.as_tensor(theta, dtype=torch.float64)
        with torch.no_grad():
            log_mean = self.log_means(theta_t[: self.n_curve])
            log_size = theta_t[self.n_curve] if self.negbin else None
            return -float(_count_log_prob(self.counts, log_mean, log_size).sum())

    def derivatives(self, theta: np.ndarray, observed_information: bool = False) -> Derivatives:
        """Value, gradient and information (Gauss-Newton, or the full observed one) at ``theta``."""
        k = self.n_curve
        offsets = _difference_offsets(k, observed_information)
        with torch.no_grad():
            curve = torch.as_tensor(theta[:k], dtype=torch.float64)
            log_mean = self.log_means(curve + _STEP * torch.as_tensor(offsets, dtype=torch.float64))
        log_mean = log_mean.double()
        counts = _CountDerivatives(self.counts, log_mean[0], float(theta[k]) if self.negbin else None)
        jacobian = (log_mean[1 : 1 + k] - log_mean[1 + k : 1 + 2 * k]).T / (2 * _STEP)  # (n, k)
        p = len(theta)
        gradient = np.zeros(p)
        information = np.zeros((p, p))
        gradient[:k] = -(jacobian.T @ counts.d_eta).numpy()
        information[:k, :k] = (jacobian.T @ (-counts.d_eta2[:, None] * jacobian)).numpy()
        if self.negbin:
            gradient[k] = -float(counts.d_rho.sum())
            information[:k, k] = information[k, :k] = -(jacobian.T @ counts.d_eta_rho).numpy()
            information[k, k] = -float(counts.d_rho2.sum())
        if observed_information:
            curvature = _second_differences(log_mean, k) @ counts.d_eta  # (k, k)
            information[:k, :k] -= curvature.numpy()
        # the solve is accurate to FIT_RTOL in eta: the objective is known to about this much
        resolution = 10 * FIT_RTOL * float(counts.d_eta.abs().sum())
        return Derivatives(-float(counts.log_prob.sum()), gradient, information, resolution)


def _difference_offsets(k: int, second: bool) -> np.ndarray:
    """Unit offsets of the batched solve: 0, +e_j, -e_j, then (+-e_i +-e_j) for i < j if second."""
    eye = np.eye(k)
    rows = [np.zeros(k), *eye, *(-eye)]
    if second:
        for i, j in itertools.combinations(range(k), 2):
            rows += [si * eye[i] + sj * eye[j] for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    return np.array(rows)


def _second_differences(log_mean: torch.Tensor, k: int) -> torch.Tensor:
    """Second derivatives of eta, shape (k, k, n), from the offsets of `_difference_offsets`."""
    center, plus, minus = log_mean[0], log_mean[1 : 1 + k], log_mean[1 + k : 1 + 2 * k]
    out = torch.empty(k, k, log_mean.shape[-1], dtype=log_mean.dtype)
    for i in range(k):
        out[i, i] = (plus[i] - 2 * center + minus[i]) / _STEP**2
    for m, (i, j) in enumerate(itertools.combinations(range(k), 2)):
        pp, pm, mp, mm = log_mean[1 + 2 * k + 4 * m : 1 + 2 * k + 4 * m + 4]
        out[i, j] = out[j, i] = (pp - pm - mp + mm) / (4 * _STEP**2)
    return out
