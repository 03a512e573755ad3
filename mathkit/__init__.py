"""mathkit: the library behind the book *You do need math for ML*.

Numerically careful probability (log-space normal tails, truncated and censored
laws for PyTorch), censored likelihood losses, Gaussian-process regression that
scales, and compartmental epidemic models. Submodules load on first use::

    import mathkit
    mathkit.numerics.log_ndtr(...)
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

__version__ = "0.1.0"

__all__ = ["__version__", "device"]

_SUBMODULES = (
    "numerics", "distributions", "losses", "gp", "kernels", "linalg", "regression", "epi", "data", "nn", "plotting",
    "inspection", "calibration",
)


def device() -> torch.device:
    """The device chapters compute on: the first CUDA GPU when one is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def __getattr__(name: str) -> ModuleType:
    # Lazy submodules (as in scipy): `import mathkit` stays cheap, and
    # `mathkit.gp` works without a separate import statement.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
