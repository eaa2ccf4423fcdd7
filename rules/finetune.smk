# Finetuning: `ours` (every task at once) and `ours_multistage` (finetune.multistage: alignment, then seqrec) train
# LoRA + item-token rows; `ours_merged` averages the categories' `ours` LoRA adapters (top-level `merge` section).


def finetune_params(method):
    """A params function: the category's finetune section as ``method`` needs it (`ours_multistage` gets `stages`,
    `ours` none, so that editing one method's settings never reruns the other)."""

    def params(wildcards):
        cfg = merged("finetune", wildcards.category)
        stages = cfg.pop("multistage", None)
        if method == "ours_multistage":
            cfg["stages"] = stages
        return canonical(cfg)

    return params


def finetune_inputs(wildcards):
    """Base inputs, plus the enrichment files when the mmitemenrich task is on and something can provide them."""
    cat = wildcards.category
    files = {"model": base_model(), "inter": prepared(cat, "inter.json"), "item": prepared(cat, "item.json"),
             "images": f"results/{cat}/prepared/images", "index": f"results/{cat}/ids/rqvae/index.json"}
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
        directory("results/{category}/ours/model"),
    params:
        cfg=finetune_params("ours"),
        method="ours",
        codebook_size=lambda wc: id_vocabulary(wc.category)["codebook_size"],
        model=model_runtime(),
        checkpoints="results/{category}/ours/checkpoints",  # beside the output: survives a failed job
        processes=finetune_processes,
    threads: rule_resources("finetune", "threads", 2)
    resources:
        gpu=rule_resources("finetune", "gpu", 1),
        mem_mb=rule_resources("finetune", "mem_mb", 8000),
        runtime=rule_resources("finetune", "runtime", 240),
    log:
        "logs/finetune/{category}.log",
    benchmark:
        "benchmarks/finetune/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/finetune.py"


use rule finetune as finetune_multistage with:
    output:
        directory("results/{category}/ours_multistage/model"),
    params:
        cfg=finetune_params("ours_multistage"),
        method="ours_multistage",
        codebook_size=lambda wc: id_vocabulary(wc.category)["codebook_size"],
        model=model_runtime(),
        checkpoints="results/{category}/ours_multistage/checkpoints",
        processes=finetune_processes,
    log:
        "logs/finetune_multistage/{category}.log",
    benchmark:
        "benchmarks/finetune_multistage/{category}.tsv"


rule merge_adapters:
    input:
        adapters=lambda wc: [f"results/{c}/{config.get('merge', {}).get('source_method', 'ours')}/model"
                             for c in sorted(CATEGORIES)],
    output:
        directory("results/{category}/ours_merged/model"),
    params:
        cfg=canonical(config.get("merge", {})),
        categories=sorted(CATEGORIES),  # the order of the config's categories changes nothing
    log:
        "logs/merge_adapters/{category}.log",
    benchmark:
        "benchmarks/merge_adapters/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/merge_adapters.py"
