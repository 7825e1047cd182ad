"""Imports go down the layers only (see STYLE.md): layer-1 packages never import each other; the
stages' logic (pipeline/) sits above the trainer, and the CLI above everything."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiolm"
# hub (the Hub mixin every component inherits) sits between the layer-0 helpers and the components.
LAYER = {"audio": 0, "config": 0, "tokens": 0, "files": 0, "hub": 0.5, "card": 1, "semantic": 1, "codec": 1, "lm": 1,
         "data": 1, "eval": 1, "train": 2, "continuation": 2, "pipeline": 3, "cli": 4}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("audiolm."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("audiolm."):
                    yield alias.name.split(".")[1]


def test_imports_go_down():
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if top == "__init__":
            continue
        for target in _imports(path):
            checked += 1
            same_package = target == top
            assert same_package or LAYER[target] < LAYER[top], f"{rel} imports audiolm.{target} (layer {LAYER[target]})"
    assert checked > 10
