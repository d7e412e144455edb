"""Fused models: many members (one per training) stacked into batched tensors (torch; worker side).

    build       build_model: the trainer's one entry point
    fused_mlp, fused_lstm, components, dropout, flat, optim    the models and their optimizers in torch
    native, native.c, cbuild     the C step (an MLP's whole step, optimizer rules, LSTM layers), built once per machine
    mkl_shim    opt-in: MKL's AVX-512 kernels on AMD CPUs (SWEEP_MKL_SHIM=1)

Importing the package itself loads nothing: mkl_shim and cbuild need no torch, so the
main process can use them to prepare the workers' environment.
"""
