"""Draws of N(0, 1) truncated to [alpha, beta] (``_truncated_standard_draws``): both samplers,
the rejection sampler on its own, and mixes of intervals through the public ``sample``/``rsample``;
every set of draws is mapped through scipy's cdf and tested for uniformity."""

import math

import numpy as np
import pytest
import scipy.stats as ss
import torch

from mathkit.distributions import TruncatedNormal
from mathkit.distributions._truncated_standard_draws import right_tail_by_rejection

INF = math.inf
F64 = torch.float64


@pytest.mark.parametrize("a, b", [(0.5, INF), (1.0, 1.3), (2.0, 2.01), (3.0, INF), (4.0, 30.0)])
def test_rejection_sampler_is_exact_for_near_tails_too(a, b):
    """The rejection sampler itself, where `sample` does not use it (acceptance down to ~0.8)."""
    torch.manual_seed(5)
    n = 200_000
    draws = right_tail_by_rejection(torch.full((n,), a, dtype=F64), torch.full((n,), b, dtype=F64)).numpy()
    assert draws.min() >= a and draws.max() <= b
    assert ss.kstest(ss.truncnorm.cdf(draws, a, b), "uniform").pvalue > 1e-3


MIXES = {
    "central": ([-1.0, -3.0, -0.1], [1.0, 0.5, 0.1]),
    "one-sided": ([0.0, -INF, 2.0], [INF, -1.0, INF]),
    "far tails": ([9.0, -INF, 30.0, -40.0], [INF, -12.0, 30.5, -38.0]),
    "everything": ([-1.0, 0.0, -INF, 9.0, 30.0, -40.0, -2.0], [1.0, INF, -1.0, INF, 30.5, -38.0, 2.0]),
}


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("grad", [False, True])
def test_mixed_batches_are_drawn_from_the_law(mix, grad):
    """Each element of a batch mixing central, one-sided and far-tail intervals (per-element loc and
    scale): the draws, mapped through scipy's cdf of their own law, are uniform (KS, 50,000 draws per
    element), with and without gradients, and inside the bounds."""
    a, b = (np.array(v) for v in MIXES[mix])
    loc = np.linspace(-3.0, 4.0, len(a))
    scale = np.linspace(0.5, 2.0, len(a))
    params = [torch.tensor(v, dtype=F64, requires_grad=grad) for v in (loc, scale, loc + scale * a, loc + scale * b)]
    torch.manual_seed(6)
    draws = TruncatedNormal(*params).rsample((50_000,)).detach().numpy()
    low, high = loc + scale * a, loc + scale * b
    assert ((draws >= low) & (draws <= high)).all()
    for i in range(len(a)):
        u = ss.truncnorm.cdf(draws[:, i], a[i], b[i], loc=loc[i], scale=scale[i])
        assert ss.kstest(u, "uniform").pvalue > 1e-4, (mix, i)
