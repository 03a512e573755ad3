r"""Gaussian-process regression from an exact Cholesky solve to a million points.

:class:`GPRegressor` fits a GP with constant mean :math:`\bar y` (or zero) and Gaussian noise
by maximising the log marginal likelihood (Rasmussen & Williams 2006, eq. 2.30)

.. math:: \log p(y \mid X, \theta) = -\tfrac12 r^\top \hat K^{-1} r - \tfrac12 \log|\hat K|
          - \tfrac n2 \log 2\pi, \qquad \hat K = K_\theta(X, X) + \sigma^2 I,\quad
          r = y - \bar y,

computed on standardised data so that no choice of units can stall the fit, with one of
three ways to handle :math:`\hat K`:

- ``"cholesky"``: exact, :math:`O(n^3)` time and :math:`O(n^2)` memory.
- ``"cg"``: BBMM (Gardner et al. 2018): batched preconditioned conjugate gradients,
  stochastic Lanczos quadrature for the log-determinant, stochastic trace estimates for the
  gradient; only kernel-matrix products are needed, computed in row blocks.
- ``"ski"``: KISS-GP (Wilson & Nickisch 2015) for 1-D and 2-D inputs:
  :math:`K \approx W K_{UU} W^\top` with a regular grid ``U`` and sparse cubic interpolation
  weights ``W``. In 1-D, :math:`W^\top W` and :math:`W^\top y` are computed once and each
  likelihood evaluation costs :math:`O(m^3)` in the grid size ``m``, independent of ``n``;
  on 2-D grids the block-Toeplitz grid kernel is multiplied by FFT inside CG.

Kernels (:class:`RBF`, :class:`Matern`, :class:`Periodic`, ``+``, ``*``) live in
:mod:`mathkit.kernels` and are re-exported here.

Layout: ``mathkit.gp.regressor`` (the estimator, a scikit-learn ``BaseEstimator``),
``mathkit.gp.units`` (the standardisation every fit runs in), ``mathkit.gp.optimise``
(the fitting strategy, ``mathkit.gp.optimise.fit_hyperparameters``: starting points,
L-BFGS and the subset-then-Newton refinement, chosen by what a backend declares it can do),
and one module per way of handling :math:`\hat K`: ``mathkit.gp.exact``,
``mathkit.gp.cg``, ``mathkit.gp.ski`` (the direct and data-space SKI backends and the choice
between them) and ``mathkit.gp.ski_kronecker`` (SKI in grid space, for large 2-D grids), the
SKI ones on ``mathkit.gp.ski_base`` (grid, weights, normal equations), all built on ``mathkit.gp.backend``
(capabilities, named solve results, the shared stochastic trace gradient, the block-size rule).
The dense Cholesky steps are the public LAPACK wrappers of :mod:`mathkit.linalg`; an exact
evaluation runs with torch on one thread (:func:`mathkit.linalg.one_torch_thread`, the
caller's setting restored on return).
"""

from mathkit import kernels
from mathkit.gp.backend import Backend
from mathkit.gp.cg import CGBackend
from mathkit.gp.exact import ExactBackend
from mathkit.gp.regressor import AUTO_EXACT_MAX, AUTO_SKI_MIN, GPRegressor
from mathkit.gp.ski import SKIDenseBackend, SKIGridBackend
from mathkit.gp.ski_kronecker import SKIKroneckerBackend
from mathkit.kernels import RBF, Kernel, Matern, Periodic, Product, Sum

__all__ = ["GPRegressor", "Kernel", "RBF", "Matern", "Periodic", "Sum", "Product", "kernels",
           "Backend", "ExactBackend", "CGBackend", "SKIDenseBackend", "SKIGridBackend", "SKIKroneckerBackend",
           "AUTO_EXACT_MAX", "AUTO_SKI_MIN"]
