rule evaluate_ours:
    input:
        model=base_model(),
        adapter="results/{category}/ours/model",
        inter=prepared("{category}", "inter.json"),
        index="results/{category}/ids/rqvae/index.json",
    output:
        metrics="results/{category}/ours/seqrec_metrics.json",
        topk="results/{category}/ours/seqrec_topk.jsonl",
    params:
        cfg=stage_params("evaluate"),
        max_history=lambda wc: merged("finetune", wc.category)["max_history"],
        model=model_runtime(),
    threads: rule_resources("evaluate", "threads", 2)
    resources:
        gpu=rule_resources("evaluate", "gpu", 1),
        mem_mb=rule_resources("evaluate", "mem_mb", 8000),
        runtime=rule_resources("evaluate", "runtime", 120),
    log:
        "logs/evaluate_ours/{category}.log",
    benchmark:
        "benchmarks/evaluate_ours/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/evaluate_ours.py"


rule evaluate_popularity:
    input:
        inter=prepared("{category}", "inter.json"),
    output:
        metrics="results/{category}/popularity/seqrec_metrics.json",
        topk="results/{category}/popularity/seqrec_topk.jsonl",
    params:
        cfg=stage_params("evaluate"),
    log:
        "logs/evaluate_popularity/{category}.log",
    benchmark:
        "benchmarks/evaluate_popularity/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/evaluate_popularity.py"


rule summary:
    input:
        metrics=expand("results/{category}/{method}/seqrec_metrics.json", category=CATEGORIES, method=METHODS),
        data=[prepared(cat, "stats.json") for cat in CATEGORIES],
    output:
        csv="results/summary.csv",
        md="results/summary.md",
    log:
        "logs/summary/summary.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/summary.py"
