# The demo's tiny Qwen2.5-VL, built locally from config. The real study points model.path at a local copy of
# Qwen/Qwen2.5-VL-7B-Instruct and sets model.build_tiny: false; every later rule loads model.path the same way.

if config["model"]["build_tiny"]:

    rule build_tiny_model:
        output:
            directory(config["model"]["path"]),
        params:
            tiny=canonical(config["model"].get("tiny", {})),
        log:
            "logs/build_tiny_model/build.log",
        benchmark:
            "benchmarks/build_tiny_model/build.tsv"
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/build_tiny_model.py"

elif config["model"].get("hf_repo"):

    rule download_model:
        output:
            directory(config["model"]["path"]),
        params:
            repo=config["model"]["hf_repo"],
            revision=config["model"].get("revision"),
        retries: 2
        log:
            "logs/download_model/download.log",
        benchmark:
            "benchmarks/download_model/download.tsv"
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/download_model.py"


# The text encoder of the lm_text view (and, in the demo, LC-Rec's base model): a tiny random Qwen2ForCausalLM
# built from config (text_encoder.build_tiny), or a local copy of a LLaMA-family LLM at text_encoder.path.
if config.get("text_encoder", {}).get("build_tiny"):

    rule build_tiny_text_lm:
        output:
            directory(config["text_encoder"]["path"]),
        params:
            tiny=canonical(config["text_encoder"].get("tiny", {})),
        log:
            "logs/build_tiny_text_lm/build.log",
        benchmark:
            "benchmarks/build_tiny_text_lm/build.tsv"
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/build_tiny_text_lm.py"

elif config.get("text_encoder", {}).get("hf_repo"):

    rule download_text_lm:
        output:
            directory(config["text_encoder"]["path"]),
        params:
            repo=config["text_encoder"]["hf_repo"],
            revision=config["text_encoder"].get("revision"),
        retries: 2
        log:
            "logs/download_text_lm/download.log",
        benchmark:
            "benchmarks/download_text_lm/download.tsv"
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/download_model.py"


# BLIP-2 / InstructBLIP for the text-generation baselines (evaluate.textgen.baselines): tiny random ones built from
# config for the demo (build_tiny: true), or a Hugging Face snapshot (hf_repo) fetched once into the local path.
for _name, _spec in config["evaluate"].get("textgen", {}).get("baselines", {}).items():
    if _spec.get("build_tiny") and _spec["kind"] in ("blip2", "instructblip"):

        rule:
            name:
                f"build_tiny_{_name}"
            output:
                directory(_spec["path"]),
            params:
                kind=_spec["kind"],
                tiny=canonical(_spec.get("tiny", {})),
            log:
                f"logs/build_tiny_{_name}/build.log",
            conda:
                "../envs/torch.yaml"
            script:
                "../workflow/scripts/build_tiny_blip.py"

    elif _spec.get("hf_repo"):

        rule:
            name:
                f"download_{_name}"
            output:
                directory(_spec["path"]),
            params:
                repo=_spec["hf_repo"],
                revision=_spec.get("revision"),
            retries: 2
            log:
                f"logs/download_{_name}/download.log",
            benchmark:
                f"benchmarks/download_{_name}/download.tsv"
            conda:
                "../envs/torch.yaml"
            script:
                "../workflow/scripts/download_model.py"


# Other local model folders the config names with a Hugging Face id (the rankers' LLMs, the captioner): each fetched
# once into its path by one job (rule download_models, the path as wildcard), unless another rule already makes it.
def _hub_models():
    found = {}
    for spec in config["methods"].values():
        m = spec.get("model")
        if isinstance(m, dict) and m.get("hf_repo"):
            found.setdefault(m["path"], (m["hf_repo"], m.get("revision")))
    cap = config.get("captions", {})
    if cap.get("hf_repo"):
        found.setdefault(cap["model"], (cap["hf_repo"], cap.get("revision")))
    made = {config["model"]["path"], config.get("text_encoder", {}).get("path")}
    made |= {s.get("path") for s in config["evaluate"].get("textgen", {}).get("baselines", {}).values()}
    return {path: spec for path, spec in found.items() if path not in made}


HUB_MODELS = _hub_models()

if HUB_MODELS:

    rule download_models:
        output:
            directory("{hub_model_path}"),
        wildcard_constraints:
            hub_model_path=alternatives(HUB_MODELS),
        params:
            repo=lambda wc: HUB_MODELS[wc.hub_model_path][0],
            revision=lambda wc: HUB_MODELS[wc.hub_model_path][1],
        retries: 2
        log:
            "logs/download_models/{hub_model_path}.log",
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/download_model.py"
