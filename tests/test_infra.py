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
            if "resmm" in container.get("command", []):
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
def test_entrypoint_commands_and_configs_exist_and_load(name, entrypoint):
    """Each runs a job of the image's `resmm` command (jobs/cli.py), with a config that loads."""
    from jobs.cli import main

    args = shlex.split(entrypoint)
    assert "resmm" in args and args[args.index("resmm") + 1] in main.commands, entrypoint
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


# --- The cluster as an operator meets it: MLflow reachable and authenticated from every Ray pod, a CUDA image for
# --- the GPU group, durable MLflow users, idle GPUs released. tests/e2e/test_mlflow_deployment.py runs the server.

def mlflow_manifest() -> dict[tuple[str, str], dict]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for name, doc in all_documents() if name == "mlflow.yaml"}


def mlflow_server_argv() -> list[str]:
    container = mlflow_manifest()[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    return shlex.split(container["args"][0])


def in_cluster_tracking_uri() -> str:
    service = mlflow_manifest()[("Service", "mlflow")]
    return f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


def ray_cluster_specs():
    """(manifest, cluster spec) of every RayCluster a manifest creates: standing, per-job or per-cron-run."""
    for name, doc in ray_documents():
        spec = doc["spec"]
        cluster = spec if doc["kind"] == "RayCluster" else (
            spec.get("rayClusterSpec") or spec.get("jobTemplate", {}).get("rayClusterSpec"))
        if cluster:
            yield name, cluster


def ray_groups():
    """(manifest, group name, its Ray container) of every head and worker group; each runs resmm code."""
    for name, cluster in ray_cluster_specs():
        groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
        for group_name, group in groups:
            containers = [c for c in group["template"]["spec"]["containers"] if c["name"].startswith("ray-")]
            assert len(containers) == 1, (name, group_name)
            yield name, group_name, containers[0]


def is_gpu(container) -> bool:
    return "nvidia.com/gpu" in container.get("resources", {}).get("limits", {})


def test_every_ray_group_gets_the_mlflow_credentials_and_tracking_uri():
    groups = list(ray_groups())
    assert {(n, g) for n, g, _ in groups} >= {("raycluster.yaml", "data-cpu"), ("rayjob-train.yaml", "data-cpu")}
    for name, group, container in groups:
        assert {"secretRef": {"name": "resmm-mlflow-client"}} in container.get("envFrom", []), (name, group)
        env = {item["name"]: item.get("value") for item in container.get("env", [])}
        assert env.get("MLFLOW_TRACKING_URI") == in_cluster_tracking_uri(), (name, group)


def test_the_in_cluster_tracking_host_is_one_mlflow_accepts():
    argv = mlflow_server_argv()
    allowed = argv[argv.index("--allowed-hosts") + 1].split(",")
    assert "*" not in allowed  # an allow-list, not the DNS-rebinding guard switched off
    assert in_cluster_tracking_uri().removeprefix("http://") in allowed


def test_the_gpu_group_runs_the_cuda_image_and_cpu_groups_the_cpu_image():
    clusters = {}
    for name, _, container in ray_groups():
        clusters.setdefault(name, {"gpu": set(), "cpu": set()})["gpu" if is_gpu(container) else "cpu"].add(
            container["image"])
    for name, images in clusters.items():
        assert len(images["gpu"]) == 1 and len(images["cpu"]) == 1, (name, images)
        (gpu,), (cpu,) = images["gpu"], images["cpu"]
        assert gpu != cpu and gpu == f"{cpu}-cuda", name
    pods = [(name, c["image"]) for name, doc in kubernetes_documents() for c in pod_containers(doc)]
    assert all(not image.endswith("-cuda") for name, image in pods if image.startswith("ghcr.io/example/resmm"))


def pod_containers(doc) -> list[dict]:
    spec = doc.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", spec).get("template", {})
    return template.get("spec", {}).get("containers", [])


def test_mlflow_users_live_in_the_postgres_that_backs_tracking():
    manifest = mlflow_manifest()
    auth_ini = manifest[("ConfigMap", "mlflow-basic-auth")]["data"]["basic_auth.ini"]
    database_uri = re.search(r"^database_uri\s*=\s*(\S+)$", auth_ini, re.M).group(1)
    argv = mlflow_server_argv()
    assert database_uri.startswith("postgresql://")
    assert database_uri == argv[argv.index("--backend-store-uri") + 1]
    container = manifest[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in container["env"]}
    postgres = manifest[("StatefulSet", "mlflow-postgres")]["spec"]["template"]["spec"]["containers"][0]
    postgres_env = {item["name"]: item for item in postgres["env"]}
    assert env["PGHOST"]["value"] == manifest[("Service", "mlflow-postgres")]["metadata"]["name"]
    assert env["PGPASSWORD"]["valueFrom"] == postgres_env["POSTGRES_PASSWORD"]["valueFrom"]


def test_idle_gpus_are_released():
    for name, cluster in ray_cluster_specs():
        gpu_groups = [g for g in cluster["workerGroupSpecs"] if is_gpu(g["template"]["spec"]["containers"][0])]
        if name == "raycluster.yaml":  # standing: the autoscaler starts GPU pods for a job and removes them after
            assert cluster.get("enableInTreeAutoscaling") is True
            assert all(g["minReplicas"] == 0 and g.get("replicas", 0) == 0 for g in gpu_groups)
    for name, doc in ray_documents():
        if doc["kind"] == "RayJob":  # its own cluster, deleted when the job ends
            assert doc["spec"]["shutdownAfterJobFinishes"] is True, name
        if doc["kind"] == "RayCronJob" and "clusterSelector" in doc["spec"]["jobTemplate"]:
            assert doc["spec"]["jobTemplate"]["clusterSelector"] == {"ray.io/cluster": "resmm"}, name


# --- infra/Dockerfile, parsed, never built.

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    lines = [line for line in (REPO / "infra" / "Dockerfile").read_text().splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in joined.splitlines()
            if line.strip()]


def test_dockerfile_installs_dependencies_before_copying_the_code():
    steps = dockerfile_instructions()
    dependency_step = next(i for i, (op, args) in enumerate(steps)
                           if op == "RUN" and "pip install" in args and "-c constraints.txt" in args)
    code_copies = [i for i, (op, args) in enumerate(steps)
                   if op == "COPY" and re.search(r"\b(resmm|pipelines|jobs)\b", args)]
    assert code_copies and dependency_step < min(code_copies)
    copied_before = {src for op, args in steps[:dependency_step] if op == "COPY" for src in args.split()[:-1]}
    assert copied_before <= {"constraints.txt", "pyproject.toml"}, copied_before


def test_dockerfile_runs_as_a_non_root_user():
    steps = dockerfile_instructions()
    users = [i for i, (op, _) in enumerate(steps) if op == "USER"]
    assert users, "no USER: the image runs as root"
    user = steps[users[-1]][1]
    assert user.isdigit() and user != "0"  # numeric, so a pod's runAsNonRoot can check it
    assert all(op != "RUN" for op, _ in steps[users[-1]:])


def test_dockerfile_pins_its_base_image():
    (base,) = [args.split()[0] for op, args in dockerfile_instructions() if op == "FROM"]
    assert re.search(r"@sha256:[0-9a-f]{64}$", base) or re.search(r":\d+\.\d+\.\d+[-\w.]*$", base), base


def test_dockerfile_builds_a_cpu_and_a_cuda_variant():
    steps = dockerfile_instructions()
    assert ("ARG", "TORCH_VARIANT=cpu") in steps
    torch_step = next(args for op, args in steps if op == "RUN" and "TORCH_VARIANT" in args)
    assert "cpu)" in torch_step and "cuda)" in torch_step


def test_the_image_commit_reaches_the_run_tags(monkeypatch):
    steps = dockerfile_instructions()
    assert ("ARG", "GIT_COMMIT=unknown") in steps and ("ENV", "RESMM_GIT_COMMIT=$GIT_COMMIT") in steps
    from pipelines.training import git_commit

    monkeypatch.setenv("RESMM_GIT_COMMIT", "0123abc")
    assert git_commit() == "0123abc"


def test_one_lock_serves_the_image_and_make():
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    locked = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            locked[canonicalize_name(name)] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "resmm" not in locked
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(locked[canonicalize_name(requirement.name)]), spec
    assert "+" not in locked["torch"]  # one pin for the CPU wheel and PyPI's CUDA wheel
    stamp = (REPO / "Makefile").read_text().split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    installs = [line for line in stamp.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs)
    image_installs = [command for op, args in dockerfile_instructions() if op == "RUN"
                      for command in args.split("&&") if "pip install" in command]
    assert image_installs and all("-c constraints.txt" in c or "--no-deps" in c for c in image_installs)


def test_a_retried_rayjob_resumes_where_its_lost_cluster_left_off():
    """KubeRay retries a RayJob (backoffLimit) on a fresh cluster with the same command: the run name must derive
    from config and data (no train.run_name, which would also pin every later run to one name), and checkpoints
    and the feature cache must live on storage that outlives the cluster."""
    from resmm.tracking.runs import run_key

    retried = [(name, doc) for name, doc in ray_documents() if doc["kind"] == "RayJob"]
    assert retried
    for name, doc in retried:
        assert doc["spec"]["backoffLimit"] >= 1, name
        args = shlex.split(doc["spec"]["entrypoint"])
        assert not any(a.startswith("train.run_name=") for a in args), name
        config_path = REPO / args[args.index("--config") + 1]
        cfg = load_config(config_path, [])
        assert cfg.train.run_name is None and "://" in cfg.train.storage_path, name
        assert cfg.data.cache_path is None or "://" in cfg.data.cache_path, name
        assert run_key(cfg.digest(), "d") == run_key(load_config(config_path, []).digest(), "d")  # stable per load
