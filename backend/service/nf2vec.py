"""nf2vec in the service: the model folder, loaded once on first use and shared, and the fast requests
on it (model info, similar shapes, classification). The slow operations are jobs
(:mod:`backend.service.nf2vec_jobs`).

The service starts without a model. Until its folder holds one (the bundled default is trained
separately), every nf2vec request is :class:`Unavailable` (503) with the loader's one-line reason, and
the folder is read again at the next request, so a model that appears later is used without a restart.
A model folder's task networks are optional: a missing one makes only its operation unavailable.
"""

from __future__ import annotations

import threading
from dataclasses import fields, replace
from typing import Any

import numpy as np

from backend.errors import NeuralShapesError
from backend.fitting import FitSettings
from backend.nf2vec import classifier, latent_gan, transfer
from backend.nf2vec.classification import classify
from backend.nf2vec.decoding import DecodeSettings
from backend.nf2vec.embedding import embed, nearest
from backend.nf2vec.generation import generation_classes
from backend.nf2vec.model import Nf2vecModel
from backend.nf2vec.task_file import task_path
from backend.nf2vec.tools import Nf2vecTools, load_tools
from backend.service.errors import NotFound, Unavailable, Unprocessable
from backend.service.library import Library
from backend.shape_file import NeuralShape

# operation -> (task network file name, its loader); the file is <model folder>/<name>.safetensors
TASKS = {
    "generate": (latent_gan.TASK, latent_gan.load_gan),
    "classify": (classifier.TASK, classifier.load_classifier),
    "complete": (transfer.TASK, transfer.load_transfer),
}


def decode_settings(overrides: dict[str, Any]) -> DecodeSettings:
    """``DecodeSettings()`` with ``overrides`` (its field names; ``fit`` takes FitSettings field names);
    unknown names are a ValueError."""
    fit_overrides = dict(overrides.get("fit", {}))
    top = {key: value for key, value in overrides.items() if key != "fit"}
    for given, cls in ((top, DecodeSettings), (fit_overrides, FitSettings)):
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    defaults = DecodeSettings()
    return replace(defaults, **top, fit=replace(defaults.fit, **fit_overrides))


class Nf2vec:
    """The service's nf2vec model (``spec``: "default" or a folder) and the shapes it is asked about."""

    def __init__(self, *, library: Library, spec: str, decode: DecodeSettings):
        self.library = library
        self.spec = spec
        self.decode = decode  # how embeddings become shapes in the jobs
        self._tools: Nf2vecTools | None = None
        self._lock = threading.Lock()  # loading, and the embedding cache
        self._embeddings: dict[tuple[str, str], np.ndarray] = {}  # (shape id, model id) -> (e,) float32

    def tools(self) -> Nf2vecTools:
        """The loaded model folder (read on first use); :class:`Unavailable` while it cannot be read."""
        with self._lock:
            if self._tools is None:
                try:
                    self._tools = load_tools(self.spec)
                except NeuralShapesError as error:
                    raise Unavailable(f"no nf2vec model: {error} (start the service with --nf2vec-model DIR)") from None
            return self._tools

    def task(self, operation: str) -> Any:
        """The task network ``operation`` needs (a key of ``TASKS``), loaded once; :class:`Unavailable`
        when the model folder has none or it cannot be read."""
        tools = self.tools()
        name, loader = TASKS[operation]
        if not task_path(tools.folder, name).is_file():
            raise Unavailable(f"{operation} is not available: the nf2vec model {tools.model.model_id} has no {name} network "
                              f"({task_path(tools.folder, name)})")
        with self._lock:
            try:
                return tools.task(name, loader)
            except NeuralShapesError as error:
                raise Unavailable(f"{operation} is not available: {error}") from None

    def info(self) -> dict:
        """Model id, family, embedding size, which operations its folder can serve, generation classes."""
        tools = self.tools()
        tasks = {operation: task_path(tools.folder, name).is_file() for operation, (name, _) in TASKS.items()}
        classes = []
        if tasks["generate"]:
            self.task("generate")
            classes = generation_classes(tools)
        return {
            "model_id": tools.model.model_id,
            "family_id": tools.family.family_id,
            "embedding_size": tools.model.config.embedding_size,
            "tasks": tasks,
            "classes": classes,
        }

    def shape(self, shape_id: str) -> NeuralShape:
        """A library shape the model can take: :class:`NotFound`, or :class:`Unprocessable` for another family."""
        family_id = self.tools().family.family_id
        shape = self.library.load(shape_id)
        if shape.family_id != family_id:
            raise Unprocessable(f"shape {shape_id} ('{shape.name}') is of model family {shape.family_id}; "
                                f"the nf2vec model works on shapes of family {family_id}")
        return shape

    def similar(self, shape_id: str, k: int) -> list[dict]:
        """The ``k`` library shapes of the model's family nearest to a shape in embedding space (itself
        left out), nearest first: ``[{"id", "name", "distance"}]``."""
        model = self.tools().model
        self.shape(shape_id)
        others = [row for row in self.library.of_family(model.family_id) if row["id"] != shape_id]
        codes = self._embed(model, [shape_id, *(row["id"] for row in others)])
        others = [row for row in others if row["id"] in codes]  # files deleted meanwhile drop out
        if not others:
            return []
        neighbours = nearest(codes[shape_id], np.stack([codes[row["id"]] for row in others]), k)
        return [{"id": others[n.index]["id"], "name": others[n.index]["name"], "distance": n.distance} for n in neighbours]

    def classify(self, shape_id: str) -> list[dict]:
        """Every class the classifier knows with its probability, most likely first: ``[{"class", "probability"}]``."""
        self.task("classify")
        return [{"class": name, "probability": p} for name, p in classify(self.tools(), self.shape(shape_id))]

    def _embed(self, model: Nf2vecModel, shape_ids: list[str]) -> dict[str, np.ndarray]:
        """Embeddings by shape id, computed once per (shape, model): shapes never change under an id.
        The cache keeps only the ids asked for, so deleted shapes leave it."""
        with self._lock:
            missing = [i for i in shape_ids if (i, model.model_id) not in self._embeddings]
        loaded: dict[str, NeuralShape] = {}
        for shape_id in missing:
            try:
                loaded[shape_id] = self.library.load(shape_id)
            except NotFound:
                continue
        codes = embed(model, list(loaded.values())) if loaded else []
        with self._lock:
            for shape_id, code in zip(loaded, codes):
                self._embeddings[(shape_id, model.model_id)] = code
            wanted = {(i, model.model_id) for i in shape_ids}
            self._embeddings = {key: code for key, code in self._embeddings.items() if key in wanted}
            return {key[0]: code for key, code in self._embeddings.items()}
