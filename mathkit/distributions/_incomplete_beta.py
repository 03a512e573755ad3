r"""The regularised incomplete beta function in log space, by its continued fraction."""

from __future__ import annotations

import torch

from mathkit._log_gamma import log_beta_kernel

# a whole step of the continued fraction within this of 1 (a few ulp) counts as converged,
# tested every _CF_CHECK_EVERY terms
_CF_TOLERANCE = 1e-15
_CF_CHECK_EVERY = 4


def log_betainc_cf(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, max_terms: int) -> torch.Tensor:
    r""":math:`\log I_x(a, b)` for :math:`0 < x < 1` by the continued fraction (fast for :math:`x < (a+1)/(a+b+2)`).

    .. math::
        I_x(a,b) = \frac{x^a (1-x)^b}{a\,B(a,b)}\cdot
        \cfrac{1}{1+\cfrac{d_1}{1+\cfrac{d_2}{1+\cdots}}},\quad
        d_{2m+1} = -\frac{(a+m)(a+b+m)x}{(a+2m)(a+2m+1)},\;
        d_{2m} = \frac{m(b-m)x}{(a+2m-1)(a+2m)},

    evaluated by the modified Lentz method (Press et al., *Numerical Recipes*, §6.4) on the
    flattened input. Every few terms, the entries whose last step moved the fraction by less
    than a few ulp are final and leave the computation, so a batch costs what its entries need
    (on that side of the switch, :math:`O(\sqrt{\max(a, b)})` terms), not what its slowest one
    needs times its size. (A stopping test below one ulp is never met by a step that rounds to
    the float next to 1: a quarter of batches used to run all ``max_terms`` terms.)
    Differentiable in all three arguments (autograd through the terms).
    """
    tiny = 1e-300
    shape = x.shape
    x, a, b = (t.reshape(-1) for t in torch.broadcast_tensors(x, a, b))
    log_front = log_beta_kernel(x, a, b) - torch.log(a)
    if not x.numel():
        return log_front.reshape(shape)
    index = torch.arange(x.numel(), device=x.device)
    done_index, done_value = [], []
    c = torch.ones_like(x)
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / torch.where(d.abs() < tiny, tiny, d)
    fraction = d
    for m in range(1, max_terms + 1):
        step = 1.0
        for coefficient in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + coefficient * d
            d = 1.0 / torch.where(d.abs() < tiny, tiny, d)
            c = 1.0 + coefficient / c
            c = torch.where(c.abs() < tiny, tiny, c)
            step = step * (c * d)
        fraction = fraction * step
        if m % _CF_CHECK_EVERY and m < max_terms:
            continue
        converged = (step.detach() - 1.0).abs() < _CF_TOLERANCE
        if m == max_terms:
            converged = torch.ones_like(converged)
        if bool(converged.any()):
            done_index.append(index[converged])
            done_value.append(fraction[converged])
            keep = ~converged
            index, x, a, b, c, d, fraction = (t[keep] for t in (index, x, a, b, c, d, fraction))
            if not len(index):
                break
    # back to the input's order: entry i finished at position order[i] of the concatenation
    finished = torch.cat(done_index)
    order = torch.empty_like(finished)
    order[finished] = torch.arange(len(finished), device=finished.device)
    return (log_front + torch.log(torch.cat(done_value)[order])).reshape(shape)
