# Helpers shared by every rule file: config look-ups with per-category overrides, input functions, targets.
import copy
from pathlib import Path

CATEGORIES = list(config["categories"])
METHODS = config["methods"]
# Methods whose model is a finetuned VLM at results/<cat>/<method>/model (ours and its variants).
GENERATIVE_METHODS = [m for m in METHODS if m.startswith("ours")]


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
    """``config['resources'][rule_name][key]``; ``runtime`` (minutes) grows with the attempt, so a job that is
    retried after hitting its time limit (profiles/slurm: retries) asks for 2x, then 3x the time."""
    value = config.get("resources", {}).get(rule_name, {}).get(key, default)
    if key == "runtime":
        return lambda wildcards, attempt: value * attempt
    return value


def source_of(category):
    return config["categories"][category]["source"]


def amazon_dir(category):
    return f"resources/amazon18/{category}"


def raw_files(wildcards):
    """The inputs ``prepare`` reads for a category, by its source (see ``mmgenrec.data.sources``)."""
    cat = wildcards.category
    cfg = config["categories"][cat]
    source = cfg["source"]
    if source == "synthetic":
        root = Path(f"resources/raw/{cat}")
        return {"meta": str(root / f"meta_{cat}.json.gz"), "reviews": str(root / f"{cat}_5.json.gz"),
                "images": str(root / "images")}
    if source == "local":
        root = Path(cfg["raw_dir"])
        files = {"meta": str(root / f"meta_{cat}.json.gz"), "reviews": str(root / f"{cat}_5.json.gz")}
        if (root / "images").is_dir():
            files["images"] = str(root / "images")
        return files
    if source == "download":
        root = amazon_dir(cat)
        files = {"meta": f"{root}/meta_{cat}.json.gz", "reviews": f"{root}/{cat}_5.json.gz",
                 "raw_done": f"{root}/raw.done"}
        if config.get("download", {}).get("images", {}).get("enabled", True):
            files["images_done"] = f"{root}/images.done"
        return files
    if source == "hm":
        root = Path(cfg["raw_dir"])
        return {key: str(root / name) for key, name in
                (("articles", "articles.csv"), ("customers", "customers.csv"),
                 ("transactions", "transactions_train.csv"))}
    if source == "prepared":
        return {"folder": cfg.get("prepared_dir") or f"resources/prepared/{cat}"}
    raise ValueError(f"category {cat}: unknown source {source!r}")


def raw_image_dir(wildcards):
    """Where the category's raw images are (a folder that may be missing: items then have no image)."""
    cat = wildcards.category
    cfg = config["categories"][cat]
    return {
        "synthetic": f"resources/raw/{cat}/images",
        "local": str(Path(cfg.get("raw_dir", "")) / "images"),
        "download": f"{amazon_dir(cat)}/images",
        "hm": str(Path(cfg.get("raw_dir", "")) / "images"),
        "prepared": str(Path(cfg.get("prepared_dir") or f"resources/prepared/{cat}") / "images"),
    }[cfg["source"]]


def base_model():
    return config["model"]["path"]


def prepared(name, suffix):
    return f"results/{name}/prepared/{name}.{suffix}"


def all_targets():
    targets = ["results/summary.csv"]
    for cat in CATEGORIES:
        targets += [f"results/{cat}/{method}/seqrec_metrics.json" for method in METHODS]
        if not enrichment_missing(cat):  # rules/enrich.smk: a category without enrichment skips these
            targets += [f"results/{cat}/enrich/checks.json", f"results/{cat}/enrich/utility.json"]
    return targets


def quantize_input(wildcards):
    """The embedding view the main id set is built from (``quantize.view``: mm, text or image)."""
    return f"results/{wildcards.category}/embed/qwen_{merged('quantize', wildcards.category)['view']}.npy"
