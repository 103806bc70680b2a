"""neural-shapes backend: fitting, storage, the command line (and later the local service and nf2vec)."""

__version__ = "0.1.0"
