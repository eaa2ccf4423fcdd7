# Kind unimp: UniMP on Qwen2.5-VL + LoRA: interleaved image+text history, atomic item tokens, focal loss,
# rec/search/selection tasks; valid-HR@10 epoch selection; trie-constrained (one level) ranking.


rule train_unimp:
    input:
        model=base_model(),
        inter=prepared("{category}", "inter.json"),
        item=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(methods_of_kind("unimp")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        model=model_runtime(),
        checkpoints="results/{category}/{method}/checkpoints",  # beside the outputs: survives a failed job
    threads: rule_resources("train_unimp", "threads", 1)
    resources:
        gpu=rule_resources("train_unimp", "gpu", 1),
        mem_mb=rule_resources("train_unimp", "mem_mb", 16000),
        runtime=rule_resources("train_unimp", "runtime", 240),
    log:
        "logs/train_unimp/{category}.{method}.log",
    benchmark:
        "benchmarks/train_unimp/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/unimp.py"
