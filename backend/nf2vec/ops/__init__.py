"""The nf2vec operations users call (interpolate, generate, complete, similar, classify) on a loaded model folder."""
