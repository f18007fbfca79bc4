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
CRDS = REPO / "infra" / "crds"  # vendored KubeRay v1.7.0 CRDs (infra/crds/README.md)
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


def all_documents():
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def kubernetes_documents():
    for name, doc in all_documents():
        if not doc["apiVersion"].startswith("ray.io/"):
            yield name, doc


def entrypoints():
    """Every command a manifest runs: RayJob / RayCronJob entrypoints and CronJob container commands."""
    for name, doc in all_documents():
        spec = doc.get("spec", {})
        template = spec.get("jobTemplate", {})
        job_spec = template if "entrypoint" in template else template.get("spec", spec)
        if "entrypoint" in job_spec:
            yield name, job_spec["entrypoint"]
        for container in job_spec.get("template", {}).get("spec", {}).get("containers", []):
            if "jobs/" in " ".join(container.get("command", [])):
                yield name, shlex.join(container["command"])


@pytest.mark.parametrize("name, doc", list(kubernetes_documents()), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifest_matches_the_api_schema(name, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_every_manifest_command_is_checked():
    names = {name for name, _ in entrypoints()}
    assert {"rayjob-train.yaml", "raycronjob-retrain.yaml", "cronjob-retrain.yaml"} <= names


def test_worker_group_labels_match_the_configured_selectors():
    cfg = load_config(REPO / "jobs" / "configs" / "cluster-gpu.yaml")
    for name, doc in ray_documents():
        cluster = doc["spec"].get("rayClusterSpec", doc["spec"]) if doc["kind"] != "RayCronJob" else None
        if not cluster or "workerGroupSpecs" not in cluster:
            continue
        labels = [group.get("labels", {}) for group in cluster["workerGroupSpecs"]]
        assert cfg.data.label_selector in labels, name
        assert cfg.train.worker_label_selector in labels, name
        gpu_groups = [g for g in cluster["workerGroupSpecs"] if g.get("labels") == cfg.train.worker_label_selector]
        limits = gpu_groups[0]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert "nvidia.com/gpu" in limits, name


def test_ray_clusters_use_token_auth_and_keep_the_dashboard_private():
    for name, doc in ray_documents():
        cluster = doc["spec"].get("rayClusterSpec", doc["spec"])
        if "headGroupSpec" not in cluster:
            continue
        assert cluster["authOptions"] == {"mode": "token", "secretName": "resmm-ray-token"}, name
        assert cluster["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", name
    for name, doc in kubernetes_documents():
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", name


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
