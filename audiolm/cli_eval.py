"""The evaluation commands of the `audiolm` console script (audiolm.cli): codec-eval, semantic-eval,
score-lm, abx."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def _codec_eval(args: argparse.Namespace) -> int:
    from audiolm.codec import load_codec
    from audiolm.pipeline import codec_eval

    codec = load_codec(args.codec, args.revision, device=args.device)
    codebooks = [k for k in args.num_codebooks if k <= codec.num_codebooks] or [codec.num_codebooks]
    opus = codec_eval.opus_available()
    opus_kbps = sorted({max(codec_eval.OPUS_MIN_KBPS, round(codec.bitrate(k) / 1000)) for k in codebooks})
    groups = [("", None)]
    if args.unseen_speakers:  # voices the codec trained on and voices it never heard, scored apart
        data = datasets_speakers(args.data, args.split)
        seen = sorted(set(data) - set(args.unseen_speakers))
        groups = [(", seen voices", seen), (", unseen voices", list(args.unseen_speakers))]
    rows, notes = [], []
    for label, speakers in groups:
        clips, skipped = codec_eval.load_clips(args.data, args.split, args.max_clips, speakers)
        for err in skipped:
            print(f"error: skipped {err}", file=sys.stderr)
        if not clips:
            raise ValueError(f"{args.data}: no readable audio to evaluate on")
        rows += codec_eval.codec_rows(codec, clips, codebooks, label)
        if opus:
            rows += [codec_eval.opus_row(clips, kbps, label) for kbps in opus_kbps]
        voices = f" ({', '.join(speakers)})" if speakers else ""
        notes.append(f"{len(clips)} clips{label} from {args.data}{voices}.")
        if args.plots:
            paths = codec_eval.plot_resyntheses(codec, clips[: args.num_plots], Path(args.plots),
                                                "unseen" if label.endswith("unseen voices") else "clip")
            notes.append(f"Spectrograms: {', '.join(str(p) for p in paths)}")
    notes.append("Metrics at 16 kHz; pitch by WORLD's Harvest on original and output alike (F0 error: RMS over frames voiced "
                 "in both, gross errors (> 20%) counted apart).")
    notes.append(f"Opus asked for the codec's bitrates, at least {codec_eval.OPUS_MIN_KBPS} kbps (its floor)." if opus else
                 "Opus skipped: opusenc/opusdec not found (Debian package opus-tools).")
    print(codec_eval.format_table(rows))
    print("\n".join(notes))
    return 0


def datasets_speakers(data: str, split: str) -> list[str]:
    from audiolm.data import shards

    path = Path(data)
    if not shards.is_sharded(path):
        raise ValueError(f"{data}: --unseen-speakers needs a corpus folder (one with speaker labels)")
    return list(dict.fromkeys(shards.load_split(path, split)["speaker"]))


def _semantic_eval(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from audiolm.data.corpus import select_speakers, voice_groups
    from audiolm.pipeline import semantic_eval

    corpus, rate = semantic_eval.open_corpus(args.data)
    if args.split not in corpus:
        raise ValueError(f"{args.data}: no split '{args.split}' (has {', '.join(corpus)})")
    ds = corpus[args.split]
    if args.speakers:
        ds = select_speakers(ds, args.speakers)
        if not ds.num_rows:
            raise ValueError(f"{args.data}: no utterance of speakers {', '.join(args.speakers)} in '{args.split}'")
    parts = {"": ds}
    if not args.speakers and args.split == "heldout" and "train" in corpus:
        groups = voice_groups(corpus)
        if len(groups) > 1:  # voices the corpus trains on and voices it never does, apart
            parts = {f", {g}": select_speakers(ds, members) for g, members in groups.items()}
    rows = []
    probe_on = corpus["train"] if args.split != "train" and "train" in corpus else None
    for spec in args.model:
        name, tokenizer = semantic_eval.load_tokenizer(spec, corpus, rate, args.context, args.device)
        # the histogram probe names training speakers only: no row for voices it cannot name
        rows += [semantic_eval.evaluate(name + suffix, tokenizer, part, rate, None if "unseen" in suffix else probe_on)
                 for suffix, part in parts.items()]
    print(semantic_eval.format_table(rows))
    who = f", speakers {', '.join(args.speakers)}" if args.speakers else ""
    print(f"{ds.num_rows} utterances ({sum(ds['duration']) / 60:.1f} min) of {args.data} [{args.split}{who}]. "
          "PNMI = I(phone; token) / H(phone); AUC = P(the same sentence by another voice is closer than "
          "another sentence by the same voice); voice from histogram: a speaker classifier on token histograms, "
          "trained on the train split.")
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1) + "\n")
    return 0


def _score_lm(args: argparse.Namespace) -> int:
    from audiolm.eval.lm_score import SpeechLMScorer
    from audiolm.eval.score_lm import score_dataset, summary_lines

    scorer = SpeechLMScorer.from_pretrained(args.model, args.revision, device=args.device)
    results, errors = score_dataset(Path(args.dataset), scorer, Path(args.output), args.score, args.batch_size, args.model)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    for line in summary_lines(results):
        print(line)
    print(f"submission: {args.output} (scores: {args.score} log-likelihood per {'deduplicated ' if scorer.spec.dedup else ''}"
          f"unit; accuracies in {Path(args.output) / 'scores.json'})")
    if errors:
        print(f"error: {len(errors)} wavs could not be scored (listed above); their parts were not written", file=sys.stderr)
    return 1 if errors else 0


def _abx(args: argparse.Namespace) -> int:
    import json

    from audiolm.eval.abx import ABX, read_features, read_items

    features, shift = read_features(Path(args.features), args.frame_shift)
    abx = ABX(read_items(Path(args.item_file)), features, shift, args.max_group, args.max_x)
    scores = {mode: abx.error(mode) for mode in ("within", "across")}
    print(f"ABX error, {args.features} on {args.item_file} (frame shift {shift * 1000:g} ms): "
          f"within speakers {scores['within']:.2f}%, across speakers {scores['across']:.2f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=1) + "\n")
    return 0


def add_commands(commands: argparse._SubParsersAction, codec_args: Callable[[argparse.ArgumentParser], None],
                 device_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    evaluate = commands.add_parser("codec-eval", help="SI-SNR, mel distance, PESQ, STOI, F0 and voicing errors "
                                                      "per number of codebooks, vs Opus")
    codec_args(evaluate)
    evaluate.add_argument("--data", required=True, help="a corpus/token dataset folder or a folder of audio files")
    evaluate.add_argument("--split", default="heldout")
    evaluate.add_argument("--num-codebooks", type=int, nargs="+", default=[1, 2, 4, 8])
    evaluate.add_argument("--max-clips", type=int, default=40, help="per group of voices")
    evaluate.add_argument("--unseen-speakers", nargs="+", default=None, metavar="SPEAKER",
                          help="voices the codec never trained on: scored in rows of their own (a corpus folder's speakers)")
    evaluate.add_argument("--plots", default=None, metavar="DIR", help="spectrogram PNGs of original vs resynthesis")
    evaluate.add_argument("--num-plots", type=int, default=3)
    evaluate.set_defaults(func=_codec_eval)
    sem_eval = commands.add_parser("semantic-eval", help="PNMI, phone/cluster purity, cross-voice consistency of semantic tokens")
    sem_eval.add_argument("--model", required=True, nargs="+",
                          help="semantic tokenizer folders or Hub ids, or spectral baselines fitted on the "
                               "train split: mfcc:K, logmel:K")
    sem_eval.add_argument("--data", required=True, help="a corpus folder (runs/demo/corpus) or a run folder")
    sem_eval.add_argument("--split", default="heldout")
    sem_eval.add_argument("--speakers", nargs="+", default=None, help="only these speakers (e.g. voices the encoder never heard)")
    sem_eval.add_argument("--context", type=int, default=4, help="spectral baselines: +-N stacked frames (default: %(default)s)")
    sem_eval.add_argument("--json", default=None, metavar="OUT.json")
    device_arg(sem_eval)
    sem_eval.set_defaults(func=_semantic_eval)
    score = commands.add_parser("score-lm", help="sWUGGY, sBLIMP, StoryCloze: the semantic LM's score of each wav, "
                                                 "as a ZeroSpeech 2021 submission, with accuracies where answers are known")
    score.add_argument("dataset", metavar="DATASET", help="a folder with lexical/dev, syntactic/dev, ... (sLM21) and/or "
                                                        "StoryCloze folders of <id>_correct.wav / <id>_incorrect.wav")
    score.add_argument("--model", required=True, help="a run folder (runs/demo), a bundle, or its Hub id")
    score.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    score.add_argument("-o", "--output", required=True, metavar="SUBMISSION", help="folder for lexical/dev.txt etc.")
    score.add_argument("--score", choices=["mean", "sum"], default="mean",
                       help="log-likelihood per unit (mean, default: slamkit's) or summed (ZeroSpeech 2021's baselines)")
    score.add_argument("--batch-size", type=int, default=32)
    device_arg(score)
    score.set_defaults(func=_score_lm)
    abx = commands.add_parser("abx", help="ABX error (%) of feature files on a Libri-light item file, within and across speakers")
    abx.add_argument("features", metavar="FEATURES_DIR", help="<stem>.npy or .txt per wav (audiolm tokenize features)")
    abx.add_argument("item_file", metavar="ITEM_FILE", help="#file onset offset #phone prev-phone next-phone speaker")
    abx.add_argument("--frame-shift", type=float, default=None, help="seconds per frame (default: FEATURES_DIR/features.json)")
    abx.add_argument("--max-group", type=int, default=10, help="items per (context, speaker, phone), as Libri-light's")
    abx.add_argument("--max-x", type=int, default=5, help="X speakers per across-speaker group, as Libri-light's")
    abx.add_argument("--json", default=None, metavar="OUT.json")
    abx.set_defaults(func=_abx)
