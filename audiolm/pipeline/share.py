"""Share a run: `audiolm push RUN_DIR REPO_ID [--private]` and `audiolm save RUN_DIR OUT_DIR`.

The run's parts are loaded as one `AudioLM` (so they are checked against each other first) and
written as a bundle whose model card carries the run's own measurements: stage 3's held-out
perplexities against a unigram baseline, stage 4's speaker-classifier rates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from audiolm.config import PipelineConfig, load_config
from audiolm.continuation import AudioLM
from audiolm.data.corpus import describe_source
from audiolm.lm.sequences import TASKS, TEXT_TASKS


def run_config(run_dir: Path) -> PipelineConfig:
    """The resolved config the run's language models were trained with (stage 0's if none)."""
    for file in (run_dir / "lm-semantic" / "config.yaml", run_dir / "config.yaml"):
        if file.exists():
            return load_config(file)
    raise FileNotFoundError(f"{run_dir}: no config.yaml (not a run folder; run stages 0-3 to make one)")


def _read_json(file: Path) -> dict[str, Any] | None:
    return json.loads(file.read_text()) if file.exists() else None


def run_metrics(lms: dict[str, dict | None], results: dict | None) -> list[dict[str, Any]]:
    """The numbers a run measured (its LMs' stage.json, stage 4's results.json), as `bundle_card`
    rows; nothing for a stage that did not finish."""
    metrics = []
    for task, lm in lms.items():
        if lm and "heldout_perplexity" in lm:
            per = " per codebook" if task in ("coarse", "fine") else ""
            metrics.append({"name": f"{task} LM held-out perplexity{per}", "type": "perplexity",
                            "value": lm["heldout_perplexity"],
                            "shown": f"{lm['heldout_perplexity']:.3g} (unigram {lm['unigram_perplexity']:.3g})"})
    if results:
        for group, r in results.get("speaker", {}).items():
            for kind, name in (("continuation", "continuations with the acoustic prompt"),
                               ("semantic-only", "continuations from semantic ids only"),
                               ("true continuation, through the codec", "true continuations through the codec")):
                value = r["scores"][kind]["accuracy"]
                metrics.append({"name": f"voice kept, {name}, {group}", "type": "accuracy", "value": value,
                                "shown": f"{value:.1%} (chance {r['chance']:.1%}, {r['voices']} voices)"})
        for group, f in results.get("text", {}).get("groups", {}).items():
            t = f["transcription"]
            rows = [("transcription WER", "wer", t["wer"]), ("transcription CER", "cer", t["cer"])]
            if "reading" in f:
                rows += [("reading round-trip WER", "wer", f["reading"]["round_trip_wer"]),
                         ("reading: prompt's voice kept", "accuracy", f["reading"]["speaker_accuracy"]),
                         ("conversion: target voice named", "accuracy", f["conversion"]["target_voice_accuracy"]),
                         ("conversion WER", "wer", f["conversion"]["wer"])]
                if "phone_error_rate" in f["reading"]:
                    rows.append(("reading phone error rate", "per", f["reading"]["phone_error_rate"]))
            metrics += [{"name": f"{name}, {group}", "type": kind, "value": v, "shown": f"{v:.1%}"} for name, kind, v in rows]
        if "generation_real_time_factor" in results:
            rtf = results["generation_real_time_factor"]
            metrics.append({"name": "generation speed (audio seconds per wall second)", "type": "real_time_factor",
                            "value": rtf, "shown": f"{rtf:.2f}x real time"})
    return metrics


def card_kwargs(run_dir: Path, repo_id: str = "REPO_ID") -> dict[str, Any]:
    cfg = run_config(run_dir)
    source = describe_source(cfg.data)
    if source == "demo":
        d = cfg.data.demo
        unseen = f", {d.unseen_voices} more that only read held-out sentences" if d.unseen_voices else ""
        corpus = f"a corpus synthesized offline with eSpeak NG ({d.voices} voices{unseen}, {d.sentences} sentences)"
        dataset_type, dataset_name = "audiolm-demo", "eSpeak NG demo corpus"
    else:
        corpus, dataset_type, dataset_name = f"`{cfg.data.source}`", cfg.data.source, cfg.data.source
    datasets = list(cfg.share.datasets) + ([cfg.data.source] if source == "hub" and not os.path.exists(cfg.data.source) else [])
    lms = {t: _read_json(run_dir / f"lm-{t}" / "stage.json") for t in TASKS + TEXT_TASKS if (run_dir / f"lm-{t}").is_dir()}
    results = _read_json(run_dir / "continuations" / "results.json") or {}
    text = _read_json(run_dir / "text-eval" / "results.json")
    if text:
        results["text"] = text
    c = cfg.continuation
    steps = ", ".join(f"{t} LM {(lm or {}).get('steps', '?')}" for t, lm in lms.items())
    evaluation = (f"Held-out perplexity of each LM on {cfg.lm.eval_utterances} held-out utterances, next to a unigram model of "
                  "the same targets. Voice kept: a speaker embedding learned on train-split audio names each of "
                  f"{results.get('prompts', c.prompts)} continuations of {c.seconds:g} s from {c.prompt_seconds:g} s held-out "
                  "prompts as the nearest held-out voice of its group (enrolled from other utterances), for voices the "
                  "models trained on and voices none of them heard; the semantic-only condition withholds the prompt's "
                  "codec tokens, so it cannot copy the voice.")
    training = f"Pipeline `{cfg.name}` on {corpus}; training steps: {steps}."
    if cfg.semantic.init_from:  # a fine-tune (audiolm finetune): its parent, and how each part was adapted
        words = {"none": "as it was", "full": "in full"}
        how = {t: words.get(h, h.replace("lora-", "LoRA rank ")) for t, lm in lms.items() if t in TASKS
               for h in [(lm or {}).get("trained", "full")]}
        codec = "its codec's decoder trained on" if cfg.codec.train.steps else "its codec as it is"
        training = (f"Adapted from `{cfg.semantic.init_from}` on {corpus} (its tokenizer and {codec}; LMs: "
                    + ", ".join(f"{t} {h}" for t, h in how.items()) + f"); training steps: {steps}.")
    return {"repo_id": repo_id, "model_name": f"AudioLM ({cfg.name})", "metrics": run_metrics(lms, results),
            "evaluation": evaluation, "training": training, "license": cfg.share.license,
            "language": list(cfg.share.language), "datasets": datasets or None, "tags": list(cfg.share.tags),
            "dataset_type": dataset_type, "dataset_name": dataset_name}


def save(run_dir: str | os.PathLike, out: str | os.PathLike, repo_id: str = "REPO_ID") -> Path:
    """The bundle a push would upload, written to `out`."""
    run_dir = Path(run_dir)
    AudioLM.from_pretrained(run_dir).save_pretrained(out, model_card_kwargs=card_kwargs(run_dir, repo_id))
    return Path(out)


def push(run_dir: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload the run as one bundle in one commit; returns the commit's URL."""
    run_dir = Path(run_dir)
    model = AudioLM.from_pretrained(run_dir)
    return str(model.push_to_hub(repo_id, private=private, token=token, model_card_kwargs=card_kwargs(run_dir, repo_id),
                                 commit_message=f"AudioLM bundle of run {run_dir.name}"))
