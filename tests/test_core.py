"""Package-level behaviour: lazy submodules, device selection, the figure style."""

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

import mathkit
from mathkit import plotting


def test_version_and_lazy_submodules():
    assert isinstance(mathkit.__version__, str)
    assert mathkit.plotting is plotting
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        mathkit.nonexistent  # noqa: B018


def test_device_is_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mathkit.device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mathkit.device() == torch.device("cuda")


def _luminance(hex_colour: str) -> float:
    r, g, b = matplotlib.colors.to_rgb(hex_colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_style_gives_opaque_white_figures_and_the_palette():
    with matplotlib.rc_context():
        plotting.use_style()
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        assert matplotlib.colors.to_rgba(fig.get_facecolor()) == (1.0, 1.0, 1.0, 1.0)
        assert not matplotlib.rcParams["savefig.transparent"]
        assert ax.lines[0].get_color().upper() == plotting.PALETTE["blue"].upper()
        plt.close(fig)


def test_palette_is_okabe_ito_and_distinct():
    colours = list(plotting.PALETTE.values())
    assert len(set(colours)) == len(colours) == 8
    assert "#E69F00" in colours and "#0072B2" in colours
    # every colour but yellow stays readable on the white background
    assert all(_luminance(c) < 0.75 for c in colours if c != plotting.PALETTE["yellow"])
