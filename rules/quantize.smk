rule quantize:
    input:
        npy=quantize_input,
    output:
        index="results/{category}/ids/rqvae/index.json",
        stats="results/{category}/ids/rqvae/stats.json",
        plot="results/{category}/ids/rqvae/training_curve.png",
        checkpoints=directory("results/{category}/ids/rqvae/checkpoints"),
        reconstruction="results/{category}/ids/rqvae/reconstruction.npy",
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
