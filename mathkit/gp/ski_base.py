r"""What every structured-kernel-interpolation backend shares: the grid over the training inputs,
its default size, the interpolation weights, the lengthscale floor and the normal equations
:math:`W^\top W`, :math:`W^\top y` (Wilson & Nickisch 2015)."""

from __future__ import annotations

import math

import numpy as np
import torch

from mathkit.gp.backend import Backend, block_rows
from mathkit.linalg import GridInterpolation

#: the grid extends this fraction of the training inputs' range beyond them on each side
MARGIN = 0.1
#: length parameters are bounded below by this many (of the largest) grid spacings
MIN_CELLS = 0.5


def training_grid(X: torch.Tensor, shape: tuple[int, ...]) -> GridInterpolation:
    """A grid over ``X``'s range widened by :data:`MARGIN` of it on each side (a constant
    column: the range ``[x - 1/2, x + 1/2]`` around its value)."""
    low, high = X.amin(0), X.amax(0)
    span = high - low
    span = torch.where(span > 0, span, torch.ones_like(span))
    centre = (low + high) / 2
    half = span * (0.5 + MARGIN)
    return GridInterpolation(centre - half, centre + half, shape)


class SKIBase(Backend):
    """Grid, interpolation weights, the grid kernel and the normal equations (what every SKI
    backend shares)."""

    def __init__(self, kernel, X, y, noise, **settings):
        super().__init__(kernel, X, y, noise, **settings)
        self.grid = training_grid(X, grid_shape(settings.get("grid_size"), len(X), X.shape[1]))
        self.idx, self.w = self.grid.weights(X)
        self.nodes = self.grid.nodes()

    def log_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Length parameters (``kernel.length_mask``) bounded below by half the coarsest grid
        cell, :data:`MIN_CELLS` times the largest spacing: cubic interpolation between nodes
        cannot represent a kernel that decays within a fraction of a cell, and the SKI
        likelihood then rewards ever shorter lengthscales (at n = 10^5 in 2-D on a 35 x 35 grid
        it drove the lengthscale to 3e-5 and the test RMSE to 0.10, measured)."""
        low, high = super().log_bounds()
        lengths = torch.zeros_like(low, dtype=torch.bool)
        lengths[: self.kernel.n_params] = self.kernel.length_mask()
        floor = math.log(MIN_CELLS * float(self.grid.step.max()))
        return torch.where(lengths, low.clamp_min(floor), low), high

    def _first_row(self, kt: torch.Tensor) -> torch.Tensor:
        """:math:`k(u_0, u_j)` for all grid nodes: the grid kernel is (block-)Toeplitz."""
        return self.kernel(self.nodes[:1], self.nodes, kt)[0]

    def _blocks(self, Xs: torch.Tensor):
        """Prediction points in blocks: ``(rows, inside)``, ``inside`` marking grid points."""
        inside = self.grid.covers(Xs)
        for rows in torch.split(torch.arange(len(Xs)), block_rows(self.grid.m)):
            yield rows, inside[rows]

    def predict(self, Xs: torch.Tensor, return_std: bool):
        """Mean (and variance) from the grid posterior: interpolated inside the grid, through the
        exact cross-covariance with the nodes outside it. Backends that keep the grid posterior
        (``grid_mean``, ``weighted_alpha`` = :math:`W^\\top\\hat K^{-1} y`) supply the two variances."""
        kt, _ = self._split(self.theta)
        mean = torch.empty(len(Xs), dtype=torch.float64)
        var = torch.empty(len(Xs), dtype=torch.float64) if return_std else None
        for rows, inside in self._blocks(Xs):
            on, off = rows[inside], rows[~inside]
            if len(on):
                idx, w = self.grid.weights(Xs[on])
                mean[on] = (self.grid_mean[idx] * w).sum(1)
                if return_std:
                    var[on] = self._interpolated_variance(idx, w)
            if len(off):
                cross = self.kernel(Xs[off], self.nodes, kt)
                mean[off] = cross @ self.weighted_alpha
                if return_std:
                    var[off] = self.kernel.diag(Xs[off], kt) - self._explained_variance(cross)
        return mean, var

    def normal_equations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`W^\\top W` (sparse) and :math:`W^\\top y`. Every row of ``W`` has the same
        stencil relative to its first node, so the ``n`` outer products are summed per first node
        (``m`` small blocks) and only then spread over the matrix."""
        m, k = self.grid.m, self.idx.shape[1]
        base = self.idx[:, 0]
        stencil = self.idx[0] - self.idx[0, 0]
        local = torch.zeros(m, k, k, dtype=torch.float64)
        b = torch.zeros(m, dtype=torch.float64)
        for rows in torch.split(torch.arange(len(self.y)), 2**16):  # bounded memory at n = 10^6
            w = self.w[rows]
            local.index_add_(0, base[rows], w[:, :, None] * w[:, None, :])
            b.index_add_(0, self.idx[rows].reshape(-1), (w * self.y[rows, None]).reshape(-1))
        used = torch.nonzero(local.abs().sum((1, 2)) > 0)[:, 0]
        nodes = used[:, None] + stencil  # (used, k): the stencil of each used first node
        rows = nodes[:, :, None].expand(-1, k, k).reshape(-1)
        cols = nodes[:, None, :].expand(-1, k, k).reshape(-1)
        A = torch.sparse_coo_tensor(torch.stack([rows, cols]), local[used].reshape(-1), (m, m),
                                    check_invariants=False)
        A = A.coalesce()
        return A, b


def grid_shape(size, n: int, d: int) -> tuple[int, ...]:
    """Grid points per axis: ``size`` (an int, or one per column), or by default
    :math:`\\min(1000, \\max(100, 4\\sqrt n))` in 1-D and
    :math:`\\min(128, \\max(20, 3 n^{1/4}))` per axis in 2-D and more (30 x 30 at n = 10^4,
    94 x 94 at 10^6)."""
    if size is None:
        size = min(1000, max(100, int(4 * math.sqrt(n)))) if d == 1 else min(128, max(20, int(3 * n**0.25)))
    shape = (size,) * d if isinstance(size, (int, np.integer)) else tuple(size)
    if len(shape) != d:
        raise ValueError(f"grid_size must be an int or have one entry per input column ({d}), got {size}")
    return tuple(int(s) for s in shape)
