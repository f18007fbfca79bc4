"""The dependency direction jobs → pipelines → resmm, checked on the source."""
import ast
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
