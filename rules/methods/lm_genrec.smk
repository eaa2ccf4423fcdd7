# Kind lm_genrec (LC-Rec): a text-only causal LM from the method's `model.path` (LLaMA / Qwen2 family; the demo's
# tiny one is text_encoder.path, built by build_tiny_text_lm) + LoRA + ID rows, trained on LC-Rec's task family
# through the finetune stage (finetune_lm), evaluated by the trie-constrained seqrec decoder (evaluate_lm).


def lm_model(wildcards):
    return method_spec(wildcards.method)["model"]["path"]


# decoding-only keys: editing them reruns evaluate_lm, not finetune_lm
LM_DECODE_KEYS = ("num_beams", "eval_batch_size", "template_ids")


def lm_train_params(wildcards):
    return {k: v for k, v in method_params(wildcards).items() if k not in LM_DECODE_KEYS}


def lm_codebook_size(wildcards):
    return idset_codebook_size(wildcards.category, method_idset(wildcards.method))


rule finetune_lm:
    input:
        model=lm_model,
        inter=prepared("{category}", "inter.json"),
        item=lambda wc: item_text(wc.category),
        index=lambda wc: idset_index(wc.category, method_idset(wc.method)),
    output:
        directory("results/{category}/{method}/model"),
    wildcard_constraints:
        method=alternatives(methods_of_kind("lm_genrec")),
    params:
        cfg=lm_train_params,
        codebook_size=lm_codebook_size,
        checkpoints="results/{category}/{method}/checkpoints",  # beside the output: survives a failed job
    priority: 1  # one of the longest jobs: started as soon as it can (see embed)
    threads: rule_resources("finetune", "threads", 2)
    resources:
        gpu=rule_resources("finetune", "gpu", 1),
        mem_mb=rule_resources("finetune", "mem_mb", 8000),
        runtime=rule_resources("finetune", "runtime", 240),
    log:
        "logs/finetune_lm/{category}.{method}.log",
    benchmark:
        "benchmarks/finetune_lm/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/finetune_lm.py"


rule evaluate_lm:
    input:
        model=lm_model,
        adapter="results/{category}/{method}/model",
        inter=prepared("{category}", "inter.json"),
        index=lambda wc: idset_index(wc.category, method_idset(wc.method)),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(methods_of_kind("lm_genrec")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        codebook_size=lm_codebook_size,
    threads: rule_resources("evaluate", "threads", 2)
    resources:
        gpu=rule_resources("evaluate", "gpu", 1),
        mem_mb=rule_resources("evaluate", "mem_mb", 8000),
        runtime=rule_resources("evaluate", "runtime", 120),
    log:
        "logs/evaluate_lm/{category}.{method}.log",
    benchmark:
        "benchmarks/evaluate_lm/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/evaluate_lm.py"
