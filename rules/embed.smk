rule embed:
    input:
        model=base_model(),
        item=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
    output:
        npy="results/{category}/embed/qwen_mm.npy",
        meta="results/{category}/embed/qwen_mm.json",
    params:
        cfg=stage_params("embed"),
        model=model_runtime(),
    threads: rule_resources("embed", "threads", 2)
    resources:
        gpu=rule_resources("embed", "gpu", 1),
        mem_mb=rule_resources("embed", "mem_mb", 4000),
        runtime=rule_resources("embed", "runtime", 60),
    log:
        "logs/embed/{category}.log",
    benchmark:
        "benchmarks/embed/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/embed.py"


# Text-only and image-only item vectors from the same model (the ablation's views, MQL4Rec's two ID sets).
rule embed_view:
    input:
        model=base_model(),
        item=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
    output:
        npy="results/{category}/embed/qwen_{view}.npy",
        meta="results/{category}/embed/qwen_{view}.json",
    wildcard_constraints:
        view="text|image",
    params:
        cfg=stage_params("embed"),
        model=model_runtime(),
    threads: rule_resources("embed", "threads", 2)
    resources:
        gpu=rule_resources("embed", "gpu", 1),
        mem_mb=rule_resources("embed", "mem_mb", 4000),
        runtime=rule_resources("embed", "runtime", 60),
    log:
        "logs/embed_view/{category}.{view}.log",
    benchmark:
        "benchmarks/embed_view/{category}.{view}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/embed.py"
