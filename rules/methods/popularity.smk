# Kind popularity: the most frequent training items, the same list for every user.


rule evaluate_popularity:
    input:
        inter=prepared("{category}", "inter.json"),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(methods_of_kind("popularity")),
    params:
        evaluation=eval_params,
    log:
        "logs/evaluate_popularity/{category}.{method}.log",
    benchmark:
        "benchmarks/evaluate_popularity/{category}.{method}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../workflow/scripts/evaluate_popularity.py"
