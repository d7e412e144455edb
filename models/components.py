"""The option tables behind config strings: activations, initialisations, losses.

Each entry works for a network with one sigmoid output; options that cannot
(softmax, multi-class losses) are deliberately absent.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

PRELU_INITIAL_SLOPE = 0.25  # torch.nn.PReLU's default


def prelu(h: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """PReLU with one learnable slope per member ([members, 1, 1])."""
    return torch.where(h >= 0, h, h * slope)


# activation name -> function of the pre-activation tensor. PReLU is special:
# it owns a learnable slope per layer, so the models call `prelu` themselves.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01, torch's default
    "prelu": None,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
    "selu": F.selu,
    "softplus": F.softplus,
    "mish": F.mish,
}

# gain argument that torch.nn.init expects for each activation's nonlinearity
_KAIMING_NONLINEARITY = {"relu": "relu", "leaky_relu": "leaky_relu", "prelu": "leaky_relu"}


def _default_linear(weight: torch.Tensor, bias: torch.Tensor, g: torch.Generator, activation: str) -> None:
    # torch.nn.Linear.reset_parameters: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both
    bound = 1.0 / math.sqrt(weight.shape[1])
    weight.uniform_(-bound, bound, generator=g)
    bias.uniform_(-bound, bound, generator=g)


def _kaiming(fn):
    def init(weight, bias, g, activation):
        nonlinearity = _KAIMING_NONLINEARITY.get(activation, "relu")
        fn(weight, nonlinearity=nonlinearity, generator=g)
        bias.zero_()
    return init


def _xavier(fn):
    def init(weight, bias, g, activation):
        fn(weight, generator=g)
        bias.zero_()
    return init


def _orthogonal(weight, bias, g, activation):
    torch.nn.init.orthogonal_(weight, generator=g)
    bias.zero_()


_aten = torch.ops.aten
_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# activation name -> d(activation)/dz applied to an incoming gradient, given the
# pre-activation z and the activation a. These are the very kernels autograd
# calls for these functions (tests/test_fused.py checks them against autograd);
# calling them directly lets the MLP skip autograd's per-operation bookkeeping.
ACTIVATION_BACKWARD = {
    "relu": lambda grad, z, a: _aten.threshold_backward(grad, a, 0),
    "leaky_relu": lambda grad, z, a: _aten.leaky_relu_backward(grad, z, 0.01, False),
    "tanh": lambda grad, z, a: _aten.tanh_backward(grad, a),
    "sigmoid": lambda grad, z, a: _aten.sigmoid_backward(grad, a),
    "elu": lambda grad, z, a: _aten.elu_backward(grad, 1.0, 1, 1, False, z),
    "gelu": lambda grad, z, a: _aten.gelu_backward(grad, z),
    "silu": lambda grad, z, a: _aten.silu_backward(grad, z),
    "selu": lambda grad, z, a: _aten.elu_backward(grad, _SELU_ALPHA, _SELU_SCALE, 1, False, z),
    "softplus": lambda grad, z, a: _aten.softplus_backward(grad, z, 1, 20),
    "mish": lambda grad, z, a: _aten.mish_backward(grad, z),
}


# For activations with f(c * z) = c * f(z) for every c >= 0 (relu, leaky_relu), a
# dropout mask m folds into the slope: with d = f'(z) * m (the backward kernel
# applied to m), the masked activation f(z) * m is z * d and its backward is
# one multiply by d. That is one elementwise pass less per layer and step than
# f, * m, * m, f' and reads the mask once.
MASKED_SLOPE = {
    "relu": lambda mask, z: _aten.threshold_backward(mask, z, 0),
    "leaky_relu": lambda mask, z: _aten.leaky_relu_backward(mask, z, 0.01, False),
}


# initialisation name -> fn(weight [out, in], bias [out], generator, activation)
INITIALIZATIONS = {
    "default": _default_linear,
    "xavier_uniform": _xavier(torch.nn.init.xavier_uniform_),
    "xavier_normal": _xavier(torch.nn.init.xavier_normal_),
    "kaiming_uniform": _kaiming(torch.nn.init.kaiming_uniform_),
    "kaiming_normal": _kaiming(torch.nn.init.kaiming_normal_),
    "orthogonal": _orthogonal,
}


def _bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # on logits: the same loss as BCE on the sigmoid output, without its
    # overflow for confident predictions
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none")


def _on_probability(fn):
    return lambda logits, y: fn(torch.sigmoid(logits), y)


# On a probability the error is at most 1, so with delta/beta = 1 Huber and
# smooth L1 would be exactly half the squared error; 0.5 keeps them distinct.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bce": _bce,
    "mse": _on_probability(lambda p, y: F.mse_loss(p, y, reduction="none")),
    "huber": _on_probability(lambda p, y: F.huber_loss(p, y, reduction="none", delta=0.5)),
    "smooth_l1": _on_probability(lambda p, y: F.smooth_l1_loss(p, y, reduction="none", beta=0.5)),
}
