"""The GP likelihood by preconditioned conjugate gradients (BBMM)."""

from __future__ import annotations

import torch

from mathkit.gp.backend import LOG_2PI, Backend, ProbeSolves, block_rows, stochastic_trace_gradient
from mathkit.linalg import lanczos_logdet, pivoted_cholesky, woodbury_preconditioner


class CGBackend(Backend):
    """BBMM (Gardner et al. 2018): everything through products with :math:`\\hat K`, in row
    blocks (cached while the matrix fits in ``cache_entries``)."""

    deterministic = False
    can_profile = False
    cache_entries = 1.5e8
    operator_attributes = ("_matmul", "_precond", "_last")

    def _blocks(self, A: torch.Tensor, B: torch.Tensor):
        """Row blocks of ``A`` for products of ``k(A, B)`` (:func:`block_rows`)."""
        return torch.split(torch.arange(len(A)), block_rows(len(B)))

    def _operator(self, kt: torch.Tensor, noise: torch.Tensor):
        X = self.X
        blocks = self._blocks(X, X)
        cache = [self.kernel(X[b], X, kt) for b in blocks] if len(X) ** 2 <= self.cache_entries else None

        def matmul(V: torch.Tensor) -> torch.Tensor:
            parts = [(cache[i] if cache else self.kernel(X[b], X, kt)) @ V for i, b in enumerate(blocks)]
            return torch.cat(parts) + noise * V

        return matmul

    def _preconditioner(self, kt: torch.Tensor, noise: torch.Tensor):
        """Rank-``precond_rank`` pivoted Cholesky of the kernel matrix, with the Woodbury solve and
        log-determinant of :math:`P = L_k L_k^\\top + \\sigma^2 I`."""
        X = self.X
        Lk = pivoted_cholesky(self.kernel.diag(X, kt), lambda i: self.kernel(X[i:i + 1], X, kt)[0],
                              int(self.settings["precond_rank"]))
        return (Lk, *woodbury_preconditioner(Lk, noise))

    def _solve_all(self, kt, noise) -> ProbeSolves:
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
        nll = 0.5 * self.y @ alpha + 0.5 * logdet + 0.5 * n * LOG_2PI
        self.cg_iterations_ = int(res.n_iter.max())
        return ProbeSolves(alpha, res.solution[:, 1:], PZ, float(nll), matmul, precond)

    def _bilinear(self, kt, noise, left, right):
        """:math:`\\sum_j l_j^\\top \\hat K r_j` in row blocks (one autograd graph each)."""
        for b in self._blocks(self.X, self.X):
            yield (left[b] * (self.kernel(self.X[b], self.X, kt) @ right)).sum()
        yield noise * (left * right).sum()

    def value_and_grad(self, theta: torch.Tensor, profile: bool = False) -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            solved = self._solve_all(*self._split(theta.detach()))
        self._last = (theta.detach().clone(), solved)
        grad = stochastic_trace_gradient(theta, self._split, solved, self._bilinear)
        return solved.nll, grad

    def condition(self, theta: torch.Tensor) -> None:
        cached = getattr(self, "_last", None)
        if cached is not None and torch.equal(cached[0], theta):
            solved = cached[1]
        else:
            with torch.no_grad():
                solved = self._solve_all(*self._split(theta))
        self.alpha, self._matmul, self._precond = solved.alpha, solved.matmul, solved.precondition
        self.theta, self.lml = theta, -solved.nll

    def _rebuild_operators(self, kt, noise):
        self._matmul, self._precond = self._operator(kt, noise), self._preconditioner(kt, noise)[1]

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
