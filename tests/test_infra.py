"""Every KubeRay manifest in infra/ validates against the real v1.7 CRD schemas, and what it runs exists."""
from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from resmm.config import load_config

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO.parent / "shared" / "kuberay-crds"
MANIFESTS = sorted((REPO / "infra").glob("*.yaml"))


def closed(schema):
    """Kubernetes prunes unknown fields silently; treat them as errors so a typo in a manifest fails here."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = closed(version["schema"]["openAPIV3Schema"])
    return schemas


def ray_documents():
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion", "").startswith("ray.io/"):
                yield path.name, doc


def validate(doc, schemas):
    schema = schemas[(doc["apiVersion"], doc["kind"])]
    jsonschema.Draft7Validator(schema).validate(doc)


@pytest.fixture(scope="module")
def schemas():
    if not CRDS.is_dir():
        pytest.fail(f"KubeRay CRDs not found at {CRDS}")
    return crd_schemas()


def test_there_are_ray_manifests_to_check():
    assert list(ray_documents()), "infra/ holds no ray.io manifests"


@pytest.mark.parametrize("name, doc", list(ray_documents()), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_matches_crd_schema(name, doc, schemas):
    validate(doc, schemas)


def test_schema_check_rejects_a_misspelt_field(schemas):
    name, doc = next(ray_documents())
    broken = copy.deepcopy(doc)
    broken["spec"]["shutdownAfterJobFinished"] = True  # typo of shutdownAfterJobFinishes
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, schemas)


def entrypoints():
    for name, doc in ray_documents():
        spec = doc["spec"].get("jobTemplate", {}).get("spec", doc["spec"])
        if "entrypoint" in spec:
            yield name, spec["entrypoint"]


@pytest.mark.parametrize("name, entrypoint", list(entrypoints()))
def test_entrypoint_scripts_and_configs_exist_and_load(name, entrypoint):
    args = shlex.split(entrypoint)
    scripts = [a for a in args if a.endswith(".py")]
    assert scripts and all((REPO / s).is_file() for s in scripts), entrypoint
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    for config in configs:
        assert (REPO / config).is_file(), config
        overrides = [a for a in args if re.fullmatch(r"[a-z_]+\.[a-z_.]+=.*", a)]
        load_config(REPO / config, overrides)  # raises ConfigError on a bad key


def test_example_configs_load():
    configs = list((REPO / "jobs" / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


def test_every_comparison_grid_setting_is_a_valid_config():
    from pipelines.compare import load_grid

    grids = list((REPO / "jobs" / "configs" / "grids").glob("*.yaml"))
    assert grids
    for path in grids:
        for entry in load_grid(path):
            load_config(None, entry.get("overrides", []))
