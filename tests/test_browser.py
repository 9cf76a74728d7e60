"""04_qualitative in a real browser: JupyterLab + headless Chromium (marked `browser`).

The smoke profile's notebooks 00-03 run first through papermill into a temporary project folder;
then JupyterLab (token-less, on a free local port, rooted at that folder) opens
notebooks/04_qualitative.ipynb in Chromium, which:
- finds the notebook unmodified once its kernel is up (the stored kernel metadata is what the
  kernel reports, so JupyterLab has nothing to update);
- runs every cell (`profile = "smoke"`), then uses the explorer: another query, a typed caption,
  a top-k, an unknown reference name; the listed retrieval changes each time, the unknown name is
  reported;
- saves and reloads the page: no "Error displaying widget" anywhere (the library shows no
  temporary widget progress bars), and the explorer is back.

Skipped, saying what is missing, without /usr/bin/chromium (`apt-get install chromium`) or the
`playwright` package (`pip install -e ".[dev]"`). The machine may be offline: the browser is the
system's, nothing is downloaded.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cir_lib import progress
from cir_lib import reproduce as runner

pytestmark = [pytest.mark.browser, pytest.mark.notebooks]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CIR_LIB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "04_qualitative"
RUN_TIMEOUT_MS = 600_000  # the explorer builds both datasets' features on the CPU


def _requirements():
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install it (apt-get install -y chromium) or set CIR_LIB_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed: pip install -e '.[dev]'")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_parameters(path: Path, values: dict) -> None:
    """Rewrite the assignments of the notebook's `parameters` cell for the names in `values`."""
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    names = {}
    for node in ast.parse("\n".join(lines)).body:
        names[node.targets[0].id] = node.lineno - 1
    for name, value in values.items():
        assert name in names, f"{path.name}: no parameter {name}"
        lines[names[name]] = f"{name} = {value!r}"
    cell["source"] = "\n".join(lines)
    path.write_text(json.dumps(nb, indent=1))


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory, smoke_root):
    """A project folder: notebooks/04 set to smoke, with the results of 00-03 beside it."""
    _requirements()  # skip before the minutes of papermill
    project = tmp_path_factory.mktemp("lab")
    data_root = project / "data" / "smoke"
    shutil.copytree(smoke_root, data_root)
    runner.reproduce("smoke", data_root=data_root, results_dir=project / "results",
                       notebooks=[n for n in runner.NOTEBOOKS if n != NOTEBOOK], progress=False)
    (project / "notebooks").mkdir()
    target = project / "notebooks" / f"{NOTEBOOK}.ipynb"
    shutil.copy(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", target)
    # the one switch, plus the folders of this temporary project (cir_lib's defaults are the checkout's)
    _set_parameters(target, {"profile": "smoke", "data_root": str(data_root),
                             "results_dir": str(project / "results" / "smoke")})
    return project


@pytest.fixture(scope="module")
def lab(smoke_project, tmp_path_factory):
    """A token-less JupyterLab on a free port rooted at the project folder; yields its URL."""
    state = tmp_path_factory.mktemp("jupyter")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               JUPYTER_RUNTIME_DIR=str(state / "runtime"), JUPYTER_CONFIG_DIR=str(state / "config"))
    env.pop(progress.ENV_VAR, None)  # the kernel picks its own mode (text bars, no widgets)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={smoke_project}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={state / 'workspaces'}",
           f"--LabApp.user_settings_dir={state / 'settings'}"] + (["--allow-root"] if os.geteuid() == 0 else [])
    log = open(state / "server.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=smoke_project)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(state / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _ranking(explorer) -> str:
    return explorer.locator(".cir-explorer-ranking").inner_text()


def _wait_changed(page, explorer, before: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _ranking(explorer)
        if now.strip() and now != before:
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"the explorer's retrieval did not change from {before!r}")


def test_explorer_in_jupyterlab(lab, tmp_path):
    sync_playwright = _requirements()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM),
                                                       headless=True, args=CHROMIUM_ARGS,
                                                       viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{lab}/lab/tree/notebooks/{NOTEBOOK}.ipynb")
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                                   " return w && w.sessionContext && w.sessionContext.session &&"
                                   " w.sessionContext.session.kernel && w.sessionContext.kernelDisplayStatus === 'idle'; }",
                                   timeout=120_000)
            page.wait_for_timeout(2000)  # kernel info (language_info) has reached the document model
            assert not page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty"), \
                "opening the notebook marked it modified: its kernel metadata is not what the kernel reports"

            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            explorer = page.locator(".widget-vbox:has(.cir-explorer-ranking)").first
            explorer.locator(".cir-explorer-ranking").filter(has_text="stage 1 + Combiner").wait_for(timeout=RUN_TIMEOUT_MS)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayStatus === 'idle'",
                                   timeout=RUN_TIMEOUT_MS)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']:has-text('Traceback')")
            assert errors.count() == 0, errors.first.inner_text()
            first = _ranking(explorer)

            query = explorer.locator(".widget-inline-hbox:has(label:text-is('query')) input")
            query.fill("1")
            query.press("Enter")
            second = _wait_changed(page, explorer, first)

            caption = explorer.locator(".widget-inline-hbox:has(label:text-is('caption')) input")
            caption.fill("is bright red with long sleeves and a large white star")
            caption.press("Enter")  # Enter retrieves, no button
            third = _wait_changed(page, explorer, second)

            top = explorer.locator(".widget-inline-hbox:has(label:text-is('top-k')) .widget-readout")
            top.fill("2")  # the slider's readout is editable; Enter applies it at once, no button
            top.press("Enter")
            fourth = _wait_changed(page, explorer, third)
            assert all(len(line.split(":", 1)[1].split(",")) == 2 for line in fourth.splitlines()), fourth

            reference = explorer.locator(".widget-inline-hbox:has(label:text-is('reference')) input")
            reference.fill("no-such-image")
            reference.press("Enter")  # Enter in the reference box: the unknown name is reported
            explorer.locator(".cir-explorer-message").filter(has_text="unknown reference image").wait_for(timeout=60_000)

            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=60_000)
            page.reload()
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
            page.locator(".cir-explorer-ranking").first.wait_for(timeout=120_000)  # restored from the live kernel
            page.wait_for_timeout(3000)
            text = page.locator("body").inner_text()
            assert "Error displaying widget" not in text
            assert "model not found" not in text
        finally:
            context.close()
