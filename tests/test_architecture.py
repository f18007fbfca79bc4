"""The dependency direction jobs → pipelines → resmm, and the layers inside resmm, checked on the source."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = roots
    return found


def test_resmm_never_imports_jobs_or_pipelines():
    offenders = {f: r & {"jobs", "pipelines"} for f, r in imported_roots("resmm").items() if r & {"jobs", "pipelines"}}
    assert not offenders


def test_pipelines_never_import_jobs():
    assert not {f for f, r in imported_roots("pipelines").items() if "jobs" in r}


def package_imports() -> dict[str, set[str]]:
    """resmm's units (a subpackage, or a top-level module) -> the other units they import, at any depth of the
    code: an import inside a function is still a dependency, it only hides a cycle from the interpreter."""
    units = {p.name.removesuffix(".py") for p in (REPO / "resmm").iterdir()
             if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    graph: dict[str, set[str]] = {unit: set() for unit in units}
    for path in (REPO / "resmm").rglob("*.py"):
        unit = path.relative_to(REPO / "resmm").parts[0].removesuffix(".py")
        if unit not in units:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            graph[unit] |= {name.split(".")[1] for name in names
                            if name.startswith("resmm.") and name.split(".")[1] in units} - {unit}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every unit that can reach itself, with the path back (depth-first search)."""
    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen = set()
        while stack:
            unit, path = stack.pop()
            for nxt in sorted(graph[unit]):
                if nxt == start:
                    found.append(path + [start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_no_import_cycle_between_resmm_packages():
    """Layers point one way: data and models at the bottom, the modality records above them, then sources and
    config, then tracking, train and baselines. Code that iterates the modality registry lives at or above it."""
    graph = package_imports()
    assert graph["modalities"] >= {"data", "models"}  # the records do sit above both
    assert not cycles(graph), cycles(graph)


def test_the_cycle_check_sees_an_import_inside_a_function():
    graph = package_imports()
    graph["data"] = graph["data"] | {"modalities"}  # what resmm/data/batch.py once did
    assert ["data", "modalities", "data"] in cycles(graph)


def test_loading_a_config_imports_no_torch(tmp_path):
    """A driver, `resmm --help` and the config reference load configs; only workers and servers build networks."""
    (tmp_path / "run.yaml").write_text("model:\n  fusion: gated\n  modalities: [image, text]\ndata:\n"
                                       "  impute: generative\n  resample: sqrt\ntrain:\n  loss: focal\n")
    code = ("import sys; from resmm.config import load_config; "
            f"cfg = load_config({str(tmp_path / 'run.yaml')!r}, ['model.norm=group', 'data.image.size_px=48']); "
            "assert cfg.model.fusion == 'gated' and cfg.data.impute == 'regress', cfg; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_every_family_registry_is_keyed_by_the_names_a_config_accepts():
    from resmm import choices
    from resmm.data.resample import RESAMPLERS
    from resmm.models.encoders import NORMS
    from resmm.models.fusion import FUSIONS
    from resmm.models.imputation import IMPUTERS
    from resmm.train.losses import LOSSES

    assert tuple(FUSIONS) == choices.FUSION_NAMES and tuple(NORMS) == choices.NORM_NAMES
    assert tuple(IMPUTERS) == choices.IMPUTER_NAMES and tuple(LOSSES) == choices.LOSS_NAMES
    assert tuple(RESAMPLERS) == choices.RESAMPLER_NAMES
    assert set(choices.RENAMED_IMPUTERS.values()) <= set(IMPUTERS)


def test_models_stay_plain_pytorch():
    offenders = {f for f, r in imported_roots("resmm/models").items() if "ray" in r or "mlflow" in r}
    assert not offenders


def test_models_and_data_transforms_never_import_ray():
    """Models and per-batch transforms run anywhere (a notebook, a pyfunc server, another loader)."""
    offenders = {f for package in ("resmm/models", "resmm/data", "resmm/modalities")
                 for f, r in imported_roots(package).items()
                 if "ray" in r}
    assert not offenders


def test_no_unused_code_in_the_library():
    """vulture over the paths and ignore lists of [tool.vulture] in pyproject.toml."""
    import tomllib

    import vulture

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["vulture"]
    scan = vulture.Vulture(ignore_names=settings["ignore_names"], ignore_decorators=settings["ignore_decorators"])
    scan.scavenge([str(REPO / p) for p in settings["paths"]])
    unused = [item.get_report() for item in scan.get_unused_code(min_confidence=settings["min_confidence"])]
    assert not unused


def test_model_actors_import_no_resmm_at_module_level():
    # A registered model must run with its own bundled resmm; see pipelines/model_actors.py.
    tree = ast.parse((REPO / "pipelines" / "model_actors.py").read_text())
    top_level = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in getattr(node, "names", [])
    }
    assert not top_level & {"resmm", "pipelines"}


def test_nothing_is_unpickled_from_untrusted_paths():
    """Weights load with torch.load(weights_only=True); no pickle.load / np.load(allow_pickle) anywhere."""
    offenders = []
    for package in ("resmm", "pipelines", "jobs"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if name in ("pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load") or (
                        name == "torch.load" and keywords.get("weights_only") != "True") or (
                        name == "np.load" and keywords.get("allow_pickle") == "True"):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert not offenders
