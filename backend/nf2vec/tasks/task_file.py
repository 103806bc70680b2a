"""The files of the networks on nf2vec embeddings: ``gan.safetensors``, ``classifier.safetensors``,
``transfer.safetensors`` and ``neighbours.safetensors``, each in the folder of the nf2vec model whose
embeddings it reads.

All share one envelope, written with :func:`backend.shapes.checkpoints.save_tensors` (so only tensors, numbers,
strings, lists and dicts, never unpickled)::

    {"format": "neural-shapes/nf2vec-<task>", "version": 1,
     "family_id": the nf2vec model's family, "embedding_size": the model's embedding size,
     "config": the network's settings (asdict), "class_names": [...] ([] where there are none),
     "state": {module name: state dict}, "training": {"steps", "seconds", final figures}}

Saving stamps the file with the family and embedding size of the model already in the folder; loading
refuses a file of another task, family or embedding size than the model it is loaded for, and one whose
weights do not fit its config, each with a one-line :class:`NeuralShapesError`. Each network says what it
is made of through the small :class:`TaskNetwork` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from backend.errors import NeuralShapesError
from backend.nf2vec.model import Nf2vecModel, load_model
from backend.nf2vec.resumable import read_versioned, write_versioned
from backend.nf2vec.tasks.downstream import Standardiser

FORMAT_PREFIX = "neural-shapes/nf2vec-"
VERSION = 1


class TaskNetwork(Protocol):
    """What the GAN, the classifier and the transfer network have in common, as far as files go."""

    settings: Any  # a dataclass of sizes and training settings
    training: dict[str, Any]  # steps, seconds, final figures

    @property
    def embedding_size(self) -> int: ...

    def parts(self) -> dict[str, torch.nn.Module]:
        """The modules whose state dicts are saved, by name."""
        ...


N = TypeVar("N", bound=TaskNetwork)
S = TypeVar("S")  # a settings dataclass


@dataclass
class TaskFile:
    """What a network is rebuilt from before its parts' weights are loaded."""

    embedding_size: int
    config: dict[str, Any]
    class_names: list[str]
    training: dict[str, Any]


def task_path(folder: Path, task: str) -> Path:
    """Where the ``task`` network ("gan", "classifier", "transfer") of a model folder lives."""
    return Path(folder) / f"{task}.safetensors"


def save_task_file(folder: Path, task: str, network: TaskNetwork, class_names: Sequence[str] = ()) -> Path:
    """Write ``network`` as ``folder/<task>.safetensors`` (atomically) next to the nf2vec model in ``folder``."""
    model = load_model(folder)
    if network.embedding_size != model.config.embedding_size:
        raise NeuralShapesError(
            f"{folder}: the {task} reads embeddings of size {network.embedding_size}, "
            f"the nf2vec model there makes {model.config.embedding_size}"
        )
    return write_versioned(
        task_path(folder, task),
        FORMAT_PREFIX + task,
        VERSION,
        {
            "family_id": model.family_id,
            "embedding_size": network.embedding_size,
            "config": asdict(network.settings),
            "class_names": list(class_names),
            "state": {name: part.state_dict() for name, part in network.parts().items()},
            "training": network.training,
        },
    )


def load_task_file(folder: Path, task: str, model: Nf2vecModel, build: Callable[[TaskFile], N]) -> N:
    """Read ``folder/<task>.safetensors`` for ``model``: ``build`` makes the network from the file's config, then
    its parts get the saved weights and eval mode. A missing, corrupt or foreign file, another family or
    embedding size, or a config or weights that do not fit is a one-line :class:`NeuralShapesError`."""
    path = task_path(folder, task)
    data = read_versioned(path, f"nf2vec {task}", FORMAT_PREFIX + task, VERSION, article="an")
    if data.get("family_id") != model.family_id:
        raise NeuralShapesError(
            f"{path}: made for nf2vec embeddings of family {data.get('family_id')}, "
            f"the model embeds family {model.family_id}"
        )
    if data.get("embedding_size") != model.config.embedding_size:
        raise NeuralShapesError(
            f"{path}: reads embeddings of size {data.get('embedding_size')}, "
            f"the model makes {model.config.embedding_size}"
        )
    try:
        network = build(
            TaskFile(
                model.config.embedding_size,
                dict(data["config"]),
                [str(name) for name in data["class_names"]],
                dict(data["training"]),
            )
        )
        parts, state = network.parts(), dict(data["state"])
        if set(state) != set(parts):
            raise KeyError(f"parts {sorted(state)}, expected {sorted(parts)}")
        for name, part in parts.items():
            part.load_state_dict(state[name])
            part.eval()
        return network
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise NeuralShapesError(
            f"{path}: weights and config do not fit ({type(error).__name__}: {error})".splitlines()[0]
        ) from None


def load_classes_task(
    folder: Path,
    task: str,
    model: Nf2vecModel,
    kind: Callable[[S, tuple[str, ...], Standardiser, torch.nn.Module, dict[str, Any]], N],
    settings_of: Callable[..., S],
    network: Callable[[S, int, int], torch.nn.Module],
) -> N:
    """:func:`load_task_file` of a network on standardised embeddings and class names (the classifier, the
    latent GAN): ``kind(settings, class_names, standardiser, network(settings, embedding_size, classes), training)``."""

    def build(content: TaskFile) -> N:
        settings = settings_of(**content.config)
        size, classes = content.embedding_size, tuple(content.class_names)
        return kind(settings, classes, Standardiser(size), network(settings, size, len(classes)), content.training)

    return load_task_file(folder, task, model, build)
