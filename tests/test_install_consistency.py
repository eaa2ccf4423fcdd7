"""The real path is installable as the real config needs it (issue 18, item 1): config/config.yaml trains with
DeepSpeed, so the container recipes, the conda envs of the torch rules and pyproject's `deepspeed` extra must all
provide it, and every pin a recipe repeats must be pyproject's pin. Parses the files; installs nothing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*((?:[<>=!~]=?|===)\s*[^\s;#,]+)?")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(req: str) -> tuple[str, str]:
    m = REQ.match(req)
    assert m, req
    return norm(m.group(1)), (m.group(3) or "").replace(" ", "")


def pyproject() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = dict(parse(r) for r in data["dependencies"])
    extras = {k: dict(parse(r) for r in v) for k, v in data.get("optional-dependencies", {}).items()}
    return base, extras


def env_requirements(path: Path) -> dict[str, str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    out = {}
    for d in deps:
        for r in (d["pip"] if isinstance(d, dict) else [d]):
            name, spec = parse(r)
            out[name] = spec.replace("=", "==", 1) if re.fullmatch(r"=[^=].*", spec) else spec  # conda's "=3.11"
    return out


def recipe_installs(path: Path) -> tuple[set[str], dict[str, str]]:
    """The extras of this package a container recipe installs, and any package it pins by itself."""
    text = path.read_text()
    extras, pins = set(), {}
    for line in re.findall(r"pip install[^\n&]*", text):
        for word in line.split()[2:]:
            word = word.strip("\"'")
            if not word or word.startswith("-") or word == "\\":
                continue
            m = re.fullmatch(r"(?:\.|/opt/mmgenrec|mmgenrec)(?:\[([^\]]*)\])?", word)
            if m:
                extras |= {e.strip() for e in (m.group(1) or "").split(",") if e.strip()}
            else:
                name, spec = parse(word)
                pins[name] = spec
    assert re.search(r"pip install", text), f"{path} installs nothing with pip"
    return extras, pins


def test_the_deepspeed_extra_is_what_the_real_config_needs():
    base, extras = pyproject()
    assert "deepspeed" in extras and extras["deepspeed"]["deepspeed"].startswith("==")
    config = (REPO / "config" / "config.yaml").read_text()
    assert yaml.safe_load(config)["finetune"]["deepspeed"]  # the real config turns it on ...
    for pinned in re.findall(r"deepspeed==([0-9][0-9.]*)", config):  # ... and names the extra's version
        assert f"=={pinned}" == extras["deepspeed"]["deepspeed"]


@pytest.mark.parametrize("recipe", ["containers/Dockerfile", "containers/mmgenrec.def"])
def test_container_recipes_install_the_package_with_deepspeed(recipe):
    base, extras = pyproject()
    installed_extras, pins = recipe_installs(REPO / recipe)
    assert "deepspeed" in installed_extras, f"{recipe} does not install the deepspeed extra"
    assert installed_extras <= set(extras), f"{recipe} asks for unknown extras {installed_extras - set(extras)}"
    known = {**base, **{k: v for e in extras.values() for k, v in e.items()}}
    for name, spec in pins.items():
        assert name not in known or spec == known[name], f"{recipe}: {name}{spec}, pyproject says {known[name]}"


@pytest.mark.parametrize("env", ["envs/torch.yaml", "envs/mmgenrec.yaml"])
def test_torch_envs_repeat_pyproject_pins_and_carry_deepspeed(env):
    base, extras = pyproject()
    reqs = env_requirements(REPO / env)
    assert reqs.get("deepspeed") == extras["deepspeed"]["deepspeed"], f"{env}: deepspeed {reqs.get('deepspeed')}"
    for name, spec in base.items():
        if spec.startswith("==") and name in reqs:
            assert reqs[name] == spec, f"{env}: {name}{reqs[name]}, pyproject pins {spec}"
    for name in ("torch", "transformers", "peft", "accelerate"):  # the stack the finetune rule runs on
        assert reqs.get(name) == base[name], f"{env}: {name}{reqs.get(name)} vs pyproject {base[name]}"


def test_every_env_pin_agrees_with_pyproject():
    base, extras = pyproject()
    known = {**base, **{k: v for e in extras.values() for k, v in e.items()}}
    for env in sorted((REPO / "envs").glob("*.yaml")):
        for name, spec in env_requirements(env).items():
            if name in known and spec.startswith("==") and known[name]:
                assert spec == known[name], f"{env.name}: {name}{spec}, pyproject says {known[name]}"
