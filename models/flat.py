"""All trainable tensors of a fused model live in one buffer, in a few [members, n] blocks.

Why blocks: each weight matrix gets a block of its own, [members, out * in],
so its view [members, out, in] is contiguous and the backward pass's
batched matmul writes the weight gradient straight into it (torch's
batched-gemm path needs a contiguous result; a strided one falls back to a
gemm per member, or costs a copy). The biases and other small tensors
share one more block. The optimizer updates each block as a whole, with
per-member hyperparameters as [members, 1] columns that broadcast, so a step
costs a few whole-block operations whatever the number of layers.

`rows()` and `load_rows()` give every member's parameters as one row, in the
order they were declared (the layout winner.pt is saved in).
"""
from __future__ import annotations

import math
import warnings

import torch

# Autograd (the LSTM's backward) warns when a pre-set .grad has the strides
# of a view rather than a fresh tensor. That is our layout, and it is correct.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


class FlatParameters:
    """Declare per-member parameter shapes, then `allocate(members)` once."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.own_block: dict[str, bool] = {}

    def declare(self, name: str, shape: tuple[int, ...], own_block: bool) -> None:
        """own_block: a batched matmul writes this tensor's gradient, so it needs a contiguous block."""
        self.shapes[name] = tuple(shape)
        self.own_block[name] = own_block

    def allocate(self, members: int, device: torch.device) -> None:
        self.members = members
        sizes = {name: math.prod(shape) for name, shape in self.shapes.items()}
        self.size = sum(sizes.values())
        # one block per tensor declared own_block (weight matrices), then one for all the others (biases, slopes)
        matrices = [name for name in self.shapes if self.own_block[name]]
        rows = [name for name in self.shapes if name not in matrices]
        layout = [[name] for name in matrices] + ([rows] if rows else [])
        self.buffer = torch.zeros(members * self.size, device=device)
        self.grad_buffer = torch.zeros(members * self.size, device=device)
        self.data_blocks, self.grad_blocks = [], []
        self.views: dict[str, torch.Tensor] = {}
        self._storage: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (data, grad), no autograd
        start = 0
        for names in layout:
            width = sum(sizes[name] for name in names)
            data = self.buffer[start:start + members * width].view(members, width)
            grad = self.grad_buffer[start:start + members * width].view(members, width)
            self.data_blocks.append(data)
            self.grad_blocks.append(grad)
            column = 0
            for name in names:
                columns = slice(column, column + sizes[name])
                view = data[:, columns].view(members, *self.shapes[name]).requires_grad_()
                view.grad = grad[:, columns].view(members, *self.shapes[name])
                self.views[name] = view
                self._storage[name] = (data[:, columns].view(members, *self.shapes[name]), view.grad)
                column += sizes[name]
            start += members * width

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.views[name]

    def member_leaves(self, name: str) -> list[torch.Tensor]:
        """Each member's `name` as a tensor of its own (the same memory as its row of `self[name]`).

        For a model that runs a separate kernel per member: autograd then
        adds each member's gradient straight into its slice of the gradient
        buffer (.grad is that slice), rather than through a [members, ...]
        zero-filled tensor per member.
        """
        data, grad = self._storage[name]
        leaves = []
        for e in range(self.members):
            leaf = data[e].requires_grad_()
            leaf.grad = grad[e]
            leaves.append(leaf)
        return leaves

    def rows(self) -> torch.Tensor:
        """A copy of every member's parameters, one row each [members, size], in declaration order."""
        return torch.cat([view.detach().reshape(self.members, -1) for view in self.views.values()], dim=1)

    @torch.no_grad()
    def load_rows(self, rows: torch.Tensor) -> None:
        """Set the parameters from rows() as saved."""
        column = 0
        for view in self.views.values():
            width = view[0].numel()
            view.copy_(rows[:, column:column + width].view(view.shape))
            column += width

    def finite_rows(self) -> torch.Tensor:
        """Whether each member's parameters are all finite [members] (False once a training diverged)."""
        finite = torch.ones(self.members, dtype=torch.bool, device=self.buffer.device)
        for block in self.data_blocks:
            finite &= torch.isfinite(block).all(dim=1)
        return finite
