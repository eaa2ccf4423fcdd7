"""Building (tiny, for the demo and tests) and loading (any size) Qwen2.5-VL checkpoints.

Every stage loads models only through :func:`mmgenrec.models.loading.load_vlm`, i.e. ``from_pretrained(path)``:
the demo's tiny random model and the real ``Qwen2.5-VL-7B-Instruct`` directory go through the same lines.
"""
