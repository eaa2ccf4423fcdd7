"""Recommendation methods: one module per method *kind* (``config['methods'][name]['kind']``).

Every method, whatever it trains, ends in the same two files through one metric code
(:func:`mmgenrec.methods.base.Evaluation.write`): ``results/<cat>/<method>/seqrec_metrics.json`` and
``seqrec_topk.jsonl``. The summary, report and paired bootstrap pick every method up from those paths.

Adding a method family (kind ``foo``):

1. ``src/mmgenrec/methods/foo.py``: ``run_foo(inter_json, ..., metrics_path, topk_path, *, cfg, evaluation)``
   trains on the train part (``Evaluation.train_sequences``), selects on the valid split only, and ranks
   ``Evaluation.examples(...)`` of the evaluated split; it ends with ``evaluation.write(...)``.
2. ``workflow/scripts/foo.py``: the snakemake object -> that one call.
3. ``rules/methods/foo.smk``: one rule (or a few) whose outputs are the two files above, for
   ``method=alternatives(methods_of_kind("foo"))``; params ``cfg=method_params`` and ``evaluation=eval_params``.
4. ``config/schema.yaml``: ``$defs/method_foo`` (its settings) and the kind in ``methods``' enum.
"""
