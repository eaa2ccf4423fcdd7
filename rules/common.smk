# Helpers shared by every rule file: config look-ups with per-category overrides, input functions, targets.
import copy
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

CATEGORIES = list(config["categories"])
# A method is a named entry with a `kind` (rules/methods/<kind>.smk); every method ends in
# results/<cat>/<method>/seqrec_metrics.json + seqrec_topk.jsonl.
METHODS = list(config["methods"])
# Named semantic-ID sets, results/<cat>/ids/<idset>/index.json: built by `quantize` over an embedding view (or a
# user's .npy), or imported from an index file / the prepared folder (`import_idset`).
IDSETS = config.get("idsets") or {"rqvae": {}}
IMPORTED_IDSETS = [n for n, s in IDSETS.items() if s.get("import") or s.get("prepared")]
BUILT_IDSETS = [n for n in IDSETS if n not in IMPORTED_IDSETS]


def ids_only(category):
    """A `source: prepared` category whose folder has no item.json (e.g. the published Instruments split): only
    methods that need no item text (popularity, sequential, T5 over imported id sets) can run on it."""
    cfg = config["categories"][category]
    folder = cfg.get("prepared_dir")
    return cfg["source"] == "prepared" and bool(folder) and not (Path(folder) / f"{category}.item.json").exists()


TEXT_CATEGORIES = [c for c in CATEGORIES if not ids_only(c)]


def item_text(category):
    """The prepared item.json of a category that has item text; planning stops with the missing file named
    otherwise (a rule that reads item text was asked for on an ID-only category)."""
    if ids_only(category):
        folder = config["categories"][category]["prepared_dir"]
        raise WorkflowError(f"{folder}/{category}.item.json is missing: category {category} has no item text, so "
                            "only ID-based methods (popularity, sequential, t5_genrec/mql4rec over imported id sets) "
                            "can run on it; remove the methods and stages that read item text for it")
    return prepared(category, "item.json")


def methods_of_kind(*kinds):
    return [m for m in METHODS if config["methods"][m]["kind"] in kinds]


def method_spec(method):
    return config["methods"][method]


def extra_method_rows():
    """Result folders a kind writes besides its own, as rows of the summary: MQL4Rec's single-modality rankings
    (results/<cat>/<method>_text and _image; the method's own folder holds the fused ranking)."""
    extra = [f"{m}_{modality}" for m in methods_of_kind("mql4rec") for modality in ("text", "image")]
    clash = sorted(set(extra) & set(METHODS))
    if clash:
        raise ValueError(f"method name {clash[0]!r} is taken by an MQL4Rec method's single-modality results")
    return extra


# every method's results folder the summary reads (the methods and the extra rows above)
REPORTED_METHODS = METHODS + extra_method_rows()


# Methods whose model is a finetuned VLM at results/<cat>/<method>/model (ours and its variants).
GENERATIVE_METHODS = methods_of_kind("vlm_genrec")


def vlm_variant(variant):
    return [m for m in GENERATIVE_METHODS if method_spec(m).get("variant", "multitask") == variant]


def alternatives(names):
    """A wildcard constraint matching exactly these names (an empty list matches nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


wildcard_constraints:
    category=alternatives(CATEGORIES),
    idset=alternatives(IDSETS),


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


def idset_codebook_size(category, idset):
    """The codebook size of a built id set (every code of the grid becomes a token); None for an imported one
    (its tokens come from the index itself)."""
    return None if idset in IMPORTED_IDSETS else idset_quantize(category, idset)["codebook_size"]


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
    if source in ("hm", "synthetic_hm"):
        root = Path(cfg["raw_dir"]) if source == "hm" else Path(f"resources/raw_hm/{cat}")
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
        "synthetic_hm": f"resources/raw_hm/{cat}/images",
        "prepared": str(Path(cfg.get("prepared_dir") or f"resources/prepared/{cat}") / "images"),
    }[cfg["source"]]


def base_model():
    return config["model"]["path"]


def prepared(name, suffix):
    return f"results/{name}/prepared/{name}.{suffix}"


def method_params(wildcards):
    """A method's own settings (its config entry): editing one method reruns only that method."""
    return canonical(method_spec(wildcards.method))


# the evaluate keys every method shares (mmgenrec.methods.base.Evaluation)
EVAL_KEYS = ("split", "top_k", "max_users", "exclude_history")


HM_SOURCES = ("hm", "synthetic_hm")


def eval_params(wildcards):
    """The shared evaluate keys; H&M-format categories also get map_k=12 (MAP@12, the Kaggle metric)."""
    cfg = merged("evaluate", wildcards.category)
    out = {k: cfg[k] for k in EVAL_KEYS if k in cfg}
    if source_of(wildcards.category) in HM_SOURCES:
        out["map_k"] = 12
    return out


def method_idset(method):
    return method_spec(method).get("idset", "rqvae")


def idset_dir(category, idset):
    return f"results/{category}/ids/{idset}"


def idset_index(category, idset):
    if idset not in IDSETS:
        raise ValueError(f"id set {idset!r} is not in the config's idsets ({sorted(IDSETS)})")
    return f"{idset_dir(category, idset)}/index.json"


def idset_quantize(category, idset):
    """The quantize section a built id set runs with: the category's section, the id set's overrides on top."""
    spec = IDSETS[idset]
    cfg = merged("quantize", category)
    cfg.update(spec.get("quantize", {}))
    cfg.update({k: spec[k] for k in ("tokenizer", "view") if k in spec})
    return canonical(cfg)


def idset_vectors(category, idset):
    """The item vectors a built id set quantizes: a user's .npy, or an embed view."""
    spec = IDSETS[idset]
    if spec.get("embeddings"):
        return spec["embeddings"].format(category=category)
    view = idset_quantize(category, idset)["view"]
    return f"results/{category}/embed/lm_text.npy" if view == "lm_text" else f"results/{category}/embed/qwen_{view}.npy"


def category_methods(category):
    """The methods that run on a category: all, the category's own `methods:` list, or all but its
    `methods: {exclude: [...]}`; sorted by name, so that a reordered config plans (and reruns) nothing new."""
    spec = config["categories"][category].get("methods")
    if spec is None:
        return sorted(METHODS)
    named = spec["exclude"] if isinstance(spec, dict) else spec
    unknown = [m for m in named if m not in METHODS]
    if unknown:
        raise WorkflowError(f"categories.{category}.methods names {unknown}, which are not in the config's methods "
                            f"({METHODS})")
    if isinstance(spec, dict):
        return sorted(m for m in METHODS if m not in named)
    return sorted(m for m in METHODS if m in named)


def uses_ids(category):
    """Whether a method of the category decodes semantic IDs (an `idset` or `idsets` entry)."""
    return any("idset" in method_spec(m) or "idsets" in method_spec(m) for m in category_methods(category))


def generative_in(category):
    """The VLM (vlm_genrec) methods that run on a category."""
    return [m for m in category_methods(category) if m in GENERATIVE_METHODS]


def reported_in(category):
    """The result folders the summary reads for a category: its methods, plus the extra rows a kind writes
    (:func:`extra_method_rows`: MQL4Rec's single-modality rankings)."""
    out = []
    for m in category_methods(category):
        out.append(m)
        if method_spec(m)["kind"] == "mql4rec":
            out += [f"{m}_text", f"{m}_image"]
    return out


def method_outputs(name):
    """``results/<cat>/<method>/<name>`` for every category and every result folder it reports."""
    return [f"results/{cat}/{m}/{name}" for cat in CATEGORIES for m in reported_in(cat)]


def all_targets():
    targets = ["results/summary.csv"]
    for cat in CATEGORIES:
        targets += [f"results/{cat}/{method}/seqrec_metrics.json" for method in category_methods(cat)]
    for cat in TEXT_CATEGORIES:
        if not enrichment_missing(cat):  # rules/enrich.smk: a category without enrichment skips these
            targets += [f"results/{cat}/enrich/checks.json", f"results/{cat}/enrich/utility.json"]
    return targets


def quantize_input(wildcards):
    """The item vectors the job's id set is built from (``quantize.view``: mm, text or image, or the id set's own)."""
    return idset_vectors(wildcards.category, getattr(wildcards, "idset", I2I_IDSET))


# the id set of the first VLM method (else the first id set): its reconstruction, token rows and stats are what
# I2I and the report show
I2I_IDSET = method_idset(GENERATIVE_METHODS[0]) if GENERATIVE_METHODS else next(iter(IDSETS))
