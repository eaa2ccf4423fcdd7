# Helpers shared by every rule file: config look-ups with per-category overrides, input functions, targets.
import copy
from pathlib import Path

CATEGORIES = list(config["categories"])
METHODS = config["methods"]


wildcard_constraints:
    category="|".join(CATEGORIES),


def canonical(obj):
    """Dicts with sorted keys, recursively: Snakemake compares ``params`` by value *and order*, and reordering a
    config file must not rerun anything."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [canonical(v) for v in obj]
    return obj


def merged(section, category):
    """``config[section]`` with ``config['categories'][category][section]`` laid over it (one level deep)."""
    out = copy.deepcopy(config.get(section, {}))
    out.update(config["categories"][category].get(section, {}))
    return canonical(out)


def model_runtime():
    """How the model runs (device, dtype); the weights themselves are an input file, not a parameter."""
    return {"device": config["model"]["device"], "dtype": config["model"]["dtype"]}


def id_vocabulary(category):
    """Levels and codebook size of the category's semantic IDs: what the finetuned tokenizer must contain."""
    q = merged("quantize", category)
    return {"levels": q["levels"], "codebook_size": q["codebook_size"]}


def stage_params(section):
    """A ``params:`` function: the merged section for the job's category (changes rerun only that category)."""
    return lambda wildcards: merged(section, wildcards.category)


def rule_resources(rule_name, key, default):
    return config.get("resources", {}).get(rule_name, {}).get(key, default)


def raw_files(wildcards):
    """The raw Amazon-format files of a category: generated (synthetic) or an existing folder (local)."""
    cat = config["categories"][wildcards.category]
    root = Path(cat["raw_dir"]) if cat["source"] == "local" else Path(f"resources/raw/{wildcards.category}")
    return {
        "meta": str(root / f"meta_{wildcards.category}.json.gz"),
        "reviews": str(root / f"{wildcards.category}_5.json.gz"),
        "images": str(root / "images"),
    }


def base_model():
    return config["model"]["path"]


def prepared(name, suffix):
    return f"results/{name}/prepared/{name}.{suffix}"


def all_targets():
    targets = ["results/summary.csv"]
    for cat in CATEGORIES:
        targets += [f"results/{cat}/{method}/seqrec_metrics.json" for method in METHODS]
    return targets
