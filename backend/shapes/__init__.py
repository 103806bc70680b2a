"""Neural shapes as data: the architecture and weights (numpy), the torch network, and the ``.h5`` shape and family files."""
