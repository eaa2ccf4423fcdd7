# Evaluation shared by the methods: mmitemenrich text generation (the VLM methods + generation-only baselines), I2I
# embedding quality, and the summary over every method's seqrec files (each method kind's rules write those:
# rules/methods/<kind>.smk).
EVAL = config["evaluate"]
TEXTGEN = EVAL.get("textgen", {})
TEXTGEN_BASELINES = TEXTGEN.get("baselines", {}) if TEXTGEN.get("enabled", False) else {}
TEXTGEN_SYSTEMS = (GENERATIVE_METHODS + list(TEXTGEN_BASELINES)) if TEXTGEN.get("enabled", False) else []
I2I_ENABLED = EVAL.get("i2i", {}).get("enabled", True)
# the decoding keys of the evaluate section: only these rerun a seqrec evaluation when changed
DECODE_KEYS = ("batch_size", "exclude_history", "max_users", "num_beams", "split", "template_ids", "top_k")
TEXTGEN_KEYS = ("batch_size", "bertscore_model", "max_items", "max_new_tokens", "max_text_chars", "use_images")


def decode_params(wildcards):
    cfg = merged("evaluate", wildcards.category)
    return {k: cfg[k] for k in DECODE_KEYS if k in cfg}


def textgen_params(wildcards):
    cfg = merged("evaluate", wildcards.category).get("textgen", {})
    return canonical({k: cfg[k] for k in TEXTGEN_KEYS if k in cfg})


def textgen_baseline_model(wildcards):
    spec = TEXTGEN_BASELINES[wildcards.method]
    return base_model() if spec["kind"] == "vlm" else spec["path"]


rule textgen_ours:
    # mmitemenrich generations of a finetuned method on the held-out enriched items
    input:
        model=base_model(),
        adapter="results/{category}/{method}/model",
        item_json=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
        enriched="results/{category}/enrich/enriched.json",
        split="results/{category}/enrich/split.json",
    output:
        metrics="results/{category}/{method}/textgen_metrics.json",
        generations="results/{category}/{method}/textgen_generations.jsonl",
    wildcard_constraints:
        method=alternatives(GENERATIVE_METHODS),
    params:
        cfg=textgen_params,
        kind="vlm",
        model=model_runtime(),
    threads: rule_resources("evaluate", "threads", 2)
    resources:
        gpu=rule_resources("evaluate", "gpu", 1),
        mem_mb=rule_resources("evaluate", "mem_mb", 8000),
        runtime=rule_resources("evaluate", "runtime", 120),
    log:
        "logs/textgen_{method}/{category}.log",
    benchmark:
        "benchmarks/textgen_{method}/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/evaluate_textgen.py"


rule textgen_baseline:
    # generation-only baselines: the untuned base VLM, BLIP-2, InstructBLIP (local folders)
    input:
        model=textgen_baseline_model,
        item_json=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
        enriched="results/{category}/enrich/enriched.json",
        split="results/{category}/enrich/split.json",
    output:
        metrics="results/{category}/{method}/textgen_metrics.json",
        generations="results/{category}/{method}/textgen_generations.jsonl",
    wildcard_constraints:
        method=alternatives(TEXTGEN_BASELINES),
    params:
        cfg=textgen_params,
        kind=lambda wc: TEXTGEN_BASELINES[wc.method]["kind"],
        model=model_runtime(),
    threads: rule_resources("evaluate", "threads", 2)
    resources:
        gpu=rule_resources("evaluate", "gpu", 1),
        mem_mb=rule_resources("evaluate", "mem_mb", 8000),
        runtime=rule_resources("evaluate", "runtime", 120),
    log:
        "logs/textgen_{method}/{category}.log",
    benchmark:
        "benchmarks/textgen_{method}/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/evaluate_textgen.py"


rule evaluate_i2i:
    # item-to-item quality of the raw embeddings, of the vectors decoded from the semantic IDs, and of every
    # generative method's finetuned ID-token rows
    input:
        model=base_model(),
        inter=prepared("{category}", "inter.json"),
        npy=quantize_input,
        index=lambda wc: idset_index(wc.category, I2I_IDSET),
        reconstruction=lambda wc: f"{idset_dir(wc.category, I2I_IDSET)}/reconstruction.npy",
        adapters=lambda wc: [f"results/{wc.category}/{m}/model" for m in generative_in(wc.category)],
    output:
        "results/{category}/i2i_metrics.json",
    params:
        methods=lambda wc: generative_in(wc.category),
        model=model_runtime(),
    threads: rule_resources("evaluate", "threads", 2)
    resources:
        gpu=rule_resources("evaluate", "gpu", 1),
        mem_mb=rule_resources("evaluate", "mem_mb", 8000),
        runtime=rule_resources("evaluate", "runtime", 120),
    log:
        "logs/evaluate_i2i/{category}.log",
    benchmark:
        "benchmarks/evaluate_i2i/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/evaluate_i2i.py"


rule summary:
    input:
        metrics=method_outputs("seqrec_metrics.json"),
        topk=method_outputs("seqrec_topk.jsonl"),
        textgen=lambda wc: [f"results/{c}/{m}/textgen_metrics.json" for c in enriched_categories()
                            for m in TEXTGEN_SYSTEMS if m in TEXTGEN_BASELINES or m in generative_in(c)],
        i2i=[f"results/{c}/i2i_metrics.json" for c in TEXT_CATEGORIES if I2I_ENABLED and generative_in(c)],
        data=[prepared(cat, "stats.json") for cat in CATEGORIES],
        enrich_checks=lambda wc: expand("results/{category}/enrich/checks.json", category=enriched_categories()),
        enrich_utility=lambda wc: expand("results/{category}/enrich/utility.json", category=enriched_categories()),
    output:
        csv="results/summary.csv",
        parquet="results/summary.parquet",
        md="results/summary.md",
        plots=directory("results/plots"),
    params:
        boot=canonical({k: EVAL[k] for k in ("n_boot", "seed", "ci", "bootstrap_metrics") if k in EVAL}),
        enrich_skipped=lambda wc: ENRICH_SKIPPED,  # rules/enrich.smk
    log:
        "logs/summary/summary.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/summary.py"
