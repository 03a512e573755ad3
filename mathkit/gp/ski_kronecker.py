"""SKI in the grid's own space, for grids too large for the direct path and a separable kernel:
after :math:`W^\\top W` and :math:`W^\\top y` are summed once, nothing costs anything in ``n``.

With :math:`A = W^\\top W`, :math:`b = W^\\top y`, the grid kernel
:math:`K_{UU} = K_1 \\otimes \\cdots \\otimes K_d` (one factor per axis, ``Kernel.grid_factors``),
its square root :math:`S = K_1^{1/2} \\otimes \\cdots \\otimes K_d^{1/2}` and the symmetric positive
definite :math:`B = \\sigma^2 I_m + S A S` (eigenvalues at least :math:`\\sigma^2`), Woodbury's identity
(with :math:`U = W S`) and Sylvester's determinant identity turn the SKI likelihood of
:math:`\\hat K = W K_{UU} W^\\top + \\sigma^2 I_n` into grid-space quantities:

.. math:: y^\\top \\hat K^{-1} y = \\sigma^{-2}(y^\\top y - b^\\top v),\\quad v = S B^{-1} S b,\\qquad
          \\log|\\hat K| = (n - m)\\log\\sigma^2 + \\log|B|,

``v`` being the grid values' posterior mean and :math:`\\sigma^2 S B^{-1} S` their posterior
covariance. ``B`` is solved by conjugate gradients preconditioned by a model of ``B`` whose data are spread
separably over the grid (exact for data filling a box evenly), diagonalised by one small
eigendecomposition per axis, so it costs what a product with :math:`K_{UU}` costs (Saatçi 2012; Wilson & Nickisch 2015). The log-determinant
comes from stochastic Lanczos quadrature on the preconditioned matrix and the gradient from
Hutchinson's trace estimator, as in BBMM (Gardner et al. 2018), with probes drawn once, so the
objective is a smooth function of the hyperparameters.
"""

from __future__ import annotations

import math
import warnings
from functools import reduce

import torch

from mathkit.gp.backend import LOG_2PI
from mathkit.gp.ski_base import SKIBase
from mathkit.linalg import GridInterpolation, batched_cg, kron_matmul, lanczos_logdet

#: probing neglects entries of the covariance correction below this fraction of the posterior
#: variance at the node it is measured from (variances then carry relative errors of about
#: this size times the few nodes that share a colour within reach, measured against the exact
#: posterior in the tests)
PROBE_TOLERANCE = 1e-4
#: columns of the correction computed to measure how far it reaches
REACH_NODES = 8
#: relative residual of the solves that predictions use (the grid mean, the covariance band)
PRECISE_TOL = 1e-10
#: at most this many colours per axis (the cost of the band is one solve per colour)
MAX_PERIOD = 24


class SKIKroneckerBackend(SKIBase):
    """SKI by preconditioned conjugate gradients on the grid (see the module docstring); each
    evaluation costs :math:`O(t\\, m \\sum_k g_k)` per iteration for ``t`` probes, independent of ``n``."""

    deterministic = False
    # about a second per evaluation at 10^6 points; the full data's own start scan matters: at
    # n = 10^5 in 2-D the subsets' optimum calls the fast ripple noise, and Newton steps with
    # their curvature did not leave that basin (test RMSE 0.11, measured)
    cheap_full_evaluation = True
    warm_start_subsets = 1
    operator_attributes = ("_ops",)

    def __init__(self, kernel, X, y, noise, **settings):
        super().__init__(kernel, X, y, noise, **settings)
        A, self.b = self.normal_equations()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products only here
            warnings.simplefilter("ignore", UserWarning)
            self.A = A.to_sparse_csr()
        self.yty = float(y @ y)
        self.axes = [self.grid.origin[k] + self.grid.step[k] * torch.arange(g, dtype=torch.float64)
                     for k, g in enumerate(self.grid.shape)]
        self.axis_normals = [self._axis_normal_matrix(k) for k in range(X.shape[1])]
        g = self._generator()
        t = int(self.settings["n_probes"])
        self.trace_probes = torch.randn(self.grid.m, t, generator=g, dtype=torch.float64)
        self.logdet_probes = torch.randn(self.grid.m, t, generator=g, dtype=torch.float64)

    def _axis_normal_matrix(self, k: int) -> torch.Tensor:
        r""":math:`W_k^\top W_k` for the one-dimensional interpolation of column ``k`` onto the
        grid's axis ``k`` (shape ``(g_k, g_k)``)."""
        g, step = self.grid.shape[k], self.grid.step[k : k + 1]
        axis = GridInterpolation(self.grid.origin[k : k + 1] + 2 * step, self.grid.end[k : k + 1] - 2 * step, (g,))
        idx, w = axis.weights(self.X[:, k : k + 1])
        out = torch.zeros(g * g, dtype=torch.float64)
        out.index_add_(0, (idx[:, :, None] * g + idx[:, None, :]).reshape(-1), (w[:, :, None] * w[:, None, :]).reshape(-1))
        return out.reshape(g, g)

    # --- operators at fixed hyperparameters ---
    def _operators(self, kt: torch.Tensor, noise: torch.Tensor) -> dict:
        r"""``S``, ``B`` and the preconditioner's ``P^{-1}`` and ``P^{1/2}`` as functions of a block
        of grid vectors, and :math:`\log|P|`.

        ``P`` replaces ``A`` in ``B`` by its expectation for data whose columns are independent,
        :math:`D = n^{1-d} \bigotimes_k W_k^\top W_k`, :math:`W_k` the one-dimensional interpolation
        of column ``k`` onto axis ``k``: then :math:`S D S = n^{1-d}\bigotimes_k S_k W_k^\top W_k S_k`
        is a Kronecker product, and :math:`P = \sigma^2 I + S D S` is inverted through its factors'
        eigenvectors. It models the grid's empty margins and the interpolation's smoothing (with
        :math:`D` a multiple of the identity, a 30 x 30 test problem took 454 CG iterations; with
        the data's marginal mass on the diagonal 22; with this 15, measured)."""
        roots, V, mu = [], [], []
        for F, normal in zip(self.kernel.grid_factors(self.axes, kt), self.axis_normals):
            vals, vecs = torch.linalg.eigh(F)
            root = (vecs * vals.clamp_min(0.0).sqrt()) @ vecs.T
            vals, vecs = torch.linalg.eigh(root @ normal @ root)
            roots.append(root), V.append(vecs), mu.append(vals.clamp_min(0.0))
        spectrum = reduce(lambda u, w: torch.outer(u, w).reshape(-1), mu) / len(self.y) ** (len(mu) - 1)
        pre = noise + spectrum
        VT = [q.T for q in V]

        def S(R):
            return kron_matmul(roots, R)

        def in_eigenbasis(R, scale):
            return kron_matmul(V, scale[:, None] * kron_matmul(VT, R))

        return {"S": S, "B": lambda R: noise * R + S(self.A @ S(R)),
                "P_inv": lambda R: in_eigenbasis(R, 1 / pre), "P_half": lambda R: in_eigenbasis(R, pre.sqrt()),
                "eigen_inv_half": lambda R: pre.rsqrt()[:, None] * kron_matmul(VT, R),
                "logdet_P": torch.log(pre).sum()}

    def _cg_solve(self, ops: dict, R: torch.Tensor, tol: float | None = None):
        """CG on ``B`` at ``tol`` (the ``cg_tol`` setting when None)."""
        tol = self.settings["cg_tol"] if tol is None else tol
        return batched_cg(ops["B"], R, ops["P_inv"], tol, self.settings["max_cg_iter"])

    def _solve_all(self, kt: torch.Tensor, noise: torch.Tensor, gradient: bool = True) -> dict:
        """One batched solve with ``B``: the mean's, the log-determinant's and, for the gradient
        (``gradient``), the trace probes' (half the columns: a value alone does without them)."""
        ops = self._operators(kt, noise)
        t = self.trace_probes.shape[1] if gradient else 0
        A_xi = self.A @ self.trace_probes[:, :t]
        Z = ops["P_half"](self.logdet_probes)
        res = self._cg_solve(ops, torch.cat([ops["S"](self.b[:, None]), ops["S"](A_xi), Z], 1))
        self.cg_iterations_ = int(res.n_iter.max())
        SX = ops["S"](res.solution[:, : t + 1])
        v = SX[:, 0]
        n, m = len(self.y), self.grid.m
        probes = self.logdet_probes.shape[1]
        logdet = ((n - m) * torch.log(noise) + ops["logdet_P"]
                  + lanczos_logdet(res, (self.logdet_probes**2).sum(0), range(t + 1, t + 1 + probes)))
        quad = (self.yty - self.b @ v) / noise
        return {"v": v, "quad": float(quad), "logdet": float(logdet),
                "beta": (self.b - self.A @ v) / noise,  # W^T alpha, alpha = K^-1 y
                "P_xi": (A_xi - self.A @ SX[:, 1:]) / noise,  # W^T K^-1 W xi
                "ops": ops}

    def _nll(self, s: dict, profile: bool) -> float:
        """The objective from one solve; profiled, maximised over a common scale of the kernel
        variance and the noise in closed form (``Backend.profiles``)."""
        n = len(self.y)
        if self.profiles(profile):
            return 0.5 * (n * (1 + math.log(s["quad"] / n)) + s["logdet"] + n * LOG_2PI)
        return 0.5 * (s["quad"] + s["logdet"] + n * LOG_2PI)

    def _best_scale(self, theta):
        with torch.no_grad():
            return self._solve_all(*self._split(theta), gradient=False)["quad"] / len(self.y)

    def value(self, theta, profile=False):
        with torch.no_grad():
            return self._nll(self._solve_all(*self._split(theta), gradient=False), profile)

    def value_and_grad(self, theta, profile=False):
        r"""With :math:`\beta = W^\top\hat K^{-1}y = (b - A v)/\sigma^2`,
        :math:`\Pi = W^\top\hat K^{-1}W = (A - A S B^{-1} S A)/\sigma^2` and probes
        :math:`\xi_i \sim N(0, I_m)`:
        :math:`\partial_\theta = \tfrac12(\operatorname{tr}(\Pi\,\partial K_{UU}) - \beta^\top\partial K_{UU}\beta)`,
        the trace estimated by :math:`\tfrac1t\sum_i (\Pi\xi_i)^\top\partial K_{UU}\xi_i`; for the noise
        :math:`\partial_{\sigma^2} = \tfrac12(\operatorname{tr}\hat K^{-1} - \alpha^\top\alpha)` with
        :math:`\operatorname{tr}\hat K^{-1} = (n - \operatorname{tr}(K_{UU}\Pi))/\sigma^2` and
        :math:`\alpha^\top\alpha = (y^\top y - 2b^\top v + v^\top A v)/\sigma^4`. Profiled, the data-fit
        terms are multiplied by :math:`n / y^\top\hat K^{-1}y`."""
        theta = theta.detach()
        kt, noise = self._split(theta)
        with torch.no_grad():
            s = self._solve_all(kt, noise)
        t = self.trace_probes.shape[1]
        c = len(self.y) / s["quad"] if self.profiles(profile) else 1.0  # weight of the data fit
        th = theta.clone().requires_grad_(True)
        p = self.kernel.n_params
        left = torch.cat([s["P_xi"] / t, -c * s["beta"][:, None]], 1)
        right = torch.cat([self.trace_probes, s["beta"][:, None]], 1)
        K_right = kron_matmul(self.kernel.grid_factors(self.axes, th[:p]), right)
        (0.5 * (left * K_right).sum()).backward()
        grad = th.grad if th.grad is not None else torch.zeros_like(th)
        if self.noise is None:
            with torch.no_grad():
                v, n = s["v"], len(self.y)
                trace_KPi = float((s["P_xi"] * K_right[:, :t].detach()).sum()) / t
                alpha_sq = (self.yty - 2 * self.b @ v + v @ (self.A @ v)) / noise**2
                grad[p] = 0.5 * noise * ((n - trace_KPi) / noise - c * alpha_sq)
        return self._nll(s, profile), grad

    # --- prediction ---
    def condition(self, theta):
        kt, noise = self._split(theta)
        with torch.no_grad():
            s = self._solve_all(kt, noise, gradient=False)
            # the likelihood needs b^T v only, whose error is the square of the residual's; the
            # predictions need v itself, to a far tighter residual: B's smallest eigenvalues,
            # sigma^2, amplify it (clustered data, 45 x 45 grid: a residual of 1e-5 left the mean
            # 0.34 off, 1e-9 5e-5, measured)
            ops = s["ops"]
            v = ops["S"](self._cg_solve(ops, ops["S"](self.b[:, None]), PRECISE_TOL).solution)[:, 0]
            self.grid_mean, self.weighted_alpha = v, (self.b - self.A @ v) / noise
            self._ops, self._noise = ops, noise
            self._band = None  # the posterior covariance near the diagonal, on first use
        self.theta, self.lml = theta, -self._nll(s, False)

    def _rebuild_operators(self, kt, noise):
        self._ops = self._operators(kt, noise)

    def _correction_reach(self) -> list[int]:
        """Per axis, how many nodes away the correction ``Sigma - Sigma_P`` (see
        ``_covariance_band``) stays above ``PROBE_TOLERANCE`` of the posterior variance
        at the node it is measured from, read from its columns at ``REACH_NODES`` random
        nodes that hold data."""
        ops, g = self._ops, self._generator()
        # the row sums of A = W^T W are W's column sums (W's rows sum to 1)
        column_sums = torch.zeros(self.grid.m, dtype=torch.float64).index_add_(0, self.idx.reshape(-1), self.w.reshape(-1))
        held = torch.nonzero(column_sums > 0)[:, 0]
        nodes = held[torch.randperm(len(held), generator=g)[:REACH_NODES]]
        E = torch.zeros(self.grid.m, len(nodes), dtype=torch.float64)
        E[nodes, torch.arange(len(nodes))] = 1.0
        C = self._correction(E)
        variance = C[nodes, torch.arange(len(nodes))] + self._noise * (ops["eigen_inv_half"](ops["S"](E)) ** 2).sum(0)
        C = C.abs()
        where = torch.stack(torch.unravel_index(torch.arange(self.grid.m), self.grid.shape), 1)
        reach = [0] * len(self.grid.shape)
        for j, node in enumerate(nodes):
            far = (where - where[node]).abs()[C[:, j] > PROBE_TOLERANCE * variance[j]]
            reach = [max(r, int(f)) for r, f in zip(reach, far.max(0).values)]
        return reach

    def _correction(self, E: torch.Tensor) -> torch.Tensor:
        r""":math:`\sigma^2 S (B^{-1} - P^{-1}) S E` for a block ``E`` of grid vectors."""
        ops = self._ops
        SE = ops["S"](E)
        X = self._cg_solve(ops, SE, PRECISE_TOL).solution
        return self._noise * ops["S"](X - ops["P_inv"](SE))

    def _covariance_band(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The grid posterior covariance :math:`\Sigma = \sigma^2 S B^{-1} S` near its diagonal,
        less the part the preconditioner carries, :math:`\Sigma_P = \sigma^2 S P^{-1} S` (which
        ``predict`` applies exactly): the rest is small and, where the data are, short-ranged.
        It is read by probing (Bekas, Kokiopoulou & Saad 2007): nodes are coloured so that two of
        one colour lie more than a stencil plus the measured reach apart along some axis (at
        most ``MAX_PERIOD`` colours per axis); column
        ``c`` of the correction times the colour indicators ``E`` then holds, at node ``a``, the
        entry for the one node of colour ``c`` within a stencil of ``a``, plus negligible ones."""
        if self._band is None:
            index = torch.unravel_index(torch.arange(self.grid.m), self.grid.shape)
            colour, count = torch.zeros(self.grid.m, dtype=torch.long), 1
            for i, g, r in zip(index, self.grid.shape, self._correction_reach()):
                period = min(g, 4 + r, MAX_PERIOD)
                colour, count = colour * period + i % period, count * period
            E = torch.zeros(self.grid.m, count, dtype=torch.float64)
            E[torch.arange(self.grid.m), colour] = 1.0
            self._band = (self._correction(E), colour)
        return self._band

    def _preconditioner_variance(self, Ws: torch.Tensor) -> torch.Tensor:
        r""":math:`w_*^\top \Sigma_P w_*` for interpolation columns ``Ws`` (shape ``(m, c)``),
        exactly, in the preconditioner's eigenbasis."""
        Y = self._ops["eigen_inv_half"](self._ops["S"](Ws))
        return self._noise * (Y * Y).sum(0)

    def _interpolated_variance(self, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        r""":math:`w_*^\top \Sigma w_*`: the preconditioner's part exactly, the probed band for the rest."""
        band, colour = self._covariance_band()
        block = band[idx[:, :, None], colour[idx][:, None, :]]
        Ws = torch.zeros(self.grid.m, len(idx), dtype=torch.float64).scatter_add_(0, idx.T, w.T)
        return self._preconditioner_variance(Ws) + torch.einsum("na,nab,nb->n", w, block, w)

    def _explained_variance(self, cross: torch.Tensor) -> torch.Tensor:
        r""":math:`k_*^\top \Pi k_*` for cross-covariances ``cross`` of shape ``(c, m)``, one solve each."""
        ops, noise = self._ops, self._noise
        A_cross = self.A @ cross.T
        SA = ops["S"](A_cross)
        X = self._cg_solve(ops, SA, PRECISE_TOL).solution
        return ((cross.T * A_cross).sum(0) - (SA * X).sum(0)) / noise
