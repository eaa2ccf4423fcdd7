# Kind vlm_genrec (ours and its variants): Qwen2.5-VL + LoRA + item-token rows. Variant `multitask` trains every
# finetune task at once (rule finetune), `multistage` runs finetune.multistage (alignment, then seqrec), `merged`
# averages every category's `merge.source_method` adapter (top-level `merge` section). Each is evaluated by
# trie-constrained beam search over its id set (rule evaluate_ours).


def finetune_params(variant):
    """A params function: the category's finetune section as the variant needs it (multistage gets `stages`,
    multitask none, so that editing one variant's settings never reruns the other)."""

    def params(wildcards):
        cfg = merged("finetune", wildcards.category)
        stages = cfg.pop("multistage", None)
        if variant == "multistage":
            cfg["stages"] = stages
        return canonical(cfg)

    return params


def finetune_inputs(wildcards):
    """Base inputs, plus the enrichment files when the mmitemenrich task is on and something can provide them."""
    cat = wildcards.category
    files = {"model": base_model(), "inter": prepared(cat, "inter.json"), "item": item_text(cat),
             "images": f"results/{cat}/prepared/images", "index": idset_index(cat, method_idset(wildcards.method))}
    task = merged("finetune", cat).get("tasks", {}).get("mmitemenrich", {})
    if task.get("weight", 0) > 0 and not enrichment_missing(cat):
        enrich = {"enriched": f"results/{cat}/enrich/enriched.json", "split": f"results/{cat}/enrich/split.json"}
        if all(Path(f).exists() or any(r.is_producer(f) for r in workflow.rules) for f in enrich.values()):
            files.update(enrich)
    return files


def finetune_processes(wildcards):
    """`finetune.processes` when set, else one process per GPU the rule asks for."""
    n = merged("finetune", wildcards.category).get("processes", 0)
    return n or max(1, rule_resources("finetune", "gpu", 1))


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        directory("results/{category}/{method}/model"),
    wildcard_constraints:
        method=alternatives(vlm_variant("multitask")),
    params:
        cfg=finetune_params("multitask"),
        method=lambda wc: wc.method,
        codebook_size=lambda wc: idset_codebook_size(wc.category, method_idset(wc.method)),
        model=model_runtime(),
        checkpoints="results/{category}/{method}/checkpoints",  # beside the output: survives a failed job
        processes=finetune_processes,
    priority: 1  # the longest jobs start as soon as they can (see embed)
    threads: rule_resources("finetune", "threads", 2)
    resources:
        gpu=rule_resources("finetune", "gpu", 1),
        mem_mb=rule_resources("finetune", "mem_mb", 8000),
        runtime=rule_resources("finetune", "runtime", 240),
    log:
        "logs/finetune/{category}.{method}.log",
    benchmark:
        "benchmarks/finetune/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/finetune.py"


use rule finetune as finetune_multistage with:
    output:
        directory("results/{category}/{method}/model"),
    wildcard_constraints:
        method=alternatives(vlm_variant("multistage")),
    params:
        cfg=finetune_params("multistage"),
        method=lambda wc: wc.method,
        codebook_size=lambda wc: idset_codebook_size(wc.category, method_idset(wc.method)),
        model=model_runtime(),
        checkpoints="results/{category}/{method}/checkpoints",
        processes=finetune_processes,
    log:
        "logs/finetune_multistage/{category}.{method}.log",
    benchmark:
        "benchmarks/finetune_multistage/{category}.{method}.tsv"


MERGE_SOURCE = config.get("merge", {}).get("source_method", "ours")
# the categories whose source adapter is averaged: those the source method runs on (sorted: order changes nothing)
MERGED_CATEGORIES = sorted(c for c in CATEGORIES if MERGE_SOURCE in category_methods(c))


rule merge_adapters:
    input:
        adapters=lambda wc: [f"results/{c}/{MERGE_SOURCE}/model" for c in MERGED_CATEGORIES],
    output:
        directory("results/{category}/{method}/model"),
    wildcard_constraints:
        method=alternatives(vlm_variant("merged")),
    params:
        cfg=canonical(config.get("merge", {})),
        categories=MERGED_CATEGORIES,  # the order of the config's categories changes nothing
    log:
        "logs/merge_adapters/{category}.{method}.log",
    benchmark:
        "benchmarks/merge_adapters/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/merge_adapters.py"


rule evaluate_ours:
    # every vlm_genrec method: results/<cat>/<method>/model -> trie-constrained beam search -> seqrec metrics
    input:
        model=base_model(),
        adapter="results/{category}/{method}/model",
        inter=prepared("{category}", "inter.json"),
        index=lambda wc: idset_index(wc.category, method_idset(wc.method)),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(GENERATIVE_METHODS),
    params:
        cfg=decode_params,
        max_history=lambda wc: merged("finetune", wc.category)["max_history"],
        codebook_size=lambda wc: idset_codebook_size(wc.category, method_idset(wc.method)),
        model=model_runtime(),
    threads: rule_resources("evaluate", "threads", 2)
    resources:
        gpu=rule_resources("evaluate", "gpu", 1),
        mem_mb=rule_resources("evaluate", "mem_mb", 8000),
        runtime=rule_resources("evaluate", "runtime", 120),
    log:
        "logs/evaluate_ours/{category}.{method}.log",
    benchmark:
        "benchmarks/evaluate_ours/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/evaluate_ours.py"
