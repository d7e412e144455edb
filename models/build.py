"""The fused model of a task: an MLP or an LSTM, by the architecture's `model`."""
from __future__ import annotations

import torch

from models.fused_lstm import FusedLSTM
from models.fused_mlp import FusedMLP


def build_model(arch: dict, members: list[dict], n_features: int, generators: list[torch.Generator],
                device: torch.device, channels: int = 1):
    """A fused model for members sharing the architecture `arch`.

    `members` carry the per-member settings (dropout, weight_initialization);
    `generators` one seeded torch.Generator per member for its initial weights.
    `channels`: the features are that many channels of n_features / channels
    days each; the LSTM reads a day's channels as one step, the MLP all flat.
    """
    if arch["model"] == "lstm":
        return FusedLSTM(arch, members, n_features, generators, device, channels)
    return FusedMLP(arch, members, n_features, generators, device)
