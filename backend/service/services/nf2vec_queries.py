"""nf2vec in the service: the model folder, loaded once on first use and shared, and the fast requests
on it (model info, similar shapes, classification). The slow operations are jobs
(:mod:`backend.service.services.nf2vec_jobs`).

The service starts without a model. Until its folder holds one (the bundled default is trained
separately), every nf2vec request is :class:`Unavailable` (503) with the loader's one-line reason, and
the folder is read again at the next request, so a model that appears later is used without a restart.
Every operation takes a decoder (:mod:`backend.nf2vec.ops.operations`): ``latent`` (the default when the
folder has the latent family and its encoder) or ``implicit``. The implicit decoder's task networks are
optional: a missing one makes only its operation unavailable (503), as does ``latent`` without its files.
"""

from __future__ import annotations

import threading
from dataclasses import fields, replace
from typing import Any

import numpy as np

from backend.errors import NeuralShapesError
from backend.fitting.batched import FitSettings
from backend.nf2vec.decoding import DecodeSettings
from backend.nf2vec.embedding import nearest
from backend.nf2vec.ops import operations
from backend.nf2vec.ops.tools import DECODERS, Nf2vecDecoder, Nf2vecTools, load_tools
from backend.nf2vec.tasks import classifier, latent_gan, transfer
from backend.nf2vec.tasks.task_file import task_path
from backend.service.errors import NotFound, Unavailable, Unprocessable
from backend.service.services.library import Library
from backend.shapes.shape_file import NeuralShape

# operation -> (the implicit decoder's task network file name, its loader); the file is <model folder>/<name>.safetensors
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
        self._embeddings: dict[tuple[str, str], np.ndarray] = {}  # (shape id, model id/decoder) -> (e,) float32

    def tools(self) -> Nf2vecTools:
        """The loaded model folder (read on first use); :class:`Unavailable` while it cannot be read."""
        with self._lock:
            if self._tools is None:
                try:
                    self._tools = load_tools(self.spec)
                except NeuralShapesError as error:
                    raise Unavailable(f"no nf2vec model: {error} (start the service with --nf2vec-model DIR)") from None
            return self._tools

    def decoder(self, operation: str, choice: str | None = None) -> Nf2vecDecoder:
        """The decoder that serves ``operation`` for ``choice`` (None: the model's default), with what it
        needs loaded: :class:`Unavailable` when the folder lacks the latent files, the implicit decoder's task
        network (for an operation of ``TASKS``) or the latent family's classes (for classify)."""
        tools = self.tools()
        try:
            decoder = tools.decoder(choice)
        except NeuralShapesError as error:
            raise Unavailable(f"{operation} is not available: {error}") from None
        if decoder == "implicit" and operation in TASKS:
            self.task(operation)
        elif decoder == "latent" and operation == "classify" and not tools.require_latent().prior.class_names:
            raise Unavailable("classify is not available: the nf2vec model's latent family has no classes")
        return decoder

    def task(self, operation: str) -> Any:
        """The implicit decoder's task network ``operation`` needs (a key of ``TASKS``), loaded once;
        :class:`Unavailable` when the model folder has none or it cannot be read."""
        tools = self.tools()
        name, loader = TASKS[operation]
        if not task_path(tools.folder, name).is_file():
            raise Unavailable(
                f"{operation} is not available: the nf2vec model {tools.model.model_id} has no {name} network "
                f"({task_path(tools.folder, name)})"
            )
        with self._lock:
            try:
                return tools.task(name, loader)
            except NeuralShapesError as error:
                raise Unavailable(f"{operation} is not available: {error}") from None

    def info(self) -> dict:
        """Model id, family, embedding size, the default and available decoders, which operations the
        default decoder can serve, and its generation classes."""
        tools = self.tools()
        tasks = {operation: self._serves(operation) for operation in TASKS}
        return {
            "model_id": tools.model.model_id,
            "family_id": tools.family.family_id,
            "embedding_size": tools.model.config.embedding_size,
            "decoder": tools.default_decoder,
            "decoders": [name for name in DECODERS if name == "implicit" or tools.latent is not None],
            "tasks": tasks,
            "classes": operations.generation_classes(tools) if tasks["generate"] else [],
        }

    def _serves(self, operation: str) -> bool:
        try:
            self.decoder(operation)
        except Unavailable:
            return False
        return True

    def shape(self, shape_id: str) -> NeuralShape:
        """A library shape the model can take: :class:`NotFound`, or :class:`Unprocessable` for another family."""
        family_id = self.tools().family.family_id
        shape = self.library.load(shape_id)
        if shape.family_id != family_id:
            raise Unprocessable(
                f"shape {shape_id} ('{shape.name}') is of model family {shape.family_id}; "
                f"the nf2vec model works on shapes of family {family_id}"
            )
        return shape

    def similar(self, shape_id: str, k: int, decoder: str | None = None) -> list[dict]:
        """The ``k`` library shapes of the model's family nearest to a shape by the decoder's codes (itself
        left out), nearest first: ``[{"id", "name", "distance"}]``."""
        decoder = self.decoder("similar", decoder)
        self.shape(shape_id)
        others = [row for row in self.library.of_family(self.tools().family.family_id) if row["id"] != shape_id]
        codes = self._embed(decoder, [shape_id, *(row["id"] for row in others)])
        others = [row for row in others if row["id"] in codes]  # files deleted meanwhile drop out
        if not others:
            return []
        neighbours = nearest(codes[shape_id], np.stack([codes[row["id"]] for row in others]), k)
        return [
            {"id": others[n.index]["id"], "name": others[n.index]["name"], "distance": n.distance} for n in neighbours
        ]

    def classify(self, shape_id: str, decoder: str | None = None) -> list[dict]:
        """Every class the decoder knows with its probability, most likely first: ``[{"class", "probability"}]``."""
        decoder = self.decoder("classify", decoder)
        return [
            {"class": name, "probability": p}
            for name, p in operations.classify(self.tools(), self.shape(shape_id), decoder)
        ]

    def _embed(self, decoder: Nf2vecDecoder, shape_ids: list[str]) -> dict[str, np.ndarray]:
        """Codes by shape id, computed once per (shape, model, decoder): shapes never change under an id.
        The cache keeps only the ids asked for, so deleted shapes leave it."""
        tools = self.tools()
        space = f"{tools.model.model_id}/{decoder}"
        with self._lock:
            missing = [i for i in shape_ids if (i, space) not in self._embeddings]
        loaded: dict[str, NeuralShape] = {}
        for shape_id in missing:
            try:
                loaded[shape_id] = self.library.load(shape_id)
            except NotFound:
                continue
        codes = operations.encode(tools, list(loaded.values()), decoder) if loaded else []
        with self._lock:
            for shape_id, code in zip(loaded, codes):
                self._embeddings[(shape_id, space)] = code
            wanted = {(i, space) for i in shape_ids}
            self._embeddings = {key: code for key, code in self._embeddings.items() if key in wanted}
            return {key[0]: code for key, code in self._embeddings.items()}
