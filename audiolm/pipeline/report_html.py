"""`runs/<name>/report.html`: the run report as one self-contained page, to listen to. The same
text, tables and figures as report.md, and for each example its prompt, continuation and
semantic-only continuation as audio players beside their spectrograms. Every figure and sound is
inlined (data: URIs), so the file opens from disk, or as an attachment, with no network and no
other file."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import markdown
import numpy as np
import soundfile as sf

from audiolm import audio
from audiolm.files import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
.example { display: flex; gap: 1.5em; align-items: center; flex-wrap: wrap; margin-bottom: 2em; }
.players { display: grid; grid-template-columns: auto auto; gap: 0.4em 0.8em; align-items: center; }
.players span { font-size: 0.9em; }
.example img { flex: 1 1 480px; min-width: 0; }
"""

# (file suffix in continuations/, label) of each example's players
EXAMPLE_AUDIO = (("prompt", "prompt"), ("continuation", "continuation (acoustic prompt)"),
                 ("full", "prompt + continuation"), ("semantic-only", "semantic-only continuation (no acoustic prompt)"))


def data_uri(path: Path) -> str:
    """A PNG, or a sound re-encoded as 16-bit wav (half the size of float), as a data: URI."""
    if path.suffix == ".png":
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    wav, rate = audio.load(path)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wav, -1, 1), rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def _inline_images(body: str, run_dir: Path) -> str:
    def inline(match: re.Match) -> str:
        path = run_dir / html.unescape(match.group(2))
        return match.group(1) + (data_uri(path) if path.exists() else match.group(2)) + match.group(3)

    return re.sub(r'(<img [^>]*src=")([^"]+)(")', inline, body)


def example_block(run_dir: Path, example: str, figure: str) -> str:
    players = "".join(f'<span>{label}</span><audio controls preload="metadata" src="{data_uri(path)}"></audio>'
                      for suffix, label in EXAMPLE_AUDIO
                      if (path := run_dir / "continuations" / f"{example}.{suffix}.wav").exists())
    return (f'<h3>{html.escape(example)}</h3><div class="example"><div class="players">{players}</div>'
            f'<img alt="{html.escape(example)}" src="{data_uri(run_dir / figure)}"></div>')


def write(run_dir: Path, name: str, markdown_lines: list[str], examples: list[tuple[str, str]]) -> Path:
    """`markdown_lines`: the report's text before its examples; `examples`: (id, figure path relative
    to the run folder) of each."""
    body = _inline_images(markdown.markdown("\n".join(markdown_lines), extensions=["tables"]), run_dir)
    blocks = "".join(example_block(run_dir, example, figure) for example, figure in examples)
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Run {html.escape(name)}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n<h2>Examples</h2>\n{blocks}\n</body></html>\n")
    path = run_dir / "report.html"
    atomic_write_text(path, page)
    return path
