"""An LSTM that reads the feature vector as a sequence, for many members at once.

Each day of the window is one time step (a 30-close window is a 30-step
sequence), its channels (close, and with prepare.py's --features also volume
and return) the step's inputs. The last hidden state goes through the same dense head as
the MLP, with `hidden_layers` as multiples of `lstm_hidden_size`; the head is
fused across members. The recurrence runs in models/native.c where the C
library builds (NativeLSTMLayer): one call per layer for every member, a few
rows at a time through all their steps with the small matmuls written out in
vector registers, the gates' sigmoid and tanh through glibc's vector expf; its
gradients are checked against torch.nn.LSTM's. Elsewhere (a GPU, no C compiler,
SWEEP_NATIVE=0) it runs torch's own LSTM kernel (what torch.nn.LSTM calls) once
per member and layer. Measured per member and training step (hidden 16, batch
32, 30 steps, one thread, 6 members), the layer forward and backward: ~0.15 ms
in C (0.25 ms with a library gemm per time step), 0.3-0.55 ms through torch's
kernel, and 1.1-1.7 ms when it was written out in torch operations batched over
members.
The layers run one at a time, so that dropout between them uses the
members' own masks (DropoutPool), as torch.nn.LSTM's internal dropout would not.
With the bce loss and the C optimizer rules the whole step runs in C instead,
a block of batches per call (train_block, native.NativeLSTMStep): the layers,
the head, the backward pass and the update, with the same dropout masks and
none of autograd's ~20 operations a step.
"""
from __future__ import annotations

import math

import torch

from inputs.hyperparameters import hidden_widths
from models import native
from models.components import LOSSES
from models.dropout import DropoutPool
from models.flat import FlatParameters
from models.fused_mlp import DenseStack

INFERENCE_ROWS = 512  # rows per C call when predicting (no gradient): bounds the states it keeps


class FusedLSTM:
    def __init__(self, arch: dict, members: list[dict], n_features: int,
                 generators: list[torch.Generator], device: torch.device, channels: int = 1) -> None:
        self.hidden = arch["lstm_hidden_size"]
        self.n_layers = arch["lstm_num_layers"]
        self.channels = channels
        self.params = FlatParameters()
        for k in range(self.n_layers):
            n_in = channels if k == 0 else self.hidden
            # autograd writes these gradients, and accepts strided ones: only matrices get a block
            self.params.declare(f"lstm.{k}.weight_ih", (n_in, 4 * self.hidden), own_block=n_in > 1)
            self.params.declare(f"lstm.{k}.weight_hh", (self.hidden, 4 * self.hidden), own_block=True)
            self.params.declare(f"lstm.{k}.bias", (1, 4 * self.hidden), own_block=False)
        widths = [self.hidden] + hidden_widths(arch["hidden_layers"], self.hidden) + [1]
        self.head = DenseStack(self.params, "head", widths, arch["activation"])
        self.params.allocate(len(members), device)
        self.layers = [(self.params[f"lstm.{k}.weight_ih"], self.params[f"lstm.{k}.weight_hh"],
                        self.params[f"lstm.{k}.bias"]) for k in range(self.n_layers)]
        self.head.bind(self.params)
        # per member and layer: (weight_ih, weight_hh, bias) as leaves of their own (FlatParameters.member_leaves)
        leaves = {name: self.params.member_leaves(name) for name in self.params.shapes if name.startswith("lstm.")}
        self.member_layers = [[(leaves[f"lstm.{k}.weight_ih"][e], leaves[f"lstm.{k}.weight_hh"][e],
                                leaves[f"lstm.{k}.bias"][e]) for k in range(self.n_layers)]
                              for e in range(len(members))]
        # the kernel adds a second bias (torch.nn.LSTM's bias_hh); ours is the sum of both, so this one is zero
        self.zero_bias = torch.zeros(4 * self.hidden, device=device)
        # every member's layer in one C call (native.c), where it builds
        self.native_recurrence = native.lstm_applies(device)
        # and the whole step, head and update included, where the C step applies to the head too
        self.native_step_applies = (self.native_recurrence and native.applies(arch, device)
                                    and self.n_layers <= native.MAX_LAYERS)
        self.native_step = None  # bound on first use
        self.batch_size, self.n_features = arch["batch_size"], n_features
        self._initialize(members, generators)
        self.max_dropout_window = max([n_features * self.hidden] + widths[1:-1])

    @torch.no_grad()
    def _initialize(self, members: list[dict], generators: list[torch.Generator]) -> None:
        # torch.nn.LSTM's own initialisation: every weight and both biases
        # U(-1/sqrt(hidden), 1/sqrt(hidden)); the two biases are summed here.
        bound = 1.0 / math.sqrt(self.hidden)
        for e, g in enumerate(generators):
            for w_ih, w_hh, bias in self.layers:
                for tensor in (w_ih[e], w_hh[e]):
                    tensor.copy_(torch.empty(tensor.shape[1], tensor.shape[0]).uniform_(-bound, bound, generator=g).T)
                b_ih = torch.empty(bias.shape[2]).uniform_(-bound, bound, generator=g)
                b_hh = torch.empty(bias.shape[2]).uniform_(-bound, bound, generator=g)
                bias[e, 0].copy_(b_ih + b_hh)
        self.head.initialize(members, generators)

    def forward(self, x: torch.Tensor, dropout: DropoutPool | None) -> torch.Tensor:
        """x [members, batch, steps] -> logits [members, batch]."""
        last = self._last_native(x, dropout) if self.native_recurrence else self._last_per_member(x, dropout)
        if dropout is not None and dropout.enabled:
            last = last * dropout.mask(last.shape)
        return self.head.forward(last.transpose(1, 2), dropout).squeeze(1)  # the head is feature-major

    def _last_native(self, x: torch.Tensor, dropout: DropoutPool | None) -> torch.Tensor:
        """The last layer's last hidden state [members, batch, hidden], every member's layer in one C call."""
        members, batch, features = x.shape
        steps = features // self.channels
        if batch > INFERENCE_ROWS and not torch.is_grad_enabled():
            # the layer keeps every step's states and gates: predicting thousands of rows at once would
            # hold hundreds of MB of them for nothing
            return torch.cat([self._last_native(x[:, start:start + INFERENCE_ROWS], dropout)
                              for start in range(0, batch, INFERENCE_ROWS)], dim=1)
        sequence = self._steps(x).transpose(1, 2)  # [members, steps, batch, channels]: time-major
        for k, (w_ih, w_hh, bias) in enumerate(self.layers):
            sequence = native.NativeLSTMLayer.apply(sequence, w_ih, w_hh, bias)  # [members, steps, batch, hidden]
            if k < self.n_layers - 1 and dropout is not None and dropout.enabled:
                # the same masks as the per-member path draws, in this layout
                sequence = sequence * dropout.mask((members, batch, steps, self.hidden)).transpose(1, 2)
        return sequence[:, -1]

    def _last_per_member(self, x: torch.Tensor, dropout: DropoutPool | None) -> torch.Tensor:
        """The same through torch's LSTM kernel, one call per member and layer (a GPU, or no C library)."""
        members, batch, features = x.shape
        steps = features // self.channels
        start = torch.zeros(1, batch, self.hidden, device=x.device)  # h0 and c0
        sequences = list(self._steps(x))  # [batch, steps, channels] each
        for k in range(self.n_layers):
            sequences = [self._run_layer(self.member_layers[e][k], sequence, start)
                         for e, sequence in enumerate(sequences)]  # [batch, steps, hidden] each
            # between layers, as torch.nn.LSTM does
            if k < self.n_layers - 1 and dropout is not None and dropout.enabled:
                mask = dropout.mask((members, batch, steps, self.hidden))
                sequences = [sequence * mask[e] for e, sequence in enumerate(sequences)]
        return torch.stack([sequence[:, -1] for sequence in sequences])  # [members, batch, hidden]

    def _steps(self, x: torch.Tensor) -> torch.Tensor:
        """x [members, batch, channels x days] (channel after channel) -> [members, batch, days, channels]."""
        members, batch, features = x.shape
        return x.reshape(members, batch, self.channels, features // self.channels).transpose(2, 3)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, dropout: DropoutPool | None, loss_fn,
                   out: torch.Tensor | None = None) -> torch.Tensor:
        """One forward/backward pass by autograd (the recurrence is too intricate to write out); returns the logits.

        `out` [members, batch], when given, receives the logits and is returned.
        """
        self.params.grad_buffer.zero_()
        logits = self.forward(x, dropout)
        per_member = loss_fn(logits, y).sum(dim=1)
        # d(sum of members' mean losses): each member gets exactly its own gradient
        per_member.backward(gradient=torch.full_like(per_member, 1.0 / y.shape[1]))
        if out is not None:
            return out.copy_(logits.detach())
        return logits.detach()

    def train_block(self, x: torch.Tensor, y: torch.Tensor, dropout: DropoutPool | None, loss_fn, optimizer,
                    out: torch.Tensor) -> bool:
        """train_step and optimizer.step() for each batch of a block of rows, in one C call; False if not applicable.

        As FusedMLP.train_block: x is [members, rows, features], y and out
        [members, rows]; batches are batch_size rows in order. Applies with the
        bce loss, where the C layers, the C head step and the C optimizer rules
        all do (models/native.py); otherwise nothing is done and the caller
        steps batch by batch through autograd.
        """
        rules = optimizer.native_rules()
        if not (self.native_step_applies and rules is not None and loss_fn is LOSSES["bce"]
                and x.dtype == y.dtype == out.dtype == torch.float32 and y.stride(1) == 1 and out.stride(1) == 1):
            return False
        if self.native_step is None:
            self.native_step = native.NativeLSTMStep(self.layers, self.head, self.params.members,
                                                     self.n_features // self.channels, self.channels, self.hidden,
                                                     self.batch_size)
        self.native_step.train_block(x, y, dropout, out, self.batch_size, rules)
        return True

    def _run_layer(self, weights: tuple, sequence: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """One member's layer over a whole sequence [batch, steps, inputs] -> its outputs [batch, steps, hidden]."""
        w_ih, w_hh, bias = weights  # stored [inputs, 4 * hidden]: the kernel takes them transposed, as views
        outputs, _, _ = torch.lstm(sequence, (start, start), [w_ih.T, w_hh.T, bias[0], self.zero_bias],
                                   True, 1, 0.0, torch.is_grad_enabled(), False, True)
        return outputs
