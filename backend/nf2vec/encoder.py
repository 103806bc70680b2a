"""The nf2vec encoder: the weights of a neural SDF, stacked into one matrix, to an embedding.

Layout (nf2vec, section III): every linear layer ``y = W x + b`` (torch's W (out, in)) becomes the
matrix ``P = [W^T; b]`` of shape (in + 1, out): one row per input neuron holding its outgoing weights,
plus a row of biases. The matrices of all layers are stacked along rows. With hidden width H every
matrix has H columns except the output layer's (H + 1, 1), which is padded with zeros to H columns, as
the paper does; the input layer (3 + 1, H) needs no padding in this layout. For the default 8 x 32
architecture that is (3 + 1) + 7 (32 + 1) + (32 + 1) = 268 rows of 32 values.

(Rows could instead be one neuron's *incoming* weights + bias; then the 3-input layer would need padding
from 4 to H + 1 columns and the output layer would be a single row. We keep the paper's layout.)

Each encoder stage maps every row on its own (a linear layer shared by all rows) followed by batch
normalisation over all rows of all shapes and a ReLU; a max over rows, layer-normalised, gives the
embedding. The max-pooled ReLU features share a large positive offset that otherwise swamps the decoder's
point features (measured: without the normalisation the decoder kept predicting zero for hundreds of
steps); normalised, embeddings compare by L2 as the decoder sees them. In eval mode the batch norm uses
its running statistics, so a shape's embedding does not depend on its batch.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch

from backend.shapes.architecture import Architecture, Weights


def matrix_rows(architecture: Architecture) -> int:
    """Rows of the stacked weight matrix: (3 + 1) + (hidden_layers - 1)(width + 1) + (width + 1)."""
    return 4 + architecture.hidden_layers * (architecture.width + 1)


def weight_matrix(weights: Weights, width: int) -> np.ndarray:
    """The stacked matrix of one shape: (matrix_rows, width) float32 (layout in the module docstring)."""
    blocks = []
    for weight, bias in weights:
        block = np.concatenate([weight.T, bias[None, :]], axis=0).astype(np.float32)
        blocks.append(np.pad(block, ((0, 0), (0, width - block.shape[1]))))  # only the output layer is padded
    return np.concatenate(blocks, axis=0)


def weight_matrices(all_weights: list[Weights], width: int) -> torch.Tensor:
    """Stacked matrices of several shapes of one architecture: (shapes, matrix_rows, width) float32."""
    return torch.from_numpy(np.stack([weight_matrix(weights, width) for weights in all_weights]))


class WeightEncoder(torch.nn.Module):
    """forward(matrices (b, rows, width)) -> embeddings (b, stage_sizes[-1]).

    ``stage_sizes``: output features of each row-wise linear + batch norm + ReLU stage; the last one is
    the embedding size (nf2vec: 512, 512, 1024, 1024).
    """

    def __init__(self, width: int, stage_sizes: tuple[int, ...]):
        super().__init__()
        sizes = (width, *stage_sizes)
        self.linears = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in pairwise(sizes))
        self.norms = torch.nn.ModuleList(torch.nn.BatchNorm1d(b) for b in sizes[1:])

    def forward(self, matrices: torch.Tensor) -> torch.Tensor:
        shapes, rows, _ = matrices.shape
        h = matrices.reshape(shapes * rows, -1)  # batch norm statistics over every row of every shape
        for linear, norm in zip(self.linears, self.norms):
            h = torch.relu(norm(linear(h)))
        pooled = h.reshape(shapes, rows, -1).amax(dim=1)
        return torch.nn.functional.layer_norm(pooled, pooled.shape[-1:])
