# mmgenrec: unified multimodal generative recommendation on Amazon-2018 data.
#   snakemake --cores 2                                   the embedded demo (config/demo.yaml)
#   snakemake --profile profiles/slurm --configfile config/config.yaml      the real study
import copy

from snakemake.utils import min_version, validate

min_version("9.0")

if not config:
    configfile: "config/demo.yaml"


# Schema defaults fill the top-level sections. An override (per category, or in `ablation`) must keep only the keys
# its author wrote: a filled-in default there would shadow the top-level value when the two are laid over each other.
_STAGES = ("prepare", "embed", "quantize", "finetune", "evaluate", "enrich")


def _sections(entry):
    return {sec: copy.deepcopy(entry[sec]) for sec in _STAGES if isinstance((entry or {}).get(sec), dict)}


_CATEGORY_OVERRIDES = {cat: _sections(entry) for cat, entry in config.get("categories", {}).items()}
_ABLATION_OVERRIDES = _sections(config.get("ablation"))
validate(config, "config/schema.yaml")
for _cat, _secs in _CATEGORY_OVERRIDES.items():
    config["categories"][_cat].update(_secs)
if "ablation" in config:
    config["ablation"].update(_ABLATION_OVERRIDES)


# Every rule runs in this image under --sdm apptainer (containers/README.md); without it, in the current environment.
container: config["container"]


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/embed.smk"
include: "rules/quantize.smk"
include: "rules/evaluate.smk"


# one rules file per method kind (config `methods: {name: {kind: ...}}`)
for _kind in ("vlm_genrec", "popularity", "sequential", "lm_genrec", "t5_genrec", "mql4rec", "llm_ranker", "collm",
              "unimp", "vlm_candidates"):

    include: f"rules/methods/{_kind}.smk"


include: "rules/enrich.smk"
include: "rules/ablation.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
        report_targets(),
