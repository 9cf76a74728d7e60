"""The library's layout: the command line apart and light, evaluation independent of training, no
private names crossing modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from cir_lib.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "cir_lib"
TRAINING_MODULES = {"cir_lib.finetune", "cir_lib.train_combiner", "cir_lib.training", "cir_lib.training_data",
                    "cir_lib.distributed", "cir_lib.pretrain", "cir_lib.training_validation"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("cir_lib",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in the file, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _imported_modules(tree: ast.Module) -> set[str]:
    mods = set()
    for module, names in _imports(tree):
        mods.add(module)
        mods.update(f"{module}.{n}" for n in names)  # `from cir_lib import finetune`
    return mods


def _run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_the_cli_does_not_import_torch():
    assert _run_python("import sys, cir_lib.cli; print('torch' in sys.modules)") == "False"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_never_imports_torch(command):
    argv = [command, "--help"] if command else ["--help"]
    code = ("import sys\nfrom cir_lib.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'pandas' in sys.modules, file=sys.stderr)" % argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stderr.strip().splitlines()[-1] == "False False", out.stderr
    assert "usage: cir-lib" in out.stdout


def test_the_library_has_no_argument_parsing():
    for name, tree in _modules().items():
        if name.startswith("cir_lib.cli"):
            continue
        assert "argparse" not in _imported_modules(tree), f"{name} imports argparse: it belongs in cir_lib.cli"


def test_evaluation_does_not_import_training():
    modules = _modules()
    for name in ("cir_lib.evaluate", "cir_lib.explore", "cir_lib.submit", "cir_lib.rebuild",
                 "cir_lib.features", "cir_lib.metrics", "cir_lib.tables", "cir_lib.table_formats",
                 "cir_lib.figures"):
        assert not (_imported_modules(modules[name]) & TRAINING_MODULES), name


def test_no_private_names_cross_modules():
    modules = _modules()
    for name, tree in modules.items():
        for module, names in _imports(tree):
            if module.startswith("cir_lib"):
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                assert not private, f"{name} imports private {private} from {module}"
        imported = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.module == "cir_lib" for a in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported and node.attr.startswith("_")):
                raise AssertionError(f"{name} uses {node.value.id}.{node.attr}")


def test_tests_use_public_names():
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for module, names in _imports(tree):
            if module.startswith("cir_lib"):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                assert not private, f"{path.name} imports private {private} from {module}"
        kit_modules = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                       and node.module == "cir_lib" for a in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in kit_modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                raise AssertionError(f"{path.name} uses {node.value.id}.{node.attr}")


def _dataset_name_comparisons(tree: ast.Module) -> list[int]:
    """Lines comparing something with a dataset name (`== "cirr"`, `in ("fashioniq", "cirr")`, ...)."""
    from cir_lib.datasets import dataset_names

    names = set(dataset_names())

    def is_name(node) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in names
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(is_name(e) for e in node.elts)
        return False

    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
            and any(is_name(n) for n in [node.left, *node.comparators])]


def test_only_the_datasets_package_asks_which_dataset_this_is():
    found = {name: lines for name, tree in _modules().items()
             if not name.startswith("cir_lib.datasets") and (lines := _dataset_name_comparisons(tree))}
    assert not found, (f"comparisons with a dataset name outside cir_lib/datasets/ (module: lines): {found}; "
                       "ask the dataset object (cir_lib.datasets.get_dataset(name)) instead")


def test_the_dataset_check_sees_a_branch():
    tree = ast.parse('if dataset == "cirr":\n    pass\nok = split in ("fashioniq",)\nfine = dataset == "val"\n')
    assert _dataset_name_comparisons(tree) == [1, 3]
