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
    priority: 1  # the longest chain (embed -> quantize -> finetune -> evaluate) starts first; others fill around it
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


# The lm_text view (id sets with `view: lm_text`): a text encoder (text_encoder.path; a LLaMA-family LLM in the real
# study), title and description each mean-pooled over their tokens, then averaged (LC-Rec's item text vectors).
if "text_encoder" in config:

    rule embed_lm_text:
        input:
            model=config["text_encoder"]["path"],
            item=lambda wc: item_text(wc.category),
        output:
            npy="results/{category}/embed/lm_text.npy",
            meta="results/{category}/embed/lm_text.json",
        params:
            cfg=canonical({k: v for k, v in config["text_encoder"].items()
                           if k in ("batch_size", "max_text_chars", "fields", "device", "dtype")}),
        threads: rule_resources("embed", "threads", 2)
        resources:
            gpu=rule_resources("embed", "gpu", 1),
            mem_mb=rule_resources("embed", "mem_mb", 4000),
            runtime=rule_resources("embed", "runtime", 60),
        log:
            "logs/embed_lm_text/{category}.log",
        benchmark:
            "benchmarks/embed_lm_text/{category}.tsv"
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/embed_lm_text.py"

elif any(idset_quantize(CATEGORIES[0], n).get("view") == "lm_text" for n in BUILT_IDSETS
         if not IDSETS[n].get("embeddings")):
    raise ValueError("an id set uses view lm_text but the config has no text_encoder section")
