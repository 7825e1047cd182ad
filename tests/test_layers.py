"""Imports go down the layers only (see STYLE.md): layer-1 packages never import each other; the
stages' logic (pipeline/) sits above the trainer, and the CLI above everything."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiolm"
# hub (the Hub mixin every component inherits) sits between the layer-0 helpers and the components;
# text (pieces and phonemes) above the components, since it reads eSpeak through data; speech_text
# (speak, transcribe, convert) is mixed into the continuation's AudioLM, so just below it; web (the
# gradio page) draws with the report's figures; batching (the page's queue) sits on the continuation; interop
# (released models in, ours out) loads LMs for the scorer and the continuation, so sits below both.
LAYER = {"audio": 0, "config": 0, "tokens": 0, "files": 0, "devices": 0, "hub": 0.5, "augment": 0.5, "card": 1, "semantic": 1,
         "codec": 1, "lm": 1, "data": 1, "eval": 1.8, "text": 1.5,
         "interop": 1.6, "cli_interop": 3.9, "cli_finetune": 3.9, "speech_text": 1.75, "train": 2, "continuation": 2,
         "batching": 2.5, "pipeline": 3, "web": 3.5, "cli_eval": 3.9, "cli": 4}


# Names `from audiolm import X` may give that are not modules: the package's lazy attributes.
REEXPORTS = {"AudioLM": "continuation"}


def _imports(path: Path):
    return _imports_of(path.read_text(), path)


def _imports_of(source: str, path: Path):
    """The top-level audiolm module of every import in a file's source, in each of its forms:
    `import audiolm.x`, `from audiolm.x import y`, `from audiolm import x` and relative imports."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # ("audiolm", "codec") for audiolm/codec/x.py
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = (*base, *(node.module.split(".") if node.module else ()))
            if module[:1] != ("audiolm",):
                continue
            if len(module) > 1:
                yield module[1]
            else:  # from audiolm import x, y
                yield from (REEXPORTS.get(alias.name, alias.name) for alias in node.names)
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


def test_every_import_form_is_seen(tmp_path):
    """A layer-1 file importing the continuation (layer 2) is caught however it is written."""
    forms = ["from audiolm import AudioLM", "from audiolm import continuation", "import audiolm.continuation",
             "from audiolm.continuation import AudioLM", "from ..continuation import AudioLM", "from .. import continuation"]
    for form in forms:
        path = PACKAGE / "codec" / "probe.py"  # a name only: nothing is written there
        found = list(_imports_of(form, path))
        assert found == ["continuation"], (form, found)
    assert list(_imports_of("from . import base", PACKAGE / "codec" / "probe.py")) == ["codec"]  # its own package
