"""nf2vec network sizes and loss (:class:`Nf2vecConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Loss = Literal["l1", "bce"]


@dataclass(frozen=True)
class Nf2vecConfig:
    """Network sizes and loss. Defaults are CPU-friendly; :meth:`paper` gives inr2vec / nf2vec's sizes."""

    encoder_hidden: tuple[int, ...] = (256,)  # row-wise stages before the last one (whose size is the embedding)
    embedding_size: int = 256
    decoder_hidden: int = 256
    decoder_layers: int = 4  # hidden layers; the skip projection joins after the second
    # Of the positional encoding. The paper's 10 (63 values) learned nothing shape-specific in 400 steps
    # on our collection; 4 (27 values) did (decoder loss 0.025 vs 0.049 with shuffled embeddings).
    frequencies: int = 4
    loss: Loss = "l1"
    # Encode each shape's weights minus its family's initial weights. Every shape of a family starts from
    # the same init (nf2vec's shared initialisation), so the difference is what carries the shape; a
    # row-wise encoder cannot subtract a per-row offset on its own.
    relative_to_family: bool = True
    bce_clamp: float = 0.1  # normalised units; only used by the bce loss

    def __post_init__(self) -> None:
        sizes = (*self.encoder_hidden, self.embedding_size, self.decoder_hidden)
        if min(sizes) < 1 or self.decoder_layers < 3 or self.frequencies < 0:
            raise ValueError(f"nf2vec sizes must be positive with at least 3 decoder layers, got {self}")
        if self.loss not in ("l1", "bce") or not self.bce_clamp > 0:
            raise ValueError(f"unknown loss '{self.loss}' (l1 or bce) or clamp {self.bce_clamp} not positive")

    @classmethod
    def paper(cls) -> Nf2vecConfig:
        """inr2vec's appendix B: encoder stages 512, 512, 1024, 1024 (embedding 1024), decoder 4 x 512."""
        return cls(encoder_hidden=(512, 512, 1024), embedding_size=1024, decoder_hidden=512, frequencies=10)

    @property
    def encoder_stages(self) -> tuple[int, ...]:
        return (*self.encoder_hidden, self.embedding_size)
