"""Dropout masks drawn from a per-member pool: one multiply per layer per step.

Why a pool: drawing fresh uniform numbers for every unit of every member on
every step cost ~40% of a fused training step (measured at 64 members). Instead each
member draws, once and from its own seed, a long vector of ready-made
multipliers (0 or 1/(1-p)); each step and layer reads a window of it at an
offset shared by all members. A member's masks therefore depend only on its
own seed and the step number, never on which other members it was fused
with, so fused and alone training stay identical.

The pool is kept as one byte per unit (kept or not) and a multiplier per
member: the C training step (models/native.c) reads those, a quarter of
the memory of float multipliers. At 24 members the float pool is 12.6 MB, more
than a core's share of cache, and reading its windows made a dropout step
~40% slower than one without. The float pool, which the torch operations
multiply by, is made from them on first use.
"""
from __future__ import annotations

import numpy as np
import torch

POOL_LENGTH = 1 << 17        # multipliers per member; windows start anywhere in it
_OFFSET_SEED = 0x5EED        # the window offsets are the same for every run and member
_OFFSETS_PER_BLOCK = 4096


class DropoutPool:
    def __init__(self, rates: list[float], generators: list[torch.Generator], max_window: int,
                 device: torch.device) -> None:
        self.enabled = any(rate > 0 for rate in rates)
        self.length = max(POOL_LENGTH, 4 * max_window)
        self.max_start = self.length - max_window
        self._offsets = np.random.default_rng(_OFFSET_SEED)
        self._block = self._offsets.integers(0, self.max_start + 1, _OFFSETS_PER_BLOCK).tolist()
        self._cursor = 0
        self._strides: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._pool = None
        if self.enabled:
            self.rates = rates
            self.keep = torch.stack([_member_keep(rate, g, self.length) for rate, g in zip(rates, generators)])
            self.keep = self.keep.to(device)  # [members, length] bool: whether each unit is kept
            # each member's multiplier for a kept unit, computed exactly as the float pool's entries are
            self.scale = torch.stack([torch.ones(1) / (1.0 - rate) for rate in rates]).view(-1).to(device)

    @property
    def pool(self) -> torch.Tensor:
        """The multipliers [members, length] (0 or 1/(1-p)) as floats, made on first use."""
        if self._pool is None:
            self._pool = torch.stack([keep.float() / (1.0 - rate) for keep, rate in zip(self.keep, self.rates)])
        return self._pool

    def next_offset(self) -> int:
        """Where the next mask's window starts in every member's row (each call moves on by one mask)."""
        if self._cursor == len(self._block):
            self._block = self._offsets.integers(0, self.max_start + 1, _OFFSETS_PER_BLOCK).tolist()
            self._cursor = 0
        start = self._block[self._cursor]
        self._cursor += 1
        return start

    def mask(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The next mask of `shape` ([members, ...]) as a view into the pool."""
        start = self.next_offset()
        strides = self._strides.get(shape)
        if strides is None:  # each member's window is contiguous; members are a pool row apart
            inner = [1]
            for size in reversed(shape[2:]):
                inner.insert(0, inner[0] * size)
            strides = self._strides[shape] = (self.pool.stride(0), *inner)
        return self.pool.as_strided(shape, strides, self.pool.storage_offset() + start)


def _member_keep(rate: float, g: torch.Generator, length: int) -> torch.Tensor:
    if rate == 0:
        return torch.ones(length, dtype=torch.bool)
    return torch.rand(length, generator=g) >= rate
