r"""Compartmental epidemic models: the SIR model, solved differentiably and fitted.

The SIR model of Kermack and McKendrick :cite:p:`kermack1927contribution` splits a
closed population of size :math:`N` into susceptible, infectious and recovered
people,

.. math::

    \dot S = -\beta(t) \frac{S I}{N}, \qquad
    \dot I = \beta(t) \frac{S I}{N} - \gamma I, \qquad
    \dot R = \gamma I,

with transmission rate :math:`\beta` and recovery rate :math:`\gamma` (so
:math:`1/\gamma` is the mean infectious period and :math:`R_0 = \beta/\gamma`
the basic reproduction number).

:func:`simulate_sir` integrates the equations in torch with an adaptive
Dormand-Prince 5(4) method, so gradients with respect to the rates, the initial
state, or the parameters of a time-varying rate :math:`\beta(t)` (a neural
network, say) flow through the solver by autograd. :func:`fit_sir` fits
:math:`\beta`, :math:`\gamma` (and optionally the initial number infectious)
to counts by maximum likelihood, with profile-likelihood intervals (or Wald
intervals from the observed Fisher information).

Modules: ``mathkit.epi.solver`` (the ODE solve), ``mathkit.epi.objective``
(the likelihood, its gradient and information), ``mathkit.epi.optimise``
(the bounded Levenberg-Marquardt minimiser and its convergence test),
``mathkit.epi.intervals`` (Wald and profile-likelihood intervals), ``mathkit.epi.fit`` (``fit_sir``),
``mathkit.epi.staged`` (``simulate_seir``: latent periods and gamma-distributed infectious periods, a
data generator for worlds that are not SIR).
"""

from mathkit.epi.fit import SIRFit, fit_sir
from mathkit.epi.optimise import ConvergenceWarning
from mathkit.epi.solver import SIRTrajectory, simulate_sir

__all__ = ["SIRTrajectory", "SIRFit", "ConvergenceWarning", "simulate_sir", "fit_sir"]
