# Kind sequential: SASRec / BERT4Rec / GRU4Rec / LRURec over item ids (mmgenrec.methods.sequential), trained on the
# training parts with early stopping on valid, full ranking; also the retriever's candidate lists
# (results/<cat>/candidates/<method>/) that ranking methods consume.


rule sequential:
    input:
        inter=prepared("{category}", "inter.json"),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
        train_log="results/{category}/{method}/train_log.json",
        candidates_valid="results/{category}/candidates/{method}/valid.jsonl",
        candidates_test="results/{category}/candidates/{method}/test.jsonl",
        candidates_train="results/{category}/candidates/{method}/train.jsonl",
        recall="results/{category}/candidates/{method}/recall.json",
    wildcard_constraints:
        method=alternatives(methods_of_kind("sequential")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        method=lambda wc: wc.method,
        checkpoints="results/{category}/{method}/checkpoints",  # beside the outputs: survives a failed job
    threads: rule_resources("sequential", "threads", 1)
    resources:
        gpu=rule_resources("sequential", "gpu", 0),
        mem_mb=rule_resources("sequential", "mem_mb", 4000),
        runtime=rule_resources("sequential", "runtime", 120),
    log:
        "logs/sequential/{category}.{method}.log",
    benchmark:
        "benchmarks/sequential/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/sequential.py"
