"""Dense and matrix-free linear algebra behind Gaussian processes (used by :mod:`mathkit.gp`).

Stable pairwise squared distances (the matrix-multiply expansion with its cancellation
repaired), batched preconditioned conjugate gradients that also return the Lanczos tridiagonal
matrices hidden in their coefficients (the "mBCG" of Gardner et al. 2018), stochastic
Lanczos quadrature for log-determinants, the partial pivoted Cholesky preconditioner,
symmetric Toeplitz / block-Toeplitz products by FFT, and local cubic interpolation
onto a regular grid (Keys 1981; Wilson & Nickisch 2015).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.linalg import lapack

__all__ = [
    "sq_distances",
    "cholesky_",
    "cholesky_inverse_",
    "cholesky_solve",
    "one_torch_thread",
    "CGResult",
    "batched_cg",
    "lanczos_logdet",
    "woodbury_preconditioner",
    "pivoted_cholesky",
    "toeplitz_matmul",
    "GridInterpolation",
]

Matmul = Callable[[torch.Tensor], torch.Tensor]

# sq_distances. Up to _DIRECT_MAX_DIM coordinates, differences (two passes per coordinate) cost
# less than the matrix product's bookkeeping; above it the expansion runs at matrix-multiply speed, and its entries
# that kept less than _RECOMPUTE_BELOW of |x|^2 + |y|^2 are recomputed from differences, so the
# others carry at most (2d + 3) u / _RECOMPUTE_BELOW relative error (u = 2^-53). Row blocks
# hold about _BLOCK_ENTRIES entries.
_DIRECT_MAX_DIM = 3
_RECOMPUTE_BELOW = 2.0**-10
_BLOCK_ENTRIES = 2**22


def _as_points(A, name: str) -> torch.Tensor:
    """``A`` as a finite floating 2-D tensor (integers and booleans promoted to float64)."""
    if not isinstance(A, torch.Tensor):
        A = torch.as_tensor(np.asarray(A))
    if A.is_complex():
        raise TypeError(f"{name} must be real, got dtype {A.dtype}")
    if not A.is_floating_point():
        A = A.to(torch.float64)
    if A.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(A.shape)}")
    bad = ~torch.isfinite(A).all(1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} must be finite, got {A[row][~torch.isfinite(A[row])][0].item()} at row {row}")
    return A


def _direct_sq_distances(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_k (x_k - y_k)^2`, one coordinate at a time (no ``(n, m, d)`` temporary)."""
    D = None
    for x, y in zip(X.T, Y.T):
        t = x[:, None] - y
        D = t * t if D is None else D.addcmul_(t, t)
    return torch.zeros(len(X), len(Y), dtype=X.dtype, device=X.device) if D is None else D


def _expanded_sq_distances(X: torch.Tensor, Y: torch.Tensor, Xc: torch.Tensor, Yc: torch.Tensor,
                           nx: torch.Tensor, ny: torch.Tensor) -> torch.Tensor:
    """:math:`\\|x_c\\|^2 + \\|y_c\\|^2 - 2x_c^\\top y_c` for centred rows (squared norms ``nx``,
    ``ny``), the cancelled entries redone from the original rows ``X``, ``Y``."""
    D = torch.addmm(ny, Xc, Yc.T, alpha=-2.0)
    D.add_(nx[:, None])
    # Where the result is small next to the norms, the expansion's rounding dominates. Those
    # entries include the diagonal of a matrix against itself and every entry pushed below
    # zero, so after the recomputation no entry is negative and the diagonal is exactly 0. Norms
    # beyond float64's range (coordinates ~1e154 from the centre) give inf - inf = NaN: redone too.
    with torch.no_grad():
        small = torch.le(D - _RECOMPUTE_BELOW * ny, _RECOMPUTE_BELOW * nx[:, None])
        i, j = small.logical_or_(torch.isnan(D)).nonzero(as_tuple=True)
    # (centring rounds each coordinate by ~u|x|, which would swamp a tiny difference)
    step = max(1, _BLOCK_ENTRIES // max(X.shape[1], 1))
    for start in range(0, len(i), step):
        ii, jj = i[start:start + step], j[start:start + step]
        D.index_put_((ii, jj), (X[ii] - Y[jj]).square().sum(1))
    return D


def sq_distances(X, Y=None):
    r"""Pairwise squared Euclidean distances :math:`D_{ij} = \|x_i - y_j\|^2`, shape ``(n, m)``.

    ``X`` has shape ``(n, d)`` and ``Y`` shape ``(m, d)`` (``Y=None``: ``Y = X``), torch
    tensors or numpy arrays (numpy in, numpy out). For more than 3 coordinates the bulk of
    the work is the expansion

    .. math:: \|x - y\|^2 = \|x - c\|^2 + \|y - c\|^2 - 2 (x - c)^\top (y - c),

    one matrix product (Golub & Van Loan 2013, sec. 1.1), after shifting both sets by a common
    centre :math:`c` (their mean), which changes no distance but removes any common offset.
    Its rounding error is about :math:`(2d+3)\,u\,(\|x-c\|^2 + \|y-c\|^2)` for unit roundoff
    :math:`u`, so entries below :math:`2^{-10}` of that scale (near-duplicates, the diagonal
    when ``Y`` is ``None``, anything rounded below zero) are recomputed from coordinate
    differences. Up to 3 coordinates every entry comes from differences, which is as fast
    there. Either way every entry is non-negative, the diagonal of ``sq_distances(X)`` is
    exactly zero, and each entry is within about :math:`(2d+3)\,2^{10}\,u` of the exact
    squared distance, relative to itself.

    Computed in float64 (float32 and float16 inputs are promoted and the result rounded back
    once), one block of rows at a time, so the working memory beyond the result stays near
    ``2**22`` entries. Differentiable, with finite gradients everywhere (zero at zero
    distance). Integers are promoted to float64; NaN or infinite coordinates raise ``ValueError``.
    """
    as_numpy = not isinstance(X, torch.Tensor)
    X = _as_points(X, "X")
    Y = X if Y is None else _as_points(Y, "Y")
    if Y.shape[1] != X.shape[1]:
        raise ValueError(f"X and Y must have the same number of columns, got {X.shape[1]} and {Y.shape[1]}")
    Xd, Yd = X.to(torch.float64), Y.to(torch.float64)
    direct = X.shape[1] <= _DIRECT_MAX_DIM
    if not direct:
        with torch.no_grad():  # no distance depends on the centre, so no gradient flows through it
            centre = (Xd.sum(0) + (Yd.sum(0) if Y is not X else 0)) / (len(X) + (len(Y) if Y is not X else 0))
        Xc = Xd - centre
        Yc = Xc if Y is X else Yd - centre
        nx = Xc.square().sum(1)
        ny = nx if Y is X else Yc.square().sum(1)
    dtype = torch.promote_types(X.dtype, Y.dtype)

    def block(rows: slice) -> torch.Tensor:
        if direct:
            D = _direct_sq_distances(Xd[rows], Yd)
        else:
            D = _expanded_sq_distances(Xd[rows], Yd, Xc[rows], Yc, nx[rows], ny)
        return D.to(dtype)

    step = max(1, _BLOCK_ENTRIES // max(len(Y), 1))
    if len(X) <= step:
        out = block(slice(None))
    else:
        out = torch.empty(len(X), len(Y), dtype=dtype, device=X.device)
        for start in range(0, len(X), step):
            out[start:start + step] = block(slice(start, start + step))
    return out.numpy() if as_numpy else out


# In-place dense Cholesky wrappers (LAPACK potrf/potri/potrs) for the exact GP. A C-contiguous
# symmetric matrix is, read in Fortran order, its own transpose: LAPACK's upper-triangle
# routines on that view work on our lower triangle with no copy. torch's wrappers copy each
# n x n operand (column-major staging), which at n = 3000 costs as much as the O(n^3) work, and
# on this machine scipy's OpenBLAS factors ~1.4x faster than torch's MKL. Other devices and
# dtypes use torch's own routines.
def _lapack_view(A: torch.Tensor) -> np.ndarray | None:
    return A.numpy().T if A.device.type == "cpu" and A.dtype == torch.float64 and A.is_contiguous() else None


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Within the block, torch's intra-op pool runs one thread; the caller's setting is
    restored on exit (also on error). Use it around work that alternates LAPACK calls (scipy's
    OpenBLAS, which keeps its own threads) with torch's elementwise passes.

    Why: OpenBLAS workers busy-wait for a while after each call; a second torch thread
    competing with them made exact-GP evaluations up to 4x slower on 2 cores, while the
    elementwise work between the factorisations is small. The setting is process-wide while
    the block runs (torch has no per-call thread count), so torch work on other Python
    threads runs single-threaded meanwhile; nothing changes when torch already uses one.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cholesky_(A: torch.Tensor) -> bool:
    """Overwrite the lower triangle of symmetric ``A`` (``(n, n)``) with its Cholesky factor
    ``L`` (``L L^T = A``; the strict upper triangle is left as it was), in place: LAPACK
    ``potrf`` for a contiguous float64 CPU tensor, torch otherwise. Returns False if ``A`` is
    not numerically positive definite (``A`` is then garbage)."""
    view = _lapack_view(A)
    if view is None:
        L, info = torch.linalg.cholesky_ex(A)
        A.copy_(L)
        return int(info) == 0
    _, info = lapack.dpotrf(view, lower=0, clean=0, overwrite_a=1)
    return info == 0


def cholesky_inverse_(L: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:math:`(L L^\\top)^{-1}` from the factor in the lower triangle of ``L`` (``(n, n)``;
    LAPACK ``potri``, :math:`2n^3/3` flops), into the lower triangle of ``out`` (same shape;
    the upper one is garbage); returns ``out``. Raises LinAlgError for a singular factor."""
    view = _lapack_view(out)
    if view is None:
        return out.copy_(torch.cholesky_inverse(L.tril()))
    out.copy_(L)
    _, info = lapack.dpotri(view, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed with info={info}")
    return out


def cholesky_solve(L: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:math:`(L L^\\top)^{-1} b` for a vector ``b`` (``(n,)``), the factor in the lower
    triangle of ``L`` (``(n, n)``, upper triangle ignored; LAPACK ``potrs``)."""
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
    below ``tol`` times its right-hand side norm; a zero column has the solution 0 and takes no
    step. Hestenes & Stiefel (1952); batched as in
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
    b_norm = B.norm(dim=0)
    active = b_norm > 0  # a zero right-hand side is solved by X = 0: its column never starts
    b_norm = b_norm.clamp_min(torch.finfo(B.dtype).tiny)
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


def woodbury_preconditioner(L: torch.Tensor, noise: torch.Tensor | float
                            ) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    r"""Solve with and log-determinant of :math:`P = L L^\top + \sigma^2 I` for a thin ``L``
    of shape ``(n, k)`` (e.g. from :func:`pivoted_cholesky`), the preconditioner of BBMM
    (Gardner et al. 2018), by Woodbury's identity and Sylvester's determinant identity:

    .. math:: P^{-1} R = \sigma^{-2}\bigl(R - L (\sigma^2 I_k + L^\top L)^{-1} L^\top R\bigr),
              \qquad \log|P| = (n - k)\log\sigma^2 + \log|\sigma^2 I_k + L^\top L|.

    Costs :math:`O(n k^2)` once and :math:`O(n k)` per column solved. ``noise``: :math:`\sigma^2 > 0`.
    Returns ``(solve, logdet)``; ``solve`` maps an ``(n, t)`` tensor to :math:`P^{-1} R`.
    """
    n, k = L.shape
    noise = torch.as_tensor(noise, dtype=L.dtype)
    if not bool(noise > 0):
        raise ValueError(f"noise must be a positive variance, got {float(noise)}")
    inner = torch.linalg.cholesky(noise * torch.eye(k, dtype=L.dtype, device=L.device) + L.T @ L)

    def solve(R: torch.Tensor) -> torch.Tensor:
        return (R - L @ torch.cholesky_solve(L.T @ R, inner)) / noise

    return solve, (n - k) * torch.log(noise) + 2 * torch.log(inner.diagonal()).sum()


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


def kron_matmul(factors: list[torch.Tensor], V: torch.Tensor) -> torch.Tensor:
    r""":math:`(F_1 \otimes \cdots \otimes F_d) V` for square factors :math:`F_k` of shapes
    ``(g_k, g_k)`` and ``V`` of shape ``(m, t)``, :math:`m = \prod_k g_k` (row-major), without
    forming the product: one small matrix product per axis, :math:`O(m t \sum_k g_k)` instead of
    :math:`O(m^2 t)` (Saatçi 2012, sec. 5.2)."""
    shape = [f.shape[0] for f in factors]
    X = V
    for k, F in enumerate(factors):
        # axis k in the middle of a (before, g_k, after) view: one batched product, no transposes
        X = torch.matmul(F, X.reshape(math.prod(shape[:k]), shape[k], -1))
    return X.reshape(V.shape)


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

    def covers(self, X: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the rows of ``X`` that :meth:`weights` can interpolate."""
        return ((X >= self.origin + 2 * self.step) & (X <= self.end - 2 * self.step)).all(1)

    @staticmethod
    def apply(idx: torch.Tensor, w: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """``W V`` for grid vectors ``V`` of shape ``(m, t)`` -> ``(n, t)``."""
        return (V[idx] * w[:, :, None]).sum(1)

    def apply_transpose(self, idx: torch.Tensor, w: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """``W^T U`` for data vectors ``U`` of shape ``(n, t)`` -> ``(m, t)``."""
        out = torch.zeros(self.m, U.shape[1], dtype=U.dtype, device=U.device)
        return out.index_add(0, idx.reshape(-1), (w[:, :, None] * U[:, None, :]).reshape(-1, U.shape[1]))
