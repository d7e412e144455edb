"""An LSTM that reads the feature vector as a sequence, for many members at once.

Each feature is one time step with one input channel (a 30-close window is a
30-step sequence). The last hidden state goes through the same dense head as
the MLP, with `hidden_layers` as multiples of `lstm_hidden_size`. The cell is
written out (rather than torch.nn.LSTM) because members must be batched; the
tests check it against torch.nn.LSTM.
"""
from __future__ import annotations

import math

import torch

from settings import hidden_widths
from models.dropout import DropoutPool
from models.flat import FlatParameters
from models.fused_mlp import DenseStack


class FusedLSTM:
    def __init__(self, arch: dict, members: list[dict], n_features: int,
                 generators: list[torch.Generator], device: torch.device) -> None:
        self.hidden = arch["lstm_hidden_size"]
        self.n_layers = arch["lstm_num_layers"]
        self.params = FlatParameters()
        for k in range(self.n_layers):
            n_in = 1 if k == 0 else self.hidden
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
        members, batch, steps = x.shape
        sequence = x.unsqueeze(-1)  # one input channel per step
        for k, (w_ih, w_hh, bias) in enumerate(self.layers):
            # the input projection of all steps at once; only h @ W_hh is sequential
            inputs = torch.baddbmm(bias, sequence.reshape(members, batch * steps, -1), w_ih)
            inputs = inputs.view(members, batch, steps, -1)
            outputs = self._run_layer(inputs, w_hh)
            if k < self.n_layers - 1:
                sequence = torch.stack(outputs, dim=2)
                if dropout is not None and dropout.enabled:  # between layers, as torch.nn.LSTM does
                    sequence = sequence * dropout.mask(sequence.shape)
        last = outputs[-1]
        if dropout is not None and dropout.enabled:
            last = last * dropout.mask(last.shape)
        return self.head.forward(last.transpose(1, 2), dropout).squeeze(1)  # the head is feature-major

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

    def _run_layer(self, inputs: torch.Tensor, w_hh: torch.Tensor) -> list[torch.Tensor]:
        h = c = None
        outputs = []
        H = self.hidden
        for t in range(inputs.shape[2]):
            gates = inputs[:, :, t] if h is None else torch.baddbmm(inputs[:, :, t], h, w_hh)
            ifo = torch.sigmoid(gates)  # one op over all gates; the g slice is unused
            i, f, o = ifo[..., :H], ifo[..., H:2 * H], ifo[..., 3 * H:]
            g = torch.tanh(gates[..., 2 * H:3 * H])
            c = i * g if c is None else torch.addcmul(i * g, f, c)
            h = o * torch.tanh(c)
            outputs.append(h)
        return outputs
