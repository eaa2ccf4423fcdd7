"""Evaluation: trie-constrained beam search over item IDs (``trie``), ranking metrics (``metrics``),
the sequential-recommendation driver (``seqrec``), the popularity baseline (``popularity``) and the summary table."""
