"""Memory accounting on any device: bytes of tensor storages allocated (and still alive) inside a block.

CPU has no allocator high-water mark torch exposes, and ``tracemalloc`` does not see torch's
allocations, so :class:`AllocTracker` watches tensor creation itself (a ``TorchDispatchMode``). Run an
optimizer's calls under it and what is still alive at the end is the state the optimizer keeps (its
moments, the SAM weight copy, any buffer), found without reading any of its attributes; the peak minus
what survives is its transient working memory. Never active while timing: it adds overhead.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import torch

MB = 2**20


def tensor_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages among ``tensors`` (views of one storage count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t.device.type == "meta":
            continue
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


class AllocTracker:
    """Current and peak bytes of the tensor storages created while :meth:`active`, until they die.

    An op output whose storage none of the op's inputs has is a fresh allocation. A storage stays alive
    while any tensor object on it lives: views of a tracked storage made while active (``detach``,
    slicing) are counted as references too, so ``clone().detach()`` is not released with the
    temporary. In-place ops and views of untracked storages allocate nothing.
    """

    def __init__(self) -> None:
        self.live: dict[int, list[int]] = {}  #: storage pointer -> [nbytes, live tensor objects]
        self.current = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            self.current -= entry[0]
            del self.live[ptr]

    def _track(self, t: torch.Tensor, inputs: set[int]) -> None:
        s = t.untyped_storage()
        ptr = s.data_ptr()
        if ptr == 0:
            return
        entry = self.live.get(ptr)
        if entry is None:
            if ptr in inputs:
                return  # in place, or a view of memory allocated outside the tracked block
            entry = self.live[ptr] = [s.nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, ptr)

    @contextlib.contextmanager
    def active(self) -> Iterator[AllocTracker]:
        """Track allocations made inside the ``with`` block (nestable blocks add up)."""
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                ins = {
                    x.untyped_storage().data_ptr()
                    for x in tree_leaves((args, kwargs))
                    if isinstance(x, torch.Tensor)
                }
                out = func(*args, **kwargs)
                for x in tree_leaves(out):
                    if isinstance(x, torch.Tensor):
                        tracker._track(x, ins)
                return out

        with _Mode():
            yield self
