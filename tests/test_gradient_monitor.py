"""Tests of mathkit.nn.GradientMonitor against norms computed directly from ``.grad``."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from mathkit.nn import GradientMonitor, NonFiniteLossError, check_finite_loss


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1)).to(dtype)


def _direct_layer_norms(model):
    """Per-layer norms from .grad, by numpy (an independent path from the hook's)."""
    out = {}
    for name, p in model.named_parameters():
        layer = name.rpartition(".")[0]
        out[layer] = out.get(layer, 0.0) + float(np.sum(p.grad.numpy().astype(np.float64) ** 2))
    return {k: math.sqrt(v) for k, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_norms_match_grad(seed):
    model = _mlp(seed)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = []
    with GradientMonitor(model) as monitor:
        for _ in range(3):
            model.zero_grad()
            model(x).pow(2).mean().backward()
            expected.append(_direct_layer_norms(model))
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
    assert monitor.names == ["0", "2", "4"]
    want = np.array([[row[name] for name in monitor.names] for row in expected])
    np.testing.assert_allclose(monitor.norms(), want, rtol=1e-12)
    total = np.sqrt((want ** 2).sum(1))
    np.testing.assert_allclose(monitor.total_norms(), total, rtol=1e-12)
    # The total agrees with torch's own global norm (what clip_grad_norm_ measures).
    np.testing.assert_allclose(monitor.total_norms()[-1],
                               float(nn.utils.get_total_norm([p.grad for p in model.parameters()])), rtol=1e-12)


def test_parameter_grouping_and_nested_names():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))).double()
    monitor = GradientMonitor(model, by="parameter")
    model(torch.ones(4, 2, dtype=torch.float64)).sum().backward()
    assert monitor.names == [name for name, _ in model.named_parameters()]
    direct = [float(np.linalg.norm(p.grad.numpy())) for p in model.parameters()]
    np.testing.assert_allclose(monitor.norms()[0], direct, rtol=1e-12)
    layers = GradientMonitor(model)
    assert layers.names == ["0", "1.0", "1.1"]
    monitor.remove(), layers.remove()


def test_unused_layer_is_nan_and_removed_monitor_stops():
    model = _mlp()
    monitor = GradientMonitor(model)
    model[:3](torch.ones(2, 3, dtype=torch.float64)).sum().backward()  # last layer unused
    assert np.isfinite(monitor.norms()[0, :2]).all() and np.isnan(monitor.norms()[0, 2])
    monitor.remove()
    model(torch.ones(2, 3, dtype=torch.float64)).sum().backward()
    assert len(monitor) == 1


def test_float32_norm_beyond_float32_squares():
    # Each gradient entry is 1e20: its square overflows float32, its norm does not.
    layer = nn.Linear(4, 1, bias=False)
    with GradientMonitor(layer) as monitor:
        (layer(torch.full((1, 4), 1e20)) * 1.0).sum().backward()
    assert layer.weight.grad.dtype == torch.float32
    np.testing.assert_allclose(monitor.norms()[0, 0], 2e20, rtol=1e-6)


def test_infinite_gradient_recorded_as_inf():
    layer = nn.Linear(2, 1).double()
    with GradientMonitor(layer) as monitor:
        (layer(torch.tensor([[math.inf, 1.0]], dtype=torch.float64))).sum().backward()
    assert monitor.norms()[0, 0] == math.inf


def test_bad_arguments():
    with pytest.raises(ValueError, match="by must be"):
        GradientMonitor(_mlp(), by="module")
    with pytest.raises(ValueError, match="at least one parameter"):
        GradientMonitor(nn.ReLU())


def test_check_finite_loss():
    check_finite_loss(torch.tensor(3.0), step=0)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(NonFiniteLossError, match="loss must be finite") as info:
            check_finite_loss(torch.tensor(bad), step=7, history=[1.0])
        assert info.value.step == 7 and info.value.history == [1.0]
        assert math.isnan(info.value.value) if math.isnan(bad) else info.value.value == bad


def test_nan_gradient_reaches_the_total():
    layer = nn.Linear(2, 1).double()
    with GradientMonitor(layer, by="parameter") as monitor:
        layer(torch.tensor([[math.nan, 1.0]], dtype=torch.float64)).sum().backward()
    assert np.isnan(monitor.norms()[0, 0]) and monitor.norms()[0, 1] == 1.0
    assert np.isnan(monitor.total_norms()[0])
