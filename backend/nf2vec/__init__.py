"""nf2vec (De Luigi et al.): an encoder that turns the weights of a neural SDF of one family into an
embedding, trained with an implicit decoder that reproduces the shape's signed distances from it.

``encoder`` (weights -> embedding), ``decoder`` (embedding + point -> signed distance), ``model`` (settings
and the model folder), ``training`` (fitting both to shapes), ``embedding`` (embeddings and neighbours).
"""
