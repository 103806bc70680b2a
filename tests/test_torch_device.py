"""The trainers' torch device choice: CUDA when present, NEURAL_SHAPES_DEVICE overrides, bad names refused."""

import pytest
import torch

from backend.errors import NeuralShapesError
from backend.torch_device import training_device


def test_default_is_cuda_exactly_when_torch_sees_one(monkeypatch):
    monkeypatch.delenv("NEURAL_SHAPES_DEVICE", raising=False)
    assert training_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_variable_overrides_and_bad_names_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("NEURAL_SHAPES_DEVICE", "cpu")
    assert training_device() == torch.device("cpu")
    monkeypatch.setenv("NEURAL_SHAPES_DEVICE", "abacus:3")
    with pytest.raises(NeuralShapesError, match="abacus:3.*not a torch device"):
        training_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("NEURAL_SHAPES_DEVICE", "cuda:0")
        with pytest.raises(NeuralShapesError, match="no CUDA device"):
            training_device()
