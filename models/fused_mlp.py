"""A stack of fully connected layers for many members at once (batched matmuls)."""
from __future__ import annotations

import torch

from inputs.hyperparameters import hidden_widths
from models import native
from models.components import (
    ACTIVATION_BACKWARD,
    ACTIVATIONS,
    INITIALIZATIONS,
    LOSSES,
    MASKED_SLOPE,
    PRELU_INITIAL_SLOPE,
    prelu,
)
from models.dropout import DropoutPool
from models.flat import FlatParameters
from models.native import NativeStep


class DenseStack:
    """widths[0] inputs -> hidden layers with activation and dropout -> widths[-1] outputs.

    Feature-major: activations are [members, features, batch] and weights
    [members, out, in], so each layer is `baddbmm(bias, W, h)`, one batched
    matmul for all members, and a member's weight is exactly the
    torch.nn.Linear weight it would have alone. This layout measured ~10%
    faster than [members, batch, features] for the forward and backward
    matmuls of these small layers (32-row batches), and the bias gradient
    sums along contiguous memory.
    """

    def __init__(self, params: FlatParameters, prefix: str, widths: list[int], activation: str) -> None:
        self.prefix, self.widths, self.activation = prefix, widths, activation
        self.n_layers = len(widths) - 1
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            params.declare(f"{prefix}.{i}.weight", (n_out, n_in), own_block=True)
            params.declare(f"{prefix}.{i}.bias", (n_out, 1), own_block=False)
            if activation == "prelu" and i < self.n_layers - 1:
                params.declare(f"{prefix}.{i}.slope", (1, 1), own_block=False)

    def bind(self, params: FlatParameters) -> None:
        """Keep direct references to the views: dict look-ups cost time per step."""
        self.layers = [(params[f"{self.prefix}.{i}.weight"], params[f"{self.prefix}.{i}.bias"],
                        params.views.get(f"{self.prefix}.{i}.slope")) for i in range(self.n_layers)]
        self.act = ACTIVATIONS[self.activation]
        self.act_backward = ACTIVATION_BACKWARD.get(self.activation)
        self.masked_slope = MASKED_SLOPE.get(self.activation)

    @torch.no_grad()
    def initialize(self, members: list[dict], generators: list[torch.Generator]) -> None:
        for e, (member, g) in enumerate(zip(members, generators)):
            init = INITIALIZATIONS[member["weight_initialization"]]
            for weight, bias, slope in self.layers:
                w = torch.empty(weight.shape[1:])  # [out, in], as torch.nn.Linear
                b = torch.empty(weight.shape[1])
                init(w, b, g, self.activation)
                weight[e].copy_(w)
                bias[e, :, 0].copy_(b)
                if slope is not None:
                    slope[e].fill_(PRELU_INITIAL_SLOPE)

    def forward(self, h: torch.Tensor, dropout: DropoutPool | None) -> torch.Tensor:
        """h [members, features, batch] -> [members, outputs, batch]."""
        last = self.n_layers - 1
        for i, (weight, bias, slope) in enumerate(self.layers):
            h = torch.baddbmm(bias, weight, h)
            if i < last:
                h = prelu(h, slope) if slope is not None else self.act(h)
                if dropout is not None and dropout.enabled:
                    h = h * dropout.mask(h.shape)
        return h

    @torch.no_grad()
    def forward_cached(self, h: torch.Tensor, dropout: DropoutPool | None):
        """forward() that keeps what backward_cached() needs, without recording an autograd graph.

        Each cache entry is (layer input, z, activation, mask, d); d, when set,
        is the activation's slope times the dropout mask (MASKED_SLOPE).
        """
        cache = []
        masked = dropout is not None and dropout.enabled
        for weight, bias, slope in self.layers[:-1]:
            z = torch.baddbmm(bias, weight, h)
            if masked:
                mask = dropout.mask(z.shape)
                if self.masked_slope is not None and slope is None:
                    d = self.masked_slope(mask, z)
                    cache.append((h, z, None, None, d))
                    h = z * d
                    continue
            else:
                mask = None
            a = prelu(z, slope) if slope is not None else self.act(z)
            cache.append((h, z, a, mask, None))
            h = a * mask if mask is not None else a
        weight, bias, _ = self.layers[-1]
        cache.append((h, None, None, None, None))
        return torch.baddbmm(bias, weight, h), cache

    @torch.no_grad()
    def backward_cached(self, dz: torch.Tensor, cache: list) -> None:
        """Write d(loss)/d(parameters) into the parameters' .grad views, given d(loss)/d(output) [members, out, batch].

        Each weight's .grad is a contiguous block of its own (FlatParameters),
        so the batched matmuls write into it directly.
        """
        for i in range(self.n_layers - 1, -1, -1):
            weight, bias, slope = self.layers[i]
            h = cache[i][0]
            torch.sum(dz, dim=2, keepdim=True, out=bias.grad)
            torch.bmm(dz, h.transpose(1, 2), out=weight.grad)
            if i == 0:
                return  # the inputs need no gradient
            if dz.shape[1] == 1:
                # a one-unit layer (the output): W^T dz is an outer product, cheaper as a broadcast multiply
                dh = weight.transpose(1, 2) * dz
            else:
                dh = torch.bmm(weight.transpose(1, 2), dz)
            _, z, a, mask, d = cache[i - 1]
            if d is not None:
                dz = dh.mul_(d)
                continue
            if mask is not None:
                dh.mul_(mask)
            prev_slope = self.layers[i - 1][2]
            if prev_slope is not None:  # PReLU: gradient for the input and for the slope
                negative = z < 0
                prev_slope.grad.copy_((dh * z * negative).sum(dim=(1, 2), keepdim=True))
                dz = torch.where(negative, dh * prev_slope, dh)
            else:
                dz = self.act_backward(dh, z, a)


class FusedMLP:
    def __init__(self, arch: dict, members: list[dict], n_features: int,
                 generators: list[torch.Generator], device: torch.device) -> None:
        widths = [n_features] + hidden_widths(arch["hidden_layers"], n_features) + [1]
        self.params = FlatParameters()
        self.dense = DenseStack(self.params, "dense", widths, arch["activation"])
        self.params.allocate(len(members), device)
        self.dense.bind(self.params)
        self.dense.initialize(members, generators)
        self.max_dropout_window = max(widths[1:-1], default=1)  # per row of a batch
        # the whole step in one C call where it applies (models/native.py); bound on first use
        self.native = None
        self.native_applies = native.applies(arch, device)
        self.batch_size = arch["batch_size"]

    def forward(self, x: torch.Tensor, dropout: DropoutPool | None) -> torch.Tensor:
        """x [members, batch, features] -> logits [members, batch]."""
        return self.dense.forward(x.transpose(1, 2), dropout).squeeze(1)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, dropout: DropoutPool | None, loss_fn,
                   out: torch.Tensor | None = None) -> torch.Tensor:
        """One forward/backward pass: gradients into the parameters' .grad views; returns the logits [members, batch].

        x is [members, batch, features]; the training loop passes a transposed
        view of rows gathered feature-major, so the stack gets them as they lie.
        The backward pass is written out (see DenseStack.backward_cached):
        for these tiny layers autograd's bookkeeping cost more than the maths.
        Where it applies, the whole step is one call into C (models/native.py).
        The loss itself is left to the caller, which computes it for many
        steps at once from the returned logits. `out` [members, batch], when
        given, receives the logits and is returned.
        """
        if self.native_applies and loss_fn is LOSSES["bce"]:
            if out is None:
                out = torch.empty(y.shape, dtype=y.dtype, device=y.device)
            if self.native is None or x.shape[1] > self.native.batch:
                self.native = NativeStep(self.dense, self.params.members, max(self.batch_size, x.shape[1]))
            if self.native.takes(x, y, out):
                self.native(x, y, dropout, out)
                return out
        z, cache = self.dense.forward_cached(x.transpose(1, 2), dropout)
        logits = z.squeeze(1)
        self.dense.backward_cached(logit_gradient(logits, y, loss_fn).unsqueeze(1), cache)
        if out is not None:
            out.copy_(logits)
            return out
        return logits

    def train_block(self, x: torch.Tensor, y: torch.Tensor, dropout: DropoutPool | None, loss_fn, optimizer,
                    out: torch.Tensor) -> bool:
        """train_step and optimizer.step() for each batch of a block of rows, in one C call; False if not applicable.

        x is [members, rows, features], y and out [members, rows]; batches are
        batch_size rows in order (the last may be short). Applies where the
        C step and the C optimizer rules both do (models/native.py); otherwise
        nothing is done and the caller steps batch by batch.
        """
        rules = optimizer.native_rules()
        if not (self.native_applies and rules is not None and loss_fn is LOSSES["bce"]):
            return False
        if self.native is None:
            self.native = NativeStep(self.dense, self.params.members, self.batch_size)
        if not self.native.takes(x, y, out, block=True):
            return False
        self.native.train_block(x, y, dropout, out, self.batch_size, rules)
        return True


def logit_gradient(logits: torch.Tensor, y: torch.Tensor, loss_fn) -> torch.Tensor:
    """d(sum of members' mean losses)/d(logits): each member gets exactly its own gradient."""
    if loss_fn is LOSSES["bce"]:  # the common case, in closed form: what autograd would compute
        return torch.sigmoid(logits).sub_(y).div_(y.shape[1])
    with torch.enable_grad():
        logits = logits.detach().requires_grad_()
        per_member = loss_fn(logits, y).sum(dim=1)
        (dz,) = torch.autograd.grad(per_member, logits, grad_outputs=torch.full_like(per_member, 1.0 / y.shape[1]))
    return dz
