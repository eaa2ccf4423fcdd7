# Kind llm_ranker: MLLM4Rec (captions on) / LlamaRec (captions off) rank a retriever's candidate lists with a text
# LLM + LoRA (mmgenrec.methods.llm_ranker). Also the item image captions (captions section) MLLM4Rec reads.


def ranker_retriever(method):
    """The sequential method whose results/<cat>/candidates/<retriever>/ files a ranker reads (checked here)."""
    name = method_spec(method).get("retriever")
    if name not in methods_of_kind("sequential"):
        raise WorkflowError(f"method {method}: retriever {name!r} is not a method of kind sequential in the config's "
                            f"methods ({methods_of_kind('sequential') or 'none'}); it writes the candidate lists")
    return name


def candidate_files(wildcards):
    root = f"results/{wildcards.category}/candidates/{ranker_retriever(wildcards.method)}"
    return {split: f"{root}/{split}.jsonl" for split in ("valid", "test", "train")}


def ranker_inputs(wildcards):
    spec = method_spec(wildcards.method)
    files = {"inter": prepared(wildcards.category, "inter.json"), "item_json": item_text(wildcards.category),
             "model": spec["model"]["path"], **candidate_files(wildcards)}
    if spec.get("captions"):
        if "captions" not in config:
            raise WorkflowError(f"method {wildcards.method}: captions: true needs the config's captions section")
        files["captions"] = f"results/{wildcards.category}/captions/captions.json"
    return files


rule caption_items:
    input:
        item_json=lambda wc: item_text(wc.category),
        images="results/{category}/prepared/images",
        model=lambda wc: config["captions"]["model"],
    output:
        "results/{category}/captions/captions.json",
    params:
        cfg=lambda wc: canonical({k: v for k, v in config["captions"].items() if k != "model"}),
    threads: rule_resources("captions", "threads", 1)
    resources:
        gpu=rule_resources("captions", "gpu", 1),
        mem_mb=rule_resources("captions", "mem_mb", 16000),
        runtime=rule_resources("captions", "runtime", 120),
    log:
        "logs/caption_items/{category}.log",
    benchmark:
        "benchmarks/caption_items/{category}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/caption_items.py"


rule llm_ranker:
    input:
        unpack(ranker_inputs),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(methods_of_kind("llm_ranker")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        method=lambda wc: wc.method,
        checkpoints="results/{category}/{method}/checkpoints",  # beside the outputs: survives a failed job
    threads: rule_resources("llm_ranker", "threads", 1)
    resources:
        gpu=rule_resources("llm_ranker", "gpu", 1),
        mem_mb=rule_resources("llm_ranker", "mem_mb", 32000),
        runtime=rule_resources("llm_ranker", "runtime", 720),
    log:
        "logs/llm_ranker/{category}.{method}.log",
    benchmark:
        "benchmarks/llm_ranker/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/llm_ranker.py"
