"""The nf2vec implicit decoder: (embedding, query point) -> signed distance, and its training loss.

As in inr2vec (appendix B): the query point, in the shape's normalised frame (bounding sphere radius
0.9), goes through NeRF's positional encoding (the point plus sin / cos of 2^k pi x for k < frequencies:
63 values for 10 frequencies); that is concatenated with the embedding and fed to an MLP of ReLU layers.
A skip projection of the same input is added to the features of the second hidden layer. The output is
one value per point.

Loss ``l1`` (default, as our fitting uses): the output is the signed distance (normalised units,
negative inside) and the loss is its mean absolute error. Loss ``bce`` (the paper's for distance
fields): the output is a logit and the target the distance clamped to [-clamp, clamp] and mapped to
[0, 1], so only the band near the surface is learned in detail.
"""

from __future__ import annotations

import math

import torch

from backend.nf2vec.config import Nf2vecConfig


def positional_encoding(points: torch.Tensor, frequencies: int) -> torch.Tensor:
    """points (..., 3) -> (..., 3 + 6 * frequencies): the points, then sin and cos of 2^k pi points."""
    scales = math.pi * 2.0 ** torch.arange(frequencies, dtype=points.dtype, device=points.device)
    angles = (points[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([points, torch.sin(angles), torch.cos(angles)], dim=-1)


class ImplicitDecoder(torch.nn.Module):
    """forward(points (b, q, 3) normalised frame, embeddings (b, e)) -> (b, q) outputs (see :func:`to_signed_distance`)."""

    def __init__(self, config: Nf2vecConfig):
        super().__init__()
        self.frequencies = config.frequencies
        self.hidden = config.decoder_hidden
        encoded = 3 + 6 * config.frequencies
        # The first layer and the skip projection read the same input [encoding, embedding]; each is split
        # by input so the embedding part is computed once per shape rather than once per query point.
        self.from_points = torch.nn.Linear(encoded, 2 * config.decoder_hidden)
        self.from_embedding = torch.nn.Linear(config.embedding_size, 2 * config.decoder_hidden, bias=False)
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(config.decoder_hidden, config.decoder_hidden) for _ in range(config.decoder_layers - 1)
        )
        self.output = torch.nn.Linear(config.decoder_hidden, 1)

    def forward(self, points: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        first = (
            self.from_points(positional_encoding(points, self.frequencies))
            + self.from_embedding(embeddings)[:, None, :]
        )
        h, skip = first.split(self.hidden, dim=-1)
        h = torch.relu(h)
        for index, layer in enumerate(self.layers):
            if index == 1:  # the features of the second hidden layer
                h = h + skip
            h = torch.relu(layer(h))
        return self.output(h).squeeze(-1)


def sdf_loss(outputs: torch.Tensor, sdf: torch.Tensor, config: Nf2vecConfig) -> torch.Tensor:
    """Mean training loss of decoder outputs (b, q) against true signed distances (b, q), negative inside."""
    if config.loss == "bce":
        target = (sdf.clamp(-config.bce_clamp, config.bce_clamp) / config.bce_clamp + 1.0) / 2.0
        return torch.nn.functional.binary_cross_entropy_with_logits(outputs, target)
    return (outputs - sdf).abs().mean()


def to_signed_distance(outputs: torch.Tensor, config: Nf2vecConfig) -> torch.Tensor:
    """Decoder outputs as signed distances (normalised units, negative inside; within +-clamp for ``bce``)."""
    if config.loss == "bce":
        return (torch.sigmoid(outputs) * 2.0 - 1.0) * config.bce_clamp
    return outputs
