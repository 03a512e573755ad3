"""Structured kernel interpolation (KISS-GP) on 1-D and 2-D grids.

The grid covers the training inputs with a margin of :data:`MARGIN` times their range on each
side (the whole range 1 when a column is constant; inputs arrive centred and scaled by
:class:`mathkit.gp.units.Units`, so offsets such as Unix timestamps cost no precision). A
prediction point inside the grid is interpolated as in Wilson & Nickisch (2015); one outside
it uses its exact cross-covariance with the grid nodes, :math:`k(x_*, U)` in place of
:math:`w_*^\\top K_{UU}`, the same SKI posterior read without interpolation. Far from the data
that cross-covariance vanishes, so the prediction is the prior mean and variance.
"""

from __future__ import annotations

import math

import torch

from mathkit.gp.backend import LOG_2PI, ProbeSolves, block_rows, stochastic_trace_gradient
from mathkit.gp.ski_base import SKIBase, grid_shape
from mathkit.gp.ski_kronecker import SKIKroneckerBackend
from mathkit.linalg import GridInterpolation, lanczos_logdet, toeplitz_matmul

#: grids up to this many nodes use the direct (LU) backend; larger ones an iterative one
DENSE_MAX_NODES = 4096
#: separable kernels on grids of two or more axes with more nodes than this, and no more nodes
#: than data points, use the grid-space backend (each LU of the direct path costs O(m^3))
GRID_SPACE_MIN_NODES = 1600


class SKIDenseBackend(SKIBase):
    r"""SKI with :math:`A = W^\top W` and :math:`b = W^\top y` computed once, so each
    evaluation costs one :math:`m \times m` LU factorisation, independent of ``n``.

    With :math:`M = \sigma^2 I + K_{UU} A` (invertible for any data: its eigenvalues are
    those of :math:`\sigma^2 I + A^{1/2} K_{UU} A^{1/2}`) and
    :math:`v = M^{-1} K_{UU} b = (\sigma^2 K_{UU}^{-1} + A)^{-1} b`, the posterior mean of the
    grid values, Woodbury's identity and Sylvester's determinant identity give

    .. math:: y^\top \hat K^{-1} y = \sigma^{-2}(y^\top y - b^\top v),\qquad
              \log|\hat K| = (n - m)\log\sigma^2 + \log|M|,

    and the grid posterior covariance is :math:`\sigma^2 M^{-1} K_{UU}`. ``A`` has
    :math:`7^d` non-zero diagonals; it is kept sparse, so :math:`K_{UU} A` costs
    :math:`O(7^d m^2)` and the LU :math:`O(m^3)`.
    """

    cheap_full_evaluation = True  # each evaluation costs O(m^3): L-BFGS on all the data after ...
    warm_start_subsets = 1  # ... one subset's rough start

    def __init__(self, kernel, X, y, noise, **settings):
        super().__init__(kernel, X, y, noise, **settings)
        self.A, self.b = self.normal_equations()
        self.yty = float(y @ y)
        self.lags = self._lag_index()

    def _lag_index(self) -> torch.Tensor:
        """Flat index into the first row of the grid kernel for every pair of nodes."""
        axes = torch.unravel_index(torch.arange(self.grid.m), self.grid.shape)
        flat = torch.zeros(self.grid.m, self.grid.m, dtype=torch.long)
        for axis, size in zip(axes, self.grid.shape):
            flat = flat * size + (axis[:, None] - axis[None, :]).abs()
        return flat

    def _grid_kernel(self, kt: torch.Tensor) -> torch.Tensor:
        return self._first_row(kt)[self.lags]

    def _factor(self, theta: torch.Tensor):
        """Grid kernel, LU of :math:`M`, the grid posterior mean ``v`` and the quadratic form."""
        kt, noise = self._split(theta)
        K = self._grid_kernel(kt)
        M = torch.sparse.mm(self.A, K).T + noise * torch.eye(self.grid.m, dtype=torch.float64)
        LU, pivots = torch.linalg.lu_factor(M)
        v = torch.linalg.lu_solve(LU, pivots, (K @ self.b)[:, None])[:, 0]
        quad = (self.yty - self.b @ v) / noise
        return K, noise, LU, pivots, v, quad

    def _objective(self, quad: torch.Tensor, noise: torch.Tensor, LU: torch.Tensor,
                   profile: bool = False) -> torch.Tensor:
        n, m = len(self.y), self.grid.m
        logdet = (n - m) * torch.log(noise) + torch.log(LU.diagonal().abs()).sum()
        if self.profiles(profile):
            return 0.5 * (n * (1 + torch.log(quad / n)) + logdet + n * LOG_2PI)
        return 0.5 * (quad + logdet + n * LOG_2PI)

    def _best_scale(self, theta):
        with torch.no_grad():
            return float(self._factor(theta)[5]) / len(self.y)

    def value_and_grad(self, theta, profile=False):
        r"""Gradient in closed form (autograd through the LU costs about twice as much): with
        :math:`r = M^{-\top} b = K_{UU}^{-1} v`, :math:`\partial(b^\top v) = \sigma^2 r^\top \partial K_{UU}\, r`,
        :math:`\partial\log|M| = \operatorname{tr}(A M^{-1} \partial K_{UU})` and, for the noise,
        :math:`\partial(b^\top v)/\partial\sigma^2 = -r^\top v`,
        :math:`\partial\log|M|/\partial\sigma^2 = \operatorname{tr} M^{-1}`."""
        theta = theta.detach()
        with torch.no_grad():
            K, noise, LU, pivots, v, quad = self._factor(theta)
            nll = float(self._objective(quad, noise, LU, profile))
            M_inv = torch.linalg.lu_solve(LU, pivots, torch.eye(self.grid.m, dtype=torch.float64))
            r = M_inv.T @ self.b  # K^-1 v
            c = len(self.y) / quad if self.profiles(profile) else 1.0  # d nll / d quad, times 2
            G = torch.sparse.mm(self.A, M_inv).T - c * torch.outer(r, r)  # 2 d nll / d K_UU
            per_lag = torch.zeros(self.grid.m, dtype=torch.float64).index_add_(0, self.lags.reshape(-1), G.reshape(-1))
        th = theta.clone().requires_grad_(True)
        p = self.kernel.n_params
        (0.5 * (per_lag * self._first_row(th[:p])).sum()).backward()
        grad = th.grad if th.grad is not None else torch.zeros_like(th)
        if self.noise is None:  # d nll / d log s2
            n, m = len(self.y), self.grid.m
            grad[p] = 0.5 * (c * (r @ v - quad) + (n - m) + noise * M_inv.diagonal().sum())
        return nll, grad

    def condition(self, theta):
        with torch.no_grad():
            K, noise, LU, pivots, v, quad = self._factor(theta)
            nll = self._objective(quad, noise, LU)
            self.grid_mean = v
            cov = noise * torch.linalg.lu_solve(LU, pivots, K)
            self.grid_cov = (cov + cov.T) / 2
            # for points off the grid: W^T K^-1 y and W^T K^-1 W = (A - A (grid_cov / s2) A) / s2
            self.weighted_alpha = (self.b - torch.sparse.mm(self.A, v[:, None])[:, 0]) / noise
            AC = torch.sparse.mm(self.A, self.grid_cov)
            self.precision = (self.A.to_dense() - torch.sparse.mm(self.A, AC.T) / noise) / noise
        self.theta, self.lml = theta, -float(nll)

    def _interpolated_variance(self, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """:math:`w_*^\\top \\Sigma w_*` for stencils ``idx`` and weights ``w`` (shapes ``(c, 4^d)``)."""
        return torch.einsum("na,nab,nb->n", w, self.grid_cov[idx[:, :, None], idx[:, None, :]], w)

    def _explained_variance(self, cross: torch.Tensor) -> torch.Tensor:
        """:math:`k_*^\\top W^\\top \\hat K^{-1} W k_*` for cross-covariances ``cross`` (shape ``(c, m)``)."""
        return ((cross @ self.precision) * cross).sum(1)


class SKIGridBackend(SKIBase):
    r"""SKI by conjugate gradients: :math:`\hat K v = W (K_{UU} (W^\top v)) + \sigma^2 v`, with
    :math:`K_{UU}` Toeplitz (1-D) or block-Toeplitz (2-D) multiplied by FFT, stochastic
    Lanczos log-determinant and trace gradients as in BBMM (Wilson & Nickisch 2015)."""

    deterministic = False
    can_profile = False
    operator_attributes = ("_grid_kernel", "_matmul")

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
            self.weighted_alpha = self.grid.apply_transpose(self.idx, self.w, self.alpha[:, None])[:, 0]
        self.theta, self.lml = theta, -nll

    def _rebuild_operators(self, kt, noise):
        self._grid_kernel, self._matmul = self._ops(kt, noise)

    def predict(self, Xs, return_std):
        kt, _ = self._split(self.theta)
        mean = torch.empty(len(Xs), dtype=torch.float64)
        var = torch.empty(len(Xs), dtype=torch.float64) if return_std else None
        for rows, inside in self._blocks(Xs):
            # K_UU w_* inside the grid, the exact k(U, x_*) off it (columns)
            KWs = torch.empty(self.grid.m, len(rows), dtype=torch.float64)
            prior = torch.empty(len(rows), dtype=torch.float64)
            if inside.any():
                idx, w = self.grid.weights(Xs[rows[inside]])
                Ws = torch.zeros(self.grid.m, len(idx), dtype=torch.float64)
                Ws.scatter_add_(0, idx.T, w.T)  # columns W_*^T
                KWs[:, inside] = self._grid_kernel(Ws)
                prior[inside] = (Ws * KWs[:, inside]).sum(0)
            if (~inside).any():
                KWs[:, ~inside] = self.kernel(self.nodes, Xs[rows[~inside]], kt)
                prior[~inside] = self.kernel.diag(Xs[rows[~inside]], kt)
            mean[rows] = KWs.T @ self.weighted_alpha
            if return_std:
                for cols in torch.split(torch.arange(len(rows)), block_rows(len(self.y))):
                    cross = GridInterpolation.apply(self.idx, self.w, KWs[:, cols])
                    V = self._cg(self._matmul, cross, None).solution
                    var[rows[cols]] = prior[cols] - (cross * V).sum(0)
        return mean, var


def ski_backend(kernel, X, y, noise, **settings):
    """The grid-space backend for a kernel that factorises over the axes of a grid of two or more
    dimensions with more than :data:`GRID_SPACE_MIN_NODES` nodes and no more nodes than data
    points; otherwise the direct one for grids of up to :data:`DENSE_MAX_NODES` nodes and
    conjugate gradients in data space above."""
    m = math.prod(grid_shape(settings.get("grid_size"), len(X), X.shape[1]))
    if X.shape[1] >= 2 and kernel.separable and GRID_SPACE_MIN_NODES < m <= len(X):
        return SKIKroneckerBackend(kernel, X, y, noise, **settings)
    if m <= DENSE_MAX_NODES:
        return SKIDenseBackend(kernel, X, y, noise, **settings)
    return SKIGridBackend(kernel, X, y, noise, **settings)
