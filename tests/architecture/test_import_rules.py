"""Every import points down (docs/ARCHITECTURE.md).

    whales_cli  ->  whales_be_service  ->  integrations  ->  whales_identify
         \______________________________________________/^

The library never reaches up (no FastAPI, no storage, no service, no CLI), serving modules never
reach into training or evaluation, and torch is imported only by the model backends and training,
and only when they are asked for. Checked two ways: statically over every `import` statement
(lazy ones inside functions included) and dynamically in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each top-level package may import from the project's own packages.
ALLOWED = {
    "whales_identify": {"whales_identify"},
    "integrations": {"whales_identify", "integrations"},
    "whales_be_service": {"whales_identify", "integrations", "whales_be_service"},
    "whales_cli": {"whales_identify", "integrations", "whales_be_service", "whales_cli"},
}
THIRD_PARTY_FORBIDDEN_IN_LIBRARY = {
    "fastapi", "starlette", "uvicorn", "pydantic_settings", "psycopg", "sqlite3",
}
# Modules that wrap a torch model; imported only when such a model is asked for.
TORCH_MODULES = {
    "whales_identify.models.efficientnet", "whales_identify.models.arcface",
    "whales_identify.models.finetuned", "whales_identify.models.clip",
}
HEAVY = ("torch", "torchvision", "timm", "sklearn", "open_clip")
UPPER_LAYERS_OF_LIBRARY = ("whales_identify.train", "whales_identify.evaluation")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _is_under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_project_imports_point_down(package):
    wrong = []
    for path in _sources(package):
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top in ALLOWED and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_library_never_imports_web_or_storage_libraries():
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {name}"
             for p in _sources("whales_identify") for line, name in _imports(p)
             if name.split(".")[0] in THIRD_PARTY_FORBIDDEN_IN_LIBRARY]
    assert not wrong, "\n".join(wrong)


def test_serving_modules_never_import_training_or_evaluation():
    wrong = []
    for path in _sources("whales_identify"):
        mod = _module_name(path)
        if _is_under(mod, UPPER_LAYERS_OF_LIBRARY):
            continue
        wrong += [f"{mod}:{line} imports {name}" for line, name in _imports(path)
                  if _is_under(name, UPPER_LAYERS_OF_LIBRARY)]
    assert not wrong, "\n".join(wrong)


def test_torch_is_imported_at_module_level_only_by_model_backends_and_training():
    wrong = []
    for path in _sources("whales_identify"):
        mod = _module_name(path)
        if mod in TORCH_MODULES or _is_under(mod, ("whales_identify.train",)):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: lazy imports inside functions are the point
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            wrong += [f"{mod}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not wrong, "\n".join(wrong)


def test_importing_every_serving_module_loads_no_torch_service_or_storage():
    """In a fresh interpreter: import the library and every module that is not a torch backend,
    training or evaluation; none of torch, FastAPI, the storage layer, the service or the CLI
    may end up loaded."""
    import whales_identify

    names = [m.name for m in pkgutil.walk_packages(whales_identify.__path__, "whales_identify.")
             if m.name not in TORCH_MODULES and not _is_under(m.name, UPPER_LAYERS_OF_LIBRARY)]
    assert len(names) > 20, names  # the walk found the library, not an empty path
    code = (
        "import importlib, json, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    loaded = set(json.loads(out.stdout))
    forbidden = {*HEAVY, "fastapi", "starlette", "integrations", "whales_be_service", "whales_cli"}
    assert not loaded & forbidden, sorted(loaded & forbidden)


def _environment_reads(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ("environ", "getenv") for a in node.names):
            lines.append(node.lineno)
    return lines


def test_the_library_reads_no_environment():
    """Settings are read once, by the service's Settings and the CLI's options, and passed down: a
    library that reads a variable itself is a second source of the same fact."""
    wrong = [f"{p.relative_to(ROOT)}:{line}"
             for p in _sources("whales_identify") for line in _environment_reads(p)]
    assert not wrong, "reads the environment:\n" + "\n".join(wrong)
