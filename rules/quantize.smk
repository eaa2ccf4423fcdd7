# Id sets (the `idsets` section; default {rqvae: {}}): `quantize` builds one from an embedding view or a user's
# .npy with the category's quantize section and the id set's overrides; `import_idset` checks a ready index file.
rule quantize:
    input:
        npy=quantize_input,
    output:
        index="results/{category}/ids/{idset}/index.json",
        stats="results/{category}/ids/{idset}/stats.json",
        plot="results/{category}/ids/{idset}/training_curve.png",
        checkpoints=directory("results/{category}/ids/{idset}/checkpoints"),
        reconstruction="results/{category}/ids/{idset}/reconstruction.npy",
    wildcard_constraints:
        idset=alternatives(BUILT_IDSETS),
    params:
        cfg=lambda wc: idset_quantize(wc.category, wc.idset),
    priority: 1  # on the longest chain (see embed)
    threads: rule_resources("quantize", "threads", 2)
    resources:
        mem_mb=rule_resources("quantize", "mem_mb", 4000),
        runtime=rule_resources("quantize", "runtime", 60),
    log:
        "logs/quantize/{category}.{idset}.log",
    benchmark:
        "benchmarks/quantize/{category}.{idset}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/quantize.py"


def imported_source(wildcards):
    spec = IDSETS[wildcards.idset]
    if spec.get("prepared"):
        folder = raw_files(wildcards).get("folder")
        if folder is None:
            raise ValueError(f"id set {wildcards.idset}: prepared: true needs a category with source: prepared")
        name = "index.json" if spec["prepared"] is True else spec["prepared"]
        return f"{folder}/{wildcards.category}.{name}"
    return spec["import"].format(category=wildcards.category)


rule import_idset:
    input:
        source=imported_source,
        inter=prepared("{category}", "inter.json"),
    output:
        index="results/{category}/ids/{idset}/index.json",
        stats="results/{category}/ids/{idset}/stats.json",
    wildcard_constraints:
        idset=alternatives(IMPORTED_IDSETS),
    params:
        collisions=lambda wc: IDSETS[wc.idset].get("collisions", "error"),
    log:
        "logs/import_idset/{category}.{idset}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/import_idset.py"


# MQL4Rec: one id set from the text-only vectors, one from the image-only vectors, 4 + 4 tokens per item in one
# index (<a_N><b_N><c_N><d_N><A_N><B_N><C_N><D_N>). Not part of `all`: name the file.
rule quantize_mql4rec:
    input:
        text="results/{category}/embed/qwen_text.npy",
        image="results/{category}/embed/qwen_image.npy",
    output:
        index="results/{category}/ids/mql4rec/index.json",
        stats="results/{category}/ids/mql4rec/stats.json",
    params:
        cfg=stage_params("quantize"),
    threads: rule_resources("quantize", "threads", 2)
    resources:
        mem_mb=rule_resources("quantize", "mem_mb", 4000),
        runtime=rule_resources("quantize", "runtime", 60),
    log:
        "logs/quantize_mql4rec/{category}.log",
    benchmark:
        "benchmarks/quantize_mql4rec/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/quantize_mql4rec.py"
