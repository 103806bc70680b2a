"""The networks trained on nf2vec embeddings or latents (GANs, classifier, transfer network, neighbour decoder), and their files."""
