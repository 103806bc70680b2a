"""nf2vec (De Luigi et al.): embeddings of neural SDFs' weights, and what is built on them.

The model, here: ``encoder`` (weights -> embedding), ``decoder`` (embedding + point -> signed distance),
``config`` / ``model`` (settings and the model folder), ``training`` (both fitted to shapes), ``embedding``
(embeddings and neighbours), ``decoding`` (embeddings back to shapes); the latent family
``w(z) = theta + z B``: ``latent``, ``latent_training``, ``latent_encoder``.

``tasks/``: the networks on embeddings or latents (GANs, classifier, transfer, neighbour decoder), each
saved next to its model. ``ops/``: the operations users call, on a loaded model folder.
"""
