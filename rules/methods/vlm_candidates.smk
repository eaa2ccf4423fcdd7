# Kind vlm_candidates: the RecLMMs setting (PALR-style prompt, H&M): history text + the most recent history
# item's image + lettered candidates; candidates ranked by the index token through the one-level trie decoder.


rule train_vlm_candidates:
    input:
        model=base_model(),
        inter=prepared("{category}", "inter.json"),
        item=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(methods_of_kind("vlm_candidates")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        model=model_runtime(),
        checkpoints="results/{category}/{method}/checkpoints",  # beside the outputs: survives a failed job
    threads: rule_resources("train_vlm_candidates", "threads", 1)
    resources:
        gpu=rule_resources("train_vlm_candidates", "gpu", 1),
        mem_mb=rule_resources("train_vlm_candidates", "mem_mb", 16000),
        runtime=rule_resources("train_vlm_candidates", "runtime", 240),
    log:
        "logs/train_vlm_candidates/{category}.{method}.log",
    benchmark:
        "benchmarks/train_vlm_candidates/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/vlm_candidates.py"
