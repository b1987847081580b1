"""``gateway.stomp`` stays sans-I/O: no asyncio, sockets, logging, or other gateway code.

Two checks: a static one (parse every module's AST and inspect each import, so a
lazy import inside a function is caught too) and a dynamic one (import the package
in a fresh interpreter and look at ``sys.modules``, which also catches what the
standard library pulls in transitively).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "gateway" / "stomp"
MODULES = sorted(PACKAGE.glob("*.py"))

# Anything that does I/O, schedules work, or logs.
FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "select",
    "threading",
    "multiprocessing",
    "concurrent",
    "subprocess",
    "logging",
    "structlog",
    "uvloop",
    "websockets",
    "aio_pika",
    "aiormq",
    "pamqp",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                names.append(".".join([*base, node.module] if node.module else base))
            else:
                assert node.module is not None
                names.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names.append("<dynamic __import__>")
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            names.append("<dynamic importlib.import_module>")
    return names


def test_package_has_the_expected_modules() -> None:
    names = {path.name for path in MODULES}
    assert {"__init__.py", "frames.py", "parser.py", "escaping.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_stdlib_and_its_own_package(path: Path) -> None:
    for name in imported_names(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "gateway":
            assert name == "gateway.stomp" or name.startswith("gateway.stomp."), (
                f"{path.name} imports {name}: the codec must not depend on other gateway code"
            )
        else:
            assert top in sys.stdlib_module_names, f"{path.name} imports non-stdlib {name}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_opens_with_a_docstring_and_future_annotations(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    futures = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
    ]
    assert futures and any(a.name == "annotations" for a in futures[0].names)


def test_importing_the_codec_loads_no_io_or_logging_modules() -> None:
    modules = [module_name(path) for path in MODULES]
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "before = set(sys.modules)\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    # -I -S: no site-packages, no .pth hooks, no PYTHON* env: only what the codec pulls in
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    loaded = set(result.stdout.split())
    assert set(modules) <= loaded
    for name in loaded:
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"importing gateway.stomp loaded {name}"
        if top == "gateway":
            assert name in {"gateway", "gateway.stomp"} or name.startswith("gateway.stomp."), name
