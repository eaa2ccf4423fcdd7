"""Semantic item IDs: an RQ-VAE turns each item embedding into a tuple of codebook tokens, made collision-free."""
