"""Tests of nnmamba_nets.load_pretrained."""

from __future__ import annotations

import copy
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointSaver

from nnmamba_nets import load_pretrained, nnMambaEncoder, nnMambaSeg
from nnmamba_nets.nets.pretrained import load_checkpoint


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


# ---- nnU-Net v1 checkpoint files (model_final_checkpoint.model, model_best.model) -----------------------
def nnunet_v1_checkpoint(net: torch.nn.Module) -> dict:
    """A checkpoint as nnU-Net v1's ``save_checkpoint`` writes it: numpy floats in the training curves."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    net(torch.randn(2, 1, 16, 16, 16)).pow(2).mean().backward()
    optimizer.step()  # momentum buffers in the optimizer state
    losses = [np.float64(v) for v in (0.9, 0.7, 0.6)]
    return {
        "epoch": 3,
        "state_dict": net.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "lr_scheduler_state_dict": None,
        "plot_stuff": (losses, losses[1:], [], [np.float64(0.5), np.float32(0.55)]),
        "best_stuff": (2, np.float64(0.6), np.float64(0.55), np.float64(0.52)),
        "amp_grad_scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 7},
    }


def test_nnunet_v1_checkpoint_with_numpy_scalars_loads(trained_encoder, tmp_path):
    path = tmp_path / "model_final_checkpoint.model"
    torch.save(nnunet_v1_checkpoint(copy.deepcopy(trained_encoder).train()), path)
    with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses the numpy scalars ...
        torch.load(path, weights_only=True)
    loaded = load_pretrained(small_encoder(), path)  # ... load_pretrained allows exactly those
    weights = load_checkpoint(path)["state_dict"]
    for key, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, weights[key], rtol=0, atol=0, msg=key)
    assert load_checkpoint(path)["best_stuff"][1] == np.float64(0.6)


def _rewrite_pickle(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes in the pickle (``<archive>/data.pkl``) of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info, data.replace(old, new) if info.filename.endswith("data.pkl") else data)


def test_nnunet_v1_checkpoint_written_with_numpy_1_loads(trained_encoder, tmp_path):
    path = tmp_path / "model_best.model"
    torch.save(nnunet_v1_checkpoint(copy.deepcopy(trained_encoder).train()), path)
    _rewrite_pickle(path, b"numpy._core.multiarray", b"numpy.core.multiarray")  # numpy 1's module name
    with zipfile.ZipFile(path) as archive:
        assert b"numpy.core.multiarray\nscalar" in archive.read(
            next(n for n in archive.namelist() if n.endswith("data.pkl"))
        )
    assert load_checkpoint(path)["plot_stuff"][0][0] == np.float64(0.9)


class _Payload:
    """Pickles as a call of ``open(marker, "w")``: it creates the marker file if anything runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_checkpoint_with_a_pickle_payload_is_refused_and_nothing_runs(trained_encoder, tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "model_final_checkpoint.model"
    checkpoint = nnunet_v1_checkpoint(copy.deepcopy(trained_encoder).train())
    torch.save({**checkpoint, "plot_stuff": (_Payload(marker),)}, path)
    with pytest.raises(ValueError, match=r"asks for \['io.open'\].*Nothing in it was run"):
        load_pretrained(small_encoder(), path)
    assert not marker.exists()


def test_nnunet_v1_file_of_the_authors_network_loads_strictly_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    trained = nnMambaSeg(4, 4, channels=16, blocks=2, variant="nnunet", deep_supervision=True)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    sum(out.mean() for out in trained.train()(torch.randn(2, 4, 16, 16, 16))).backward()
    optimizer.step()
    path = tmp_path / "model_final_checkpoint.model"
    torch.save(
        {"epoch": 1, "state_dict": trained.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
         "plot_stuff": ([np.float64(0.9)], [], [], []), "best_stuff": (0, np.float64(0.9), np.float64(0.1), 0.1)},
        path,
    )  # fmt: skip
    fresh = load_pretrained(nnMambaSeg(4, 4, channels=16, blocks=2, variant="nnunet"), path)
    x = torch.randn(1, 4, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), trained.eval()(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"(?s)unexpected keys.*ds1_cls_conv.*build nnMambaSeg\(variant='nnunet'\)"):
        load_pretrained(nnMambaSeg(4, 4, channels=16, blocks=2), path)  # the CSS network: named in a hint
    with pytest.raises(ValueError, match=r"build the network with mamba=False"):
        load_pretrained(nnMambaSeg(4, 4, channels=16, blocks=2), nnMambaSeg(4, 4, 16, 2, mamba=False).state_dict())
