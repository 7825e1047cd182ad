"""`audiolm finetune BUNDLE --data SOURCE -o RUN`: a shared model adapted to new data (docs/finetune.md).

The run is an ordinary pipeline run whose parts start from the bundle (`init_from`): stage 0 reads
SOURCE, stages 1-2 tokenize it with the bundle's own tokenizer and codec, and stage 3 trains the
chosen parts on from the bundle's weights (in full or through LoRA adapters) with a schedule of
their own; the parts not chosen are kept as references to the bundle. A killed fine-tune resumes
like any run; the same command again is a no-op.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from audiolm.config import ConfigError, PipelineConfig, TrainConfig, from_dict, merge_override, parse_override, to_dict
from audiolm.hub import resolve_folder
from audiolm.lm.sequences import TASKS, TaskSpec
from audiolm.pipeline import codec_stage, corpus_stage, lm_stage, rundir, semantic_stage

PARTS = ("codec", *TASKS)  # what --parts may name: the codec's decoder and the three LMs
DEFAULT_PARTS = ("coarse", "fine")  # the voice lives in the acoustic LMs (and the codec's rendering)


def _part_folder(part: str) -> str:
    return "codec" if part == "codec" else f"lm-{part}"


def check_parts(parent: Path, name: str, parts: list[str]) -> None:
    """--parts: known names, each a part the bundle has, and the parts every run needs to tokenize."""
    for part in parts:
        if part not in PARTS:
            raise ValueError(f"--parts: unknown part '{part}' (known: {', '.join(PARTS)})")
    needed = ["semantic", "codec", *(f"lm-{t}" for t in TASKS)]
    for sub in needed:
        if not (parent / sub / "config.json").is_file():
            asked = [p for p in parts if _part_folder(p) == sub]
            what = f"--parts names {asked[0]}, but" if asked else "every fine-tune needs it, but"
            raise FileNotFoundError(f"{name}: has no {sub}/ ({what} the bundle lacks it)")


def _schedule(base: TrainConfig, steps: int, minutes: float, learning_rate: float) -> dict:
    """A fine-tune's own schedule: `steps` (0 = not trained), a short warm-up, a cosine to the end or to
    `minutes`, a checkpoint every quarter (what a killed fine-tune redoes at most)."""
    return {**asdict(base), "steps": steps, "learning_rate": learning_rate, "warmup_steps": max(1, steps // 10),
            "max_minutes": minutes, "eval_every": max(1, steps), "checkpoint_every": max(1, steps // 4)}


def finetune_config(bundle: str, data: str, out: str | Path, parts: list[str] | None = None, lora: int = 0,
                    steps: int = 200, minutes: float = 4.0, learning_rate: float = 0.0,
                    overrides: list[str] = ()) -> PipelineConfig:
    """The run's config: the bundle's own pipeline config where it is a run folder (defaults otherwise),
    its data from `data`, every part from the bundle, the chosen ones trained for `steps` or their share
    of `minutes`, at `learning_rate` (0: a quarter of the rate the part was trained at, the same with
    LoRA), then `overrides` (key=value)."""
    parts = list(DEFAULT_PARTS if parts is None else parts)
    folder = resolve_folder(bundle)
    check_parts(folder, bundle, parts)
    if lora < 0:
        raise ValueError(f"--lora must be a positive rank, got {lora}")
    parent = parent_config(folder)
    tree = to_dict(parent)
    out = Path(out)
    tree.update(name=out.name, runs_dir=str(out.parent))
    tree["data"]["source"] = data
    tree["semantic"]["init_from"] = bundle
    share = minutes / max(1, len(parts))
    for part in PARTS:
        section = tree["codec"] if part == "codec" else tree["lm"][part]
        trained = part in parts
        base = parent.codec.train if part == "codec" else getattr(parent.lm, part).train
        rate = learning_rate or base.learning_rate * (1.0 if lora else 0.25)
        section["init_from"] = bundle
        section["train"] = _schedule(base, steps if trained else 0, share if trained else 0.0, rate)
        section["lora"] = lora if trained else 0
    # the layout the bundle's LMs were trained with (a saved bundle carries no pipeline config)
    coarse = TaskSpec.from_dict(_task(folder / "lm-coarse"))
    tree["lm"].update(coarse_codebooks=coarse.layout.coarse_codebooks, text=False)
    for text in overrides:
        merge_override(tree, *parse_override(text))
    return from_dict(PipelineConfig, tree)


def _task(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())["task"]


def parent_config(folder: Path) -> PipelineConfig:
    """The pipeline config a run folder was made with; the defaults for a saved bundle or Hub snapshot."""
    from audiolm.pipeline.share import run_config

    try:
        return run_config(folder)
    except (FileNotFoundError, ConfigError):  # none, or another version's: its parts still say what they are
        return PipelineConfig()


def run(cfg: PipelineConfig) -> dict[str, dict]:
    """Stages 0-3 of the fine-tune; returns each LM's stage.json."""
    corpus_stage.run(cfg)
    semantic_stage.run(cfg)
    codec_stage.run(cfg)
    lm_stage.run(cfg, tasks=list(TASKS))
    return {t: rundir.read_marker(cfg.run_dir / f"lm-{t}") for t in TASKS}


def table(markers: dict[str, dict]) -> str:
    """Before / after, per LM: held-out perplexity on the new data and, where measured, the old."""
    lines = ["| LM | trained | steps | new data: before | after | old data: before | after |",
             "|---|---|---|---|---|---|---|"]
    for task, m in markers.items():
        before, after = m.get("before", {}), m.get("after", {})

        def cell(d: dict, key: str) -> str:
            return f"{d[key]:.2f}" if key in d else "-"

        lines.append(f"| {task} | {m.get('trained', 'full')} | {m.get('steps', 0)} | {cell(before, 'new')} | "
                     f"{cell(after, 'new')} | {cell(before, 'old')} | {cell(after, 'old')} |")
    return "\n".join(lines)
