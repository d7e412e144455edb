"""Fused training in a small C library (models/native.c): the MLP's step, the optimizer, or a block of both per
call; the LSTM's layers (NativeLSTMLayer, under autograd), or its whole step, head and update included, a block
of batches per call (NativeLSTMStep).

Why: a fused step of the reference sweep's MLP is ~45 torch operations on
small tensors plus ~40 optimizer kernel calls, each costing a few
microseconds of dispatch on top of its arithmetic. The C step does the same
computation with the same batched matmuls (MKL's cblas_sgemm_batch, which
torch's bmm itself calls; its address is looked up in torch's own library)
and merges the elementwise passes; NativeOptimizer applies every member's
update rule in one pass; NativeStep.train_block runs a whole gathered block
of batches, each followed by its update, in one call. Measured on the
development machine (one thread, 24 members): the big reference
architecture's step 0.86-0.99 -> ~0.56 ms, the small one's 0.32-0.44 ->
~0.21 ms, optimizer included.

The step applies where it can: a CPU device, float32, the activations relu,
leaky_relu and tanh, the bce loss (the LSTM's layers: any CPU LSTM), a torch
built with MKL on Linux with glibc's vector math library (libmvec), and a C
compiler the first time (the library is compiled once per machine into the
user's cache folder, models/cbuild.py). Everything else, and everyone with
SWEEP_NATIVE=0 in the environment, trains through the torch operations in
models/fused_mlp.py, models/optim.py and models/fused_lstm.py, which compute the same thing;
tests/test_native.py and tests/test_fused.py check them against each other.
"""
from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
from pathlib import Path

import torch

from models import cbuild

SOURCE = Path(__file__).with_name("native.c")
OPT_OUT = "SWEEP_NATIVE"
ACTIVATION_CODES = {"relu": 0, "leaky_relu": 1, "tanh": 2}  # as native.c numbers them
LEAKY_SLOPE = 0.01  # F.leaky_relu's default, as fused_mlp.py uses it
MAX_LAYERS = 32
_P = ctypes.c_void_p


def mkl_gemm_batch() -> int | None:
    """The address of MKL's cblas_sgemm_batch inside torch's CPU library, or None."""
    if not sys.platform.startswith("linux") or not torch.backends.mkl.is_available():
        return None
    try:
        torch_cpu = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        return ctypes.cast(torch_cpu.cblas_sgemm_batch, _P).value
    except (OSError, AttributeError):
        return None


# Why the C step is missing in this process, if its build failed: every worker finds out, so each
# hands the note to the main process (worker.run_task), which prints it once per run.
build_note: str | None = None


@functools.cache
def library() -> tuple[ctypes.CDLL, int] | None:
    """(the compiled step library, the gemm's address), or None where the C step does not apply (once per process)."""
    if os.environ.get(OPT_OUT) == "0":
        return None
    gemm = mkl_gemm_batch()
    if gemm is None:
        return None
    try:
        # -fno-math-errno lets sqrtf vectorize; it changes no result, only errno
        flags = ["-O3", "-march=native", "-fno-math-errno", "-lmvec", "-lm"]
        path = cbuild.build("native_mlp", SOURCE.read_text(), flags, for_this_cpu=True)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as err:
        global build_note
        build_note = (f"note: building the C training step failed ({cbuild.failure(err)}); training runs through "
                      f"torch operations instead (the reference sweep takes ~1.4x as long). Install a C compiler "
                      f"(e.g. `apt install gcc`) to get it, or set {OPT_OUT}=0 to silence this note.")
        return None
    lib.net_size.restype = ctypes.c_size_t
    lib.net_init.restype = ctypes.c_int
    lib.net_step.restype = None
    lib.net_step.argtypes = [_P, _P, ctypes.c_long, ctypes.c_long, ctypes.c_long, _P, ctypes.c_long, ctypes.c_int,
                             _P, ctypes.c_long, _P, ctypes.c_long, _P, _P]
    lib.optim_step.restype = None
    lib.optim_step.argtypes = [ctypes.c_int, ctypes.c_int, _P, _P, _P, _P, _P, _P, ctypes.c_long,
                               *[ctypes.c_float] * 7]
    lib.net_train_block.restype = None
    lib.net_train_block.argtypes = [_P, _P, ctypes.c_long, ctypes.c_long, ctypes.c_long, _P, ctypes.c_long,
                                    ctypes.c_int, ctypes.c_int, _P, ctypes.c_long, _P, ctypes.c_long, _P, _P,
                                    ctypes.c_int, _P, _P, _P, _P, _P, _P, ctypes.c_long, _P]
    sizes = [ctypes.c_int] * 5  # members, steps, batch, n_in, hidden
    lib.lstm_forward.restype = None
    _L = ctypes.c_long
    lib.lstm_forward.argtypes = [*sizes, _P, _L, _P, _L, _P, _L, _P, _L, _P, _P, _P, _P]
    lib.lstm_backward.restype = None
    lib.lstm_backward.argtypes = [*sizes, _P, _L, _P, _L, _P, _L, _P, _P, _P, _P, _P, _P, _L, _L, _L, _P, _P, _P, _P,
                                  _P, _L, _P, _L, _P, _L, _P, _L]
    lib.net_set_input_gradient.restype = None
    lib.net_set_input_gradient.argtypes = [_P, _P]
    lib.lstm_size.restype = ctypes.c_size_t
    lib.lstm_init.restype = ctypes.c_int
    lib.lstm_train_block.restype = None
    lib.lstm_train_block.argtypes = [_P, _P, _L, _L, _L, _P, _L, ctypes.c_int, ctypes.c_int, _P, _L, _P, _L, _P, _P,
                                     ctypes.c_int, _P, _P, _P, _P, _P, _P, _L, _P]
    return lib, gemm


def available() -> bool:
    """Whether this process can run the C step at all."""
    return library() is not None


def applies(arch: dict, device: torch.device) -> bool:
    """Whether members of `arch` train through the C step here."""
    return (device.type == "cpu" and arch["activation"] in ACTIVATION_CODES and arch["loss_function"] == "bce"
            and len(arch["hidden_layers"]) + 1 <= MAX_LAYERS and library() is not None)


def lstm_applies(device: torch.device) -> bool:
    """Whether an LSTM's layers run through native.c's batched LSTM here (else torch's kernel, member by member)."""
    return device.type == "cpu" and library() is not None


def _member_rows(w: torch.Tensor) -> torch.Tensor:
    """`w` [members, ...] with each member's values contiguous (the member stride may be anything)."""
    inner = w[0]
    return w if inner.is_contiguous() and w.dtype == torch.float32 else w.contiguous().float()


class NativeLSTMLayer(torch.autograd.Function):
    """One LSTM layer over whole sequences for every member at once (native.c's lstm_forward and lstm_backward).

    x [members, steps, batch, n_in], w_ih [members, n_in, 4H], w_hh [members, H, 4H], bias [members, 1, 4H]
    -> outputs [members, steps, batch, H]; torch.lstm's gates and gate order with one bias and zero h0/c0.
    """

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, bias):
        lib, _ = library()
        x, w_ih, w_hh, bias = (_member_rows(t) for t in (x.contiguous(), w_ih, w_hh, bias))
        members, steps, batch, n_in = x.shape
        hidden = w_hh.shape[1]
        hs = torch.empty(members, steps + 1, batch, hidden)  # h0 and c0 are written as zeros
        cs = torch.empty_like(hs)
        tanh_cs = torch.empty(members, steps, batch, hidden)
        acts = torch.empty(members, steps, batch, 4 * hidden)
        lib.lstm_forward(members, steps, batch, n_in, hidden, x.data_ptr(), x.stride(0), w_ih.data_ptr(),
                         w_ih.stride(0), w_hh.data_ptr(), w_hh.stride(0), bias.data_ptr(), bias.stride(0),
                         hs.data_ptr(), cs.data_ptr(), tanh_cs.data_ptr(), acts.data_ptr())
        ctx.tensors = (x, w_ih, w_hh, hs, cs, tanh_cs, acts)
        return hs[:, 1:]

    @staticmethod
    def backward(ctx, dy):
        lib, _ = library()
        x, w_ih, w_hh, hs, cs, tanh_cs, acts = ctx.tensors
        members, steps, batch, n_in = x.shape
        hidden = w_hh.shape[1]
        dy = dy.contiguous()
        dgates = torch.empty_like(acts)
        dh, dc = torch.empty(members, batch, hidden), torch.empty(members, batch, hidden)
        transposed = torch.empty(members, 4 * hidden, hidden + n_in)  # W_hh^T and W_ih^T, scratch
        # the first layer's input is the data: no gradient to compute for it
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        dw_ih, dw_hh = torch.empty(members, n_in, 4 * hidden), torch.empty(members, hidden, 4 * hidden)
        db = torch.empty(members, 1, 4 * hidden)
        lib.lstm_backward(members, steps, batch, n_in, hidden, x.data_ptr(), x.stride(0), w_ih.data_ptr(),
                          w_ih.stride(0), w_hh.data_ptr(), w_hh.stride(0), hs.data_ptr(), cs.data_ptr(),
                          tanh_cs.data_ptr(), acts.data_ptr(), dy.data_ptr(), None, 0, 0, 0, dgates.data_ptr(),
                          dh.data_ptr(), dc.data_ptr(), transposed.data_ptr(), None if dx is None else dx.data_ptr(),
                          x.stride(0), dw_ih.data_ptr(), dw_ih.stride(0), dw_hh.data_ptr(), dw_hh.stride(0),
                          db.data_ptr(), db.stride(0))
        return dx, dw_ih, dw_hh, db


class _Rule(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("lr", ctypes.c_float), ("l2", ctypes.c_float)]


OPTIMIZER_CODES = {"adam": 0, "adamw": 1, "rmsprop": 2, "sgd": 3, "adagrad": 4}  # as native.c numbers them


def optimizer_applies(blocks: list[torch.Tensor], members: list[dict]) -> bool:
    """Whether the C optimizer step can update these [members, n] blocks with these members' rules."""
    return (all(m["optimizer"] in OPTIMIZER_CODES for m in members) and library() is not None
            and all(b.device.type == "cpu" and b.dtype == torch.float32 and b.is_contiguous() for b in blocks))


class NativeOptimizer:
    """Every member's update (models/optim.py's rules) in one C call: no torch call per block and group."""

    def __init__(self, data: list[torch.Tensor], grad: list[torch.Tensor], members: list[dict], constants) -> None:
        self.lib = library()[0]
        self.data, self.grad = data, grad  # kept: the C side holds their addresses
        self.a = [torch.zeros_like(p) for p in data]
        self.v = [torch.zeros_like(p) for p in data]
        addresses = lambda tensors: (_P * len(tensors))(*[t.data_ptr() for t in tensors])
        self.arrays = [addresses(t) for t in (data, grad, self.a, self.v)]
        self.widths = (ctypes.c_long * len(data))(*[p.shape[1] for p in data])
        self.rules = (_Rule * len(members))(*[_Rule(OPTIMIZER_CODES[m["optimizer"]], float(m["learning_rate"]),
                                                    float(m["l2_regularization"])) for m in members])
        self.members = len(members)
        self.constants = (ctypes.c_float * len(constants))(*constants)  # optim_step takes them one by one
        self.count = 0

    def step(self) -> None:
        self.count += 1
        self.lib.optim_step(self.members, len(self.data), self.widths, *self.arrays, self.rules, self.count,
                            *self.constants)


def call_block(function, net, windows_per_step: int, x: torch.Tensor, y: torch.Tensor, dropout,
                out: torch.Tensor, batch: int, optimizer: NativeOptimizer) -> None:
    """One C block call (net_train_block or lstm_train_block, which take the same arguments after the net):
    every batch of x [members, rows, features], each a step and an update, drawing `windows_per_step` dropout
    windows per batch, in order, where there is dropout; the optimizer's step count moves on by the batches."""
    width = x.shape[1]
    steps = -(-width // batch)
    keep, keep_stride, scale, offsets = None, 0, None, None
    if dropout is not None and dropout.enabled and windows_per_step:
        drawn = [dropout.next_offset() for _ in range(steps * windows_per_step)]
        offsets = (ctypes.c_long * len(drawn))(*drawn)
        keep, keep_stride, scale = dropout.keep.data_ptr(), dropout.keep.stride(0), dropout.scale.data_ptr()
    xs = x.stride()
    function(net, x.data_ptr(), xs[0], xs[2], xs[1], y.data_ptr(), y.stride(0), width, batch, out.data_ptr(),
             out.stride(0), keep, keep_stride, scale, offsets, len(optimizer.data), optimizer.widths,
             *optimizer.arrays, optimizer.rules, optimizer.count + 1, optimizer.constants)
    optimizer.count += steps


class NativeStep:
    """The C step bound to one DenseStack's parameters, with its activation buffers (allocated once)."""

    def __init__(self, dense, members: int, batch: int) -> None:
        lib, gemm = library()
        self.lib, self.members, self.batch = lib, members, batch
        widths, n_layers = dense.widths, dense.n_layers
        buffers = lambda: [torch.empty(members * n_out * batch) for n_out in widths[1:]]
        self.z, self.h, self.d = buffers(), buffers(), buffers()
        self.dz, self.dh = (torch.empty(members * max(widths) * batch) for _ in range(2))
        self.pointers = [(ctypes.c_void_p * members)() for _ in range(3)]
        self.offsets = (ctypes.c_long * max(n_layers - 1, 1))()
        self.n_hidden = n_layers - 1
        self.dense = dense  # its parameter views must outlive the pointers taken from them
        weights, biases = [w for w, _, _ in dense.layers], [b for _, b, _ in dense.layers]
        addresses = lambda tensors: (_P * n_layers)(*[t.data_ptr() for t in tensors])
        self.net = ctypes.create_string_buffer(lib.net_size())
        status = lib.net_init(self.net, _P(gemm), members, n_layers, (ctypes.c_int * (n_layers + 1))(*widths),
                              ACTIVATION_CODES[dense.activation], ctypes.c_float(LEAKY_SLOPE),
                              addresses(weights), addresses([w.grad for w in weights]),
                              addresses(biases), addresses([b.grad for b in biases]),
                              ctypes.c_long(biases[0].stride(0)),
                              addresses(self.z), addresses(self.h), addresses(self.d),
                              _P(self.dz.data_ptr()), _P(self.dh.data_ptr()), *self.pointers)
        if status != 0:
            raise ValueError(f"the C step takes at most {MAX_LAYERS} layers")

    def __call__(self, x: torch.Tensor, y: torch.Tensor, dropout, out: torch.Tensor) -> None:
        """One step: gradients into the parameters' .grad views, logits into out [members, batch]."""
        keep, keep_stride, scale = None, 0, None
        if dropout is not None and dropout.enabled:
            offsets = self.offsets
            for layer in range(self.n_hidden):  # one window per hidden layer, in order, as fused_mlp.py draws them
                offsets[layer] = dropout.next_offset()
            keep, keep_stride, scale = dropout.keep.data_ptr(), dropout.keep.stride(0), dropout.scale.data_ptr()
        xs = x.stride()
        self.lib.net_step(self.net, x.data_ptr(), xs[0], xs[2], xs[1], y.data_ptr(), y.stride(0), x.shape[1],
                          out.data_ptr(), out.stride(0), keep, keep_stride, scale, self.offsets)

    def train_block(self, x: torch.Tensor, y: torch.Tensor, dropout, out: torch.Tensor, batch: int,
                    optimizer: NativeOptimizer) -> None:
        """Every batch of a block of rows (x [members, rows, features]) in one C call: a step, then the optimizer's.

        The same as calling this step and optimizer.step() batch by batch: the
        dropout windows are drawn in the same order, and the optimizer's step
        count moves on by the number of batches.
        """
        call_block(self.lib.net_train_block, self.net, self.n_hidden, x, y, dropout, out, batch, optimizer)

    def takes(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor, block: bool = False) -> bool:
        """Whether these tensors have a layout the C step reads (else the torch operations run).

        block: x holds a block of batches (train_block), not one batch.
        """
        return (x.dtype == y.dtype == out.dtype == torch.float32 and (block or x.shape[1] <= self.batch)
                and (x.stride(1) == 1 or x.stride(2) == 1) and y.stride(1) == 1 and out.stride(1) == 1)


class NativeLSTMStep:
    """An LSTM's whole training step in C (native.c's lstm_train_block): its layers forward, its head's step
    (NativeStep, which also hands back the gradient of the head's inputs), the layers backward and every
    member's update, for a block of batches per call. With the bce loss; dropout masks from the members'
    DropoutPool, drawn in the order models/fused_lstm.py's forward draws them. Buffers for `batch` rows are
    allocated once."""

    def __init__(self, layers: list[tuple], head, members: int, steps: int, channels: int, hidden: int,
                 batch: int) -> None:
        lib, _ = library()
        self.lib = lib
        self.head = NativeStep(head, members, batch)
        self.head_dx = torch.empty(members * hidden * batch)
        lib.net_set_input_gradient(self.head.net, self.head_dx.data_ptr())
        n_layers = len(layers)
        self.layers = layers  # the parameter views must outlive the pointers taken from them
        states = lambda size: [torch.empty(members * size) for _ in range(n_layers)]
        self.hs, self.cs = states((steps + 1) * batch * hidden), states((steps + 1) * batch * hidden)
        self.tcs, self.acts = states(steps * batch * hidden), states(steps * batch * 4 * hidden)
        widest = max(channels, hidden)
        self.sequence = torch.empty(members * steps * batch * channels)
        self.dgates = torch.empty(members * steps * batch * 4 * hidden)
        self.dh, self.dc = torch.empty(members * batch * hidden), torch.empty(members * batch * hidden)
        self.w_t = torch.empty(members * 4 * hidden * (hidden + widest))
        self.dy, self.dx = torch.empty(members * steps * batch * hidden), torch.empty(members * steps * batch * hidden)
        # with dropout: each gap's masked outputs, and the masked last hidden state
        self.dropped = [torch.empty(members * steps * batch * hidden) for _ in range(n_layers - 1)]
        self.last = torch.empty(members * batch * hidden)
        self.masks_per_step = n_layers + self.head.n_hidden  # the gaps, the last hidden state, the head's layers
        pointers = lambda tensors: (_P * n_layers)(*[t.data_ptr() for t in tensors])
        column = lambda i: [layer[i] for layer in layers]
        strides = (ctypes.c_long * (3 * n_layers))(*[t.stride(0) for layer in layers for t in layer])
        self.net = ctypes.create_string_buffer(lib.lstm_size())
        status = lib.lstm_init(self.net, self.head.net, members, n_layers, steps, channels, hidden,
                               pointers(column(0)), pointers(column(1)), pointers(column(2)),
                               pointers([t.grad for t in column(0)]), pointers([t.grad for t in column(1)]),
                               pointers([t.grad for t in column(2)]), strides, _P(self.sequence.data_ptr()),
                               pointers(self.hs), pointers(self.cs), pointers(self.tcs), pointers(self.acts),
                               *(_P(t.data_ptr()) for t in (self.dgates, self.dh, self.dc, self.w_t, self.dy,
                                                            self.dx, self.head_dx)),
                               (_P * max(n_layers - 1, 1))(*[t.data_ptr() for t in self.dropped]),
                               _P(self.last.data_ptr()))
        if status != 0:
            raise ValueError(f"the C step takes at most {MAX_LAYERS} LSTM layers")

    def train_block(self, x: torch.Tensor, y: torch.Tensor, dropout, out: torch.Tensor, batch: int,
                    optimizer: NativeOptimizer) -> None:
        """Every batch of a block of rows (x [members, rows, features]) in one call: a step, then the update.

        The same as FusedLSTM.train_step and optimizer.step() batch by batch: the
        dropout windows are drawn in the same order.
        """
        call_block(self.lib.lstm_train_block, self.net, self.masks_per_step, x, y, dropout, out, batch,
                   optimizer)
