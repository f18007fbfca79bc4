"""The README fits a screen and links into a docs site that builds, and the configuration reference is the one
the code generates."""
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from resmm.config import Config, load_config
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
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", reference_markdown(), flags=re.M))
    accepted = {key for key in Config().flat() if not key.startswith(("model.encoders.", "model.encoder_options."))}
    accepted |= {"model.encoders", "model.encoder_options"}  # per-modality maps, documented as one key each
    assert documented == accepted, (documented ^ accepted)
    for key in sorted(accepted)[:5]:  # and `resmm train` takes them as overrides
        load_config(None, [f"{key}={json.dumps(Config().flat()[key]) if key in Config().flat() else '{}'}"])


def test_every_page_is_in_the_site_navigation_and_the_site_builds(tmp_path):
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    navigated = {next(iter(entry.values())) for entry in config["nav"]}
    assert navigated == {p.name for p in DOCS.glob("*.md")}
    built = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-q", "-d",
                            str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(tmp_path)})
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "configuration" / "index.html").exists()


def _measured_numbers(text: str) -> set[str]:
    """The decimals and thousands in `text` (0.929, 12,022, 3.8), the figures a results table is made of."""
    return set(re.findall(r"\d+[.,]\d+", text))


def test_no_docs_page_repeats_a_results_table():
    """Results live in benchmarks/results/; a page that copied a table would go stale when the table is
    re-measured. A docs table row whose two or more figures all appear in one results file is such a copy."""
    results = {path.name: _measured_numbers(path.read_text()) for path in (REPO / "benchmarks/results").glob("*.md")}
    copies = []
    for page in DOCS.glob("*.md"):
        for line in page.read_text().splitlines():
            figures = _measured_numbers(line) if line.startswith("|") else set()
            if len(figures) >= 2 and any(figures <= numbers for numbers in results.values()):
                copies.append(f"{page.name}: {line[:80]}")
    assert not copies, copies
