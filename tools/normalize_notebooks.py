"""Keep the notebooks under notebooks/ clean: the `.ipynb` files are the source a student edits.

    python tools/normalize_notebooks.py            # rewrite notebooks/*.ipynb in place (make notebooks)
    python tools/normalize_notebooks.py --check    # exit 1, naming each file, when one is not clean (make test)
    python tools/normalize_notebooks.py PATH ...   # only these files

What "normalized" means (everything a student wrote is kept: cell sources, cell types, tags):
- no outputs, no execution counts, no widget state (`metadata.widgets`), no papermill records;
- cell metadata keeps only `tags` (the `parameters` tag papermill needs); notebook metadata keeps
  only `kernelspec` and `language_info`;
- `kernelspec` is exactly what ipykernel installs (`Python 3 (ipykernel)`, `python`, `python3`) and
  `language_info` holds the fields the kernel reports when JupyterLab connects, so opening a notebook
  does not mark it modified. The Python `version` in it is kept as stored (filled in when missing),
  so the files do not change between machines with different Pythons;
- cell ids: kept when valid and unique (JupyterLab's ids are stable once written); missing, invalid or
  duplicate ids get a deterministic one (`<notebook prefix>-<position>`) instead of a random one;
- nbformat 4.5, written as Jupyter writes it (1-space indent, sorted keys, trailing newline).

This is a development script, not part of the `cir_lib` library.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
COMMAND = "make notebooks"  # what a student runs; it calls this script
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {  # what ipykernel reports (IPythonKernel.language_info), less the Python version
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
}
CELL_METADATA_KEPT = ("tags",)
_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")  # nbformat 4.5's rule for cell ids


def _source(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def normalize(nb: dict, prefix: str) -> dict:
    """The normalized copy of a notebook given as the JSON dict of an .ipynb file.

    Args:
        nb: the notebook (as `json.load` returns it).
        prefix: stem for the ids given to cells without a valid unique id (e.g. "03").

    Returns:
        A new dict; `nb` is left unchanged.
    """
    language_info = dict(LANGUAGE_INFO)
    stored = (nb.get("metadata") or {}).get("language_info") or {}
    language_info["version"] = stored.get("version") or ".".join(map(str, sys.version_info[:3]))
    out = {
        "cells": [],
        "metadata": {"kernelspec": dict(KERNELSPEC), "language_info": language_info},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    seen: set[str] = set()
    for i, cell in enumerate(nb.get("cells", [])):
        kind = cell.get("cell_type", "code")
        metadata = {k: copy.deepcopy(v) for k, v in (cell.get("metadata") or {}).items() if k in CELL_METADATA_KEPT}
        if "tags" in metadata and not metadata["tags"]:
            del metadata["tags"]
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not _ID.match(cell_id) or cell_id in seen:
            cell_id = f"{prefix}-{i:02d}"
            while cell_id in seen:
                cell_id += "x"
        seen.add(cell_id)
        new = {"cell_type": kind, "id": cell_id, "metadata": metadata, "source": _source(cell.get("source", ""))}
        if kind == "code":
            new["execution_count"] = None
            new["outputs"] = []
        elif kind == "markdown" and cell.get("attachments"):
            new["attachments"] = copy.deepcopy(cell["attachments"])  # pasted images are part of the text
        out["cells"].append(new)
    return out


def dumps(nb: dict) -> str:
    """The file text, as Jupyter writes a notebook (sources split into lines)."""
    import nbformat

    node = nbformat.from_dict(nb)
    nbformat.validate(node)
    return nbformat.writes(node, version=4) + "\n"


def normalized_text(path: Path) -> str:
    """What `path` holds once normalized."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return dumps(normalize(nb, path.stem.split("_")[0]))


def unclean(paths) -> list[Path]:
    """The files among `paths` that normalizing would change."""
    return [p for p in paths if p.read_text(encoding="utf-8") != normalized_text(p)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not normalized")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.check:
        bad = unclean(paths)
        if bad:
            names = ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in bad)
            print(f"not normalized (outputs, execution counts, widget state or metadata): {names}\n"
                  f"run `{COMMAND}` to normalize them (your edits to the cells are kept)", file=sys.stderr)
            return 1
        return 0
    for p in paths:
        text = normalized_text(p)
        if p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            print(f"normalized {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
