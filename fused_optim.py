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


# RMSprop is Adam with beta1 = 0 and no bias correction: exp_avg = lerp(exp_avg, grad, 1)
# is the gradient itself, and at a step count this large 1 - beta2 ** step and
# 1 - beta1 ** step are both exactly 1. So torch's fused Adam kernel does
# RMSprop's update (square_avg = alpha * square_avg + (1 - alpha) * grad^2;
# param -= lr * grad / (sqrt(square_avg) + eps)) in one pass instead of seven.
_NO_BIAS_CORRECTION_STEP = float(2 ** 24)


class _Kernel:
    """Rows that share optimizer, learning rate and weight decay: torch's own fused kernel, one pass.

    torch.optim.Adam(fused=True) and friends call these same kernels; calling
    them directly skips ~100 us of Python per optimizer per step, which
    matters when a fused task holds a dozen learning rates.
    """

    def __init__(self, kind: str, data: torch.Tensor, grad: torch.Tensor, lr: float, l2: float) -> None:
        self.kind, self.p, self.g, self.lr, self.l2 = kind, [data], [grad], lr, l2
        self.a = [torch.zeros_like(data)]
        self.b = [torch.zeros_like(data)] if kind in ("adam", "adamw", "rmsprop") else None
        self.steps = [torch.zeros((), device=data.device)]
        if kind == "rmsprop":
            self.steps[0].fill_(_NO_BIAS_CORRECTION_STEP)

    def step(self) -> None:
        if self.kind == "rmsprop":
            torch._fused_adam_(self.p, self.g, self.a, self.b, [], self.steps, lr=self.lr, beta1=0.0,
                               beta2=RMSPROP_ALPHA, weight_decay=self.l2, eps=RMSPROP_EPS, amsgrad=False,
                               maximize=False)
            return
        if self.kind == "sgd":
            torch._fused_sgd_(self.p, self.g, self.a, weight_decay=self.l2, momentum=SGD_MOMENTUM, lr=self.lr,
                              dampening=0.0, nesterov=False, maximize=False, is_first_step=bool(self.steps[0] == 0))
            self.steps[0] += 1
            return
        self.steps[0] += 1
        if self.kind == "adagrad":
            torch._fused_adagrad_(self.p, self.g, self.a, self.steps, lr=self.lr, lr_decay=0.0,
                                  weight_decay=self.l2, eps=ADAGRAD_EPS, maximize=False)
            return
        kernel = torch._fused_adam_ if self.kind == "adam" else torch._fused_adamw_
        kernel(self.p, self.g, self.a, self.b, [], self.steps, lr=self.lr, beta1=BETAS[0], beta2=BETAS[1],
               weight_decay=self.l2, eps=ADAM_EPS, amsgrad=False, maximize=False)


# torch ships fused CPU kernels for these; the others use the row-wise rules above
KERNELS = {kind for kind, name in [("adam", "_fused_adam_"), ("adamw", "_fused_adamw_"), ("rmsprop", "_fused_adam_"),
                                    ("sgd", "_fused_sgd_"), ("adagrad", "_fused_adagrad_")]
           if hasattr(torch, name)}


def group_key(member: dict) -> tuple:
    """Members are sorted by this so that each update group is a contiguous block of rows."""
    kind = member["optimizer"]
    if kind in KERNELS:
        return (kind, float(member["learning_rate"]), float(member["l2_regularization"]))
    return (kind,)


class FusedOptimizer:
    """One optimizer step for every member; `members` must be sorted by group_key."""

    def __init__(self, data: torch.Tensor, grad: torch.Tensor, members: list[dict], use_kernels: bool = True) -> None:
        self.data, self.grad = data, grad
        self.l1 = None
        if any(m["l1_regularization"] for m in members):
            self.l1 = torch.tensor([[float(m["l1_regularization"])] for m in members], device=data.device)
        key = group_key if use_kernels else (lambda m: (m["optimizer"],))
        self.groups = []
        start = 0
        while start < len(members):
            stop = start + 1
            while stop < len(members) and key(members[stop]) == key(members[start]):
                stop += 1
            kind, rows = members[start]["optimizer"], slice(start, stop)
            if use_kernels and kind in KERNELS:
                self.groups.append(_Kernel(kind, data[rows], grad[rows], float(members[start]["learning_rate"]),
                                           float(members[start]["l2_regularization"])))
            else:
                self.groups.append(_Rows(kind, data[rows], grad[rows], members[rows]))
            start = stop
        keys = [key(members[g]) for g in range(len(members))]
        if keys != sorted(keys, key=lambda k: keys.index(k)):
            raise ValueError("members must be sorted by fused_optim.group_key")

    @torch.no_grad()
    def step(self) -> None:
        if self.l1 is not None:  # subgradient of l1 * |w|, added before any rule sees the gradient
            self.grad.addcmul_(self.data.sign(), self.l1)
        for group in self.groups:
            group.step()
