"""The package's shape (docs/architecture.md): what may import what.

The layer contracts themselves are import-linter's (pyproject.toml, run by
scripts/test.sh); these tests keep the rules it cannot see."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tidal

PACKAGE = Path(tidal.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _tidal_imports(name: str, path: Path) -> list[tuple[ast.ImportFrom, str, bool]]:
    """(node, imported module, at module level) for every ``from`` import of a Tidal module."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = set()
    for node in tree.body:
        top_level.add(node)
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks
            top_level.update(node.body)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target == "tidal" or target.startswith("tidal."):
            found.append((node, target, node in top_level))
    return found


def test_no_function_level_imports_between_tidal_modules() -> None:
    """A function-level import is a cycle in disguise; what is costly to load
    is deferred by a package's own table of names instead (tidal.relations,
    tidal.server, tidal._LAZY, tidal.stores.SCHEMES)."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {target}"
        for name, path in _modules().items()
        for node, target, top in _tidal_imports(name, path)
        if not top
    ]
    assert offenders == []


def test_no_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    offenders = []
    for name, path in modules.items():
        for node, target, _ in _tidal_imports(name, path):
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and target != name:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {target}.{alias.name}")
    assert offenders == []


BLOCKER = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed here")
        return None

sys.meta_path.insert(0, Block())
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_the_core_imports_without_sqlalchemy_redis_pydantic_or_numpy() -> None:
    """The core is plain definitions: it must load where none of these is installed."""
    blocked = {"sqlalchemy", "redis", "pydantic", "numpy", "fastapi", "psycopg"}
    code = BLOCKER.format(blocked=blocked) + (
        "import tidal.core.component, tidal.core.layout, tidal.core.state, tidal.core.triggers\n"
        "spec = tidal.core.component.ComponentSpec('C')\n"
        "spec.update('add')(lambda state, props: None)\n"
        "print(spec.flow_keys())\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['add']"


def test_import_tidal_stays_cheap() -> None:
    """``import tidal`` and defining a component load none of the heavy
    dependencies; relations, the server and Redis load when first used."""
    code = (
        "import sys, tidal\n"
        "C = tidal.Component('C')\n"
        "heavy = ['sqlalchemy', 'numpy', 'pydantic', 'redis', 'fastapi', 'httpx', 'rich', 'pandas', 'pyarrow',\n"
        "         'opentelemetry']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
