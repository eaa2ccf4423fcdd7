"""Enriched item text: produce it (a provided file or an OpenAI-compatible API), check it, and measure whether it
helps an independent multimodal recommender (VBPR).

Files per category (``results/<cat>/enrich/``): ``enriched.json`` ({item id: the four fields + ``has_image``}),
``split.json`` ({"train": [...], "heldout": [...]}), ``usage.json`` / ``failures.jsonl`` (generation),
``checks.json`` / ``checks.md`` and ``utility.json`` / ``utility.md``.
"""

FIELDS = ("enhanced_title", "tags", "highlights", "characteristics")
