"""`runs/<name>/report.md`: what a run produced and how good it is, with figures (PNG): the three
LMs' loss curves, and log-mel spectrograms of prompt + continuation next to the semantic-only
continuation of the same prompt; and the same as `report.html`, with the examples to listen to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from audiolm import audio
from audiolm.audio import mel_filters
from audiolm.config import PipelineConfig
from audiolm.files import atomic_write_text
from audiolm.lm.sequences import TASKS, TEXT_TASKS
from audiolm.pipeline import report_html, rundir


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png")
    tmp.replace(path)


def log_mel(wav: np.ndarray, sample_rate: int, n_fft: int = 1024, mels: int = 80) -> np.ndarray:
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    spec = torch.stft(x, n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True).abs().pow(2)
    return torch.log10(spec.T @ mel_filters(sample_rate, n_fft, mels) + 1e-6).T.numpy()


def compare_spectrograms(panels: list[tuple[str, np.ndarray]], sample_rate: int, path: Path) -> None:
    """Log-mel spectrograms of several signals (title, wav) stacked on one time axis."""
    plt = _figure()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), sharex=True)
    specs = [log_mel(wav, sample_rate) for _, wav in panels]
    low, high = min(float(s.min()) for s in specs), max(float(s.max()) for s in specs)
    for ax, (title, wav), spec in zip(np.atleast_1d(axes), panels, specs, strict=True):
        ax.imshow(spec, origin="lower", aspect="auto", extent=(0, len(wav) / sample_rate, 0, spec.shape[0]), cmap="magma",
                  vmin=max(low, high - 6), vmax=high)  # one colour scale: 60 dB below the loudest bin
        ax.set_title(title)
        ax.set_ylabel("mel band")
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    _save(fig, path)
    plt.close(fig)


def timeline(segments: list[tuple[str, np.ndarray]], sample_rate: int, path: Path) -> None:
    """One log-mel spectrogram of several signals played one after another (prompt, then result),
    each labelled above its span, a dashed line where one ends."""
    plt = _figure()
    wav = np.concatenate([np.asarray(w, dtype=np.float32) for _, w in segments])
    spec = log_mel(np.pad(wav, (0, max(0, 1024 - len(wav)))), sample_rate)
    seconds = len(wav) / sample_rate
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.imshow(spec, origin="lower", aspect="auto", extent=(0, seconds, 0, spec.shape[0]), cmap="magma",
              vmin=max(float(spec.min()), float(spec.max()) - 6), vmax=float(spec.max()))
    start = 0.0
    for i, (label, w) in enumerate(segments):
        end = start + len(w) / sample_rate
        if i:
            ax.axvline(start, color="white", linestyle="--")
        ax.text((start + end) / 2, spec.shape[0] * 1.02, label, ha="center", va="bottom")
        start = end
    ax.set_xlim(0, seconds)
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel band")
    _save(fig, path)
    plt.close(fig)


def loss_curves(run_dir: Path, path: Path) -> bool:
    plt = _figure()
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 3))
    drawn = False
    for ax, task in zip(axes, TASKS, strict=True):
        log = run_dir / f"lm-{task}-train" / "log.jsonl"
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        for key, label in (("loss", "train"), ("eval/loss", "held-out")):
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=label, marker="o" if label == "held-out" else None)
                drawn = True
        ax.set_title(f"{task} LM")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)")
        ax.legend()
    _save(fig, path)
    plt.close(fig)
    return drawn


def spectrograms(folder: Path, example: str, prompt_seconds: float, path: Path) -> None:
    plt = _figure()
    fig, axes = plt.subplots(2, 1, figsize=(8, 5))
    end = 0.0
    for ax, (kind, title) in zip(axes, (("full", "prompt | continuation"),
                                        ("semantic-only", "semantic ids only (no acoustic prompt): continuation")),
                                 strict=True):
        wav, rate = audio.load(folder / f"{example}.{kind}.wav")
        offset = prompt_seconds if kind == "semantic-only" else 0.0
        spec = log_mel(wav, rate)
        seconds = len(wav) / rate
        ax.imshow(spec, origin="lower", aspect="auto", extent=(offset, offset + seconds, 0, spec.shape[0]), cmap="magma")
        ax.axvline(prompt_seconds, color="white", linestyle="--")
        end = max(end, offset + seconds)
        ax.set_title(f"{example}: {title}")
        ax.set_ylabel("mel band")
    for ax in axes:  # one time axis for both: the semantic-only panel starts where the prompt ends
        ax.set_xlim(0, end)
    axes[-1].set_xlabel("seconds")
    _save(fig, path)
    plt.close(fig)


def speaker_section(results: dict) -> list[str]:
    from audiolm.pipeline.speaker_eval import CONDITIONS

    lines = ["## Does the continuation keep the prompt's voice? (stage 4)", "",
             "A speaker embedding learned on train-split audio only (LDA of log-mel statistics, "
             "`audiolm.eval.speaker`) names each clip as the nearest of the held-out voices of its group, each enrolled "
             "from its held-out utterances that are not prompts; the cosine is between the clip's and the prompt's "
             "embeddings. Two such judges: one learned and enrolled on real audio, calibrated on the true "
             "continuations; one on the codec's rendering of the same utterances, for what the cascade generates "
             "(the codec colours every voice). Voices no model trained on are reported apart.", ""]
    for group, r in results["speaker"].items():
        lines += [f"**{group}**: {r['prompts']} prompts of {r['voices']} voices, named among {r['candidates']} "
                  f"(chance {r['chance']:.1%}).", "",
                  "| clip after the prompt | named as the prompt's voice | cosine with the prompt |", "|---|---|---|"]
        lines += [f"| {name} ({CONDITIONS[name][0]} judge): {CONDITIONS[name][1]} | {v['accuracy']:.1%} | {v['cosine']:.3f} |"
                  for name, v in r["scores"].items()]
        lines.append("")
    lines += ["AudioLM (Table III) reports 92.6% with the acoustic prompt and 3.2% without.", ""]
    return lines


def codec_section(codec: dict) -> list[str]:
    from audiolm.pipeline.codec_eval import Row, format_table

    rows = [Row(**r) for group in codec["rows"].values() for r in group]
    unseen = ", ".join(codec["unseen_speakers"])
    lines = ["", "## The codec (stage 2)", "",
             "Held-out sentences resynthesized (metrics at 16 kHz, pitch by WORLD's Harvest on both; "
             "`audiolm codec-eval` adds Opus)" + (f"; unseen voices ({unseen}) were never in codec training" if unseen else "")
             + ":", "", format_table(rows), ""]
    lines += [f"![original vs resynthesis]({p})" for p in codec["plots"]]
    return lines


def text_section(text: dict) -> list[str]:
    """Stage 4's text figures (audiolm.pipeline.text_eval), a row per voice group."""
    lines = ["", "## Text: transcription, reading, voice conversion (stage 4)", "",
             "On held-out sentences. Transcription: the held-out utterances' semantic ids -> text. Reading: each "
             "sentence read in the voice of a held-out prompt; PER = phone error rate of its semantic ids (each as the "
             "phone its training frames most often carry) against eSpeak NG's phones of the sentence; round trip = "
             "the WER of its audio transcribed by our recognizer. Conversion: a prompt utterance's semantic ids in the "
             "voice of another prompt (coarse and fine LMs prompted by it); the codec judge names the voice.", "",
             "| voices | transcription WER / CER | reading round-trip WER | reading PER | reading: prompt's voice | "
             "conversion: target voice / source voice (chance) | conversion WER (source audio's) |",
             "|---|---|---|---|---|---|---|"]
    for group, f in text["groups"].items():
        t = f["transcription"]
        row = f"| {group} | {t['wer']:.1%} / {t['cer']:.1%} |"
        if "reading" in f:
            r, c = f["reading"], f["conversion"]
            per = f"{r['phone_error_rate']:.1%}" if "phone_error_rate" in r else "-"
            row += (f" {r['round_trip_wer']:.1%} | {per} | {r['speaker_accuracy']:.1%} | {c['target_voice_accuracy']:.1%} / "
                    f"{c['source_voice_accuracy']:.1%} ({c['chance']:.1%}) | {c['wer']:.1%} ({c['source_wer']:.1%}) |")
        else:
            row += " - | - | - | - | - |"
        lines.append(row)
    lines.append("")
    for group, f in text["groups"].items():
        for e in f["transcription"]["examples"][:1]:
            lines.append(f"- {group}, `{e['id']}`: said \"{e['text']}\", transcribed \"{e['transcription']}\"")
        for e in f.get("reading", {}).get("examples", [])[:1]:
            lines.append(f"- {group}, read \"{e['text']}\", heard back as \"{e['heard']}\"")
    return lines + [""]


def scoreboard_section(board: dict) -> list[str]:
    """The field's tests on the demo's own material (audiolm.pipeline.scoreboard), one table."""
    from audiolm.pipeline.scoreboard import table

    rows = table(board)
    if not rows:
        return []
    sets, abx = board.get("sets") or {}, board.get("abx") or {}
    lines = ["", "## The field's scoreboard, on the demo's own material (stage 4)", "",
             "sWUGGY-, sBLIMP- and topic-StoryCloze-style sets made with eSpeak NG in voices no model trained on "
             f"({sets.get('lexical', 0)} word / pseudo-word pairs, {sets.get('syntactic', 0)} sentence pairs, "
             f"{sets.get('stories', 0)} stories), scored by `audiolm score-lm` (mean log-likelihood per unit, its default; "
             "then the sum, as ZeroSpeech 2021's baselines score); the baseline is a bigram of the same units counted "
             "on the training ids. ABX on the held-out utterances of "
             f"{len(abx.get('voices', []))} unseen voices ({abx.get('items', 0)} triphone items), Libri-light's "
             "rules; its baseline: MFCC k-means units of the same K. The published figures are LibriSpeech / "
             "LibriLight models on the real benchmarks: a place on the map, not the same test.", "",
             "| test | this run | baseline | chance | published (other data) |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return lines + [""]


def write(cfg: PipelineConfig, results: dict) -> Path:
    run_dir = cfg.run_dir
    figures = run_dir / "report"
    figures.mkdir(parents=True, exist_ok=True)
    c = cfg.continuation
    lines = [f"# Run `{cfg.name}`", "",
             f"Held-out prompts of {c.prompt_seconds:g} s continued by {c.seconds:g} s "
             f"(semantic -> coarse -> fine -> codec). Sampling temperature / top-k / top-p: "
             + ", ".join(f"{t} {s.temperature:g}/{s.top_k}/{s.top_p:g}" for t, s in
                         (("semantic", c.semantic), ("coarse", c.coarse), ("fine", c.fine))) + ".", "",
             "## Language models (stage 3)", "",
             "| LM | parameters | steps | held-out perplexity | unigram perplexity |", "|---|---|---|---|---|"]
    for task in TASKS + TEXT_TASKS:
        m = rundir.read_marker(run_dir / f"lm-{task}") or {}
        if m:
            lines.append(f"| {task} | {m['parameters'] / 1e6:.1f}M | {m['steps']} | {m['heldout_perplexity']:.2f} | "
                         f"{m['unigram_perplexity']:.2f} |")
    lines += ["", "Unigram perplexity: train-split frequencies of the same held-out targets (per codebook for the "
              "acoustic LMs). Perplexities are per token of the LM's own targets.", ""]
    if loss_curves(run_dir, figures / "loss_curves.png"):
        lines += ["![loss curves](report/loss_curves.png)", ""]
    lines += speaker_section(results)
    lines += [f"Continuation lengths {results['continuation_seconds']['min']:.3f}-"
              f"{results['continuation_seconds']['max']:.3f} s ({c.seconds:g} s asked); RMS level min "
              f"{results['continuation_rms']['min']:.4f}, median {results['continuation_rms']['median']:.4f}."]
    if "generation_real_time_factor" in results:
        lines.append(f"Generation ran at {results['generation_real_time_factor']:.2f}x real time "
                     f"(both conditions, batches of {c.batch_size}).")
    if results.get("codec", {}).get("rows"):
        lines += codec_section(results["codec"])
    if "text" in results:
        lines += text_section(results["text"])
    if results.get("scoreboard"):
        lines += scoreboard_section(results["scoreboard"])
    before_examples = list(lines)
    lines += ["", "## Examples", ""]
    # spread over the prompts, which go voice group by voice group: the unseen voices get examples too
    examples = [results["examples"][i] for i in rundir.spread_indices(len(results["examples"]), c.report_examples)
                ] if c.report_examples else []
    for example in examples:
        spectrograms(run_dir / "continuations", example, c.prompt_seconds, figures / f"{example}.png")
        lines += [f"### {example}", "",
                  f"[prompt](continuations/{example}.prompt.wav) · [continuation](continuations/{example}.continuation.wav)"
                  f" · [prompt + continuation](continuations/{example}.full.wav) · "
                  f"[semantic-only continuation](continuations/{example}.semantic-only.wav)", "",
                  f"![{example}](report/{example}.png)", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    report_html.write(run_dir, cfg.name, before_examples, [(e, f"report/{e}.png") for e in examples])
    return path
