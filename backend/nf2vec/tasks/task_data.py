"""What the networks on nf2vec embeddings learn from, found through neural shapes' provenance: class
labels from a collection manifest, and (partial, complete) shape pairs from a partials manifest.

A shape's ``provenance["source_name"]`` is the file name of the mesh it was fitted to. A collection
manifest gives that mesh's class; a partials manifest gives, for a partial mesh, the collection mesh it
was cut from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.datasets.partials import MANIFEST_NAME, PartialsManifest
from backend.datasets.procedural import Manifest
from backend.errors import NeuralShapesError
from backend.shapes.shape_file import NeuralShape


@dataclass(frozen=True)
class Pairs:
    """Partial shapes and the complete shapes they were cut from, index by index."""

    partial: list[NeuralShape]
    complete: list[NeuralShape]
    unpaired: list[str]  # names of partial shapes left out: no source in the manifest, or no complete shape


def shape_classes(shapes: list[NeuralShape], manifest: Manifest) -> tuple[np.ndarray, list[str]]:
    """Labels (n,) int64 and the class names they index: the manifest's classes that occur, in its order.

    A shape whose source mesh is not in the manifest is a one-line NeuralShapesError naming it.
    """
    class_of = {item.file: item.class_name for item in manifest.items}
    names = []
    for shape in shapes:
        source = shape.provenance.get("source_name", "")
        if source not in class_of:
            raise NeuralShapesError(
                f"shape '{shape.name}': its source mesh '{source}' has no class in the collection manifest of {manifest.root}"
            )
        names.append(class_of[source])
    present = [name for name in manifest.classes if name in set(names)]
    return np.array([present.index(name) for name in names], dtype=np.int64), present


def completion_pairs(partial: list[NeuralShape], complete: list[NeuralShape], manifest: PartialsManifest) -> Pairs:
    """Pair each partial shape with the complete shape of its source mesh (the first, if several were fitted).

    A partial shape is paired when its source mesh is in ``manifest`` and a complete shape was fitted to
    that item's source; the others are listed in ``unpaired``. No pair at all is a one-line error.
    """
    source_of = {item.file: item.source for item in manifest.items}
    complete_of: dict[str, NeuralShape] = {}
    for shape in complete:
        complete_of.setdefault(shape.provenance.get("source_name", ""), shape)
    pairs = Pairs([], [], [])
    for shape in partial:
        whole = complete_of.get(source_of.get(shape.provenance.get("source_name", ""), ""))
        if whole is None:
            pairs.unpaired.append(shape.name)
        else:
            pairs.partial.append(shape)
            pairs.complete.append(whole)
    if not pairs.partial:
        raise NeuralShapesError(
            f"no (partial, complete) pairs: none of the {len(partial)} partial shapes was cut, according to "
            f"{manifest.root / MANIFEST_NAME}, from a mesh one of the {len(complete)} complete shapes was fitted to"
        )
    return pairs
