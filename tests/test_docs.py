"""The documentation lives in the repository: docs/ holds what the kit reproduces and where its
settings come from, every relative link of the Markdown files resolves inside the checkout, no
tracked file points to a file a clone does not have, and the published numbers the docs print are
the ones the tables print (`cir_lib.constants`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cir_lib.constants import CITED_RESULTS, PAPER_RESULTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("method.md", "protocols.md", "recipes.md", "published-numbers.md", "costs.md")

# Files a clone does not have. Built from pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join([re.escape("RECIPE" + ".md"), re.escape(".." + "/shared"),
                               re.escape("shared" + "/real_annotations")]))
# The folder of the machine the kit was written on: no tracked file, records under results/ included, holds it.
MACHINE_PATH = re.compile(re.escape("/work" + "/"))
# The tests that read the real annotation files from beside the project, skipping when they are absent.
READS_REAL_ANNOTATIONS = {"tests/conftest.py", "tests/real_root.py", "tests/test_dry_run.py",
                          "tests/test_dry_run_pieces.py"}


def _tracked() -> list:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (git ls-files failed)")
    return [name for name in out.decode().split("\0") if name]


def test_docs_pages_exist_and_are_linked():
    index = (DOCS / "README.md").read_text()
    for page in PAGES:
        assert (DOCS / page).is_file(), page
        assert f"]({page})" in index, f"docs/README.md does not link {page}"
    readme = (ROOT / "README.md").read_text()
    assert "](docs/README.md)" in readme or "](docs/)" in readme, "README.md does not link docs/"


def test_no_tracked_file_points_outside_the_repository():
    offenders = []
    for name in _tracked():
        if name in READS_REAL_ANNOTATIONS:
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
            if OUTSIDE.search(line) or MACHINE_PATH.search(line):
                offenders.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not offenders, "files outside the repository referred to (write it under docs/ instead):\n" + "\n".join(offenders)


def test_real_annotation_tests_skip_when_the_files_are_absent():
    for name in READS_REAL_ANNOTATIONS - {"tests/conftest.py", "tests/real_root.py"}:
        assert "skip" in (ROOT / name).read_text(), name
    assert "pytest.skip" in (ROOT / "tests" / "conftest.py").read_text()


def _markdown_files() -> list:
    return [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = path.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.exists(), f"{path.relative_to(ROOT)} links {target}, which does not exist"
        assert file.is_relative_to(ROOT), f"{path.relative_to(ROOT)} links {target}, outside the repository"


def test_published_numbers_page_prints_the_tables_numbers():
    text = (DOCS / "published-numbers.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 1:
            rows.setdefault(cells[0], []).append(" | ".join(cells[1:]))

    def numbers(cell_text):
        return [float(x) for x in re.findall(r"\d+\.\d+", cell_text)]

    for backbone in ("RN50", "RN50x4"):
        fiq, cirr = PAPER_RESULTS["fashioniq"][backbone], PAPER_RESULTS["cirr"][backbone]
        want_fiq = [fiq[f"{c}_recall@{k}"] for c in ("shirt", "dress", "toptee", "average") for k in (10, 50)]
        want_cirr = [cirr[f"recall@{k}"] for k in (1, 5, 10, 50)] + [cirr[f"recall_subset@{k}"] for k in (1, 2, 3)]
        assert [numbers(r) for r in rows[backbone]] == [want_fiq, want_cirr], backbone
    for row in CITED_RESULTS["fashioniq"]:  # the FashionIQ table comes first (ARTEMIS is in both)
        line = next(rs[0] for name, rs in rows.items() if name.startswith(row["method"].split(" (")[0]))
        assert numbers(line) == [v for c in ("shirt", "dress", "toptee", "average") for v in row[c]], row["method"]
    for row in CITED_RESULTS["cirr"]:
        assert numbers(rows[row["method"]][-1]) == [*row["recall"], *row["recall_subset"]], row["method"]
