"""All trainable tensors of a fused model live in one flat [members, n] buffer.

Why: with every parameter of every member in one row-per-member matrix, the
optimizer update is a handful of whole-buffer operations per step, whatever
the number of layers, and per-member hyperparameters (learning rate, weight
decay, ...) are just [members, 1] columns that broadcast. Each layer's
weight is a strided view into that buffer, and its `.grad` is a view into a
matching flat gradient buffer, so autograd accumulates straight into it.
"""
from __future__ import annotations

import math
import warnings

import torch

# Autograd warns when a pre-set .grad has the strides of a view rather than a
# fresh tensor. That is exactly our layout, and it is correct; only speed
# could suffer, and we measured none.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class FlatParameters:
    """Declare per-member parameter shapes, then `allocate(members)` once."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}

    def declare(self, name: str, shape: tuple[int, ...]) -> None:
        self.shapes[name] = tuple(shape)

    def allocate(self, members: int, device: torch.device) -> None:
        sizes = {name: math.prod(shape) for name, shape in self.shapes.items()}
        self.size = sum(sizes.values())
        self.data = torch.zeros(members, self.size, device=device)
        self.grad = torch.zeros(members, self.size, device=device)
        self.views: dict[str, torch.Tensor] = {}
        start = 0
        for name, shape in self.shapes.items():
            stop = start + sizes[name]
            view = self.data[:, start:stop].view(members, *shape).requires_grad_()
            view.grad = self.grad[:, start:stop].view(members, *shape)
            self.views[name] = view
            start = stop

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.views[name]
