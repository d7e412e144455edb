"""The fused model of a task: an MLP or an LSTM, by the architecture's `model`."""
from __future__ import annotations

import torch

from models.fused_lstm import FusedLSTM
from models.fused_mlp import FusedMLP


def build_model(arch: dict, members: list[dict], n_features: int, generators: list[torch.Generator],
                device: torch.device):
    """A fused model for members sharing the architecture `arch`.

    `members` carry the per-member settings (dropout, weight_initialization);
    `generators` one seeded torch.Generator per member for its initial weights.
    """
    cls = FusedLSTM if arch["model"] == "lstm" else FusedMLP
    return cls(arch, members, n_features, generators, device)
