"""Tensor files (backend.shapes.checkpoints): safetensors plus a JSON tree, exact round trips, foreign files refused."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch

from backend.errors import NeuralShapesError
from backend.shapes.checkpoints import METADATA_KEY, load_tensors, save_tensors


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, seed: int, count: int = 3) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        optimizer.zero_grad()
        points = torch.randn(64, 3, generator=generator)
        model(points).square().mean().backward()
        optimizer.step()


def _model_and_optimizer() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.99), weight_decay=0.05)


def test_model_and_adamw_round_trip_bitwise_and_resume_identically(tmp_path):
    torch.manual_seed(0)
    model, optimizer = _model_and_optimizer()
    _steps(model, optimizer, seed=1)
    path = tmp_path / "run.safetensors"
    save_tensors(
        path,
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": 3,
            "generator": torch.Generator().manual_seed(5).get_state(),
        },
    )

    state = load_tensors(path, "not a valid checkpoint")
    for key, tensor in model.state_dict().items():
        assert state["model"][key].dtype == tensor.dtype and torch.equal(state["model"][key], tensor)
    saved = optimizer.state_dict()
    assert state["optimizer"]["param_groups"] == saved["param_groups"]  # betas stay a tuple, None stays None
    assert list(state["optimizer"]["state"]) == list(saved["state"]) == [0, 1, 2, 3]  # int keys kept
    for index, moments in saved["state"].items():
        for key, tensor in moments.items():
            assert torch.equal(state["optimizer"]["state"][index][key], tensor)
    assert state["step"] == 3 and torch.equal(state["generator"], torch.Generator().manual_seed(5).get_state())

    resumed, resumed_optimizer = _model_and_optimizer()
    resumed.load_state_dict(state["model"])
    resumed_optimizer.load_state_dict(state["optimizer"])
    _steps(model, optimizer, seed=2)
    _steps(resumed, resumed_optimizer, seed=2)
    for original, copy in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(original, copy)


def test_values_keep_their_types(tmp_path):
    state = {
        "text": "é",
        "int": 7,
        "float": 0.1,
        "inf": float("inf"),
        "flag": True,
        "none": None,
        "nested": {3: [(1, 2.5), ["a"]], "tag-like": {"tensor": "0"}},
        "empty": torch.zeros(0, 4, dtype=torch.float16),
    }
    save_tensors(tmp_path / "s.safetensors", state)
    back = load_tensors(tmp_path / "s.safetensors", "unreadable")
    assert {key: value for key, value in back.items() if key != "empty"} == {
        key: value for key, value in state.items() if key != "empty"
    }
    assert type(back["nested"][3][0]) is tuple and type(back["flag"]) is bool and type(back["int"]) is int
    assert back["empty"].shape == (0, 4) and back["empty"].dtype == torch.float16


def test_foreign_and_damaged_files_are_refused_in_one_line(tmp_path):
    good = tmp_path / "good.safetensors"
    save_tensors(good, {"weights": torch.arange(1000.0), "step": 1})
    data = good.read_bytes()
    pickled = tmp_path / "pickled.safetensors"
    torch.save({"weights": torch.arange(4.0)}, pickled)  # a torch pickle renamed: must never be unpickled
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"weights": torch.arange(4.0)}, plain)  # safetensors, but not ours
    dangling = tmp_path / "dangling.safetensors"
    safetensors.torch.save_file(
        {"0": torch.zeros(2)}, dangling, metadata={METADATA_KEY: json.dumps({"dict": [["w", {"tensor": "9"}]]})}
    )
    unknown = tmp_path / "unknown.safetensors"
    safetensors.torch.save_file({"0": torch.zeros(2)}, unknown, metadata={METADATA_KEY: json.dumps({"set": [1]})})
    not_a_dict = tmp_path / "list.safetensors"
    safetensors.torch.save_file({"0": torch.zeros(2)}, not_a_dict, metadata={METADATA_KEY: json.dumps({"list": []})})
    cases = {
        pickled: "not a valid checkpoint (SafetensorError",
        plain: "without this project's state metadata",
        dangling: "KeyError",
        unknown: "unknown state tree tag 'set'",
        not_a_dict: "a list, expected a dict",
    }
    for cut in (len(data) - 1, 100, 7, 0):
        truncated = tmp_path / f"cut{cut}.safetensors"
        truncated.write_bytes(data[:cut])
        cases[truncated] = "not a valid checkpoint"
    for path, expected in cases.items():
        with pytest.raises(NeuralShapesError) as error:
            load_tensors(path, "not a valid checkpoint")
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"{path}: ") and expected in message, message


def test_unstorable_values_are_a_type_error(tmp_path):
    for state in ({"object": object()}, {(1, 2): 3}, {True: 1}):
        with pytest.raises(TypeError):
            save_tensors(tmp_path / "x.safetensors", state)
    assert not (tmp_path / "x.safetensors").exists()
