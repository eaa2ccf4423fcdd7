"""Figures and tables for ``snakemake --report`` (built from finished outputs; nothing is recomputed)."""
