"""The one error type the product shows to users."""


class NeuralShapesError(Exception):
    """A failure a user can act on; ``str(error)`` is one line naming the file or input and the cause."""
