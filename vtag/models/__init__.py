"""Layer 3, features -> scores: the model registry, layers and attention, storage, ensembles, the neighbour memory."""
