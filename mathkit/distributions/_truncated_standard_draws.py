r"""Draws of N(0, 1) truncated to :math:`[\alpha, \beta]`, in z-space.

``standard_draws`` picks the sampler by one thing only, whether gradients are needed:

- with gradients, the cdf is inverted (``standard_draw_value``: ``erfinv`` for draws in [-3, 3],
  ``careful_draw_value`` for the others) and ``StandardDraw`` adds the implicit
  reparameterisation gradient;
- without, in a batch with an interval whose near end is ``REJECTION_NEEDED`` (8) or more
  standard deviations out, the intervals from ``REJECTION_FROM`` (3) out are drawn by Robert's
  (1995) exponential rejection sampler (``right_tail_by_rejection``: exact, no special
  function), the others by the same inversion; other batches are inverted whole.

Both give draws from the same law, and never depend on anything computed before (the same
seed gives the same draws).
"""

from __future__ import annotations

import math

import torch

from mathkit._elementwise import chain, chunked, partition
from mathkit._standard_normal import (
    MASS_FLOOR,
    density_over_mass,
    double_cdf,
    double_tail,
    half_erf,
    log_normal_mass_value,
    log_normal_pdf,
    to_lower_side,
)
from mathkit.distributions._standardization import needs_grad
from mathkit.distributions._truncated_standard_quantile import quantile_in_log_space


def standard_draws(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    r"""Draws of N(0, 1) on :math:`[\alpha, \beta]`, one per element (flat float64); reparameterised
    (differentiable in :math:`\alpha, \beta`) when gradients are needed."""
    u = uniform_open(alpha.shape, alpha.device)
    if needs_grad(alpha, beta):
        return StandardDraw.apply(alpha, beta, u)
    if not len(alpha) or (alpha.max() < REJECTION_NEEDED and beta.min() > -REJECTION_NEEDED):
        return standard_draw_value(alpha, beta, u)  # (two reductions: cheaper than the masks below)
    by_inversion, by_rejection = partition((alpha >= REJECTION_FROM) | (beta <= -REJECTION_FROM))
    z = torch.empty_like(alpha)
    if len(by_inversion):
        near = (t.index_select(0, by_inversion) for t in (alpha, beta, u))
        z.index_copy_(0, by_inversion, standard_draw_value(*near))
    a, b = alpha.index_select(0, by_rejection), beta.index_select(0, by_rejection)
    # left tails are mirrored to the right of 0, drawn there, and mirrored back (b < 0)
    draws = right_tail_by_rejection(torch.maximum(a, -b), torch.maximum(b, -a), u.index_select(0, by_rejection))
    return z.index_copy_(0, by_rejection, draws.copysign_(b))


def uniform_open(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Uniform draws in (0, 1), float64: u = 0 (probability 2^-53) would put a draw at an infinite bound."""
    return torch.rand(shape, dtype=torch.float64, device=device).clamp_(min=2.0**-54)


#: Draws with :math:`|\mathrm{erf}(z/\sqrt2)|` up to this (:math:`|z| \le 3`) come from ``erfinv``: there a
#: rounding of :math:`\mathrm{erf}` moves :math:`z` by at most :math:`1.26\,e^{z^2/2}` times it, below
#: 5e-14. The others (tails, and intervals outside [-3, 3]) are drawn by ``careful_draw_value``.
_ERF_CENTRAL = math.erf(3.0 / math.sqrt(2.0))


def erfinv_draws(alpha: torch.Tensor, beta: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""The draws of ``standard_draw_value`` in :math:`[-3, 3]` (flat float64, no autograd), and the
    indices of the others (None if there are none), whose entries are left unfinished.

    In erf terms, :math:`\Phi(z) = (1-u)\Phi(\alpha) + u\Phi(\beta)` reads
    :math:`\mathrm{erf}(z/\sqrt2) = (1-u)\,\mathrm{erf}(\alpha/\sqrt2) + u\,\mathrm{erf}(\beta/\sqrt2)`:
    two ``half_erf``'s, one ``lerp`` and one ``erfinv``, all vectorised by torch (together about a
    third of one ``ndtri``). Outside :math:`[-3, 3]` (``_ERF_CENTRAL``) that loses digits.
    """
    y = torch.lerp(half_erf(alpha), half_erf(beta), u)
    rest = None
    if len(y):
        low, high = torch.aminmax(y)
        if not bool(low >= -_ERF_CENTRAL and high <= _ERF_CENTRAL):
            (rest,) = torch.nonzero(y.abs() > _ERF_CENTRAL, as_tuple=True)
            y.clamp_(min=-_ERF_CENTRAL, max=_ERF_CENTRAL)  # erfinv near +-1 is 5x slower (the entries are redone)
    return torch.erfinv(y).mul_(math.sqrt(2.0)), rest


def standard_draw_value(alpha: torch.Tensor, beta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""N(0,1) draws on :math:`[\alpha, \beta]` by inverting the cdf at ``u`` (flat float64, no autograd):
    the :math:`z` with :math:`\Phi(z) = (1-u)\Phi(\alpha) + u\Phi(\beta)`, by ``erfinv_draws`` in
    :math:`[-3, 3]`, by ``careful_draw_value`` (redone by index) elsewhere."""
    z, rest = erfinv_draws(alpha, beta, u)
    if rest is not None:
        z.index_copy_(0, rest, careful_draw_value(*(t.index_select(0, rest) for t in (alpha, beta, u))))
    return z


#: Above this probability (central intervals only), ``1 - p`` has lost digits to rounding: those
#: draws are redone from the small tail at the far bound.
_UPPER_PART = 0.999


def careful_draw_value(alpha: torch.Tensor, beta: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""``standard_draw_value`` relatively exact in the tails (flat float64, no autograd).

    On the side of 0 where the endpoint probabilities are lower tails (``to_lower_side``:
    :math:`[lo, hi]` is :math:`[\alpha, \beta]`, or its mirror :math:`[-\beta, -\alpha]` when
    :math:`\alpha + \beta > 0`), :math:`2\Phi(lo) = \mathrm{erfc}(-lo/\sqrt2)` is relatively exact,
    and so is :math:`2\Phi(hi)` when :math:`hi \le 0`; then, with :math:`w = u` (:math:`1 - u` for
    mirrored intervals, exact for ``u`` on torch's grid of multiples of :math:`2^{-53}`),

    .. math:: p = \Phi(lo) + w\,\big(\Phi(hi) - \Phi(lo)\big), \qquad z = \pm\,\mathrm{ndtri}(p),

    relatively exact too (the rounding of the difference is relative to :math:`\Phi(hi) \le p/w`),
    with the sign undoing the mirror. One ``erfc`` per bound, one ``ndtri`` and about ten other
    passes; two rare cases are redone by index: :math:`p` above ``_UPPER_PART`` (central intervals
    only; :math:`1 - p` then comes from the small tail at :math:`hi`), and intervals whose
    probabilities approach underflow (:math:`\Phi(hi)` below ``MASS_FLOOR``: solved in log space).
    """
    mirrored = torch.add(alpha, beta).gt_(0.0)  # 1.0 where the interval is mirrored, else 0.0
    w = torch.lerp(u, 1.0 - u, mirrored)
    lo, hi = to_lower_side(alpha, beta)
    cdf_lo, cdf_hi = double_cdf(lo), double_cdf(hi)
    p = torch.lerp(cdf_lo, cdf_hi, w).mul_(0.5)  # (lerp: w(hi - lo) added to lo below w = 1/2, from hi above)
    z = torch.special.ndtri(p)
    if len(p) and p.max() > _UPPER_PART:
        (top,) = torch.nonzero(p > _UPPER_PART, as_tuple=True)
        w_top = w.index_select(0, top)
        # Phi(-z) = (1 - w) Phi(-lo) + w Phi(-hi), the last from the small tail at hi > 0
        q = torch.mul(cdf_lo.index_select(0, top), -0.5).add_(1.0).mul_(1.0 - w_top)
        q.addcmul_(w_top, double_tail(hi.index_select(0, top)), value=0.5)
        z.index_copy_(0, top, torch.special.ndtri(q).neg_())
    z = torch.addcmul(z, z, mirrored, value=-2.0)  # -z where mirrored
    if len(p) and cdf_hi.min() < 2.0 * MASS_FLOOR:
        (deep,) = torch.nonzero(cdf_hi < 2.0 * MASS_FLOOR, as_tuple=True)
        a, b, v = alpha[deep], beta[deep], u[deep]
        z[deep] = quantile_in_log_space(a, b, log_normal_mass_value(a, b, b - a), v, 1.0 - v)
    return z


#: ``sample`` draws by rejection (Robert 1995) the intervals whose near end is at least
#: ``REJECTION_FROM`` standard deviations from the mean, in batches that hold one at least
#: ``REJECTION_NEEDED`` out (a batch here is a slice of at most ``CHUNK`` laws); other batches are
#: inverted whole. Inversion in the tails takes the careful path (an ``ndtri`` per draw), in log
#: space past ~36 sd (several ``log_ndtr`` per draw), where rejection costs a few elementwise passes (measured acceptance 0.88 from 1, 0.96 from 3, 0.993 from 8). Between 3
#: and 8 sd the two cost about the same per draw, so a batch without far intervals is not split
#: (a split costs more than it saves); one that is split anyway sends its intervals from 3 sd on
#: to rejection, which spares the inversion a second split (erfinv or the careful path): measured
#: on 10^6 laws, one thread, 9-14% less time for tail-heavy mixes. (The uniforms of
#: ``standard_draw_value`` are drawn for every element first, so that the stream does not depend
#: on where the split falls.)
REJECTION_FROM = 3.0
REJECTION_NEEDED = 8.0


def right_tail_by_rejection(lo: torch.Tensor, hi: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
    r"""Draws of N(0,1) truncated to :math:`[lo, hi]`, :math:`0 < lo < hi \le \infty` (flat float64),
    by Robert's (1995) exponential rejection sampler; ``u``: uniforms in [0, 1) for the first
    round's proposals (the caller's unused ones; drawn here if None).

    Proposals are :math:`lo + \mathrm{Exp}(\lambda)` truncated to the interval (by inversion,
    :math:`z = lo - \log(1 - u(1 - e^{-\lambda(hi - lo)}))/\lambda`), with the rate
    :math:`\lambda = (lo + \sqrt{lo^2 + 4})/2` that maximises the acceptance of one-sided tails.
    With :math:`g(z) = \lambda z - z^2/2`, the density ratio is largest at
    :math:`m = \min(\lambda, hi)`, so a proposal is accepted with probability
    :math:`e^{g(z) - g(m)}` (:math:`e^{-(z-\lambda)^2/2}` when the interval contains
    :math:`\lambda`). No special function is evaluated, so the far tails cost what the near
    ones do, and the draws are exact; rejected entries are redrawn by index. No gradient:
    ``rsample`` with gradients inverts the cdf instead.
    """
    rate = torch.mul(lo, lo).add_(4.0).sqrt_().add_(lo).mul_(0.5)
    inside = torch.sub(lo, hi).mul_(rate).expm1_().neg_()  # 1 - e^{-rate (hi - lo)}: 1 for hi = inf
    peak = torch.minimum(rate, hi)
    params = (lo, rate, inside, peak, rate - peak)  # the last: 0 unless the interval ends before the rate
    positions = torch.rand(len(lo), dtype=lo.dtype, device=lo.device) if u is None else u
    out, accept = _exponential_proposals(*params, positions, torch.rand(len(lo), dtype=lo.dtype, device=lo.device))
    (pending,) = torch.nonzero(~accept, as_tuple=True)
    while len(pending):
        fresh = torch.rand((2, len(pending)), dtype=lo.dtype, device=lo.device)
        z, accept = _exponential_proposals(*(t.index_select(0, pending) for t in params), *fresh)
        out.index_copy_(0, pending[accept], z[accept])
        pending = pending[~accept]
    return torch.minimum(out, hi, out=out)  # against the last rounding (z >= lo holds exactly)


def _exponential_proposals(lo, rate, inside, peak, excess, u_position, u_accept) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of ``right_tail_by_rejection``: proposals at the uniforms ``u_position`` and whether
    each is accepted at the uniforms ``u_accept``."""
    z = torch.mul(u_position, inside).neg_().log1p_().div_(rate).neg_().add_(lo)
    # accept if log u <= g(z) - g(peak) = d (excess - d/2), d = z - peak
    d = z - peak
    return z, torch.log(u_accept) <= torch.mul(d, -0.5).add_(excess).mul_(d)


class StandardDraw(torch.autograd.Function):
    r"""``standard_draw_value`` with the implicit reparameterisation gradient: differentiating
    :math:`\Phi(z) = (1-u)\Phi(\alpha) + u\Phi(\beta)` at fixed :math:`u`,
    :math:`\partial z/\partial\alpha = (1-u)\,\phi(\alpha)/\phi(z)`
    and :math:`\partial z/\partial\beta = u\,\phi(\beta)/\phi(z)`, formed from logs (finite far out,
    0 at an infinite bound)."""

    @staticmethod
    def forward(ctx, alpha, beta, u):
        def part(rows: slice) -> torch.Tensor:
            return standard_draw_value(alpha[rows], beta[rows], u[rows])

        z = chunked(part, u.numel(), u)
        ctx.save_for_backward(alpha, beta, u, z)
        return z

    @staticmethod
    def backward(ctx, grad):
        alpha, beta, u, z = ctx.saved_tensors
        log_pdf_z = log_normal_pdf(z)
        d_alpha = density_over_mass(alpha, log_pdf_z - torch.log1p(-u))
        d_beta = density_over_mass(beta, log_pdf_z - torch.log(u))
        return chain(grad, d_alpha), chain(grad, d_beta), None
