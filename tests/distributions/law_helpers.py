"""Small helpers shared by the tests of mathkit.distributions (imported as a sibling module, as
tests/test_hostile_sweep.py imports hostile_sweep)."""

import math

import torch

from mathkit.distributions import TruncatedNormal

INF = math.inf
F64 = torch.float64


def t64(values, requires_grad=False):
    return torch.tensor(values, dtype=F64, requires_grad=requires_grad)


def tn(loc, scale, low, high, **kwargs):
    return TruncatedNormal(t64(loc), t64(scale), t64(low), t64(high), **kwargs)
