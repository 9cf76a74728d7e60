"""Start JupyterLab at the project root with the five notebooks open, in order (`make lab`).

The server's root is the project root, so the notebooks reach `results/` and `data/` and the links
they print (relative to the root) open in JupyterLab. The layout is a JupyterLab workspace written
to `.jupyter/workspaces/` (ignored by git) at every start: the series opens as five tabs, 00 first,
whatever was open the last time. Extra arguments go to `jupyter lab` (e.g. `--port 8890`).
`make lab PROFILE=smoke` sets `CIR_LIB_PROFILE` for the server's kernels: the notebooks, whose
`profile` is None, run that profile (`cir_lib.project.chosen_profile`).

This is a development script, not part of the `cir_lib` library.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKSPACE = "cir-lib"
WORKSPACES_DIR = ROOT / ".jupyter" / "workspaces"


def notebooks() -> list[str]:
    """The series, root-relative, in order."""
    return [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]


def workspace(paths: list[str]) -> dict:
    """A JupyterLab workspace with `paths` open as notebook tabs, the first one active."""
    ids = [f"notebook:{p}" for p in paths]
    data = {
        "layout-restorer:data": {
            "main": {"dock": {"type": "tab-area", "currentIndex": 0, "widgets": ids}, "current": ids[0]},
        },
        "file-browser-filebrowser:cwd": {"path": "notebooks"},
    }
    for widget_id, path in zip(ids, paths):
        data[widget_id] = {"data": {"path": path, "factory": "Notebook"}}
    return {"data": data, "metadata": {"id": WORKSPACE}}


def write_workspace() -> Path:
    """Write the workspace file where JupyterLab looks for it; return its path."""
    from jupyterlab_server.workspaces_handler import WORKSPACE_EXTENSION, slugify

    WORKSPACES_DIR.mkdir(parents=True, exist_ok=True)
    path = WORKSPACES_DIR / f"{slugify(WORKSPACE)}{WORKSPACE_EXTENSION}"
    path.write_text(json.dumps(workspace(notebooks()), indent=1))
    return path


def command(extra: list[str]) -> list[str]:
    """The `jupyter lab` command line."""
    return [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={ROOT}",
            f"--LabApp.workspaces_dir={WORKSPACES_DIR}", f"--LabApp.default_url=/lab/workspaces/{WORKSPACE}", *extra]


def main(argv=None) -> None:
    from cir_lib.project import chosen_profile  # light: no torch

    profile, source = chosen_profile(ROOT)
    print(f"the notebooks run the {profile!r} profile ({source}; README 'One switch')", flush=True)
    write_workspace()
    cmd = command(list(sys.argv[1:] if argv is None else argv))
    os.chdir(ROOT)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
