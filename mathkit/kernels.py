"""Covariance functions for Gaussian processes (re-exported by :mod:`mathkit.gp`).

Every kernel stores its hyperparameters as logarithms (so an optimiser works on an
unconstrained vector and the values stay positive) and evaluates a covariance block
``k(X1, X2)`` of shape ``(n1, n2)`` on demand: nothing holds an ``n x n`` matrix, so a
caller can multiply by the kernel matrix one row block at a time.

Kernels combine with ``+`` and ``*``; the scale of each component is its ``variance``
(no separate constant kernel), the parametrisation of Rasmussen & Williams (2006), ch. 4.
"""

from __future__ import annotations

import math

import torch

from mathkit.linalg import sq_distances

__all__ = ["Kernel", "RBF", "Matern", "Periodic", "Sum", "Product"]

_DTYPE = torch.float64


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value


def _distance(X1: torch.Tensor, X2: torch.Tensor) -> torch.Tensor:
    """Euclidean distances, shape ``(n1, n2)``: square roots of :func:`mathkit.linalg.sq_distances`
    (stable for nearby points and large offsets). When the inputs carry gradients, the square
    root's infinite derivative at zero distance is replaced by zero (the limit along any path)."""
    sq = sq_distances(X1, X2)
    if not sq.requires_grad:
        return sq.sqrt_()
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, 1.0)), 0.0)


class Kernel:
    """Base class: a positive-definite covariance function with log-scale hyperparameters.

    Subclasses set ``_names`` and implement ``_evaluate(X1, X2, params)`` where
    ``params`` maps each name to a positive (possibly autograd-tracked) tensor.
    """

    _names: tuple[str, ...] = ()
    #: True when k(x, x') depends on x - x' only (structured grids need this).
    stationary: bool = True
    #: True when k depends on x only through distances divided by its length parameters
    #: (``length_mask``), so that dividing x and those parameters by one factor leaves k as it
    #: is: estimators may then work in standardised units. False for kernels written elsewhere
    #: unless they say so.
    rescalable: bool = False

    def __init__(self, **values: float) -> None:
        self._log = {name: torch.tensor(math.log(_positive(name, values[name])), dtype=_DTYPE)
                     for name in self._names}

    # --- hyperparameters as a flat vector of logs (what optimisers see) ---
    def hyperparameter_names(self) -> list[str]:
        return list(self._names)

    def get_log_params(self) -> torch.Tensor:
        """The logarithms of the hyperparameters, shape ``(p,)``."""
        return torch.stack([self._log[n] for n in self._names]) if self._names else torch.zeros(0, dtype=_DTYPE)

    def set_log_params(self, theta: torch.Tensor) -> None:
        theta = torch.as_tensor(theta, dtype=_DTYPE).detach()
        for i, name in enumerate(self._names):
            self._log[name] = theta[i].clone()

    @property
    def n_params(self) -> int:
        return len(self._names)

    def scale_mask(self) -> torch.Tensor:
        """Boolean mask of log-parameters whose joint shift by ``s`` multiplies k by ``e^s``."""
        return torch.tensor([n == "variance" for n in self._names], dtype=torch.bool)

    #: True when k(x, x') is a product of one-dimensional kernels, one per input column, so that
    #: on a regular grid its matrix is the Kronecker product of ``grid_factors``
    separable: bool = False

    def grid_factors(self, axes: list[torch.Tensor], log_params: torch.Tensor | None = None) -> list[torch.Tensor]:
        r"""Per-axis matrices :math:`K_1, \dots, K_d` (shapes ``(g_k, g_k)``) with
        :math:`K_{UU} = K_1 \otimes \cdots \otimes K_d` on the grid whose axis ``k`` has the
        coordinates ``axes[k]`` (nodes in row-major order); differentiable in ``log_params``.
        Only for ``separable`` kernels."""
        if not self.separable:
            raise NotImplementedError(f"{type(self).__name__} is not separable over input columns")
        theta = self.get_log_params() if log_params is None else log_params
        return self._grid_factors(axes, theta)

    def _grid_factors(self, axes: list[torch.Tensor], theta: torch.Tensor) -> list[torch.Tensor]:
        # variance on the first axis' factor, correlations on the others
        params = {name: torch.exp(theta[i]) for i, name in enumerate(self._names)}
        factors = [self._correlation((a[:, None] - a[None, :]).abs(), params) for a in axes]
        factors[0] = params.get("variance", 1.0) * factors[0]
        return factors

    #: hyperparameters in the units of x
    _length_names: tuple[str, ...] = ("lengthscale",)

    def length_mask(self) -> torch.Tensor:
        """Boolean mask of log-parameters in the units of x (``lengthscale``; for
        :class:`Periodic` the ``period``, its lengthscale being a number)."""
        return torch.tensor([n in self._length_names for n in self._names], dtype=torch.bool)

    def __getattr__(self, name: str) -> float:
        log = self.__dict__.get("_log", {})
        if name in log:
            return float(torch.exp(log[name]))
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    # --- evaluation ---
    def __call__(self, X1: torch.Tensor, X2: torch.Tensor | None = None,
                 log_params: torch.Tensor | None = None) -> torch.Tensor:
        """Covariance block ``K[i, j] = k(X1[i], X2[j])``, shape ``(n1, n2)``.

        ``log_params`` (shape ``(p,)``) overrides the stored hyperparameters; pass a
        tensor with ``requires_grad=True`` to differentiate the block.
        """
        X2 = X1 if X2 is None else X2
        theta = self.get_log_params() if log_params is None else log_params
        return self._evaluate(X1, X2, theta)

    def _evaluate(self, X1: torch.Tensor, X2: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        params = {name: torch.exp(theta[i]) for i, name in enumerate(self._names)}
        return params.get("variance", 1.0) * self._correlation(_distance(X1, X2), params)

    def _correlation(self, r: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def diag(self, X: torch.Tensor, log_params: torch.Tensor | None = None) -> torch.Tensor:
        """``k(x_i, x_i)`` for each row of X, shape ``(n,)``, without the full matrix."""
        theta = self.get_log_params() if log_params is None else log_params
        return self._diag(X, theta)

    def _diag(self, X: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        variance = torch.exp(theta[self._names.index("variance")])
        return variance.expand(X.shape[0])

    # --- algebra ---
    def __add__(self, other: "Kernel") -> "Sum":
        return Sum(self, other)

    def __mul__(self, other: "Kernel") -> "Product":
        return Product(self, other)

    def __getstate__(self) -> dict:
        """The log hyperparameters as floats: copies and pickles of equal kernels are then
        equal byte for byte (a tensor's pickle is not, and scikit-learn's estimator checks
        compare parameters by hashing their pickles)."""
        state = dict(self.__dict__)
        if "_log" in state:
            state["_log"] = {k: float(v) for k, v in state["_log"].items()}
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if "_log" in state:
            state["_log"] = {k: torch.tensor(v, dtype=_DTYPE) for k, v in state["_log"].items()}
        self.__dict__.update(state)

    def clone(self) -> "Kernel":
        new = object.__new__(type(self))
        new.__dict__.update({k: (v.clone() if isinstance(v, torch.Tensor) else v)
                             for k, v in self.__dict__.items()})
        new._log = {k: v.clone() for k, v in self._log.items()}
        return new

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n):.4g}" for n in self._names)
        return f"{type(self).__name__}({args})"


class RBF(Kernel):
    r"""Squared exponential :math:`k(x,x') = \sigma^2 \exp(-\|x-x'\|^2 / 2\ell^2)`.

    Rasmussen & Williams (2006), eq. (4.9); ``variance`` is :math:`\sigma^2`.
    """

    _names = ("lengthscale", "variance")
    rescalable = True
    separable = True  # exp(-|x - x'|^2 / 2l^2) is the product of one such factor per column

    def __init__(self, lengthscale: float = 1.0, variance: float = 1.0) -> None:
        super().__init__(lengthscale=lengthscale, variance=variance)

    def _correlation(self, r, params):
        return torch.exp(-0.5 * (r / params["lengthscale"]) ** 2)


class Matern(Kernel):
    r"""Matern kernel for :math:`\nu \in \{1/2, 3/2, 5/2\}` (closed forms, R&W eq. 4.16-4.17).

    With :math:`s = \sqrt{2\nu}\,\|x-x'\|/\ell`:
    :math:`\nu=1/2: e^{-s}`, :math:`\nu=3/2: (1+s)e^{-s}`, :math:`\nu=5/2: (1+s+s^2/3)e^{-s}`,
    times ``variance``.
    """

    _names = ("lengthscale", "variance")
    rescalable = True

    def __init__(self, nu: float = 1.5, lengthscale: float = 1.0, variance: float = 1.0) -> None:
        if nu not in (0.5, 1.5, 2.5):
            raise ValueError(f"nu must be one of 0.5, 1.5, 2.5, got {nu}")
        self.nu = float(nu)
        super().__init__(lengthscale=lengthscale, variance=variance)

    def _correlation(self, r, params):
        # past s = 800 the correlation is below float64's smallest number: clamped there, it is 0
        # (at an infinite distance poly * exp(-s) would be inf * 0 = NaN)
        s = (math.sqrt(2.0 * self.nu) * r / params["lengthscale"]).clamp(max=800.0)
        if self.nu == 0.5:
            poly = 1.0
        elif self.nu == 1.5:
            poly = 1.0 + s
        else:
            poly = 1.0 + s + s**2 / 3.0
        return poly * torch.exp(-s)

    def __repr__(self) -> str:
        return f"Matern(nu={self.nu}, lengthscale={self.lengthscale:.4g}, variance={self.variance:.4g})"


class Periodic(Kernel):
    r"""Periodic kernel :math:`\sigma^2 \exp(-2\sin^2(\pi\|x-x'\|/p)/\ell^2)` (MacKay 1998;
    scikit-learn's ``ExpSineSquared``)."""

    _names = ("lengthscale", "period", "variance")
    _length_names = ("period",)  # the lengthscale divides sin(pi r / p): it has no units
    rescalable = True

    def __init__(self, lengthscale: float = 1.0, period: float = 1.0, variance: float = 1.0) -> None:
        super().__init__(lengthscale=lengthscale, period=period, variance=variance)

    def _correlation(self, r, params):
        return torch.exp(-2.0 * (torch.sin(math.pi * r / params["period"]) / params["lengthscale"]) ** 2)


class _Combination(Kernel):
    def __init__(self, k1: Kernel, k2: Kernel) -> None:
        for name, k in (("left operand", k1), ("right operand", k2)):
            if not isinstance(k, Kernel):
                raise TypeError(f"kernel {name} must be a Kernel, got {type(k).__name__}")
        self.k1, self.k2 = k1, k2
        self._log = {}
        self.stationary = k1.stationary and k2.stationary
        self.rescalable = k1.rescalable and k2.rescalable

    @property
    def n_params(self) -> int:
        return self.k1.n_params + self.k2.n_params

    def scale_mask(self) -> torch.Tensor:
        second = self.k2.scale_mask()
        # k1 + k2 scales with both; k1 * k2 with one factor's variance only
        return torch.cat([self.k1.scale_mask(), second if isinstance(self, Sum) else torch.zeros_like(second)])

    def length_mask(self) -> torch.Tensor:
        return torch.cat([self.k1.length_mask(), self.k2.length_mask()])

    def hyperparameter_names(self) -> list[str]:
        return [f"k1.{n}" for n in self.k1.hyperparameter_names()] + \
               [f"k2.{n}" for n in self.k2.hyperparameter_names()]

    def get_log_params(self) -> torch.Tensor:
        return torch.cat([self.k1.get_log_params(), self.k2.get_log_params()])

    def set_log_params(self, theta: torch.Tensor) -> None:
        p = self.k1.n_params
        self.k1.set_log_params(theta[:p])
        self.k2.set_log_params(theta[p:])

    def _split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.k1.n_params
        return theta[:p], theta[p:]

    def clone(self) -> "_Combination":
        return type(self)(self.k1.clone(), self.k2.clone())


class Sum(_Combination):
    """``k1 + k2``: the covariance of the sum of two independent processes."""

    def _evaluate(self, X1, X2, theta):
        t1, t2 = self._split(theta)
        return self.k1._evaluate(X1, X2, t1) + self.k2._evaluate(X1, X2, t2)

    def _diag(self, X, theta):
        t1, t2 = self._split(theta)
        return self.k1._diag(X, t1) + self.k2._diag(X, t2)

    def __repr__(self) -> str:
        return f"{self.k1!r} + {self.k2!r}"


class Product(_Combination):
    """``k1 * k2``: elementwise product of covariances (Schur product theorem keeps it PSD)."""

    def __init__(self, k1: Kernel, k2: Kernel) -> None:
        super().__init__(k1, k2)
        self.separable = k1.separable and k2.separable

    def _grid_factors(self, axes, theta):
        t1, t2 = self._split(theta)
        return [f1 * f2 for f1, f2 in zip(self.k1._grid_factors(axes, t1), self.k2._grid_factors(axes, t2))]

    def _evaluate(self, X1, X2, theta):
        t1, t2 = self._split(theta)
        return self.k1._evaluate(X1, X2, t1) * self.k2._evaluate(X1, X2, t2)

    def _diag(self, X, theta):
        t1, t2 = self._split(theta)
        return self.k1._diag(X, t1) * self.k2._diag(X, t2)

    def __repr__(self) -> str:
        return f"({self.k1!r}) * ({self.k2!r})"
