"""Plumbing shared by the elementwise float64 kernels of mathkit.

- ``CHUNK`` and ``chunked``: long inputs are processed in cache-sized slices;
- ``chain``: the chain rule in a custom backward, with exact zeros where the upstream
  gradient is zero (never ``0 * inf = NaN``);
- ``partition``: the indices where a mask is false and where it is true;
- ``all_true``: whether a bool tensor holds only true, from one byte-wise reduction;
- ``take``, ``within`` and ``ALL``: entries of a flat tensor by indices or by a slice (``ALL``,
  every entry, takes a view where indices would gather), and such an index moved into a slice.

Public within mathkit (no leading underscores), private to it (the module's name).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

def chain(grad: torch.Tensor, derivative: torch.Tensor) -> torch.Tensor:
    """``grad * derivative`` for a custom backward, with exact zeros where ``grad`` is zero.

    An entry that a ``torch.where`` downstream masked out gets a zero upstream
    gradient; it must contribute zero, not ``0 * inf = NaN``, when its local
    derivative is infinite (an infinite bound, an empty interval).
    """
    return torch.where(grad == 0, 0.0, grad * derivative)


# Elementwise work on long tensors is done in slices of this many elements: the dozen
# temporaries of a slice stay in the CPU caches and are recycled by the allocator, which
# halves the time of memory-bound passes over 10^6 elements; slices of 2^17 still let
# torch split each operation between threads (measured on 2 cores: 2^15 is slower with 2
# threads, 2^16 to 2^18 about equal).
CHUNK = 1 << 17


def chunked(fn: Callable[[slice], torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
    """``fn(slice)`` over consecutive slices of ``range(n)``, concatenated into a tensor like ``like``
    (dtype and device). ``fn`` must compute each element from its own slice only."""
    if n <= CHUNK:
        return fn(slice(0, n))
    out = torch.empty(n, dtype=like.dtype, device=like.device)
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))
        out[part] = fn(part)
    return out



def partition(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices (ascending) where the flat ``mask`` is false, and where it is true.

    Two ``nonzero`` calls when one side is small; when both are large, one stable sort of the mask:
    ``nonzero`` on an irregular mask mispredicts a branch per element (~10 ns each on a CPU core, for
    each of the two calls), the sort costs ~6 ns once. The indices are the same either way.
    """
    n = len(mask)
    n_true = int(torch.count_nonzero(mask))
    if min(n_true, n - n_true) < n // 8:
        return torch.nonzero(~mask, as_tuple=True)[0], torch.nonzero(mask, as_tuple=True)[0]
    order = torch.argsort(mask.view(torch.uint8), stable=True)
    return order[: n - n_true], order[n - n_true:]


def all_true(mask: torch.Tensor) -> bool:
    """``bool(mask.all())`` for a bool tensor, 20x faster on a CPU: the minimum of its bytes (vectorised)."""
    return mask.numel() == 0 or bool(mask.view(torch.uint8).min())


#: Every entry, as an index for ``take``: a view, where ``torch.arange`` indices would gather.
ALL = slice(None)


def take(t: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
    """The entries of the flat ``t`` at ``index``: flat indices (``index_select``) or a slice (a view)."""
    return t[index] if isinstance(index, slice) else t.index_select(0, index)


def within(index: torch.Tensor | slice, rows: slice) -> torch.Tensor | slice:
    """``index`` (flat indices, or ``ALL``) into the part ``rows`` of a flat tensor, as an index
    into the whole tensor."""
    return rows if isinstance(index, slice) else index + rows.start
