"""Optimizers over a flat [members, n] parameter buffer, one hyperparameter row per member.

torch.optim applies one learning rate to a whole tensor; a fused training
needs a different learning rate, weight decay and even optimizer for each
row. The update rules below are torch.optim's own (same defaults, same
order of operations), restated on whole row ranges; tests/test_fused.py
checks each against torch.optim step by step.
"""
from __future__ import annotations

import math

import torch

BETAS = (0.9, 0.999)     # Adam, AdamW, Adamax: torch's defaults
ADAM_EPS = 1e-8
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-8
ADAGRAD_EPS = 1e-10
SGD_MOMENTUM = 0.9       # plain SGD without momentum is rarely what anyone wants


class _Rows:
    """State of one optimizer over a contiguous range of member rows."""

    def __init__(self, kind: str, data: torch.Tensor, grad: torch.Tensor, members: list[dict]) -> None:
        self.kind, self.p, self.g = kind, data, grad
        column = lambda key: torch.tensor([[float(m[key])] for m in members], device=data.device)
        self.lr = column("learning_rate")
        self.l1 = column("l1_regularization") if any(m["l1_regularization"] for m in members) else None
        self.l2 = column("l2_regularization") if any(m["l2_regularization"] for m in members) else None
        self.steps = 0
        self.a = torch.zeros_like(data)  # first moment / momentum / squared-gradient sum
        self.b = torch.zeros_like(data) if kind in ("adam", "adamw", "adamax") else None
        self.s = torch.empty_like(data)  # scratch
        if kind == "adamw" and self.l2 is not None:
            self.decay = 1.0 - self.lr * self.l2  # decoupled weight decay factor per row

    def step(self) -> None:
        p, g = self.p, self.g
        self.steps += 1
        if self.l1 is not None:
            g.addcmul_(p.sign(), self.l1)
        if self.l2 is not None:
            if self.kind == "adamw":
                p.mul_(self.decay)
            else:
                g.addcmul_(p, self.l2)  # torch's (coupled) weight_decay
        getattr(self, "_" + self.kind)(p, g)

    # Each rule writes into the scratch buffer `s` instead of allocating: a
    # fresh megabyte-sized tensor per step costs more than the arithmetic.
    def _sgd(self, p, g):
        self.a.mul_(SGD_MOMENTUM).add_(g)  # starts at zero, so step 1 gives buf = g as torch does
        p.sub_(torch.mul(self.a, self.lr, out=self.s))

    def _adam(self, p, g):
        beta1, beta2 = BETAS
        self.a.lerp_(g, 1 - beta1)
        self.b.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        step_size = self.lr / (1 - beta1 ** self.steps)
        denom = torch.sqrt(self.b, out=self.s).div_(math.sqrt(1 - beta2 ** self.steps)).add_(ADAM_EPS)
        p.sub_(torch.div(self.a, denom, out=self.s).mul_(step_size))

    _adamw = _adam  # the decay happened in step()

    def _adamax(self, p, g):
        beta1, beta2 = BETAS
        self.a.lerp_(g, 1 - beta1)
        torch.maximum(self.b.mul_(beta2), torch.abs(g, out=self.s).add_(ADAM_EPS), out=self.b)
        p.sub_(torch.div(self.a, self.b, out=self.s).mul_(self.lr / (1 - beta1 ** self.steps)))

    def _rmsprop(self, p, g):
        self.a.mul_(RMSPROP_ALPHA).addcmul_(g, g, value=1 - RMSPROP_ALPHA)
        avg = torch.sqrt(self.a, out=self.s).add_(RMSPROP_EPS)
        p.sub_(torch.div(g, avg, out=self.s).mul_(self.lr))

    def _adagrad(self, p, g):
        self.a.addcmul_(g, g, value=1)
        std = torch.sqrt(self.a, out=self.s).add_(ADAGRAD_EPS)
        p.sub_(torch.div(g, std, out=self.s).mul_(self.lr))


class FusedOptimizer:
    """`members` must be sorted so that each optimizer's rows are contiguous."""

    def __init__(self, data: torch.Tensor, grad: torch.Tensor, members: list[dict]) -> None:
        self.groups = []
        start = 0
        while start < len(members):
            kind = members[start]["optimizer"]
            stop = start
            while stop < len(members) and members[stop]["optimizer"] == kind:
                stop += 1
            self.groups.append(_Rows(kind, data[start:stop], grad[start:stop], members[start:stop]))
            start = stop
        if len({g.kind for g in self.groups}) != len(self.groups):
            raise ValueError("members must be sorted by optimizer")

    @torch.no_grad()
    def step(self) -> None:
        for rows in self.groups:
            rows.step()
