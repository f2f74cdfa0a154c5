"""The architecture rules CI enforces beyond the import-linter contracts in pyproject.toml (which this test runs
too, so that the README's test command checks them): function-level imports only where they keep start-up fast,
and the streaming commands load no model or GUI library."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bci_dream"

#: Libraries whose import costs start-up time (numpy: a tenth of a second; torch, scipy.signal, Qt: seconds), or
#: that are optional.
HEAVY = frozenset({
    "numpy", "torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "huggingface_hub", "mne", "mne_bids",
    "PIL", "PySide6", "shiboken6", "pyqtgraph", "scipy", "sklearn", "brainflow", "pylsl", "pyxdf", "serial", "tqdm",
    "av", "moabb", "pyvirtualcam", "NDIlib", "torchao", "torch_tensorrt",
})
#: The libraries a model needs: the streaming commands must not load them.
MODEL_AND_GUI = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "huggingface_hub",
                 "mne", "PIL", "PySide6", "pyqtgraph", "tqdm")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> list[str]:
    """Full names of the modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = importer.split(".")
        base = ".".join(package[:len(package) - node.level + (importer in _packages())] + ([base] if base else []))
    modules = _modules()
    return list(dict.fromkeys(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names))


@cache
def _packages() -> frozenset[str]:
    return frozenset(_module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py"))


def _walk(body: list[ast.stmt], in_function: bool, found: list[tuple[ast.stmt, bool]]) -> None:
    """Every import statement under ``body``, with whether it runs inside a function (TYPE_CHECKING blocks
    skipped: they never run)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, in_function))
        elif isinstance(node, ast.If) and _is_type_checking(node):
            _walk(node.orelse, in_function, found)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _walk(node.body, True, found)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    _walk([c for c in children if isinstance(c, ast.AST)], in_function, found)


@cache
def _imports(module: str) -> tuple[tuple[ast.stmt, bool], ...]:
    found: list[tuple[ast.stmt, bool]] = []
    _walk(_modules()[module].body, False, found)
    return tuple(found)


def _parents(name: str) -> list[str]:
    """``a.b.c`` → the packages Python imports first: ``a``, ``a.b``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def heavy_at_load(name: str) -> frozenset[str]:
    """The heavy libraries importing module ``name`` loads (through module-level imports, transitively)."""
    top = name.split(".")[0]
    if top != "bci_dream":
        return frozenset({top}) & HEAVY
    if name not in _modules():
        return frozenset()
    out: set[str] = set()
    _loading.add(name)
    try:
        for node, in_function in _imports(name):
            if in_function:
                continue
            for target in _targets(node, name):
                for dep in [*_parents(target), target]:
                    if dep not in _loading and dep != name:
                        out |= heavy_at_load(dep)
    finally:
        _loading.discard(name)
    return frozenset(out)


_loading: set[str] = set()


def unjustified_function_level_imports() -> list[str]:
    """Function-level imports that do not keep start-up fast: they load no heavy library that their module
    does not load already."""
    bad = []
    for module in sorted(_modules()):
        own = heavy_at_load(module) | set().union(*(heavy_at_load(p) for p in _parents(module)))
        for node, in_function in _imports(module):
            if not in_function:
                continue
            for target in _targets(node, module):
                brings = heavy_at_load(target) | set().union(*(heavy_at_load(p) for p in _parents(target)))
                if not brings - own:
                    bad.append(f"{module}:{node.lineno} imports {target} inside a function, but it loads nothing "
                               f"heavy that {module} does not load already")
    return bad


def function_level_imports() -> list[tuple[str, int, str]]:
    """Every function-level import as (module, line, imported module)."""
    return [(m, node.lineno, t) for m in sorted(_modules()) for node, inside in _imports(m) if inside
            for t in _targets(node, m)]


def test_function_level_imports_only_defer_heavy_libraries():
    assert unjustified_function_level_imports() == []


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports (import-linter) is not installed: pip install '.[test]'")
    result = subprocess.run([lint, "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


PROBE = """
import json, sys
from bci_dream.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)
"""


@pytest.mark.parametrize("argv, forbidden", [
    (["devices"], MODEL_AND_GUI),
    (["replay", "{data}/bci-essentials/ssvep_example.xdf", "--speed", "0"], MODEL_AND_GUI),
    (["stream", "--seconds", "0.5"], MODEL_AND_GUI),
    (["record", "--seconds", "0.5", "-o", "{tmp}/out.xdf"], MODEL_AND_GUI),
    (["models", "list"], tuple(m for m in MODEL_AND_GUI if m not in ("huggingface_hub", "tqdm"))),  # (HF cache)
], ids=["devices", "replay", "stream", "record", "models-list"])
def test_the_streaming_commands_load_no_model_or_gui_library(argv, forbidden, shared_data, tmp_path):
    argv = [a.format(data=shared_data, tmp=tmp_path) for a in argv]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(json.loads(result.stderr.strip().splitlines()[-1]))
    assert loaded & set(forbidden) == set()
