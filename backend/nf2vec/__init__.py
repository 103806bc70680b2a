"""nf2vec (De Luigi et al.): an encoder that turns the weights of a neural SDF of one family into an
embedding, trained with an implicit decoder that reproduces the shape's signed distances from it.

``encoder`` (weights -> embedding), ``decoder`` (embedding + point -> signed distance), ``model`` (settings
and the model folder), ``training`` (fitting both to shapes), ``embedding`` (embeddings and neighbours).

Networks on embeddings (the paper's downstream tasks), each saved next to its model (``task_file``):
``latent_gan`` (generating embeddings, optionally of a class), ``classifier`` (class probabilities),
``transfer`` (embedding -> embedding, e.g. partial shape -> complete shape); ``downstream`` holds what
they share and ``task_data`` finds their classes and pairs through the shapes' provenance.
"""
