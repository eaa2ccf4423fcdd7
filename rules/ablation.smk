# The semantic-ID ablation: every tokenizer x collision policy x embedding view x embedding pooling of the
# `ablation` section (poolings default to the embed section's own), built
# from that category's `quantize` section (with `ablation.quantize` laid over it) and scored downstream with the
# seqrec model (`finetune` / `evaluate` sections with `ablation.finetune` / `ablation.evaluate` laid over them).
# Not part of `all`: `snakemake results/ablation_ids.csv`.
ABLATION = config.get("ablation", {})
ABLATION_CATEGORIES = ABLATION.get("categories") or CATEGORIES
ABLATION_DIR = "results/{category}/ids/ablation/{tokenizer}-{policy}-{view}-{pooling}"


def embed_pooling(category):
    return merged("embed", category).get("pooling", "content")


def ablation_poolings(category):
    return ABLATION.get("poolings") or [embed_pooling(category)]


def ablation_embeddings(wildcards):
    """The category's own item vectors when the pooling is the embed section's, else the re-pooled ones."""
    if wildcards.pooling == embed_pooling(wildcards.category):
        return f"results/{wildcards.category}/embed/qwen_{wildcards.view}.npy"
    return f"results/{wildcards.category}/embed/pooling-{wildcards.pooling}/qwen_{wildcards.view}.npy"


def ablation_section(section, category):
    cfg = merged(section, category)
    cfg.update(ABLATION.get(section, {}))
    return canonical(cfg)


def ablation_quantize_params(wildcards):
    cfg = ablation_section("quantize", wildcards.category)
    cfg.update(tokenizer=wildcards.tokenizer, collision_policy=wildcards.policy, view=wildcards.view)
    return canonical(cfg)


def ablation_runs():
    runs = []
    for cat in ABLATION_CATEGORIES:
        for t in ABLATION.get("tokenizers", []):
            for p in ABLATION.get("policies", []):
                for v in ABLATION.get("views", []):
                    for pool in ablation_poolings(cat):
                        folder = ABLATION_DIR.format(category=cat, tokenizer=t, policy=p, view=v, pooling=pool)
                        runs.append({"category": cat, "tokenizer": t, "policy": p, "view": v, "pooling": pool,
                                     "stats": f"{folder}/stats.json", "metrics": f"{folder}/seqrec_metrics.json"})
    return runs


wildcard_constraints:
    tokenizer="rqvae|rqkmeans|opq|pq",
    policy="none|sinkhorn|suffix|nearest_free",
    view="mm|text|image",
    pooling="content|prompt",


rule embed_pooled:
    input:
        model=base_model(),
        item=prepared("{category}", "item.json"),
        images="results/{category}/prepared/images",
    output:
        npy="results/{category}/embed/pooling-{pooling}/qwen_{view}.npy",
        meta="results/{category}/embed/pooling-{pooling}/qwen_{view}.json",
    params:
        cfg=lambda wc: canonical(dict(merged("embed", wc.category), pooling=wc.pooling)),
        model=model_runtime(),
    threads: rule_resources("embed", "threads", 2)
    resources:
        gpu=rule_resources("embed", "gpu", 1),
        mem_mb=rule_resources("embed", "mem_mb", 4000),
        runtime=rule_resources("embed", "runtime", 60),
    log:
        "logs/embed_pooled/{category}.{pooling}.{view}.log",
    benchmark:
        "benchmarks/embed_pooled/{category}.{pooling}.{view}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/embed.py"


rule quantize_ablation:
    input:
        npy=ablation_embeddings,
    output:
        index=f"{ABLATION_DIR}/index.json",
        stats=f"{ABLATION_DIR}/stats.json",
        plot=f"{ABLATION_DIR}/training_curve.png",
    params:
        cfg=ablation_quantize_params,
    threads: rule_resources("quantize", "threads", 2)
    resources:
        mem_mb=rule_resources("quantize", "mem_mb", 4000),
        runtime=rule_resources("quantize", "runtime", 60),
    log:
        "logs/quantize_ablation/{category}.{tokenizer}-{policy}-{view}-{pooling}.log",
    benchmark:
        "benchmarks/quantize_ablation/{category}.{tokenizer}-{policy}-{view}-{pooling}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/quantize.py"


rule ablation_score:
    input:
        model=base_model(),
        inter=prepared("{category}", "inter.json"),
        index=f"{ABLATION_DIR}/index.json",
    output:
        metrics=f"{ABLATION_DIR}/seqrec_metrics.json",
        topk=f"{ABLATION_DIR}/seqrec_topk.jsonl",
    params:
        finetune=lambda wc: ablation_section("finetune", wc.category),
        evaluate=lambda wc: {k: v for k, v in ablation_section("evaluate", wc.category).items() if k in DECODE_KEYS},
        codebook_size=lambda wc: ablation_section("quantize", wc.category)["codebook_size"],
        model=model_runtime(),
    threads: rule_resources("finetune", "threads", 2)
    resources:
        gpu=rule_resources("finetune", "gpu", 1),
        mem_mb=rule_resources("finetune", "mem_mb", 8000),
        runtime=rule_resources("finetune", "runtime", 240),
    log:
        "logs/ablation_score/{category}.{tokenizer}-{policy}-{view}-{pooling}.log",
    benchmark:
        "benchmarks/ablation_score/{category}.{tokenizer}-{policy}-{view}-{pooling}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/ablation_score.py"


rule ablation_ids:
    input:
        [r["stats"] for r in ablation_runs()] + [r["metrics"] for r in ablation_runs()],
    output:
        csv="results/ablation_ids.csv",
    params:
        runs=ablation_runs(),
    log:
        "logs/ablation_ids/ablation_ids.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/ablation_gather.py"
