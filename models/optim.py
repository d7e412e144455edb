"""Optimizers over [members, n] parameter blocks, one hyperparameter row per member.

torch.optim applies one learning rate to a whole tensor; a fused training
needs a different learning rate, weight decay and even optimizer for each
row. The update rules below are torch.optim's own (same defaults, same
order of operations), restated on whole row ranges; tests/test_fused.py
checks each against torch.optim step by step.
"""
from __future__ import annotations

import math

import torch

from models import native

BETAS = (0.9, 0.999)     # Adam, AdamW, Adamax: torch's defaults
ADAM_EPS = 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8
ADAGRAD_EPS = 1e-10
SGD_MOMENTUM = 0.9       # plain SGD without momentum is rarely what anyone wants


class _Rows:
    """State of one optimizer over a contiguous range of member rows, in each parameter block."""

    def __init__(self, kind: str, data: list[torch.Tensor], grad: list[torch.Tensor], members: list[dict]) -> None:
        self.kind = kind
        self.blocks = [_RowsBlock(kind, p, g) for p, g in zip(data, grad)]
        column = lambda key: torch.tensor([[float(m[key])] for m in members], device=data[0].device)
        self.lr = column("learning_rate")
        self.l2 = column("l2_regularization") if any(m["l2_regularization"] for m in members) else None
        self.steps = 0
        if kind == "adamw" and self.l2 is not None:
            self.decay = 1.0 - self.lr * self.l2  # decoupled weight decay factor per row

    def step(self) -> None:
        self.steps += 1
        rule = getattr(self, "_" + self.kind)
        for block in self.blocks:
            p, g = block.p, block.g
            if self.l2 is not None:
                if self.kind == "adamw":
                    p.mul_(self.decay)
                else:
                    g.addcmul_(p, self.l2)  # torch's (coupled) weight_decay
            rule(block, p, g)

    # Each rule writes into the scratch buffer `s` instead of allocating: a
    # fresh megabyte-sized tensor per step costs more than the arithmetic.
    def _sgd(self, state, p, g):
        state.a.mul_(SGD_MOMENTUM).add_(g)  # starts at zero, so step 1 gives buf = g as torch does
        p.sub_(torch.mul(state.a, self.lr, out=state.s))

    def _adam(self, state, p, g):
        beta1, beta2 = BETAS
        state.a.lerp_(g, 1 - beta1)
        state.b.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = self.lr / (1 - beta1 ** self.steps)
        denom = torch.sqrt(state.b, out=state.s).div_(math.sqrt(1 - beta2 ** self.steps)).add_(ADAM_EPS)
        p.sub_(torch.div(state.a, denom, out=state.s).mul_(step_size))

    _adamw = _adam  # the decay happened in step()

    def _adamax(self, state, p, g):
        beta1, beta2 = BETAS
        state.a.lerp_(g, 1 - beta1)
        torch.maximum(state.b.mul_(beta2), torch.abs(g, out=state.s).add_(ADAM_EPS), out=state.b)
        p.sub_(torch.div(state.a, state.b, out=state.s).mul_(self.lr / (1 - beta1 ** self.steps)))

    def _rmsprop(self, state, p, g):
        state.a.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
        avg = torch.sqrt(state.a, out=state.s).add_(RMSPROP_EPS)
        p.sub_(torch.div(g, avg, out=state.s).mul_(self.lr))

    def _adagrad(self, state, p, g):
        state.a.addcmul_(g, g, value=1)
        std = torch.sqrt(state.a, out=state.s).add_(ADAGRAD_EPS)
        p.sub_(torch.div(g, std, out=state.s).mul_(self.lr))


class _RowsBlock:
    """One parameter block's rows and the optimizer state that goes with them."""

    def __init__(self, kind: str, p: torch.Tensor, g: torch.Tensor) -> None:
        self.p, self.g = p, g
        self.a = torch.zeros_like(p)  # first moment / momentum / squared-gradient sum
        self.b = torch.zeros_like(p) if kind in ("adam", "adamw", "adamax") else None
        self.s = torch.empty_like(p)  # scratch


# the constants of the C step's rules (models/native.c's optim_step), in its order
NATIVE_CONSTANTS = (BETAS[0], BETAS[1], ADAM_EPS, RMSPROP_ALPHA, RMSPROP_EPS, SGD_MOMENTUM, ADAGRAD_EPS)

def group_key(member: dict) -> tuple:
    """Members are sorted by this so that each optimizer's members are a contiguous block of rows."""
    return (member["optimizer"],)


class FusedOptimizer:
    """One optimizer step for every member; `members` must be sorted by group_key.

    `data` and `grad` are the parameter blocks (FlatParameters.data_blocks and
    grad_blocks: [members, n] each, one row per member), or a single such matrix.
    """

    def __init__(self, data, grad, members: list[dict], use_native: bool = True) -> None:
        if isinstance(data, torch.Tensor):
            data, grad = [data], [grad]
        self.data, self.grad = data, grad
        self.l1 = None
        if any(m["l1_regularization"] for m in members):
            self.l1 = torch.tensor([[float(m["l1_regularization"])] for m in members], device=data[0].device)
        keys = [group_key(m) for m in members]
        if keys != sorted(keys, key=lambda k: keys.index(k)):
            raise ValueError("members must be sorted by models.optim.group_key")
        if use_native and native.optimizer_applies(data + grad, members):
            # every row's rule in one C call (models/native.py): no torch call per block and group
            self.groups = [native.NativeOptimizer(data, grad, members, NATIVE_CONSTANTS)]
            return
        self.groups = []  # the torch fallback: each optimizer's rule on its block of rows
        start = 0
        while start < len(members):
            stop = start + 1
            while stop < len(members) and keys[stop] == keys[start]:
                stop += 1
            rows = slice(start, stop)
            self.groups.append(_Rows(members[start]["optimizer"], [d[rows] for d in data], [g[rows] for g in grad],
                                     members[rows]))
            start = stop

    def native_rules(self) -> native.NativeOptimizer | None:
        """The C rules that update every member (models/native.py's NativeOptimizer), or None when others do.

        With L1 (added to the gradient here, before the rules) it is None too:
        then a whole-block C call (FusedMLP.train_block) would skip it.
        """
        only = self.groups[0] if len(self.groups) == 1 else None
        return only if isinstance(only, native.NativeOptimizer) and self.l1 is None else None

    @torch.no_grad()
    def step(self) -> None:
        if self.l1 is not None:  # subgradient of l1 * |w|, added before any rule sees the gradient
            for p, g in zip(self.data, self.grad):
                g.addcmul_(p.sign(), self.l1)
        for group in self.groups:
            group.step()
