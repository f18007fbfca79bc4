"""The README fits a screen and links into a docs site that builds, and the configuration reference is the one
the code generates."""
import re
import subprocess
import sys
from pathlib import Path

import yaml

from resmm.config_reference import reference_markdown
from tests.conftest import REPO

DOCS = REPO / "docs"


def test_readme_is_short_and_every_link_resolves():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make train" in readme and "make test" in readme and "| `sample_id` |" in readme
    links = re.findall(r"\]\(((?!https?://)[^)#]+)\)", readme)
    assert links and all((REPO / link).exists() for link in links), [l for l in links if not (REPO / l).exists()]


def test_configuration_reference_is_generated_from_the_config_classes():
    assert (DOCS / "configuration.md").read_text() == reference_markdown(), \
        "docs/configuration.md is stale: run `make docs` (python -m resmm.config_reference > docs/configuration.md)"
    reference = reference_markdown()
    for key in ("data.path", "data.image.size_px", "train.checkpoint_every_steps", "retrain.lease_seconds"):
        assert f"| `{key}` |" in reference


def test_every_page_is_in_the_site_navigation_and_the_site_builds(tmp_path):
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    navigated = {next(iter(entry.values())) for entry in config["nav"]}
    assert navigated == {p.name for p in DOCS.glob("*.md")}
    built = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-q", "-d",
                            str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(tmp_path)})
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "configuration" / "index.html").exists()
