# Kind mql4rec (MQL4Rec / MQL4GRec): one T5 over a text and an image id set (`idsets: {text: .., image: ..}`), the
# paper's translation tasks, inference per modality and the public rank fusion (mmgenrec.methods.mql4rec).
# The fused ranking is the method's result; the single-modality rankings are written as <method>_text and
# <method>_image (rows of the summary through extra_method_rows() in rules/common.smk).


def mql4rec_index(modality):
    return lambda wc: idset_index(wc.category, method_spec(wc.method)["idsets"][modality])


rule mql4rec:
    input:
        inter=prepared("{category}", "inter.json"),
        text=mql4rec_index("text"),
        image=mql4rec_index("image"),
    output:
        metrics="results/{category}/{method}/seqrec_metrics.json",
        topk="results/{category}/{method}/seqrec_topk.jsonl",
        model=directory("results/{category}/{method}/model"),
        text_metrics="results/{category}/{method}_text/seqrec_metrics.json",
        text_topk="results/{category}/{method}_text/seqrec_topk.jsonl",
        image_metrics="results/{category}/{method}_image/seqrec_metrics.json",
        image_topk="results/{category}/{method}_image/seqrec_topk.jsonl",
    wildcard_constraints:
        method=alternatives(methods_of_kind("mql4rec")),
    params:
        cfg=method_params,
        evaluation=eval_params,
        method=lambda wc: wc.method,
        checkpoints="results/{category}/{method}/checkpoints",  # beside the outputs: survives a failed job
    threads: rule_resources("mql4rec", "threads", 1)
    resources:
        gpu=rule_resources("mql4rec", "gpu", 0),
        mem_mb=rule_resources("mql4rec", "mem_mb", 4000),
        runtime=rule_resources("mql4rec", "runtime", 240),
    log:
        "logs/mql4rec/{category}.{method}.log",
    benchmark:
        "benchmarks/mql4rec/{category}.{method}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../../workflow/scripts/mql4rec.py"
