# mmgenrec: unified multimodal generative recommendation on Amazon-2018 data.
#   snakemake --cores 2                                   the embedded demo (config/demo.yaml)
#   snakemake --profile profiles/slurm --configfile config/config.yaml      the real study
from snakemake.utils import min_version, validate

min_version("9.0")

if not config:
    configfile: "config/demo.yaml"


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/embed.smk"
include: "rules/quantize.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/ablation.smk"


rule all:
    input:
        all_targets(),
