# Figures and tables for the HTML report, built from finished outputs:
#   snakemake --cores 2                         (the default target includes them)
#   snakemake --report results/report.html      (one self-contained file: these figures, the rule graph, run times)
# report() marks what goes into the report; captions are in workflow/report/.

report: "../workflow/report/workflow.rst"

# GPUs per job of every rule that asks for them (the `gpu` resource), for GPU-hours in the resource table.
GPUS_PER_RULE = canonical({r.name: r.resources["gpu"] for r in workflow.rules
                           if isinstance(r.resources.get("gpu"), int)})


def report_targets():
    return ["results/report/summary.html", "results/report/resources.csv",
            *expand("results/report/{category}/hr_at_10.png", category=CATEGORIES)]


rule report_summary:
    input:
        "results/summary.csv",
    output:
        report("results/report/summary.html", caption="../workflow/report/summary.rst", category="1. Summary"),
    log:
        "logs/report_summary/summary.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/report_summary.py"


rule report_category:
    input:
        metrics=lambda wc: [f"results/{wc.category}/{m}/seqrec_metrics.json" for m in category_methods(wc.category)],
        id_stats=lambda wc: f"{idset_dir(wc.category, I2I_IDSET)}/stats.json" if uses_ids(wc.category) else [],
        models=lambda wc: [f"results/{wc.category}/{m}/model" for m in generative_in(wc.category)],
    output:
        hr=report("results/report/{category}/hr_at_10.png", caption="../workflow/report/hr_at_10.rst",
                  category="2. Per category", subcategory="{category}", labels={"figure": "HR@10 by method"}),
        collisions=report("results/report/{category}/collisions.png", caption="../workflow/report/collisions.rst",
                          category="2. Per category", subcategory="{category}", labels={"figure": "semantic IDs"}),
        curves=report("results/report/{category}/training_curves.png", caption="../workflow/report/curves.rst",
                      category="2. Per category", subcategory="{category}", labels={"figure": "training curves"}),
    params:
        methods=lambda wc: category_methods(wc.category),
        generative=lambda wc: generative_in(wc.category),
    log:
        "logs/report_category/{category}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/report_category.py"


rule report_resources:
    input:
        # every stage job has finished, and written its benchmark file, before the summary exists
        "results/summary.csv",
    output:
        csv="results/report/resources.csv",
        html=report("results/report/resources.html", caption="../workflow/report/resources.rst",
                    category="3. Compute", labels={"table": "runtime, memory, GPU-hours per rule"}),
        png=report("results/report/resources.png", caption="../workflow/report/resources.rst",
                   category="3. Compute", labels={"table": "time per stage"}),
    params:
        benchmarks="benchmarks",
        gpus=GPUS_PER_RULE,
    log:
        "logs/report_resources/resources.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/report_resources.py"
