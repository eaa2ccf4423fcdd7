"""Per-rule runtime and peak memory of a finished run, from Snakemake's ``benchmark:`` files.

    python benchmarks/stage_times.py [benchmarks]      # prints a Markdown table
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def stage_table(root: str | Path = "benchmarks") -> pd.DataFrame:
    rows = []
    for tsv in sorted(Path(root).glob("*/*.tsv")):
        df = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": tsv.parent.name, "job": tsv.stem, "seconds": df.s.iloc[-1],
                     "max_rss_mb": df.max_rss.iloc[-1]})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    table = stage_table(sys.argv[1] if len(sys.argv) > 1 else "benchmarks")
    print(table.to_markdown(index=False, floatfmt=".1f"))
    print(f"\ntotal job time: {table.seconds.sum():.0f} s")
