"""New shapes from the latent GAN: sample embeddings, decode, fit (nf2vec section V, inr2vec's Latent-GAN)."""

from __future__ import annotations

import threading

from backend.nf2vec.decoding import (
    IDENTITY,
    DecodeSettings,
    OperationProgress,
    derived_provenance,
    shapes_from_embeddings,
)
from backend.nf2vec.ops.tools import Nf2vecTools
from backend.nf2vec.tasks.latent_gan import load_gan
from backend.shapes.frame import Similarity
from backend.shapes.shape_file import NeuralShape


def generation_classes(tools: Nf2vecTools) -> list[str]:
    """The classes ``generate`` can be asked for (empty for an unconditional GAN)."""
    return list(tools.task("gan", load_gan).class_names or [])


def generate(
    tools: Nf2vecTools,
    count: int,
    seed: int = 0,
    class_name: str | None = None,
    settings: DecodeSettings = DecodeSettings(),
    progress: OperationProgress | None = None,
    cancel: threading.Event | None = None,
    frame: Similarity = IDENTITY,
    truncation: float = 1.0,
) -> list[NeuralShape]:
    """``count`` new shapes (of ``class_name``, if given), reproducible for a seed, named generated-SEED-I.

    They live in the normalised frame (bounding radius ~0.9) unless ``frame`` places them elsewhere.
    ``truncation`` in [0, 1] scales the GAN's noise (1: its trained spread).
    """
    codes = tools.task("gan", load_gan).sample(count, seed, class_name, truncation)
    label = f"{class_name}-" if class_name else ""
    names = [f"generated-{label}{seed}-{index}" for index in range(count)]
    details = {"seed": str(seed), "class": class_name or "", "truncation": f"{truncation:g}"}
    provenance = [
        derived_provenance("generate", name, [], tools.model, index=str(i), **details) for i, name in enumerate(names)
    ]
    return shapes_from_embeddings(tools, codes, names, [frame] * count, provenance, settings, progress, cancel)
