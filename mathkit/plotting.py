"""The book's figure style, applied by one call.

Figures have an opaque white background (so they stay readable when the website
is shown in dark mode), use the Okabe-Ito colour-blind-safe palette, and share
one size and font scale.
"""

from __future__ import annotations

from cycler import cycler
import matplotlib as mpl

__all__ = ["PALETTE", "FIGSIZE", "use_style"]

#: Okabe & Ito (2008), "Color universal design": distinguishable under the common
#: forms of colour-vision deficiency.
PALETTE: dict[str, str] = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}

#: Default figure size in inches (width, height): fits the book's text column.
FIGSIZE: tuple[float, float] = (7.0, 4.0)

_STYLE = {
    "figure.figsize": FIGSIZE,
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.transparent": False,
    "savefig.bbox": "tight",
    "axes.prop_cycle": cycler(color=list(PALETTE.values())),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "lines.linewidth": 2.0,
    "text.color": "black",
    "axes.labelcolor": "black",
    "xtick.color": "black",
    "ytick.color": "black",
}


def use_style() -> None:
    """Apply the book's matplotlib style to every figure drawn afterwards."""
    mpl.rcParams.update(_STYLE)
