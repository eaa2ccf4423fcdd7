# Enriched item text: produce it (a provided file or an OpenAI-compatible API), check it, measure its utility.
from types import SimpleNamespace

from snakemake.logging import logger

ENRICH_GENERATION_KEYS = {
    "provided": ("source", "provided_keys", "heldout_fraction", "split_seed"),
    "api": ("source", "heldout_fraction", "split_seed", "base_url", "model", "api_key_env", "concurrency",
            "max_retries", "json_retries", "timeout", "max_tokens", "temperature", "max_list_items"),
}
ENRICH_CHECK_KEYS = ("min_coverage", "max_schema_error_rate", "max_duplicate_rate", "max_unfaithful_rate",
                     "max_contradiction_rate", "min_title_overlap", "max_list_items", "report_items")


def enrich_cfg(category):
    return merged("enrich", category)


def enrich_generation(wildcards):
    cfg = enrich_cfg(wildcards.category)
    source = cfg.get("source", "provided")
    return canonical({k: cfg[k] for k in ENRICH_GENERATION_KEYS[source] if k in cfg})


def provided_enrichment(category):
    """Where a category's provided ``item_enriched_v2.json`` is (a file, or a file inside a folder input)."""
    cfg = enrich_cfg(category)
    if cfg.get("provided_file"):
        return cfg["provided_file"].format(category=category)
    source = source_of(category)
    if source == "synthetic":
        return f"resources/raw/{category}/{category}.item_enriched_v2.json"
    if source == "prepared":
        return str(Path(raw_files(SimpleNamespace(category=category))["folder"]) / f"{category}.item_enriched_v2.json")
    raise ValueError(f"category {category}: enrich.source is provided but there is no enrich.provided_file "
                     f"for source {source!r} (set enrich.provided_file, or enrich.source: api)")


def enrichment_missing(category):
    """Why the category has no enrichment to read (None when it has one: an API, a provided_file, the synthetic
    data's or the prepared folder's own file). Such a category runs every stage that does not need one."""
    cfg = enrich_cfg(category)
    if cfg.get("source", "provided") != "provided" or cfg.get("provided_file"):
        return None
    source = source_of(category)
    if source == "synthetic":
        return None
    if source == "prepared":
        folder = Path(raw_files(SimpleNamespace(category=category))["folder"])
        if folder.is_dir() and not (folder / f"{category}.item_enriched_v2.json").exists():
            return f"no {category}.item_enriched_v2.json in the prepared folder {folder}"
        return None
    return f"enrich.source is provided but there is no enrich.provided_file for source {source!r}"


def enriched_categories():
    return [c for c in TEXT_CATEGORIES if not enrichment_missing(c)]


ENRICH_SKIPPED = {c: enrichment_missing(c) for c in CATEGORIES if enrichment_missing(c)}
for _cat, _why in ENRICH_SKIPPED.items():
    logger.warning(f"category {_cat}: {_why}: skipping enrich, enrich_checks, enrich_utility, text generation and "
                   f"the mmitemenrich finetuning task (set enrich.provided_file or enrich.source: api to run them)")


def enrich_inputs(wildcards):
    cat = wildcards.category
    files = {"item": item_text(cat), "item2id": prepared(cat, "item2id"),
             "images": f"results/{cat}/prepared/images"}
    if enrich_cfg(cat).get("source", "provided") == "provided":
        path = provided_enrichment(cat)
        # a prepared folder is an output directory: depend on the folder, read the file inside it
        files["provided"] = raw_files(wildcards)["folder"] if source_of(cat) == "prepared" \
            and not enrich_cfg(cat).get("provided_file") else path
    return files


def enrich_cache(wildcards):
    cfg = enrich_cfg(wildcards.category)
    model = str(cfg.get("model", "gpt-4.1")).replace("/", "_")
    return f"{cfg.get('cache_dir', 'resources/enrich_cache')}/{wildcards.category}/{model}.jsonl"


rule enrich:
    input:
        unpack(enrich_inputs),
    output:
        enriched="results/{category}/enrich/enriched.json",
        split="results/{category}/enrich/split.json",
        usage="results/{category}/enrich/usage.json",
        failures="results/{category}/enrich/failures.jsonl",
    params:
        cfg=enrich_generation,
        provided_path=lambda wc: provided_enrichment(wc.category)
        if enrich_cfg(wc.category).get("source", "provided") == "provided" else None,
        cache=enrich_cache,  # a cache, not an output: a rerun keeps every answer already paid for
    threads: 1
    log:
        "logs/enrich/{category}.log",
    benchmark:
        "benchmarks/enrich/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/enrich.py"


rule enrich_checks:
    input:
        item=lambda wc: item_text(wc.category),
        enriched="results/{category}/enrich/enriched.json",
    output:
        json="results/{category}/enrich/checks.json",
        md="results/{category}/enrich/checks.md",
    params:
        cfg=lambda wc: canonical({k: v for k, v in enrich_cfg(wc.category).items() if k in ENRICH_CHECK_KEYS}),
    log:
        "logs/enrich_checks/{category}.log",
    benchmark:
        "benchmarks/enrich_checks/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/enrich_checks.py"


rule enrich_utility:
    input:
        inter=prepared("{category}", "inter.json"),
        item=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
        enriched="results/{category}/enrich/enriched.json",
        checks="results/{category}/enrich/checks.json",  # only checked enrichment is evaluated
    output:
        json="results/{category}/enrich/utility.json",
        md="results/{category}/enrich/utility.md",
    params:
        cfg=lambda wc: canonical(enrich_cfg(wc.category).get("utility", {})),
    threads: 1
    log:
        "logs/enrich_utility/{category}.log",
    benchmark:
        "benchmarks/enrich_utility/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/enrich_utility.py"
