"""An nf2vec model folder with everything its operations need, loaded once.

Folder layout::

    config.json, weights.safetensors   the encoder + decoder (backend.nf2vec.model)
    family.h5                 the model family whose shapes it embeds and whose net results are fitted with
    gan.safetensors                    latent GAN for generate (optional)
    classifier.safetensors             classifier for classify (optional)
    transfer.safetensors               partial -> complete transfer network for complete (optional)

The bundled default (``DEFAULT_MODEL_DIR``) is trained on the procedural collection fitted with the
default family; ``scripts/train_default_nf2vec`` reproduces it. The task networks are loaded on first use,
so a folder without one still serves the others; asking for a missing one is a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import NeuralShapesError
from backend.family_file import read_family
from backend.network import ModelFamily
from backend.nf2vec.model import FAMILY_NAME, Nf2vecModel, load_model

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


@dataclass
class Nf2vecTools:
    """A loaded model folder: the model, its family, and its task networks as they are first needed."""

    folder: Path
    model: Nf2vecModel
    family: ModelFamily
    _tasks: dict[str, Any] = field(default_factory=dict, repr=False)

    def task(self, name: str, loader) -> Any:
        """The task network ``name`` (gan, classifier, transfer), read by ``loader(folder, model)`` once."""
        if name not in self._tasks:
            self._tasks[name] = loader(self.folder, self.model)
        return self._tasks[name]


def load_tools(spec: str | Path | None = None) -> Nf2vecTools:
    """``None`` or ``"default"``: the bundled model; otherwise a model folder path."""
    folder = DEFAULT_MODEL_DIR if spec in (None, "default") else Path(spec)
    model = load_model(folder)
    family = read_family(folder / FAMILY_NAME)
    if family.family_id != model.family_id:
        raise NeuralShapesError(f"{folder / FAMILY_NAME}: family {family.family_id} is not the model's family {model.family_id}")
    return Nf2vecTools(folder, model, family)
