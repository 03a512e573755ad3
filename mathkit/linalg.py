"""Matrix-free linear algebra behind scalable Gaussian processes (used by :mod:`mathkit.gp`).

Batched preconditioned conjugate gradients that also return the Lanczos tridiagonal
matrices hidden in their coefficients (the "mBCG" of Gardner et al. 2018), stochastic
Lanczos quadrature for log-determinants, the partial pivoted Cholesky preconditioner,
symmetric Toeplitz / block-Toeplitz products by FFT, and local cubic interpolation
onto a regular grid (Keys 1981; Wilson & Nickisch 2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.linalg import lapack

__all__ = [
    "CGResult",
    "batched_cg",
    "lanczos_logdet",
    "pivoted_cholesky",
    "toeplitz_matmul",
    "GridInterpolation",
]

Matmul = Callable[[torch.Tensor], torch.Tensor]


# In-place dense Cholesky kernels for the exact GP. A C-contiguous symmetric matrix is,
# read in Fortran order, its own transpose: LAPACK's upper-triangle routines on that view
# work on our lower triangle with no copy. torch's wrappers copy each n x n operand
# (column-major staging), which at n = 3000 costs as much as the O(n^3) work, and on this
# machine scipy's OpenBLAS factors ~1.4x faster than torch's MKL. Other devices use torch.
def _lapack_view(A: torch.Tensor) -> np.ndarray | None:
    return A.numpy().T if A.device.type == "cpu" and A.dtype == torch.float64 and A.is_contiguous() else None


def _cholesky_(A: torch.Tensor) -> bool:
    """Overwrite the lower triangle of symmetric ``A`` with its Cholesky factor ``L``
    (``L L^T = A``; the strict upper triangle is left as it was). False if ``A`` is not
    numerically positive definite (``A`` is then garbage)."""
    view = _lapack_view(A)
    if view is None:
        L, info = torch.linalg.cholesky_ex(A)
        A.copy_(L)
        return int(info) == 0
    _, info = lapack.dpotrf(view, lower=0, clean=0, overwrite_a=1)
    return info == 0


def _cholesky_inverse_(L: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:math:`(L L^\\top)^{-1}` from the factor in the lower triangle of ``L`` (LAPACK potri,
    :math:`2n^3/3` flops), into the lower triangle of ``out`` (the upper one is garbage)."""
    view = _lapack_view(out)
    if view is None:
        return out.copy_(torch.cholesky_inverse(L.tril()))
    out.copy_(L)
    _, info = lapack.dpotri(view, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed with info={info}")
    return out


def _cholesky_solve(L: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:math:`(L L^\\top)^{-1} b` for a vector ``b``, ``L`` in the lower triangle."""
    view = _lapack_view(L)
    if view is None:
        return torch.cholesky_solve(b[:, None], L.tril())[:, 0]
    x, info = lapack.dpotrs(view, b.numpy(), lower=0)
    return torch.from_numpy(x)


@dataclass
class CGResult:
    """Output of :func:`batched_cg` for ``A X = B`` with ``B`` of shape ``(n, t)``.

    ``alphas``/``betas`` hold the CG step sizes per iteration and column (shape
    ``(k, t)``), ``n_iter[c]`` the iterations column ``c`` used, ``residuals`` the
    relative residual norms per iteration, shape ``(k + 1, t)``.
    """

    solution: torch.Tensor
    alphas: torch.Tensor
    betas: torch.Tensor
    n_iter: torch.Tensor
    residuals: torch.Tensor = field(repr=False)

    def tridiagonal(self, column: int) -> torch.Tensor:
        r"""The Lanczos matrix :math:`T` of one column, rebuilt from the CG coefficients.

        :math:`T_{11} = 1/\alpha_1`, :math:`T_{jj} = 1/\alpha_j + \beta_{j-1}/\alpha_{j-1}`,
        :math:`T_{j,j+1} = \sqrt{\beta_j}/\alpha_j` (Saad 2003, sec. 6.7.3).
        """
        k = int(self.n_iter[column])
        a, b = self.alphas[:k, column], self.betas[: k - 1, column]
        diag = 1.0 / a
        diag[1:] = diag[1:] + b / a[:-1]
        off = torch.sqrt(b) / a[:-1]
        return torch.diag(diag) + torch.diag(off, 1) + torch.diag(off, -1)


def batched_cg(matmul: Matmul, B: torch.Tensor, precondition: Matmul | None = None,
               tol: float = 1e-6, max_iter: int = 1000) -> CGResult:
    r"""Solve :math:`A X = B` for a symmetric positive-definite ``A`` given only ``matmul``.

    All ``t`` columns of ``B`` (shape ``(n, t)``) advance together, so each iteration costs
    one product with a block of vectors (one pass over the kernel instead of ``t``).
    ``precondition(R)`` applies :math:`P^{-1}`. A column stops once its residual norm is
    below ``tol`` times its right-hand side norm. Hestenes & Stiefel (1952); batched as in
    Gardner et al. (2018), Alg. 2.
    """
    if B.ndim != 2:
        raise ValueError(f"B must have shape (n, t), got {tuple(B.shape)}")
    precondition = precondition or (lambda R: R)
    X = torch.zeros_like(B)
    R = B.clone()
    Z = precondition(R)
    P = Z.clone()
    rz = (R * Z).sum(0)
    b_norm = B.norm(dim=0).clamp_min(torch.finfo(B.dtype).tiny)
    active = torch.ones(B.shape[1], dtype=torch.bool, device=B.device)
    n_iter = torch.zeros(B.shape[1], dtype=torch.long, device=B.device)
    alphas, betas, residuals = [], [], [R.norm(dim=0) / b_norm]
    for _ in range(max_iter):
        AP = matmul(P)
        alpha = torch.where(active, rz / (P * AP).sum(0), torch.zeros_like(rz))
        X = X + alpha * P
        R = R - alpha * AP
        n_iter += active
        alphas.append(alpha)
        rel = R.norm(dim=0) / b_norm
        residuals.append(rel)
        active = active & (rel > tol)
        if not active.any():
            betas.append(torch.zeros_like(rz))
            break
        Z = precondition(R)
        rz_new = (R * Z).sum(0)
        beta = torch.where(active, rz_new / rz, torch.zeros_like(rz))
        betas.append(beta)
        P = Z + beta * P
        rz = torch.where(active, rz_new, rz)
    return CGResult(X, torch.stack(alphas), torch.stack(betas), n_iter, torch.stack(residuals))


def lanczos_logdet(result: CGResult, probe_norms_sq: torch.Tensor, columns: range,
                   scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    r"""Stochastic Lanczos quadrature estimate of :math:`\log\det(P^{-1}A)`.

    For probes :math:`z_i` with :math:`E[z z^\top] = P` solved by preconditioned CG,
    :math:`\operatorname{tr}\log(P^{-1}A) \approx \frac1t\sum_i \|z_i\|^2_{P^{-1}}\,
    e_1^\top \log(T_i)\, e_1` with :math:`T_i` the Lanczos matrix of probe ``i``
    (Ubaru, Chen & Saad 2017; Gardner et al. 2018, eq. 6). ``probe_norms_sq[i]`` is
    :math:`z_i^\top P^{-1} z_i`. With ``scale`` = s the estimate is of
    :math:`\log\det(P^{-1}A/s)`: a scale near the bulk of the spectrum puts most of
    :math:`\log(\lambda/s)` near zero and cuts the probe variance.
    """
    estimates = []
    for i, col in enumerate(columns):
        evals, evecs = torch.linalg.eigh(result.tridiagonal(col))
        quad = (evecs[0] ** 2 * torch.log(evals.clamp_min(torch.finfo(evals.dtype).tiny) / scale)).sum()
        estimates.append(probe_norms_sq[i] * quad)
    return torch.stack(estimates).mean()


def pivoted_cholesky(diag: torch.Tensor, row: Callable[[int], torch.Tensor], rank: int,
                     tol: float = 1e-10) -> torch.Tensor:
    r"""Partial pivoted Cholesky :math:`K \approx L L^\top`, ``L`` of shape ``(n, k)``, k <= rank.

    Touches only ``k`` rows of ``K`` (``row(i)`` returns row ``i``) and its diagonal, so
    it costs :math:`O(n k^2)`; at each step the pivot is the largest remaining diagonal
    entry of the Schur complement (Harbrecht, Peters & Schneider 2012).
    """
    d = diag.clone()
    L = torch.zeros(rank, d.shape[0], dtype=d.dtype, device=d.device)
    trace0 = d.sum()
    for m in range(rank):
        i = int(torch.argmax(d))
        if d[i] <= tol * trace0:
            return L[:m].T
        l = (row(i) - L[:m, i] @ L[:m]) / torch.sqrt(d[i])
        L[m] = l
        d = (d - l**2).clamp_min(0.0)
    return L.T


def _circulant_embedding(first: torch.Tensor, dims: int) -> torch.Tensor:
    """Embed the first row of a symmetric (block-)Toeplitz matrix into a circulant one.

    Along each of the last ``dims`` axes, ``[c_0 .. c_{m-1}]`` becomes
    ``[c_0 .. c_{m-1}, 0, c_{m-1} .. c_1]`` (length 2m).
    """
    out = first
    for axis in range(first.ndim - dims, first.ndim):
        zero = torch.zeros_like(out.narrow(axis, 0, 1))
        out = torch.cat([out, zero, out.narrow(axis, 1, out.shape[axis] - 1).flip(axis)], dim=axis)
    return out


def toeplitz_matmul(first: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    r"""Product of a symmetric Toeplitz (1-D grid) or block-Toeplitz-with-Toeplitz-blocks
    (2-D grid) matrix with the columns of ``V``, by FFT in :math:`O(m \log m)`.

    ``first`` has the grid shape (``(m,)`` or ``(m1, m2)``) and holds
    :math:`k(u_0, u_j)`, the covariance between the grid's first node and every node;
    ``V`` has shape ``(m, t)`` with ``m = first.numel()``, nodes in row-major order.
    The matrix is embedded in a circulant one of twice the size per axis, which the
    discrete Fourier transform diagonalises (Golub & Van Loan 2013, sec. 4.8).
    """
    shape = first.shape
    dims = len(shape)
    c = torch.fft.rfftn(_circulant_embedding(first, dims), dim=tuple(range(dims)))
    t = V.shape[1]
    grid = V.T.reshape(t, *shape)
    size = tuple(2 * s for s in shape)
    prod = torch.fft.irfftn(torch.fft.rfftn(grid, s=size) * c, s=size)
    crop = prod[(slice(None), *[slice(0, s) for s in shape])]
    return crop.reshape(t, -1).T


def _keys_cubic(s: torch.Tensor) -> torch.Tensor:
    """Keys (1981) cubic convolution weights (a = -1/2) at offsets ``s`` in grid units."""
    s = s.abs()
    near = (1.5 * s - 2.5) * s**2 + 1.0
    far = ((-0.5 * s + 2.5) * s - 4.0) * s + 2.0
    return torch.where(s <= 1.0, near, torch.where(s < 2.0, far, torch.zeros_like(s)))


class GridInterpolation:
    r"""A regular grid and the sparse cubic interpolation matrix ``W`` onto it.

    ``W`` (shape ``(n, m)``) has :math:`4^d` non-zeros per row, stored as an index and a
    weight array (a fixed-width sparse format), so ``W v`` and ``W^T u`` cost
    :math:`O(4^d n)`. The grid covers ``[low - 2h, high + 2h]`` on each axis so every
    point has all four neighbours (Wilson & Nickisch 2015, sec. 3).
    """

    def __init__(self, low: torch.Tensor, high: torch.Tensor, shape: tuple[int, ...]) -> None:
        if any(m < 6 for m in shape):
            raise ValueError(f"grid_size must be at least 6 per axis, got {shape}")
        self.shape = tuple(int(m) for m in shape)
        low, high = low.to(torch.float64), high.to(torch.float64)
        sizes = torch.tensor(self.shape, dtype=torch.float64)
        span = (high - low).clamp_min(1e-12)
        self.step = span / (sizes - 5)
        self.origin = low - 2 * self.step
        self.end = self.origin + (sizes - 1) * self.step

    @property
    def m(self) -> int:
        return math.prod(self.shape)

    def nodes(self) -> torch.Tensor:
        """Grid coordinates, shape ``(m, d)``, row-major."""
        axes = [self.origin[k] + self.step[k] * torch.arange(s, dtype=torch.float64)
                for k, s in enumerate(self.shape)]
        return torch.cartesian_prod(*axes).reshape(self.m, len(self.shape))

    def weights(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Column indices and weights of ``W``, both of shape ``(n, 4^d)``."""
        tol = 1e-9 * self.step
        if ((X < self.origin + 2 * self.step - tol) | (X > self.end - 2 * self.step + tol)).any():
            raise ValueError("X has points outside the interpolation grid's range "
                             f"[{self.origin + 2 * self.step}, {self.end - 2 * self.step}]; "
                             "SKI cannot extrapolate beyond the training range")
        s = (X - self.origin) / self.step  # (n, d) grid coordinates
        base = torch.floor(s).long() - 1
        base = torch.minimum(base, torch.tensor(self.shape) - 4)
        offsets = torch.arange(4)
        idx_axes = base[:, :, None] + offsets  # (n, d, 4)
        w_axes = _keys_cubic(s[:, :, None] - idx_axes.to(s.dtype))
        idx = idx_axes[:, 0]
        w = w_axes[:, 0]
        for k in range(1, len(self.shape)):
            idx = (idx[:, :, None] * self.shape[k] + idx_axes[:, k, None, :]).reshape(len(X), -1)
            w = (w[:, :, None] * w_axes[:, k, None, :]).reshape(len(X), -1)
        return idx, w

    @staticmethod
    def apply(idx: torch.Tensor, w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """``W V`` for grid vectors ``V`` of shape ``(m, t)`` -> ``(n, t)``."""
        return (V[idx] * w[:, :, None]).sum(1)

    def apply_transpose(self, idx: torch.Tensor, w: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """``W^T U`` for data vectors ``U`` of shape ``(n, t)`` -> ``(m, t)``."""
        out = torch.zeros(self.m, U.shape[1], dtype=U.dtype, device=U.device)
        return out.index_add(0, idx.reshape(-1), (w[:, :, None] * U[:, None, :]).reshape(-1, U.shape[1]))
