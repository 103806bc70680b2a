"""The trained nf2vec model and its folder: ``config.json`` + ``weights.safetensors`` (+ ``family.h5``, the
family it embeds, and the task networks' files: see :mod:`backend.nf2vec.ops.tools`).

``weights.safetensors`` holds torch state dicts only (tensors), written by
:func:`backend.shapes.checkpoints.save_tensors`: nothing in it is ever unpickled. A model belongs to one model
family: it only embeds shapes whose ``family_id`` is the one it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes, write_atomically
from backend.nf2vec.config import Nf2vecConfig
from backend.nf2vec.decoder import ImplicitDecoder
from backend.nf2vec.encoder import WeightEncoder, matrix_rows, weight_matrices
from backend.shapes.architecture import Architecture, ModelFamily, Weights
from backend.shapes.checkpoints import load_tensors, save_tensors
from backend.shapes.family_file import bundled_family, read_family, write_family
from backend.shapes.shape_file import NeuralShape

FORMAT = "neural-shapes/nf2vec"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
FAMILY_NAME = "family.h5"


def write_folder_family(folder: Path, family: ModelFamily) -> None:
    """The family a model folder's shapes belong to, as its ``family.h5``; a family the tool bundles is
    not copied (the bundled model ships the default family once), :func:`read_folder_family` finds it."""
    if bundled_family(family.family_id) is None:
        write_family(folder / FAMILY_NAME, family)


def read_folder_family(folder: Path, family_id: str) -> ModelFamily:
    """The model folder's family: its ``family.h5``, else the bundled family of that id."""
    path = folder / FAMILY_NAME
    if path.is_file():
        family = read_family(path)
        if family.family_id != family_id:
            raise NeuralShapesError(f"{path}: family {family.family_id} is not the model's family {family_id}")
        return family
    family = bundled_family(family_id)
    if family is None:
        raise NeuralShapesError(f"{path}: missing (the model's family {family_id} is not one this tool bundles)")
    return family


@dataclass
class Nf2vecModel:
    """A trained (or training) encoder + decoder for the shapes of one family."""

    config: Nf2vecConfig
    family_id: str
    architecture: Architecture
    encoder: torch.nn.Module
    decoder: torch.nn.Module
    reference: torch.Tensor  # (matrix_rows, width): subtracted from every weight matrix (zeros if not relative)
    training: dict[str, Any] = field(default_factory=dict)  # steps, seconds, final loss, shapes
    model_id: str = ""  # "nf2vec-" + the first 12 hex digits of the weights file's sha256, once saved or loaded

    def encoder_inputs(self, all_weights: list[Weights]) -> torch.Tensor:
        """What the encoder reads for these shapes' weights: (shapes, matrix_rows, width) float32."""
        return weight_matrices(all_weights, self.architecture.width) - self.reference


def new_model(config: Nf2vecConfig, family: ModelFamily, seed: int = 0) -> Nf2vecModel:
    """A model for ``family`` with freshly initialised networks (seeded, so reruns start alike)."""
    reference = torch.zeros(matrix_rows(family.architecture), family.architecture.width)
    if config.relative_to_family:
        reference = weight_matrices([family.initial_weights], family.architecture.width)[0]
    return _assemble(config, family.family_id, family.architecture, reference, seed)


def _assemble(
    config: Nf2vecConfig, family_id: str, architecture: Architecture, reference: torch.Tensor, seed: int = 0
) -> Nf2vecModel:
    torch.manual_seed(seed)
    encoder = WeightEncoder(architecture.width, config.encoder_stages)
    return Nf2vecModel(config, family_id, architecture, encoder, ImplicitDecoder(config), reference)


def check_family(model: Nf2vecModel, shapes: list[NeuralShape]) -> None:
    """Refuse shapes of another family than the model's, naming the first one."""
    for shape in shapes:
        if shape.family_id != model.family_id:
            raise NeuralShapesError(
                f"shape '{shape.name}' is of family {shape.family_id}, the nf2vec model embeds family {model.family_id}"
            )


def save_model(folder: Path, model: Nf2vecModel) -> None:
    """Write ``config.json`` and ``weights.safetensors`` into ``folder`` (created), each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(
        folder / WEIGHTS_NAME,
        {"encoder": model.encoder.state_dict(), "decoder": model.decoder.state_dict(), "reference": model.reference},
    )
    config = {
        "format": FORMAT,
        "version": VERSION,
        "family_id": model.family_id,
        "architecture": asdict(model.architecture),
        "config": asdict(model.config),
        "training": model.training,
    }
    write_atomically(folder / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    model.model_id = _model_id(folder / WEIGHTS_NAME)


def load_model(folder: Path) -> Nf2vecModel:
    """Read a model folder; a missing, foreign or corrupt one is a one-line :class:`NeuralShapesError`."""
    path = Path(folder) / CONFIG_NAME
    try:
        data = json.loads(read_file_bytes(path))
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise NeuralShapesError(f"{path}: not an nf2vec model (format {FORMAT} version {VERSION})")
        config = _config_from(data["config"])
        family_id, architecture = str(data["family_id"]), Architecture(**data["architecture"])
        training = dict(data.get("training", {}))
    except NeuralShapesError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise NeuralShapesError(
            f"{path}: malformed nf2vec config ({type(error).__name__}: {error})".splitlines()[0]
        ) from None
    weights = Path(folder) / WEIGHTS_NAME
    state = load_tensors(weights, "not valid nf2vec weights")
    try:
        reference = state["reference"]
        if not isinstance(reference, torch.Tensor) or reference.shape != (
            matrix_rows(architecture),
            architecture.width,
        ):
            raise ValueError("reference weights of the wrong shape")
        model = _assemble(config, family_id, architecture, reference.float())
        model.training = training
        model.encoder.load_state_dict(state["encoder"])
        model.decoder.load_state_dict(state["decoder"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise NeuralShapesError(
            f"{weights}: weights do not match the config ({type(error).__name__}: {error})".splitlines()[0]
        ) from None
    model.encoder.eval()
    model.decoder.eval()
    model.model_id = _model_id(weights)
    return model


def _model_id(weights: Path) -> str:
    return "nf2vec-" + hashlib.sha256(read_file_bytes(weights)).hexdigest()[:12]


def _config_from(data: dict) -> Nf2vecConfig:
    known = {f.name for f in fields(Nf2vecConfig)}
    values = {key: value for key, value in data.items() if key in known}
    values["encoder_hidden"] = tuple(values.get("encoder_hidden", ()))
    return Nf2vecConfig(**values)
