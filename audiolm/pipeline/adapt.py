"""Fine-tuning a shared model: the stages' `init_from` (docs/finetune.md).

A run whose parts name `init_from: BUNDLE` (a run folder, a saved bundle or a Hub id) tokenizes its
corpus with the bundle's semantic tokenizer and codec (stages 1 and 2 take them as they are, or
train the codec on), and stage 3 starts each LM from the bundle's (`adapt_lm`): trained on in full,
through LoRA adapters (`lm.<task>.lora`), or, with `train.steps` 0, kept as a reference. Each LM's
held-out perplexity is measured before and after, on the new corpus and, where the bundle is a run
folder whose tokens this run's codec shares, on the data it was trained on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from audiolm.config import PipelineConfig, TrainConfig, load_config
from audiolm.hub import resolve_folder
from audiolm.interop.language_models import load_language_model
from audiolm.lm.lora import add_lora, parent_reference, write_adapter
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TaskSpec, unigram_perplexity
from audiolm.pipeline import lm_stage, rundir
from audiolm.train import distributed
from audiolm.train.lm_task import LMTask, Utterance


def parent_part(init_from: str, part: str, key: str) -> Path:
    """The folder of `part` in the bundle `init_from` names; one line naming the key if there is none."""
    try:
        return resolve_folder(init_from, subfolder=part)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise FileNotFoundError(f"{key}: {init_from} has no {part}/ to start from ({err})") from None


def perplexity(model: Decoder, spec: TaskSpec, rows: Sequence[Utterance]) -> float:
    """Held-out perplexity of `model` on `rows`, measured as stage 3 measures it during training."""
    return LMTask(model, spec, TrainConfig(), rows, list(rows)).evaluate()["perplexity"]


def parent_run(folder: Path) -> PipelineConfig | None:
    """The pipeline config of a run folder (pointed at that folder), or None for a saved bundle."""
    file = folder / "config.yaml"
    if not file.exists() or rundir.read_marker(folder / "tokens") is None or rundir.read_marker(folder / "acoustic") is None:
        return None
    cfg = load_config(file)
    return dataclasses.replace(cfg, runs_dir=str(folder.parent), name=folder.name)


def old_heldout(cfg: PipelineConfig, task: str, init_from: str) -> list[Utterance] | None:
    """The parent run's held-out utterances in the tokens this run's LM reads, or None: the parent is
    not a run folder with its token tables, or (acoustic LMs) this run's codes are not the parent
    codec's (a fine-tuned codec keeps its encoder and codebooks: its codes are)."""
    parent = parent_run(resolve_folder(init_from))
    if parent is None or (task != "semantic" and cfg.codec.init_from != init_from):
        return None
    ds, _ = lm_stage.read_tokens(parent)
    return list(lm_stage.utterances(ds["heldout"], rundir.spread_indices(ds["heldout"].num_rows, cfg.lm.eval_utterances)))


def _check_layout(spec: TaskSpec, cfg: PipelineConfig, marker: dict, key: str) -> None:
    ours = lm_stage.layout_of(cfg, marker)
    for name in ("semantic_size", "codebook_size", "num_codebooks"):
        if getattr(spec.layout, name) != getattr(ours, name):
            raise ValueError(f"{key}: the LM's {name.replace('_', ' ')} is {getattr(spec.layout, name)}, this run's "
                             f"tokens have {getattr(ours, name)}; tokenize with the bundle's own tokenizer and codec "
                             "(semantic.init_from, codec.init_from)")


def adapt_lm(cfg: PipelineConfig, task: str, marker: dict, train: Sequence[Utterance], heldout: list[Utterance],
             speakers, out: Path) -> dict:
    """Stage 3 for an LM with `init_from`: the stage.json info, with the perplexities before and after."""
    lm = getattr(cfg.lm, task)
    part, key = f"lm-{task}", f"lm.{task}.init_from"
    folder = parent_part(lm.init_from, part, key)
    reference = parent_reference(lm.init_from, part)
    model = load_language_model(folder)
    spec = TaskSpec.from_dict(model.task)
    _check_layout(spec, cfg, marker, key)
    if not isinstance(model, Decoder):  # a released unit LM (TWIST, SLAM): kept as it is, or refused
        if lm.train.steps:
            raise ValueError(f"{key}: {reference['model']}/{part} is a released model we can use but not train; "
                             f"leave {task} out of the parts to fine-tune")
        distributed.on_main(write_adapter, out, model.task, reference)
        return {"task": task, "parameters": model.num_parameters(), "steps": 0, "adapted_from": reference,
                "trained": "none"}
    old = old_heldout(cfg, task, lm.init_from)
    before = {"new": perplexity(model, spec, heldout), **({"old": perplexity(model, spec, old)} if old else {})}
    unigram = unigram_perplexity(spec, [spec.targets(*u) for u in lm_stage.sample(train)],
                                 [spec.targets(*u) for u in heldout])
    parent_line = f"stage 3 ({task} LM): from {reference['model']}/{part}"
    if not lm.train.steps:  # kept as it is: a reference, measured on the new data
        distributed.on_main(write_adapter, out, model.task, reference)
        distributed.print_main(f"{parent_line}, kept as it is: held-out perplexity {before['new']:.2f} "
                               f"(unigram {unigram:.2f})")
        return {"task": task, "parameters": model.num_parameters(), "steps": 0, "heldout_perplexity": before["new"],
                "unigram_perplexity": unigram, "heldout_utterances": len(heldout), "train_seconds": 0.0,
                "adapted_from": reference, "before": before, "after": before, "trained": "none"}
    save = None
    if lm.lora:
        add_lora(model, lm.lora)

        def save(trained: Decoder, path: Path) -> None:
            write_adapter(path, trained.task, reference, trained, lm.lora)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    distributed.print_main(f"{parent_line}: {'LoRA rank ' + str(lm.lora) if lm.lora else 'all weights'} "
                           f"({trainable / 1e6:.2f}M trained); held-out perplexity before: {before['new']:.2f} on the new "
                           f"data" + (f", {before['old']:.2f} on the old" if old else ""))
    info = lm_stage.train_lm(cfg, task, marker, train, heldout, speakers, out, spec, model=model, save=save)
    if not distributed.is_main():
        return info
    adapted = load_language_model(out)  # as a user loads it: the adapters merged
    after = {"new": info["heldout_perplexity"], **({"old": perplexity(adapted, spec, old)} if old else {})}
    print(f"{parent_line}: held-out perplexity after: {after['new']:.2f} on the new data"
          + (f", {after['old']:.2f} on the old" if old else ""))
    return {**info, "adapted_from": reference, "before": before, "after": after, "trainable_parameters": trainable,
            "trained": f"lora-{lm.lora}" if lm.lora else "full"}
