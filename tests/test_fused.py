"""Fused training is faithful: each member trains exactly as it would alone, and as plain torch would.

References are independent of our code: torch.optim for the update rules,
autograd for the hand-written backward pass, torch.nn.LSTM for the LSTM
cell, and an nn.Sequential trained with torch.optim for a whole training.
"""
import os

import numpy as np
import pytest
import torch

from bench.naive import build_naive_model
from inputs.hyperparameters import ACTIVATIONS, HYPERPARAMETER_DEFAULTS, OPTIMIZERS
from models import native
from models.build import build_model
from models.components import LOSSES
from models.dropout import DropoutPool
from models.optim import FusedOptimizer, group_key
from training import loop
from training.loop import evaluation_loss, member_generator, predict, train_members

torch.set_num_threads(1)
CPU = torch.device("cpu")


def hp(**changes) -> dict:
    return {**HYPERPARAMETER_DEFAULTS, **changes}


@pytest.fixture(params=["C step", "torch operations"])
def step_path(request, monkeypatch):
    """Run a test through each of the two step implementations: models/native.py's C (the MLP's step, the
    LSTM's layers or whole step) and the torch operations (models/fused_mlp.py; torch's LSTM kernel per member)."""
    if request.param == "torch operations":
        monkeypatch.setattr(native, "applies", lambda arch, device: False)
        monkeypatch.setattr(native, "lstm_applies", lambda device: False)
    elif native.library() is None:
        if os.environ.get("CI"):
            pytest.fail("CI machines have gcc and torch's MKL; the C step must build there")
        pytest.skip("the C step does not apply here (no C compiler, or a torch without MKL)")
    return request.param


def small_data(rows=96, features=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=g)
    y = ((x[:, 0] + 0.5 * torch.randn(rows, generator=g)) > 0.3).to(torch.int8)
    return x, y


# --------------------------------------------------------------- optimizers
TORCH_OPTIMIZERS = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad, "adamax": torch.optim.Adamax,
    "sgd": lambda params, lr, weight_decay: torch.optim.SGD(params, lr, momentum=0.9, weight_decay=weight_decay),
}


# the optimizer's two implementations: the C rules (models/native.py), and the row-wise rules in torch
OPTIMIZER_PATHS = {"C rules": {}, "rows": {"use_native": False}}


def optimizer_path_or_skip(path: str) -> dict:
    if path == "C rules" and not native.available():
        if os.environ.get("CI"):
            pytest.fail("CI machines have gcc and torch's MKL; the C step must build there")
        pytest.skip("the C step does not apply here (no C compiler, or a torch without MKL)")
    return OPTIMIZER_PATHS[path]


def expected_group_type(kind: str, path: str) -> str:
    if path == "C rules" and kind in native.OPTIMIZER_CODES:
        return "NativeOptimizer"
    return "_Rows"


@pytest.mark.parametrize("path", OPTIMIZER_PATHS)
@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_each_row_follows_torch_optim(kind, path):
    options = optimizer_path_or_skip(path)
    members = [hp(optimizer=kind, learning_rate=lr, l2_regularization=l2)
               for lr, l2 in [(1e-2, 0.0), (3e-3, 0.0), (1e-2, 0.05)]]
    members.sort(key=group_key)
    g = torch.Generator().manual_seed(1)
    data = torch.randn(len(members), 40, generator=g)
    grad = torch.zeros_like(data)
    fused = FusedOptimizer(data, grad, members, **options)
    references = []
    for row, m in enumerate(members):
        p = data[row].clone().requires_grad_()
        references.append((p, TORCH_OPTIMIZERS[kind]([p], lr=m["learning_rate"], weight_decay=m["l2_regularization"])))
    for _ in range(25):
        grad.copy_(torch.randn(data.shape, generator=g))
        for row, (p, opt) in enumerate(references):
            p.grad = grad[row].clone()
            opt.step()
        fused.step()
    for row, (p, _) in enumerate(references):
        torch.testing.assert_close(data[row], p.detach(), rtol=1e-5, atol=1e-6)
    assert {type(group).__name__ for group in fused.groups} == {expected_group_type(kind, path)}


def test_c_rules_update_members_of_different_optimizers_in_one_call():
    """One task's members may each use another optimizer; the C rules take them all at once."""
    optimizer_path_or_skip("C rules")
    kinds = sorted(native.OPTIMIZER_CODES)
    members = sorted([hp(optimizer=kind, learning_rate=1e-2, l2_regularization=0.01 * (i % 2))
                      for i, kind in enumerate(kinds)], key=group_key)
    g = torch.Generator().manual_seed(4)
    data = torch.randn(len(members), 30, generator=g)
    grad = torch.zeros_like(data)
    fused = FusedOptimizer(data, grad, members)
    assert [type(group).__name__ for group in fused.groups] == ["NativeOptimizer"]
    references = [data.clone(), torch.zeros_like(data)]
    per_row = FusedOptimizer(*references, members, use_native=False)
    for _ in range(15):
        grad.copy_(torch.randn(data.shape, generator=g))
        references[1].copy_(grad)
        fused.step()
        per_row.step()
    torch.testing.assert_close(data, references[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", OPTIMIZER_PATHS)
@pytest.mark.parametrize("kind", OPTIMIZERS)
def test_parameter_blocks_update_as_one_matrix(kind, path):
    """A model's parameters come in several blocks (models/flat.py); split or whole, each row moves the same."""
    options = optimizer_path_or_skip(path)
    members = sorted([hp(optimizer=kind, learning_rate=lr, l1_regularization=l1, l2_regularization=l2)
                      for lr, l1, l2 in [(1e-2, 0.0, 0.0), (3e-3, 0.01, 0.0), (1e-2, 0.0, 0.05)]], key=group_key)
    g = torch.Generator().manual_seed(2)
    whole = torch.randn(len(members), 40, generator=g)
    whole_grad = torch.zeros_like(whole)
    blocks = [whole[:, :25].clone(), whole[:, 25:].clone()]
    block_grads = [torch.zeros_like(b) for b in blocks]
    one, split = (FusedOptimizer(whole, whole_grad, members, **options),
                  FusedOptimizer(blocks, block_grads, members, **options))
    for _ in range(10):
        whole_grad.copy_(torch.randn(whole.shape, generator=g))
        block_grads[0].copy_(whole_grad[:, :25])
        block_grads[1].copy_(whole_grad[:, 25:])
        one.step()
        split.step()
    torch.testing.assert_close(torch.cat(blocks, dim=1), whole, rtol=1e-6, atol=1e-7)


def test_l1_adds_the_sign_of_the_weights_to_the_gradient():
    members = [hp(optimizer="sgd", learning_rate=0.1, l1_regularization=l1) for l1 in (0.0, 0.5)]
    data = torch.tensor([[1.0, -2.0], [1.0, -2.0]])
    grad = torch.zeros_like(data)
    FusedOptimizer(data, grad, members).step()
    # zero gradient: only the L1 subgradient 0.5 * sign(w) moves the second row
    torch.testing.assert_close(data, torch.tensor([[1.0, -2.0], [0.95, -1.95]]))


def test_members_must_be_grouped():
    members = [hp(optimizer="adam"), hp(optimizer="rmsprop"), hp(optimizer="adam")]
    with pytest.raises(ValueError, match="sorted"):
        FusedOptimizer(torch.zeros(3, 2), torch.zeros(3, 2), members)


# ------------------------------------------------------ hand-written backward
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_mlp_backward_matches_autograd(activation, loss, step_path):
    arch = hp(hidden_layers=[2, 1], activation=activation, loss_function=loss)
    members = [hp(**{**arch, "dropout": d}) for d in (0.0, 0.3, 0.5)]
    model = build_model(arch, members, 5, [member_generator(s, "init") for s in range(3)], CPU)
    x, y = torch.randn(3, 16, 5), (torch.rand(3, 16) > 0.5).float()
    pools = [DropoutPool([m["dropout"] for m in members], [member_generator(s, "dropout") for s in range(3)],
                         16 * 10, CPU) for _ in range(2)]  # two pools, identical masks
    model.train_step(x, y, pools[0], LOSSES[loss])
    manual = model.params.grad_buffer.clone()
    model.params.grad_buffer.zero_()
    per_member = LOSSES[loss](model.forward(x, pools[1]), y).sum(dim=1)
    per_member.backward(gradient=torch.full_like(per_member, 1 / 16))
    torch.testing.assert_close(manual, model.params.grad_buffer.clone(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- LSTM
def torch_lstm_of(model, e: int, layers: int = 2):
    """Member e of a fused LSTM (no head layers) as torch.nn.LSTM + torch.nn.Linear with its weights."""
    lstm = torch.nn.LSTM(model.channels, model.hidden, layers, batch_first=True)
    head = torch.nn.Linear(model.hidden, 1)
    weight, b, _ = model.head.layers[0]
    with torch.no_grad():
        for k in range(layers):
            w_ih, w_hh, bias = (t[e] for t in model.layers[k])
            getattr(lstm, f"weight_ih_l{k}").copy_(w_ih.T)
            getattr(lstm, f"weight_hh_l{k}").copy_(w_hh.T)
            getattr(lstm, f"bias_ih_l{k}").copy_(bias[0])
            getattr(lstm, f"bias_hh_l{k}").zero_()
        head.weight.copy_(weight[e])
        head.bias.copy_(b[e, :, 0])
    return lstm, head


def as_steps(x: torch.Tensor, channels: int) -> torch.Tensor:
    """[batch, channels x days] (channel after channel, as prepare.py writes them) -> [batch, days, channels]."""
    return x.reshape(x.shape[0], channels, -1).transpose(1, 2)


# (hidden size, batch): native.c's layer works on vectors of 16 floats and blocks of 4 rows, so these take
# its whole-vector and whole-block paths (16), their remainders (5, 20; 7 and 5 rows), and both at once
LSTM_SHAPES = [(5, 4), (16, 7), (20, 5)]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hidden, batch", LSTM_SHAPES)
def test_lstm_cell_matches_torch_lstm(step_path, channels, hidden, batch):
    arch = hp(model="lstm", lstm_hidden_size=hidden, lstm_num_layers=2, hidden_layers=[])
    members = [arch, arch]
    model = build_model(arch, members, 7 * channels, [member_generator(s, "init") for s in (3, 4)], CPU, channels)
    x = torch.randn(2, batch, 7 * channels)
    ours = model.forward(x, None)
    for e in range(2):
        lstm, head = torch_lstm_of(model, e)
        with torch.no_grad():
            out, _ = lstm(as_steps(x[e], channels))
            expected = head(out[:, -1])
        torch.testing.assert_close(ours[e], expected.squeeze(-1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("hidden, batch", LSTM_SHAPES)
def test_lstm_gradients_are_torch_lstms(step_path, channels, hidden, batch):
    """One training step's gradients, written into the fused model's gradient buffer, are those of
    torch.nn.LSTM + a linear head with the same weights (each member its own)."""
    arch = hp(model="lstm", lstm_hidden_size=hidden, lstm_num_layers=2, hidden_layers=[])
    model = build_model(arch, [arch, arch, arch], 7 * channels, [member_generator(s, "init") for s in (3, 4, 5)],
                        CPU, channels)
    x, y = torch.randn(3, batch, 7 * channels), torch.randint(0, 2, (3, batch)).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits
    model.train_step(x, y, None, lambda logits, target: loss(logits, target, reduction="none"))
    for e in range(3):
        lstm, head = torch_lstm_of(model, e)
        out, _ = lstm(as_steps(x[e], channels))
        loss(head(out[:, -1]).squeeze(-1), y[e]).backward()
        for k in range(2):
            w_ih, w_hh, bias = (t.grad[e] for t in model.layers[k])
            torch.testing.assert_close(w_ih, getattr(lstm, f"weight_ih_l{k}").grad.T, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(w_hh, getattr(lstm, f"weight_hh_l{k}").grad.T, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(bias[0], getattr(lstm, f"bias_ih_l{k}").grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.head.layers[0][0].grad[e], head.weight.grad, rtol=1e-5, atol=1e-6)
        assert model.layers[0][1].grad[e].abs().sum() > 0


# ---------------------------------------------------- fused == alone == torch
MIXED = [  # members that differ in everything a fused task lets them differ in
    dict(seed=11, learning_rate=1e-2, optimizer="adam", dropout=0.0, weight_initialization="default"),
    dict(seed=12, learning_rate=3e-3, optimizer="rmsprop", dropout=0.3, weight_initialization="xavier_uniform"),
    dict(seed=13, learning_rate=1e-2, optimizer="sgd", dropout=0.1, l2_regularization=1e-3,
         weight_initialization="kaiming_normal"),
    dict(seed=14, learning_rate=5e-3, optimizer="adamax", dropout=0.2, l1_regularization=1e-4,
         weight_initialization="orthogonal"),
]


# members the C update rules all cover (no adamax, no L1): fused, an LSTM's whole step then runs in C
C_RULES = [
    dict(seed=11, learning_rate=1e-2, optimizer="adam", dropout=0.0, weight_initialization="default"),
    dict(seed=12, learning_rate=3e-3, optimizer="rmsprop", dropout=0.3, weight_initialization="xavier_uniform"),
    dict(seed=13, learning_rate=1e-2, optimizer="sgd", dropout=0.1, l2_regularization=1e-3,
         weight_initialization="kaiming_normal"),
    dict(seed=14, learning_rate=5e-3, optimizer="adagrad", dropout=0.2, weight_initialization="orthogonal"),
]


@pytest.mark.parametrize("mixed", [MIXED, C_RULES], ids=["any rules", "C rules"])
@pytest.mark.parametrize("model", ["mlp", "lstm"])
def test_fused_member_trains_exactly_as_alone(model, mixed, step_path):
    arch = hp(model=model, hidden_layers=[2, 1], batch_size=16, max_epochs=2, lstm_hidden_size=4)
    members = [{"seed": m["seed"], "params": hp(**{**arch, **{k: v for k, v in m.items() if k != "seed"}})}
               for m in mixed]
    members.sort(key=lambda m: group_key(m["params"]))
    x, y = small_data()
    fused, _, _, _ = train_members(arch, members, x, y, CPU)
    if model == "lstm":  # which way the fused members trained: the whole step in C only where every rule is C's
        assert (fused.native_step is not None) == (mixed is C_RULES and step_path == "C step")
    for row, member in enumerate(members):
        alone, _, _, _ = train_members(arch, [member], x, y, CPU)
        torch.testing.assert_close(fused.params.rows()[row], alone.params.rows()[0], rtol=1e-5, atol=1e-6)
        assert torch.equal(predict(fused, x, 0.5)[row], predict(alone, x, 0.5)[0])


@pytest.mark.parametrize("activation", ["tanh", "leaky_relu", "relu"])
def test_fused_member_matches_plain_torch_training(activation, step_path):
    """Same initial weights and batch order: our fused training == nn.Sequential + torch.optim.Adam.

    Each activation has its own backward kernel in the hand-written backward
    pass (ACTIVATION_BACKWARD); 88 rows make each epoch end on a short batch.
    """
    arch = hp(hidden_layers=[2, 1], batch_size=16, max_epochs=3, activation=activation, learning_rate=1e-2)
    seed = 21
    x, y = small_data(rows=88)
    fused, _, _, _ = train_members(arch, [{"seed": seed, "params": arch}], x, y, CPU)
    start = build_model(arch, [arch], x.shape[1], [member_generator(seed, "init")], CPU)

    reference = build_naive_model(arch, x.shape[1])
    linears = [m for m in reference if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer, (weight, bias, _) in zip(linears, start.dense.layers):
            layer.weight.copy_(weight[0])  # the same [out, in] layout as torch.nn.Linear
            layer.bias.copy_(bias[0, :, 0])
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    shuffle = member_generator(seed, "shuffle")
    for _ in range(3):
        order = torch.randperm(len(x), generator=shuffle)
        for start_row in range(0, len(x), 16):
            idx = order[start_row:start_row + 16]
            optimizer.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(
                reference(x[idx]).squeeze(-1), y[idx].float()).backward()
            optimizer.step()
    for layer, (weight, bias, _) in zip(linears, fused.dense.layers):
        torch.testing.assert_close(weight[0], layer.weight.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bias[0, :, 0], layer.bias.detach(), rtol=1e-4, atol=1e-5)


def test_initial_weights_depend_only_on_the_member_seed():
    arch = hp(hidden_layers=[2])
    alone = build_model(arch, [arch], 4, [member_generator(5, "init")], CPU)
    fused = build_model(arch, [arch] * 3, 4, [member_generator(s, "init") for s in (9, 5, 7)], CPU)
    assert torch.equal(alone.params.rows()[0], fused.params.rows()[1])
    assert not torch.equal(fused.params.rows()[0], fused.params.rows()[1])


def test_diverging_member_is_flagged_without_touching_the_others(step_path):
    arch = hp(hidden_layers=[2], batch_size=16, max_epochs=2)
    members = [{"seed": 1, "params": hp(**{**arch, "learning_rate": 1e-2})},
               {"seed": 2, "params": hp(**{**arch, "optimizer": "sgd", "learning_rate": 1e6})}]
    x, y = small_data()
    fused, losses, diverged, _ = train_members(arch, members, x, y, CPU)
    alone, _, _, _ = train_members(arch, members[:1], x, y, CPU)
    assert diverged.tolist() == [False, True]
    assert np.isfinite(losses[0])
    torch.testing.assert_close(fused.params.rows()[0], alone.params.rows()[0])


def test_after_epoch_can_stop_training_early():
    """The pruning hook: called after each epoch with its index; True stops, and the epochs are counted."""
    arch = hp(hidden_layers=[2, 1], batch_size=16, max_epochs=5, dropout=0.2)
    members = [{"seed": 31, "params": arch}, {"seed": 32, "params": arch}]
    x, y = small_data()
    calls = []

    def after_epoch(epoch, model):
        calls.append(epoch)
        assert model.params.rows().shape[0] == 2
        return epoch == 1

    stopped, losses, diverged, epochs = train_members(arch, members, x, y, CPU, after_epoch=after_epoch)
    assert calls == [0, 1] and epochs == 2
    two, two_losses, _, two_epochs = train_members({**arch, "max_epochs": 2}, members, x, y, CPU)
    assert two_epochs == 2
    torch.testing.assert_close(stopped.params.rows(), two.params.rows())
    np.testing.assert_allclose(losses, two_losses)
    # a hook that never stops changes nothing
    _, _, _, full = train_members(arch, members, x, y, CPU, after_epoch=lambda epoch, model: False)
    assert full == 5


def test_training_loss_is_the_mean_loss_over_the_epoch():
    """With a zero learning rate the weights never move, so the epoch's loss is evaluation_loss on the same rows."""
    arch = hp(hidden_layers=[2, 1], batch_size=16, max_epochs=1, optimizer="sgd", learning_rate=0.0)
    members = [{"seed": s, "params": arch} for s in (41, 42, 43)]
    x, y = small_data(rows=90)  # 5 full batches and a partial one
    model, losses, _, _ = train_members(arch, members, x, y, CPU)
    start = build_model(arch, [arch] * 3, x.shape[1], [member_generator(s, "init") for s in (41, 42, 43)], CPU)
    torch.testing.assert_close(model.params.rows(), start.params.rows())
    np.testing.assert_allclose(losses, evaluation_loss(model, x, y, "bce"), rtol=1e-5)


def test_evaluation_loss_matches_plain_torch_and_ignores_dropout_and_chunking():
    arch = hp(hidden_layers=[2, 1], dropout=0.5)
    model = build_model(arch, [arch] * 2, 6, [member_generator(s, "init") for s in (51, 52)], CPU)
    x, y = small_data(rows=50)
    ours = evaluation_loss(model, x, y, "mse")
    np.testing.assert_allclose(evaluation_loss(model, x, y, "mse", chunk=7), ours, rtol=1e-6)
    for e in range(2):
        reference = build_naive_model(arch, x.shape[1]).eval()
        linears = [m for m in reference if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for layer, (weight, bias, _) in zip(linears, model.dense.layers):
                layer.weight.copy_(weight[e])
                layer.bias.copy_(bias[e, :, 0])
            expected = torch.nn.functional.mse_loss(torch.sigmoid(reference(x).squeeze(-1)), y.float())
        assert ours[e] == pytest.approx(expected.item(), rel=1e-5)


def test_gather_blocks_do_not_change_the_result(monkeypatch):
    """Rows are gathered a block of steps at a time; the block size must not matter."""
    arch = hp(hidden_layers=[2, 1], batch_size=16, max_epochs=2, dropout=0.1)
    members = [{"seed": s, "params": hp(**{**arch, "learning_rate": lr})} for s, lr in ((61, 1e-2), (62, 3e-3))]
    x, y = small_data(rows=90)
    whole, whole_losses, _, _ = train_members(arch, members, x, y, CPU)
    monkeypatch.setattr(loop, "GATHER_BYTES", 1)  # one step per block
    blocked, blocked_losses, _, _ = train_members(arch, members, x, y, CPU)
    torch.testing.assert_close(whole.params.rows(), blocked.params.rows())
    np.testing.assert_allclose(whole_losses, blocked_losses, rtol=1e-6)


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
def test_one_unit_hidden_layer_backward_matches_autograd(activation, step_path):
    """A hidden layer one unit wide takes the outer-product path of the hand-written backward."""
    arch = hp(hidden_layers=[2, 0.2, 1], activation=activation)  # 5 inputs -> 10 -> 1 -> 5 -> 1
    members = [hp(**{**arch, "dropout": d}) for d in (0.0, 0.4)]
    model = build_model(arch, members, 5, [member_generator(s, "init") for s in range(2)], CPU)
    assert [w.shape[1] for w, _, _ in model.dense.layers] == [10, 1, 5, 1]
    x, y = torch.randn(2, 16, 5), (torch.rand(2, 16) > 0.5).float()
    pools = [DropoutPool([m["dropout"] for m in members], [member_generator(s, "dropout") for s in range(2)],
                         16 * 10, CPU) for _ in range(2)]
    model.train_step(x, y, pools[0], LOSSES["bce"])
    manual = model.params.grad_buffer.clone()
    model.params.grad_buffer.zero_()
    per_member = LOSSES["bce"](model.forward(x, pools[1]), y).sum(dim=1)
    per_member.backward(gradient=torch.full_like(per_member, 1 / 16))
    torch.testing.assert_close(manual, model.params.grad_buffer.clone(), rtol=1e-5, atol=1e-6)
