# Kind t5_genrec (TIGER): a T5 encoder-decoder trained from scratch on the method's id set (`idset:`), selected on
# the valid split, ranked by trie-constrained beam search (mmgenrec.methods.t5_genrec).


rule t5_genrec:
    input:
        inter=prepared("{category}", "inter.json"),
        index=lambda wc: idset_index(wc.category, method_idset(wc.method)),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
        model=directory("results/{category}/{method}/model"),
    wildcard_constraints:
        method=alternatives(methods_of_kind("t5_genrec")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        method=lambda wc: wc.method,
        checkpoints="results/{category}/{method}/checkpoints",  # beside the outputs: survives a failed job
    threads: rule_resources("t5_genrec", "threads", 1)
    resources:
        gpu=rule_resources("t5_genrec", "gpu", 0),
        mem_mb=rule_resources("t5_genrec", "mem_mb", 4000),
        runtime=rule_resources("t5_genrec", "runtime", 240),
    log:
        "logs/t5_genrec/{category}.{method}.log",
    benchmark:
        "benchmarks/t5_genrec/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/t5_genrec.py"
