"""The exact GP likelihood by Cholesky factorisation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from mathkit.gp.backend import LOG_2PI, LOG_BOUNDS, Backend, block_rows
from mathkit.linalg import cholesky_, cholesky_inverse_, cholesky_solve, one_torch_thread

#: rows per block in elementwise passes over an n x n kernel matrix (with autograd through
#: each block: small blocks keep the graph's temporaries in cache)
_ROW_BLOCK = 256


class ExactBackend(Backend):
    """Cholesky of the full kernel matrix; gradient :math:`\\tfrac12\\operatorname{tr}
    ((\\alpha\\alpha^\\top - \\hat K^{-1})\\,\\partial\\hat K/\\partial\\theta)` (R&W eq. 5.9).

    The two ``n x n`` matrices (the factor, and :math:`\\hat K^{-1}` for the gradient) live in
    buffers kept across evaluations, and every elementwise pass over the kernel runs on row
    blocks of the lower triangle: a fresh ``n x n`` temporary costs a page fault per 4 kB, as
    much as the arithmetic on it, and autograd through a full kernel matrix makes a dozen.

    Each evaluation runs under :func:`~mathkit.linalg.one_torch_thread` (torch's previous
    thread count restored on return): the LAPACK calls use OpenBLAS's threads, and a second
    torch thread competing with them slows the evaluation down.
    """

    cheap_value = True  # a Cholesky alone is a third of a gradient evaluation

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
            if cholesky_(K):
                if jitter and not getattr(self, "_warned_jitter", False):  # once per fit, not per evaluation
                    self._warned_jitter = True
                    warnings.warn(f"kernel matrix needed jitter {jitter:g} x its mean diagonal to factor")
                return K
        raise np.linalg.LinAlgError(
            "the kernel matrix is not positive definite even with jitter 1e-6 x its mean diagonal; "
            "increase the noise variance (or use noise=None to learn it) or remove duplicate inputs")

    @one_torch_thread()
    def _solve(self, theta: torch.Tensor):
        L = self._factor(theta)
        alpha = cholesky_solve(L, self.y)
        nll = 0.5 * self.y @ alpha + torch.log(L.diagonal()).sum() + 0.5 * len(self.y) * LOG_2PI
        self._last = (theta.detach().clone(), L, alpha, float(nll))
        return L, alpha, float(nll)

    def _objective(self, theta: torch.Tensor, profile: bool) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """Factor, :math:`\\alpha = \\hat K^{-1} y`, the objective and the common scale it implies."""
        L, alpha, nll = self._solve(theta)
        scale = 1.0
        if self.profiles(profile):
            # max over c of log N(y | 0, c K): c = y^T K^-1 y / n (envelope theorem for the gradient)
            n = len(self.y)
            scale = float(self.y @ alpha) / n
            nll = 0.5 * n * (1 + math.log(scale) + LOG_2PI) + float(torch.log(L.diagonal()).sum())
        return L, alpha, nll, scale

    def value(self, theta: torch.Tensor, profile: bool = False) -> float:
        return self._objective(theta, profile)[2]

    def value_and_grad(self, theta: torch.Tensor, profile: bool = False) -> tuple[float, torch.Tensor]:
        # optimisers often ask again for the point they stopped at
        memo = getattr(self, "_memo", None)
        if memo is None or memo[0] != profile or not torch.equal(memo[1], theta):
            self._memo = (profile, theta.detach().clone(), *self._value_and_grad(theta, profile))
        return self._memo[2], self._memo[3].clone()

    @one_torch_thread()
    def _value_and_grad(self, theta: torch.Tensor, profile: bool) -> tuple[float, torch.Tensor]:
        L, alpha, nll, scale = self._objective(theta, profile)
        W = cholesky_inverse_(L, out=self._buffer("inverse"))
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
        nll = 0.5 * len(self.y) * (1 + math.log(scale) + LOG_2PI) + float(torch.log(L.diagonal()).sum())
        if torch.equal(new.clamp(*LOG_BOUNDS), new):  # rescale() clamps: a clamped point needs its own solve
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
        for rows in torch.split(torch.arange(len(Xs)), block_rows(len(self.X))):
            Ks = self.kernel(Xs[rows], self.X, kt)
            means.append(Ks @ self.alpha)
            if return_std:
                V = torch.linalg.solve_triangular(self.L, Ks.T, upper=False)
                variances.append(self.kernel.diag(Xs[rows], kt) - (V**2).sum(0))
        return torch.cat(means), (torch.cat(variances) if return_std else None)
