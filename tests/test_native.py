"""The C training step (models/native.py) computes what the torch operations compute, and is used where it applies.

tests/test_fused.py runs its faithfulness tests (against autograd,
torch.optim and nn.Sequential) through both step implementations; these
tests compare the two directly and check when each one runs.
"""
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inputs.hyperparameters import HYPERPARAMETER_DEFAULTS
from models import cbuild, native
from models.build import build_model
from models.components import LOSSES
from models.fused_mlp import FusedMLP
from models.optim import group_key
from training.loop import member_generator, predict, train_members

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
torch.set_num_threads(1)


@pytest.fixture
def c_step():
    if native.library() is None:
        if os.environ.get("CI"):
            pytest.fail("CI machines have gcc and torch's MKL; the C step must build there")
        pytest.skip("the C step does not apply here (no C compiler, or a torch without MKL)")


def members_of(arch: dict, dropouts=(0.0, 0.3, 0.2, 0.0)) -> list[dict]:
    """Four members that differ in seed, dropout, optimizer and learning rate, sorted as train_task sorts them."""
    members = [{"seed": seed, "params": {**arch, "dropout": dropout, "optimizer": optimizer, "learning_rate": lr}}
               for seed, dropout, optimizer, lr in zip([1, 2, 3, 4], dropouts, ["adam", "rmsprop", "adam", "sgd"],
                                                       [1e-2, 3e-3, 5e-3, 1e-2])]
    return sorted(members, key=lambda m: group_key(m["params"]))


def data(rows: int = 88, features: int = 7):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(rows, features, generator=g)
    return x, ((x[:, 0] - x[:, 1] + 0.5 * torch.randn(rows, generator=g)) > 0.2).to(torch.int8)


def train_both_ways(arch, members, x, y, monkeypatch):
    with_c = train_members(arch, members, x, y, CPU)
    with monkeypatch.context() as patch:
        patch.setattr(native, "applies", lambda arch, device: False)
        with_torch = train_members(arch, members, x, y, CPU)
    return with_c, with_torch


@pytest.mark.parametrize("dropouts", [(0.0, 0.3, 0.2, 0.0), (0.0,) * 4], ids=["dropout", "no dropout"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_c_step_trains_as_the_torch_operations_do(activation, dropouts, c_step, monkeypatch):
    """Three epochs of 88 rows in batches of 16 (each epoch ends on a short batch)."""
    arch = {**HYPERPARAMETER_DEFAULTS, "hidden_layers": [2, 3, 0.5], "activation": activation, "batch_size": 16,
            "max_epochs": 3}
    x, y = data()
    (fast, fast_loss, fast_diverged, _), (slow, slow_loss, slow_diverged, _) = train_both_ways(
        arch, members_of(arch, dropouts), x, y, monkeypatch)
    assert fast.native is not None and slow.native is None  # each way really ran
    torch.testing.assert_close(fast.params.rows(), slow.params.rows(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.as_tensor(fast_loss), torch.as_tensor(slow_loss), rtol=1e-5, atol=1e-6)
    assert fast_diverged.tolist() == slow_diverged.tolist() == [False] * 4
    assert torch.equal(predict(fast, x, 0.5), predict(slow, x, 0.5))


@pytest.mark.parametrize("layers", [1, 2])
def test_c_lstm_trains_as_torchs_lstm_kernel_does(layers, c_step, monkeypatch):
    """Two epochs of an LSTM (dropout between its layers and before the head) both ways: the C layer
    batched over members (native.c) and torch's own LSTM kernel member by member."""
    arch = {**HYPERPARAMETER_DEFAULTS, "model": "lstm", "lstm_hidden_size": 6, "lstm_num_layers": layers,
            "hidden_layers": [1], "batch_size": 16, "max_epochs": 2}
    x, y = data()
    members = members_of(arch)
    fast, fast_loss, _, _ = train_members(arch, members, x, y, CPU)
    with monkeypatch.context() as patch:
        patch.setattr(native, "lstm_applies", lambda device: False)
        slow, slow_loss, _, _ = train_members(arch, members, x, y, CPU)
    assert fast.native_recurrence and not slow.native_recurrence  # each way really ran
    assert fast.native_step is not None and slow.native_step is None
    torch.testing.assert_close(fast.params.rows(), slow.params.rows(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.as_tensor(fast_loss), torch.as_tensor(slow_loss), rtol=1e-5, atol=1e-6)
    assert torch.equal(predict(fast, x, 0.5), predict(slow, x, 0.5))
    # predicting many rows, which the C layer takes in chunks: the same logits as torch's kernel gives
    rows = torch.randn(4, 1100, 7)
    with torch.no_grad():
        chunked = fast.forward(rows, None)
        fast.native_recurrence = False
        whole = fast.forward(rows, None)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dropouts", [(0.0,) * 4, (0.0, 0.3, 0.2, 0.0)], ids=["no dropout", "dropout"])
@pytest.mark.parametrize("layers, channels, hidden, head, activation",
                         [(1, 1, 16, [], "tanh"), (2, 3, 6, [1], "relu"), (3, 3, 20, [2, 1], "tanh")])
def test_c_lstm_step_trains_as_autograd_does(layers, channels, hidden, head, activation, dropouts, c_step,
                                              monkeypatch):
    """An LSTM's whole step runs in C (NativeLSTMStep: layers, head, update); three epochs of 88 rows in
    batches of 16 (each epoch ends on a short batch) give what autograd through the C layers gives, dropout
    masks included (between layers, on the last hidden state, in the head), and what torch's own LSTM kernel
    (torch.nn.LSTM's) gives."""
    arch = {**HYPERPARAMETER_DEFAULTS, "model": "lstm", "lstm_hidden_size": hidden, "lstm_num_layers": layers,
            "hidden_layers": head, "activation": activation, "batch_size": 16, "max_epochs": 3}
    x, y = data(features=7 * channels)
    members = members_of(arch, dropouts=dropouts)
    fast, fast_loss, _, _ = train_members(arch, members, x, y, CPU, channels=channels)
    with monkeypatch.context() as patch:
        patch.setattr(native, "applies", lambda arch, device: False)
        slow, slow_loss, _, _ = train_members(arch, members, x, y, CPU, channels=channels)
        patch.setattr(native, "lstm_applies", lambda device: False)  # and torch's own LSTM kernel, member by member
        kernel, kernel_loss, _, _ = train_members(arch, members, x, y, CPU, channels=channels)
    assert fast.native_step is not None and slow.native_step is None and slow.native_recurrence  # each way ran
    assert not kernel.native_recurrence
    torch.testing.assert_close(fast.params.rows(), slow.params.rows(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.as_tensor(fast_loss), torch.as_tensor(slow_loss), rtol=1e-5, atol=1e-6)
    assert torch.equal(predict(fast, x, 0.5), predict(slow, x, 0.5))
    # torch's kernel sums in another order; Adam (lr 1e-2) turns the rounding of a gradient near zero into a
    # step of up to a few percent of lr, so after 18 updates a weight or two differ by up to ~3e-4 (the C
    # layer before this whole-step path differed from the kernel by as much)
    torch.testing.assert_close(fast.params.rows(), kernel.params.rows(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(torch.as_tensor(fast_loss), torch.as_tensor(kernel_loss), rtol=1e-4, atol=1e-5)
    assert torch.equal(predict(fast, x, 0.5), predict(kernel, x, 0.5))


def test_c_step_takes_rows_in_either_layout(c_step):
    """train_members passes feature-major gathers; a [members, batch, features] tensor as it lies works too."""
    arch = {**HYPERPARAMETER_DEFAULTS, "hidden_layers": [2, 1], "batch_size": 8}
    models = [build_model(arch, [arch] * 3, 5, [member_generator(s, "init") for s in range(3)], CPU) for _ in range(2)]
    x = torch.randn(3, 8, 5)
    y = (torch.rand(3, 8) > 0.5).float()
    first = models[0].train_step(x, y, None, LOSSES["bce"])
    second = models[1].train_step(x.transpose(1, 2).contiguous().transpose(1, 2), y, None, LOSSES["bce"])
    assert models[0].native is not None and models[1].native is not None
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(models[0].params.grad_buffer.clone(), models[1].params.grad_buffer.clone())


@pytest.mark.parametrize("change", [{"activation": "gelu"}, {"loss_function": "mse"}, {"activation": "prelu"}])
def test_settings_the_c_step_lacks_train_through_torch(change, c_step):
    arch = {**HYPERPARAMETER_DEFAULTS, "hidden_layers": [2], "batch_size": 16, "max_epochs": 1, **change}
    x, y = data()
    model, losses, _, _ = train_members(arch, members_of(arch), x, y, CPU)
    assert model.native is None
    assert torch.isfinite(torch.as_tensor(losses)).all()


def test_opt_out_trains_through_torch(c_step, monkeypatch):
    monkeypatch.setenv(native.OPT_OUT, "0")
    native.library.cache_clear()
    try:
        arch = {**HYPERPARAMETER_DEFAULTS, "hidden_layers": [2], "batch_size": 16, "max_epochs": 1}
        model, _, _, _ = train_members(arch, members_of(arch), *data(), CPU)
        assert model.native is None
    finally:
        monkeypatch.delenv(native.OPT_OUT)
        native.library.cache_clear()


def test_workers_run_the_c_step(c_step):
    """A worker started as search.py starts them builds (or finds) the library and can run it."""
    script = ("from models import native; from sweep import pool; executor = pool.start_workers(1); "
              "print(executor.submit(native.available).result()); pool.stop_workers()")
    env = {k: v for k, v in os.environ.items() if k != native.OPT_OUT}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


def test_library_is_built_once_per_source_and_cpu(tmp_path):
    if not any(map(__import__("shutil").which, ("cc", "gcc"))):
        pytest.skip("no C compiler")
    source = "int answer(void) { return 42; }\n"
    library = cbuild.build("answer", source, ["-O2"], tmp_path, for_this_cpu=True)
    assert library.parent == tmp_path and library.name.startswith("answer_")
    assert cbuild.build("answer", source, ["-O2"], tmp_path, for_this_cpu=True) == library  # reused
    assert cbuild.build("answer", source.replace("42", "43"), ["-O2"], tmp_path) != library  # another source
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".so")] == []  # no scratch files left behind
    assert ctypes.CDLL(str(library)).answer() == 42


def test_a_failed_build_reads_the_same_in_every_process(tmp_path):
    if not any(map(__import__("shutil").which, ("cc", "gcc"))):
        pytest.skip("no C compiler")
    said = []
    for _ in range(2):  # two processes' builds use two scratch folders
        with pytest.raises(subprocess.CalledProcessError) as info:
            cbuild.build("broken", "int f(void) { syntax error }\n", ["-O2"], tmp_path)
        said.append(cbuild.failure(info.value))
    assert said[0] == said[1]
    assert said[0].startswith(f"{Path(cbuild.compiler()).name} exited with status ") and "error" in said[0]
    assert str(tmp_path) not in said[0]
    assert list(tmp_path.iterdir()) == []  # no scratch files left behind


def test_a_block_in_one_call_equals_its_batches_one_by_one(c_step, monkeypatch):
    """FusedMLP.train_block (a block of batches, each with its optimizer step, in one C call) == batch by batch."""
    arch = {**HYPERPARAMETER_DEFAULTS, "hidden_layers": [2, 1], "batch_size": 16, "max_epochs": 2}
    x, y = data()
    calls = []
    original = FusedMLP.train_block
    monkeypatch.setattr(FusedMLP, "train_block", lambda *a, **k: calls.append(original(*a, **k)) or calls[-1])
    whole, whole_loss, _, _ = train_members(arch, members_of(arch), x, y, CPU)
    assert calls and all(calls), "the block path did not run"
    monkeypatch.setattr(FusedMLP, "train_block", lambda *a, **k: False)
    batched, batched_loss, _, _ = train_members(arch, members_of(arch), x, y, CPU)
    assert torch.equal(whole.params.rows(), batched.params.rows())  # the same C code, step for step
    assert (whole_loss == batched_loss).all()


def test_l1_trains_batch_by_batch_and_as_the_torch_operations_do(c_step, monkeypatch):
    """L1 is added to the gradients between the C step and the C rules, so a block cannot be one call."""
    arch = {**HYPERPARAMETER_DEFAULTS, "hidden_layers": [2, 1], "batch_size": 16, "max_epochs": 2,
            "l1_regularization": 1e-3}
    x, y = data()
    (fast, _, _, _), (slow, _, _, _) = train_both_ways(arch, members_of(arch), x, y, monkeypatch)
    assert fast.native is not None
    torch.testing.assert_close(fast.params.rows(), slow.params.rows(), rtol=1e-4, atol=1e-5)
