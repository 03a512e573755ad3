r"""The log distribution functions of N(0, 1) truncated to :math:`[\alpha, \beta]`, in z-space.

``log_tail(s, upper)`` is :math:`\log F(z)` (or :math:`\log(1 - F(z))`) for a
:class:`~mathkit.distributions._standardization.Standardized` batch: the value from
``log_tail_value`` (flat float64, no autograd; in the bulk three vectorised ``erf``'s per element,
elsewhere ``careful_log_tail``), the gradients from ``LogTail``'s backward, formed from logs.
"""

from __future__ import annotations

import math

import torch

from mathkit._elementwise import ALL, chain, chunked, within
from mathkit._standard_normal import (
    MASS_FLOOR,
    density_over_mass,
    double_mass,
    double_tail,
    half_erf,
    log_normal_mass_value,
    split_bulk,
)
from mathkit.distributions._standardization import Standardized, offsets_from_bounds


def log_tail(s: Standardized, upper: bool) -> torch.Tensor:
    r""":math:`\log(1 - F(z))` if ``upper`` else :math:`\log F(z)` at the standardised value clamped
    into :math:`[\alpha, \beta]` (float64, differentiable in the parameters and the value)."""
    z = torch.clamp(s.z, min=s.alpha, max=s.beta)

    def offsets(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, low, high, scale = (t.detach().index_select(0, index) for t in (s.value, s.low, s.high, s.scale))
        return offsets_from_bounds(x, low, high, scale, s.width_at(index))

    return LogTail.apply(s.alpha, s.beta, z, s.width_at, offsets, upper)


def _from_smaller(log_smaller: torch.Tensor, direct: torch.Tensor) -> torch.Tensor:
    r""":math:`\log F` (or :math:`\log(1-F)`) from the log of the smaller of :math:`F` and :math:`1-F`,
    computed directly: where ``direct`` (the wanted one is the smaller) it is that log, else
    :math:`\log(1 - e^{s})`, relatively exact near 0, as a plain difference of log-masses is not."""
    log_smaller = log_smaller.clamp(max=-math.log(2.0))
    return torch.where(direct, log_smaller, torch.log1p(-torch.exp(log_smaller)))  # log1mexp's branch for <= -log 2


def _may_cancel(mass2: torch.Tensor, tail_p: torch.Tensor, tail_q: torch.Tensor) -> torch.Tensor:
    """Whether a doubled mass from :func:`mathkit._standard_normal.double_mass` may have lost digits:
    below 4.5% of the larger tail subtracted (one-sided), or of 2 (central: there both tails
    exceed 0.96). A superset of the cases that _standard_normal._refine_log_mass redoes."""
    return mass2 < 0.045 * torch.maximum(tail_p, tail_q)


def log_tail_value(alpha, beta, z, width_at, offsets, upper: bool) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\log(1 - F(z))` if ``upper`` else :math:`\log F(z)`, for N(0,1) on :math:`[\alpha, \beta]`,
    and :math:`\log Z` (flat float64, no autograd; ``z`` inside the interval).

    In the bulk, where both masses :math:`M_{\alpha z}` and :math:`M_{z\beta}` are at least
    ``BULK`` (so :math:`M \ge 2\,` ``BULK``), the three masses are differences of ``half_erf`` at the
    three points, relatively exact to 2.3e-14, and :math:`F` or :math:`1 - F`, whichever is smaller,
    is their ratio :math:`q`: the result is :math:`\log q` or :math:`\log(1 - q)`. The others are
    redone by index (``careful_log_tail``).
    """
    e_a, e_z, e_b = half_erf(alpha), half_erf(z), half_erf(beta)
    below, mass2 = e_z - e_a, e_b - e_a
    above = e_b.sub_(e_z)
    smaller = torch.minimum(below, above)
    index, outside = split_bulk(smaller)
    if outside:
        out, log_mass = _bulk_log_tail(below, above, smaller, mass2, upper)
        if index is None:
            return out, log_mass
        a, b, x = (t.index_select(0, index) for t in (alpha, beta, z))
        careful, log_z = careful_log_tail(a, b, x, width_at(index), lambda at: offsets(index[at]), upper)
        return out.index_copy_(0, index, careful), log_mass.index_copy_(0, index, log_z)
    # mostly outside the bulk: the careful values everywhere (no large gathers, and no logs of the
    # zeros and NaNs that far tails give the bulk formulas, each ~10x a normal log), the bulk ones replaced
    out, log_mass = careful_log_tail(alpha, beta, z, width_at(ALL), offsets, upper)
    bulk_out, bulk_log_mass = _bulk_log_tail(*(t.index_select(0, index) for t in (below, above, smaller, mass2)), upper)
    return out.index_copy_(0, index, bulk_out), log_mass.index_copy_(0, index, bulk_log_mass)


def _bulk_log_tail(below, above, smaller, mass2, upper: bool) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``log_tail_value`` in the bulk from the doubled masses of :math:`[\alpha, z]`, :math:`[z, \beta]`
    (and the smaller of the two) and :math:`[\alpha, \beta]`: :math:`\log q` or :math:`\log(1-q)`, and :math:`\log Z`."""
    direct = (above <= below if upper else below <= above).to(mass2.dtype)
    q = torch.div(smaller, mass2)
    out = torch.lerp(torch.log1p(q.neg()), q.log_(), direct)  # (weights 0 and 1 pick either side exactly)
    return out, torch.log(mass2).sub_(math.log(2.0))


def careful_log_tail(alpha, beta, z, width, offsets, upper: bool) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\log(1 - F(z))` if ``upper`` else :math:`\log F(z)` where differences of erf values may
    have lost digits, and :math:`\log Z` (flat float64, no autograd; ``width``: :math:`\beta - \alpha`).

    The masses of :math:`[\alpha, z]`, :math:`[z, \beta]` and :math:`[\alpha, \beta]` are differences
    of the doubled small tails at the three points (:func:`mathkit._standard_normal.double_mass`), and
    :math:`F` or :math:`1 - F`, whichever is smaller, is their ratio. Short intervals (whose masses may
    cancel) and masses near underflow are redone by index in log space from ``offsets(index)`` (the
    distances to the bounds, computed precisely in original units) and ``log_mass``.
    """
    tail_a, tail_b, tail_z = double_tail(alpha), double_tail(beta), double_tail(z)
    log_mass = log_normal_mass_value(alpha, beta, width, (tail_a, tail_b))
    negative_a, positive_b = alpha < 0, beta > 0
    mass_az = double_mass(tail_a, tail_z, negative_a & (z > 0))
    mass_zb = double_mass(tail_z, tail_b, (z < 0) & positive_b)
    smaller = torch.minimum(mass_az, mass_zb)
    direct = mass_zb <= mass_az if upper else mass_az <= mass_zb
    out = _from_smaller(torch.log(smaller / double_mass(tail_a, tail_b, negative_a & positive_b)), direct)
    redo = _may_cancel(mass_az, tail_a, tail_z) | _may_cancel(mass_zb, tail_z, tail_b) | (smaller < 2.0 * MASS_FLOOR)
    (index,) = torch.nonzero(redo, as_tuple=True)
    if len(index):
        a, b, x, log_z = (t.index_select(0, index) for t in (alpha, beta, z, log_mass))
        above_low, below_high = offsets(index)
        below = log_normal_mass_value(a, x, above_low) - log_z
        above = log_normal_mass_value(x, b, below_high) - log_z
        out.index_copy_(0, index, _from_smaller(torch.minimum(below, above), above <= below if upper else below <= above))
    return out, log_mass


class LogTail(torch.autograd.Function):
    r"""``log_tail_value`` with its gradients in :math:`\alpha, \beta, z`, formed from logs: for
    :math:`\log F = \log M_{\alpha z} - \log M`, :math:`\partial_z = \phi(z)/M_{\alpha z}`,
    :math:`\partial_\alpha = \phi(\alpha)/M - \phi(\alpha)/M_{\alpha z}`, :math:`\partial_\beta = -\phi(\beta)/M`;
    :math:`\log(1-F)` mirrors it (:math:`\alpha \leftrightarrow \beta`, signs flipped)."""

    @staticmethod
    def forward(ctx, alpha, beta, z, width_at, offsets, upper):
        log_mass = torch.empty_like(z)

        def part(rows: slice) -> torch.Tensor:
            def in_part(at):  # a function of whole-batch indices, on indices into the slice
                return lambda index: at(within(index, rows))

            out, log_mass[rows] = log_tail_value(alpha[rows], beta[rows], z[rows], in_part(width_at), in_part(offsets), upper)
            return out

        out = chunked(part, z.numel(), z)
        ctx.save_for_backward(alpha, beta, z, log_mass, out)
        ctx.upper = upper
        return out

    @staticmethod
    def backward(ctx, grad):
        alpha, beta, z, log_mass, out = ctx.saved_tensors
        near, far = (beta, alpha) if ctx.upper else (alpha, beta)
        sign = -1.0 if ctx.upper else 1.0
        log_part = out + log_mass
        d_z = chain(grad, sign * density_over_mass(z, log_part))
        d_near = chain(grad, sign * (density_over_mass(near, log_mass) - density_over_mass(near, log_part)))
        d_far = chain(grad, -sign * density_over_mass(far, log_mass))
        d_alpha, d_beta = (d_far, d_near) if ctx.upper else (d_near, d_far)
        return d_alpha, d_beta, d_z, None, None, None


