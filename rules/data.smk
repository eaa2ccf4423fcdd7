# Raw data (synthetic, downloaded, local, H&M, or an already prepared folder) and its preparation.


rule synthesize_raw:
    output:
        meta="resources/raw/{category}/meta_{category}.json.gz",
        reviews="resources/raw/{category}/{category}_5.json.gz",
        images=directory("resources/raw/{category}/images"),
        stats="resources/raw/{category}/synthetic_stats.json",
        enriched="resources/raw/{category}/{category}.item_enriched_v2.json",
    params:
        synthetic=lambda wc: canonical(config["categories"][wc.category].get("synthetic", {})),
    log:
        "logs/synthesize_raw/{category}.log",
    benchmark:
        "benchmarks/synthesize_raw/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/synthesize_raw.py"


rule synthesize_hm:
    # source synthetic_hm: a small category in the H&M Kaggle format (articles, customers, transactions, images)
    output:
        articles="resources/raw_hm/{category}/articles.csv",
        customers="resources/raw_hm/{category}/customers.csv",
        transactions="resources/raw_hm/{category}/transactions_train.csv",
        images=directory("resources/raw_hm/{category}/images"),
    params:
        synthetic=lambda wc: canonical(config["categories"][wc.category].get("synthetic_hm", {})),
    log:
        "logs/synthesize_hm/{category}.log",
    benchmark:
        "benchmarks/synthesize_hm/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/synthesize_hm.py"


def download_url(kind):
    return lambda wc: config.get("download", {})[f"{kind}_url"]


# One job per published file: a finished download survives its sibling's failure (a 404 on the metadata, say)
# instead of being deleted with the failed job's outputs and fetched again on every retry.
rule download_reviews:
    output:
        file="resources/amazon18/{category}/{category}_5.json.gz",
        entry="resources/amazon18/{category}/{category}_5.json.gz.entry.json",
    params:
        kind="reviews",
        url=download_url("reviews"),
    retries: 2
    resources:
        runtime=rule_resources("download", "runtime", 240),
    log:
        "logs/download_reviews/{category}.log",
    benchmark:
        "benchmarks/download_reviews/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/download_raw_file.py"


use rule download_reviews as download_meta with:
    output:
        file="resources/amazon18/{category}/meta_{category}.json.gz",
        entry="resources/amazon18/{category}/meta_{category}.json.gz.entry.json",
    params:
        kind="meta",
        url=download_url("meta"),
    log:
        "logs/download_meta/{category}.log",
    benchmark:
        "benchmarks/download_meta/{category}.tsv"


rule download_raw:
    # the manifest of both files (url, bytes, sha256, records), from the two jobs' entries
    input:
        entries=["resources/amazon18/{category}/{category}_5.json.gz.entry.json",
                 "resources/amazon18/{category}/meta_{category}.json.gz.entry.json"],
    output:
        done="resources/amazon18/{category}/raw.done",
    log:
        "logs/download_raw/{category}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/download_raw.py"


rule fetch_images:
    input:
        meta="resources/amazon18/{category}/meta_{category}.json.gz",
        reviews="resources/amazon18/{category}/{category}_5.json.gz",
    output:
        done="resources/amazon18/{category}/images.done",
    params:
        image_dir=lambda wc: f"{amazon_dir(wc.category)}/images",  # a cache, not an output: reruns keep it
        cfg=lambda wc: canonical({k: v for k, v in config.get("download", {}).get("images", {}).items()
                                  if k != "enabled"}),
    threads: rule_resources("fetch_images", "threads", 8)
    resources:
        runtime=rule_resources("fetch_images", "runtime", 600),
    log:
        "logs/fetch_images/{category}.log",
    benchmark:
        "benchmarks/fetch_images/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/fetch_images.py"


rule fetch_prepared:
    output:
        folder=directory("resources/prepared/{category}"),
    params:
        gdrive_id=lambda wc: config["categories"][wc.category].get("gdrive_id"),
        url=lambda wc: config["categories"][wc.category].get("url"),
        name=lambda wc: wc.category,  # the archive's files are <category>.inter.json, ...
    log:
        "logs/fetch_prepared/{category}.log",
    benchmark:
        "benchmarks/fetch_prepared/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/fetch_prepared.py"


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
        images=directory("results/{category}/prepared/images"),
    params:
        source=lambda wc: source_of(wc.category),
        image_dir=raw_image_dir,
        cfg=stage_params("prepare"),
    log:
        "logs/prepare/{category}.log",
    benchmark:
        "benchmarks/prepare/{category}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/prepare.py"
