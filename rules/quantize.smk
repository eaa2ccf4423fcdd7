rule quantize:
    input:
        npy="results/{category}/embed/qwen_mm.npy",
    output:
        index="results/{category}/ids/rqvae/index.json",
        stats="results/{category}/ids/rqvae/stats.json",
    params:
        cfg=stage_params("quantize"),
    threads: rule_resources("quantize", "threads", 2)
    resources:
        mem_mb=rule_resources("quantize", "mem_mb", 4000),
        runtime=rule_resources("quantize", "runtime", 60),
    log:
        "logs/quantize/{category}.log",
    benchmark:
        "benchmarks/quantize/{category}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/quantize.py"
