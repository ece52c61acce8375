"""Tests of nnmamba_nets.load_pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointSaver

from nnmamba_nets import load_pretrained, nnMambaEncoder, nnMambaSeg


def small_encoder() -> nnMambaEncoder:
    return nnMambaEncoder(in_channels=1, out_channels=2, channels=8, blocks=2)


@pytest.fixture(scope="module")
def trained_encoder() -> nnMambaEncoder:
    """An encoder after one training step, so weights and BatchNorm statistics differ from a fresh one."""
    torch.manual_seed(0)
    net = small_encoder().train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(2, 1, 16, 16, 16)).pow(2).mean().backward()
    optimizer.step()
    return net.eval()


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def test_checkpoint_file_loads_into_a_fresh_network(trained_encoder, tmp_path):
    path = tmp_path / "encoder.pt"
    torch.save(trained_encoder.state_dict(), path)
    fresh = small_encoder()
    assert load_pretrained(fresh, path) is fresh
    assert_same_state(fresh, trained_encoder)
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), trained_encoder(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {"state": {}, "param_groups": []}},
        lambda sd: {"network": sd},
        lambda sd: {"net": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"checkpoint": 1, "model": {"state_dict": sd}},
    ],
    ids=["state_dict", "model+optimizer", "network", "net", "DataParallel", "nested-DDP", "nested-containers"],
)
def test_containers_and_prefixes_are_unwrapped(trained_encoder, wrap, tmp_path):
    path = tmp_path / "wrapped.pt"
    torch.save(wrap(trained_encoder.state_dict()), path)
    assert_same_state(load_pretrained(small_encoder(), path), trained_encoder)
    assert_same_state(load_pretrained(small_encoder(), wrap(trained_encoder.state_dict())), trained_encoder)


@pytest.mark.parametrize("save_dict_keys", [("model", "optimizer"), ("network",)])
def test_monai_checkpoint_saver_files_load(save_dict_keys, tmp_path):
    """Checkpoints written by a real MONAI SupervisedTrainer + CheckpointSaver (one object: bare state_dict)."""
    torch.manual_seed(0)
    net = small_encoder()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    data = [{"image": torch.randn(2, 1, 16, 16, 16), "label": torch.randn(2, 2)}]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=optimizer,
        loss_function=torch.nn.MSELoss(),
    )
    objects = {"model": net, "network": net, "optimizer": optimizer}
    CheckpointSaver(str(tmp_path), {k: objects[k] for k in save_dict_keys}, save_final=True).attach(trainer)
    trainer.run()
    (path,) = Path(tmp_path).glob("*.pt")
    assert_same_state(load_pretrained(small_encoder(), path), net)


def test_all_mismatches_reported_in_one_error(trained_encoder, tmp_path):
    state = dict(trained_encoder.state_dict())
    del state["mlp.3.bias"]
    state["mlp.9.weight"] = torch.zeros(3)
    state["mlp.0.weight"] = torch.zeros(5, 112)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        load_pretrained(small_encoder(), path)
    message = str(error.value)
    assert str(path) in message
    assert "missing keys (1)" in message and "mlp.3.bias" in message
    assert "unexpected keys (1)" in message and "mlp.9.weight" in message
    assert "mis-shaped keys (1)" in message and "mlp.0.weight: checkpoint (5, 112), network (8, 112)" in message


def test_non_strict_skips_missing_and_unexpected_but_not_mis_shaped(trained_encoder):
    state = dict(trained_encoder.state_dict())
    del state["mlp.3.bias"]
    state["extra.weight"] = torch.zeros(1)
    fresh = small_encoder()
    fresh_bias = fresh.mlp[3].bias.detach().clone()
    load_pretrained(fresh, state, strict=False)
    torch.testing.assert_close(fresh.mlp[0].weight, trained_encoder.mlp[0].weight)
    torch.testing.assert_close(fresh.mlp[3].bias.detach(), fresh_bias)
    state["mlp.0.weight"] = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="mis-shaped"):
        load_pretrained(small_encoder(), state, strict=False)


def test_conflicting_values_for_a_shared_mamba_layer_are_rejected():
    net = nnMambaSeg(channels=16, blocks=3)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["layer1.2.mamba_layer.nin.weight"] += 1.0
    with pytest.raises(ValueError, match="layer1.2.mamba_layer.nin.weight != layer1.1.mamba_layer.nin.weight"):
        load_pretrained(nnMambaSeg(channels=16, blocks=3), state)


def test_unsafe_missing_and_empty_files(tmp_path):
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {"w": Path("x")}}, unsafe)  # an arbitrary object: weights_only refuses it
    with pytest.raises(ValueError, match=f"Cannot load checkpoint {unsafe}.*weights_only=True"):
        load_pretrained(small_encoder(), unsafe)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_pretrained(small_encoder(), tmp_path / "nowhere.pt")
    not_weights = tmp_path / "numbers.pt"
    torch.save({"epoch": 3, "best_metric": 0.5}, not_weights)
    with pytest.raises(ValueError, match="no state_dict found; top-level keys are \\['best_metric', 'epoch'\\]"):
        load_pretrained(small_encoder(), not_weights)
