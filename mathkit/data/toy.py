r"""The book's smooth test function for regression: one data set shared by the GP tests, the
GP benchmarks and chapter 10.

.. math:: f(x) = \sin(2 x_1) + 0.3 \cos(7 x_d), \qquad x \sim \mathcal U[0, 10]^d, \qquad
          y = f(x) + \varepsilon,\ \varepsilon \sim \mathcal N(0, \sigma^2).

Two frequencies a factor 3.5 apart: a GP must find a lengthscale short enough for the fast
component (period :math:`2\pi/7 \approx 0.9`) without fitting the noise. In 2-D the two
components vary along different axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mathkit.data._checks import as_generator, check_count, check_positive

__all__ = ["SmoothRegression", "smooth_function", "simulate_smooth_regression"]

#: inputs are drawn uniformly from [0, DOMAIN]^d
DOMAIN = 10.0


def smooth_function(X: np.ndarray) -> np.ndarray:
    r""":math:`f(x) = \sin(2 x_1) + 0.3\cos(7 x_d)` row by row; ``X`` of shape ``(n,)`` (one
    input) or ``(n, d)``; returns shape ``(n,)``."""
    X = np.asarray(X, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n,) or (n, d), got {X.shape}")
    return np.sin(2 * X[:, 0]) + 0.3 * np.cos(7 * X[:, -1])


@dataclass(frozen=True)
class SmoothRegression:
    """A draw from :func:`simulate_smooth_regression`."""

    X: np.ndarray  #: inputs, shape (n, d)
    y: np.ndarray  #: noisy targets, shape (n,)
    f: np.ndarray  #: the noiseless function at X, shape (n,)
    noise_sd: float


def simulate_smooth_regression(n: int, *, dims: int = 1, noise_sd: float = 0.1,
                               rng: np.random.Generator | int | None = None) -> SmoothRegression:
    """``n`` points uniform on ``[0, 10]^dims`` with targets :func:`smooth_function` plus
    Gaussian noise of standard deviation ``noise_sd``. ``rng``: a seed or a Generator."""
    n = check_count("n", n)
    dims = check_count("dims", dims)
    noise_sd = check_positive("noise_sd", noise_sd)
    rng = as_generator(rng)
    X = rng.uniform(0.0, DOMAIN, (n, dims))
    f = smooth_function(X)
    return SmoothRegression(X=X, y=f + noise_sd * rng.standard_normal(n), f=f, noise_sd=noise_sd)
