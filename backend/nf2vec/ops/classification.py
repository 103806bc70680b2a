"""Which procedural class a shape looks like: the classifier on its embedding."""

from __future__ import annotations

import numpy as np

from backend.nf2vec.embedding import embed
from backend.nf2vec.ops.tools import Nf2vecTools
from backend.nf2vec.tasks.classifier import load_classifier
from backend.shapes.shape_file import NeuralShape


def classify(tools: Nf2vecTools, shape: NeuralShape) -> list[tuple[str, float]]:
    """(class, probability) for every class the classifier knows, most likely first."""
    classifier = tools.task("classifier", load_classifier)
    probabilities = classifier.predict(embed(tools.model, [shape]))[0]
    order = np.argsort(-probabilities, kind="stable")
    return [(classifier.class_names[i], float(probabilities[i])) for i in order]
