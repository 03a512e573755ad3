"""Structured kernel interpolation (KISS-GP) on 1-D and 2-D grids."""

from __future__ import annotations

import math

import numpy as np
import torch

from mathkit.gp.backend import LOG_2PI, Backend, ProbeSolves, block_rows, stochastic_trace_gradient
from mathkit.linalg import GridInterpolation, lanczos_logdet, toeplitz_matmul


def _band_transpose_matmul(diagonals: list[torch.Tensor], M: torch.Tensor) -> torch.Tensor:
    """:math:`C^\\top M` for lower-banded ``C`` given by its diagonals ``C.diagonal(-d)``."""
    out = diagonals[0][:, None] * M
    for d, c in enumerate(diagonals[1:], start=1):
        out = out + torch.nn.functional.pad(c[:, None] * M[d:], (0, 0, 0, d))
    return out


class _SKIBase(Backend):
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

    cheap_full_lbfgs = True  # each evaluation costs O(m^3): L-BFGS on all the data after ...
    warm_start_subsets = 1  # ... one subset's rough start

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

    def _nll(self, theta: torch.Tensor, profile: bool = False):
        kt, noise = self._split(theta)
        K = self._first_row(kt)[self.offsets]
        B = _band_transpose_matmul(self.diagonals, _band_transpose_matmul(self.diagonals, K).T)
        B = B + noise * torch.eye(len(B), dtype=B.dtype)
        LB = torch.linalg.cholesky(B)
        v = torch.cholesky_solve(self.c[:, None], LB)[:, 0]
        n, m = len(self.y), len(self.c)
        quad = (self.yty - self.c @ self.c) / noise + self.c @ v
        logdet = (n - m) * torch.log(noise) + 2 * torch.log(LB.diagonal()).sum()
        if self.profiles(profile):
            return 0.5 * (n * (1 + torch.log(quad / n)) + logdet + n * LOG_2PI), LB, v, quad
        return 0.5 * (quad + logdet + n * LOG_2PI), LB, v, quad

    def _best_scale(self, theta):
        with torch.no_grad():
            return float(self._nll(theta, True)[3]) / len(self.y)

    def value_and_grad(self, theta, profile=False):
        th = theta.detach().clone().requires_grad_(True)
        nll = self._nll(th, profile)[0]
        nll.backward()
        return float(nll.detach()), th.grad

    def condition(self, theta):
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
    can_profile = False

    def _ops(self, kt, noise):
        first = self._first_row(kt).reshape(self.grid.shape)

        def grid_kernel(V):
            return toeplitz_matmul(first, V)

        def matmul(V):
            return GridInterpolation.apply(self.idx, self.w, grid_kernel(self.grid.apply_transpose(self.idx, self.w, V))) + noise * V

        return grid_kernel, matmul

    def _solve_all(self, kt, noise) -> ProbeSolves:
        t = int(self.settings["n_probes"])
        Z = torch.randn(len(self.y), t, generator=self._generator(), dtype=torch.float64)
        _, matmul = self._ops(kt, noise)
        res = self._cg(matmul, torch.cat([self.y[:, None], Z], 1), None)
        # log|K| = n log s2 + log|K / s2|: probes then only see the few eigenvalues above the noise
        logdet = len(self.y) * torch.log(noise) + lanczos_logdet(res, (Z * Z).sum(0), range(1, t + 1), scale=noise)
        alpha = res.solution[:, 0]
        nll = 0.5 * self.y @ alpha + 0.5 * logdet + 0.5 * len(self.y) * LOG_2PI
        self.cg_iterations_ = int(res.n_iter.max())
        return ProbeSolves(alpha, res.solution[:, 1:], Z, float(nll))

    def _bilinear(self, kt, noise, left, right):
        grid_kernel, _ = self._ops(kt, noise)
        WtL = self.grid.apply_transpose(self.idx, self.w, left)
        WtR = self.grid.apply_transpose(self.idx, self.w, right)
        yield (WtL * grid_kernel(WtR)).sum() + noise * (left * right).sum()

    def value_and_grad(self, theta, profile=False):
        with torch.no_grad():
            solved = self._solve_all(*self._split(theta.detach()))
        return solved.nll, stochastic_trace_gradient(theta, self._split, solved, self._bilinear)

    def condition(self, theta):
        kt, noise = self._split(theta)
        with torch.no_grad():
            solved = self._solve_all(kt, noise)
            self.alpha, nll = solved.alpha, solved.nll
            self._grid_kernel, self._matmul = self._ops(kt, noise)
            self.beta = self._grid_kernel(self.grid.apply_transpose(self.idx, self.w, self.alpha[:, None]))[:, 0]
        self.theta, self.lml = theta, -nll

    def predict(self, Xs, return_std):
        idx, w = self.grid.weights(Xs)
        mean = (self.beta[idx] * w).sum(1)
        if not return_std:
            return mean, None
        variances = []
        for rows in torch.split(torch.arange(len(Xs)), block_rows(len(self.y))):
            Ws = torch.zeros(self.grid.m, len(rows), dtype=torch.float64)
            Ws.scatter_add_(0, idx[rows].T, w[rows].T)  # columns W_*^T
            KWs = self._grid_kernel(Ws)
            cross = GridInterpolation.apply(self.idx, self.w, KWs)
            V = self._cg(self._matmul, cross, None).solution
            variances.append((Ws * KWs).sum(0) - (cross * V).sum(0))
        return mean, torch.cat(variances)


def ski_backend(kernel, X, y, noise, **settings):
    probe = _SKIBase.__new__(_SKIBase)
    probe.settings = settings
    shape = probe._grid_shape(len(X), X.shape[1])
    dense = X.shape[1] == 1 and shape[0] <= 4000
    return (SKIDenseBackend if dense else SKIGridBackend)(kernel, X, y, noise, **settings)
