rule finetune:
    input:
        model=base_model(),
        inter=prepared("{category}", "inter.json"),
        index="results/{category}/ids/rqvae/index.json",
    output:
        directory("results/{category}/ours/model"),
    params:
        cfg=stage_params("finetune"),
        quantize=lambda wc: id_vocabulary(wc.category),
        model=model_runtime(),
    threads: rule_resources("finetune", "threads", 2)
    resources:
        gpu=rule_resources("finetune", "gpu", 1),
        mem_mb=rule_resources("finetune", "mem_mb", 8000),
        runtime=rule_resources("finetune", "runtime", 240),
    log:
        "logs/finetune/{category}.log",
    benchmark:
        "benchmarks/finetune/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/finetune.py"
