# Kind collm: TALLRec (variant tallrec), CoLLM (collm) and CoLLM-FaissRet (faissret) (mmgenrec.methods.collm).
# tallrec keeps its LoRA (results/<cat>/<method>/model), collm loads it frozen and keeps its MF + mapper there,
# faissret loads collm's and ranks a Faiss top-K over the MF item vectors.


def collm_variant(*variants):
    return [m for m in methods_of_kind("collm") if method_spec(m)["variant"] in variants]


def collm_ref(method, key, variant):
    """The method named by ``key`` (lora_from / scorer_from), checked to be a collm method of ``variant``."""
    name = method_spec(method).get(key)
    if name not in collm_variant(variant):
        raise WorkflowError(f"method {method}: {key} {name!r} is not a collm method of variant {variant} "
                            f"({collm_variant(variant) or 'none'})")
    return name


def collm_inputs(wildcards):
    method, cat = wildcards.method, wildcards.category
    spec = method_spec(method)
    files = {"inter": prepared(cat, "inter.json"), "item_json": item_text(cat)}
    if spec["variant"] == "faissret":
        scorer = collm_ref(method, "scorer_from", "collm")
        tallrec = collm_ref(scorer, "lora_from", "tallrec")
        files.update(collm=f"results/{cat}/{scorer}/model", lora=f"results/{cat}/{tallrec}/model",
                     model=method_spec(scorer)["model"]["path"])
        return files
    files["model"] = spec["model"]["path"]
    files.update({k: v for k, v in candidate_files(wildcards).items() if k != "train"})
    if spec["variant"] == "collm":
        files["lora"] = f"results/{cat}/{collm_ref(method, 'lora_from', 'tallrec')}/model"
    return files


COLLM_RULE = dict(threads=rule_resources("collm", "threads", 1),
                  resources=dict(gpu=rule_resources("collm", "gpu", 1), mem_mb=rule_resources("collm", "mem_mb", 32000),
                                 runtime=rule_resources("collm", "runtime", 720)))


rule collm:
    input:
        unpack(collm_inputs),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
        model=directory("results/{category}/{method}/model"),
    wildcard_constraints:
        method=alternatives(collm_variant("tallrec", "collm")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        method=lambda wc: wc.method,
        checkpoints="results/{category}/{method}/checkpoints",
    threads: COLLM_RULE["threads"]
    resources:
        **COLLM_RULE["resources"],
    log:
        "logs/collm/{category}.{method}.log",
    benchmark:
        "benchmarks/collm/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/collm.py"


rule collm_faissret:
    input:
        unpack(collm_inputs),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(collm_variant("faissret")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        method=lambda wc: wc.method,
    threads: COLLM_RULE["threads"]
    resources:
        **COLLM_RULE["resources"],
    log:
        "logs/collm_faissret/{category}.{method}.log",
    benchmark:
        "benchmarks/collm_faissret/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/collm.py"
