# Raw data (synthetic in the demo) and preparation into LC-Rec-style files.


rule synthesize_raw:
    output:
        meta="resources/raw/{category}/meta_{category}.json.gz",
        reviews="resources/raw/{category}/{category}_5.json.gz",
        images=directory("resources/raw/{category}/images"),
        stats="resources/raw/{category}/synthetic_stats.json",
    params:
        synthetic=lambda wc: canonical(config["categories"][wc.category].get("synthetic", {})),
    log:
        "logs/synthesize_raw/{category}.log",
    benchmark:
        "benchmarks/synthesize_raw/{category}.tsv"
    script:
        "../workflow/scripts/synthesize_raw.py"


rule prepare:
    input:
        unpack(raw_files),
    output:
        inter=prepared("{category}", "inter.json"),
        item=prepared("{category}", "item.json"),
        item2id=prepared("{category}", "item2id"),
        user2id=prepared("{category}", "user2id"),
        train=prepared("{category}", "train.inter"),
        valid=prepared("{category}", "valid.inter"),
        test=prepared("{category}", "test.inter"),
        stats=prepared("{category}", "stats.json"),
    params:
        cfg=stage_params("prepare"),
    log:
        "logs/prepare/{category}.log",
    benchmark:
        "benchmarks/prepare/{category}.tsv"
    script:
        "../workflow/scripts/prepare.py"
