"""`audiolm` console script: one-off use of trained components on audio files.

    audiolm tokenize semantic --model runs/demo/semantic IN.wav [IN2.wav ...] -o OUTDIR
    audiolm tokenize features --model runs/demo/semantic IN.wav [...] -o OUTDIR [--units] [--format npy|txt]
    audiolm encode --codec runs/demo/codec IN.wav [...] -o OUTDIR [--num-codebooks K]
    audiolm decode --codec runs/demo/codec CODES.npy [...] -o OUTDIR
    audiolm codec-eval --codec runs/demo/codec --data runs/demo/corpus [--num-codebooks 1 2 4 8]
    audiolm semantic-eval --model runs/demo/semantic mfcc:100 --data runs/demo/corpus [--speakers v06 v07]
    audiolm abx FEATURES_DIR ITEM_FILE [--frame-shift S]     # ABX within / across speakers, in %
    audiolm score-lm DATASET --model runs/demo -o SUBMISSION [--score mean|sum]   # sWUGGY, sBLIMP, StoryCloze
    audiolm continue PROMPT.wav -o OUT.wav --model runs/demo [--seconds 4] [--temperature T] [--top-k K]
                     [--top-p P] [--seed S] [--include-prompt]
    audiolm speak "TEXT" --voice PROMPT.wav -o OUT.wav --model RUN [--seed S]     # needs the text LMs
    audiolm transcribe IN.wav [IN2.wav ...] --model RUN [-o OUT.jsonl]
    audiolm convert SOURCE.wav --voice TARGET.wav -o OUT.wav --model RUN [--seed S]
    audiolm serve --model runs/demo [--host 127.0.0.1] [--port 7860] [--max-batch 8] [--queue-size 32]  # a web page
    audiolm push runs/demo USER/REPO [--private] [--token T]    # the run as one bundle on the Hub
    audiolm save runs/demo OUTDIR                               # the same bundle, written locally
    audiolm export runs/demo -o OUTDIR       # the bundle, each LM checked as a stock transformers LlamaForCausalLM
    audiolm import-kmeans KM.bin --encoder MODEL --layer N -o DIR     # a textlesslib/slamkit k-means, no pickle run
    audiolm import-lm slprl/slam_scaled -o DIR [--tokenizer DIR]      # a released unit LM (TWIST, SLAM) as semantic LM
    audiolm finetune runs/demo --data MY_AUDIO/ -o runs/mine [--parts coarse,fine] [--lora R]   # adapt a shared model

Every --model / --codec is a local folder or a Hub id (with --revision). Bad input files are
reported one line each (file and problem) and the command exits
non-zero; the files that were fine are still written.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from audiolm import audio, cli_eval, cli_finetune, cli_interop
from audiolm.files import atomic_write_bytes

PROMPT_TAIL_SECONDS = 60.0  # `continue` reads at most this much of the end of a prompt file


def _each_file(inputs: list[str], output: str, suffix: str, convert) -> int:
    """`convert(path, target)` for every input, writing OUTDIR/<stem><suffix> (the whole file name
    when two inputs share a stem). A bad input is reported in one line naming it and skipped; the
    others are still written; the exit code says whether any was skipped."""
    stems = [Path(p).stem for p in inputs]
    out, failed, written = Path(output), 0, 0
    for path, stem in zip(inputs, stems, strict=True):
        target = out / f"{stem if stems.count(stem) == 1 else Path(path).name}{suffix}"
        try:
            note = convert(path, target)
        except audio.AudioError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        except OSError as err:  # the output side (disk full, read-only): the next file would fail too
            print(f"error: {target}: cannot write ({err.strerror or err}); stopped after writing {written} of "
                  f"{len(inputs)} files, which are complete", file=sys.stderr)
            return 2
        written += 1
        print(f"{path} -> {target} ({note})")
    if failed and len(inputs) > 1:
        print(f"error: skipped {failed} of {len(inputs)} files (listed above); the other {len(inputs) - failed} were written",
              file=sys.stderr)
    return 1 if failed else 0


def _save_npy(target: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()  # serialized first: a failed write then raises the OS's own error (ENOSPC, EROFS)
    np.save(buffer, array)
    atomic_write_bytes(target, buffer.getvalue())


def _tokenize_features(args: argparse.Namespace) -> int:
    """ZeroSpeech feature files: the tokenizer's frames as k-means sees them, or its units one-hot."""
    from audiolm.eval.abx import one_hot, write_feature_record
    from audiolm.semantic.tokenizer import SemanticTokenizer

    tokenizer = SemanticTokenizer.from_pretrained(args.model, revision=args.revision, device=args.device)
    config = tokenizer.config
    kind = "units (one-hot)" if args.units else f"features ({config.backend} layer {config.layer}, normalised)"

    def convert(path: str, target: Path) -> str:
        wav, _ = audio.load(path, tokenizer.sample_rate)
        frames = one_hot(tokenizer.encode([wav])[0], tokenizer.num_clusters) if args.units else \
            tokenizer.normalized_features([wav])[0].numpy()
        if len(frames) == 0:
            raise audio.AudioError(path, "audio too short for a single frame")
        if args.format == "txt":
            buffer = io.StringIO()
            np.savetxt(buffer, frames, fmt="%.6g")
            atomic_write_bytes(target, buffer.getvalue().encode())
        else:
            _save_npy(target, frames.astype(np.float32))
        return f"{frames.shape[0]} frames x {frames.shape[1]}"

    write_feature_record(Path(args.output), 1.0 / tokenizer.frame_rate, kind)
    return _each_file(args.inputs, args.output, f".{args.format}", convert)


def _tokenize_semantic(args: argparse.Namespace) -> int:
    from audiolm.semantic.tokenizer import SemanticTokenizer

    tokenizer = SemanticTokenizer.from_pretrained(args.model, revision=args.revision, device=args.device)

    def convert(path: str, target: Path) -> str:
        wav, _ = audio.load(path, tokenizer.sample_rate)
        ids = tokenizer.encode_long(wav)  # bounded memory for long files; the same ids
        if ids.size == 0:
            raise audio.AudioError(path, "audio too short for a single token frame")
        _save_npy(target, ids.astype(np.int64))
        return f"{ids.size} tokens at {tokenizer.frame_rate:g} Hz"

    return _each_file(args.inputs, args.output, ".npy", convert)


def _load_codec(args: argparse.Namespace):
    from audiolm.codec import load_codec

    return load_codec(args.codec, args.revision, device=args.device)


def _encode(args: argparse.Namespace) -> int:
    import torch

    codec = _load_codec(args)

    def convert(path: str, target: Path) -> str:
        wav, _ = audio.load(path, codec.sample_rate)
        codes = codec.encode_long(torch.from_numpy(wav)[None], args.num_codebooks)[0]
        _save_npy(target, codes.cpu().numpy().astype(np.int64))
        return f"{codes.shape[0]} x {codes.shape[1]} codes at {codec.frame_rate:g} Hz"

    return _each_file(args.inputs, args.output, ".npy", convert)


def _decode(args: argparse.Namespace) -> int:
    import torch

    codec = _load_codec(args)

    def convert(path: str, target: Path) -> str:
        try:
            codes = np.load(path, allow_pickle=False)
            if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
                raise ValueError(f"expected an integer array [k, t], got {codes.dtype} {codes.shape}")
            wav = codec.decode_long(torch.from_numpy(codes.astype(np.int64)).unsqueeze(0))[0].float().cpu().numpy()
        except (OSError, ValueError) as err:
            raise audio.AudioError(path, str(err).splitlines()[0] or type(err).__name__) from None
        audio.save(target, wav, codec.sample_rate)
        return f"{len(wav) / codec.sample_rate:.2f} s at {codec.sample_rate} Hz"

    return _each_file(args.inputs, args.output, ".wav", convert)


def _continue(args: argparse.Namespace) -> int:
    # Before loading the model, so that a bad prompt fails fast; only the end of a long recording is
    # read (the LMs see at most their window of it).
    wav, rate = audio.load(args.prompt, last_seconds=PROMPT_TAIL_SECONDS)
    if args.stream:
        return _continue_stream(args, wav, rate)
    return _generate_wav(args, lambda model, sampling: model.continue_speech(
        wav, rate, args.seconds, args.seed, args.include_prompt, sampling), lambda err: args.prompt,
        f"{args.prompt} -> {args.output}", ", prompt included" if args.include_prompt else "")


def _continue_stream(args: argparse.Namespace, wav: np.ndarray, rate: int) -> int:
    import time

    from audiolm.continuation import AudioLM

    model = AudioLM.from_pretrained(args.model, revision=args.revision, device=args.device)
    sampling = model.sampling_with(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    start, first = time.perf_counter(), []

    def chunks():
        try:
            for chunk in model.continue_speech_stream(wav, rate, args.seconds, args.seed, sampling,
                                                      include_prompt=args.include_prompt):
                if not first:
                    first.append(time.perf_counter() - start)
                yield chunk
        except audio.AudioError as err:
            raise audio.AudioError(args.prompt, err.problem) from None

    samples = audio.save_stream(args.output, chunks(), model.codec.sample_rate)
    print(f"{args.prompt} -> {args.output} ({samples / model.codec.sample_rate:.2f} s at {model.codec.sample_rate} Hz, "
          f"streamed: first audio after {first[0]:.2f} s, all after {time.perf_counter() - start:.2f} s"
          f"{', prompt included' if args.include_prompt else ''})")
    return 0


def _generate_wav(args: argparse.Namespace, generate, source_of, what: str, note: str) -> int:
    """Load --model, `generate(model, sampling)` a wav and write it to --output; an AudioError is
    re-raised naming the file it came from (`source_of(err)`)."""
    from audiolm.continuation import AudioLM

    model = AudioLM.from_pretrained(args.model, revision=args.revision, device=args.device)
    try:
        out = generate(model, model.sampling_with(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p))
    except audio.AudioError as err:
        raise audio.AudioError(source_of(err), err.problem) from None
    audio.save(args.output, out, model.codec.sample_rate)
    print(f"{what} ({len(out) / model.codec.sample_rate:.2f} s at {model.codec.sample_rate} Hz{note})")
    return 0


def _speak(args: argparse.Namespace) -> int:
    voice = rate = None
    if args.voice:  # before loading the model: a bad prompt fails fast
        voice, rate = audio.load(args.voice, last_seconds=PROMPT_TAIL_SECONDS)
    if not args.text.strip():
        raise ValueError("text: empty; give a sentence to speak")
    return _generate_wav(args, lambda model, sampling: model.speak(args.text, voice, rate or 16000, args.seed, sampling),
                         lambda err: args.voice, f"-> {args.output}",
                         f", {'the voice of ' + args.voice if args.voice else 'a voice of the corpus'}")


def _transcribe(args: argparse.Namespace) -> int:
    import json

    from audiolm.continuation import AudioLM

    model = AudioLM.from_pretrained(args.model, revision=args.revision, device=args.device)
    model._text_model("transcription")
    rows, failed = [], 0
    for path in args.inputs:
        try:
            wav, rate = audio.load(path)
            (text,) = model.transcribe([wav], rate, names=[path])
        except audio.AudioError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        rows.append({"path": path, "text": text})
        print(f"{path}\t{text}")
    if args.output:
        atomic_write_bytes(Path(args.output), "".join(json.dumps(r) + "\n" for r in rows).encode())
    return 1 if failed else 0


def _convert(args: argparse.Namespace) -> int:
    source, rate = audio.load(args.source)
    voice, voice_rate = audio.load(args.voice, last_seconds=PROMPT_TAIL_SECONDS)
    return _generate_wav(args, lambda model, sampling: model.convert(source, rate, voice, voice_rate, args.seed, sampling),
                         lambda err: args.voice if err.source == "voice prompt" else args.source,
                         f"{args.source} -> {args.output}", f", in the voice of {args.voice}")


def _push(args: argparse.Namespace) -> int:
    from audiolm.pipeline import share

    try:
        url = share.push(args.run, args.repo_id, args.private, args.token)
    except (OSError, ValueError):
        raise  # a bad run folder: main prints it
    except Exception as err:  # the Hub's own errors (not logged in, no network) are not OSErrors
        raise OSError(f"push to {args.repo_id} failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
                      "(is the Hub reachable, and are you logged in: `hf auth login` or --token?)") from None
    print(f"{args.run} -> https://huggingface.co/{args.repo_id} ({'private' if args.private else 'public'}; commit {url})")
    return 0


def _save(args: argparse.Namespace) -> int:
    from audiolm.pipeline import share

    out = share.save(args.run, args.output, args.repo_id)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    print(f"{args.run} -> {out} ({len(files)} files: what `audiolm push` would upload)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from audiolm import web
    except ModuleNotFoundError as err:
        if err.name != "gradio":
            raise
        raise OSError("the web page needs gradio: pip install -e '.[web]' (or `make serve`)") from None
    web.serve(args.model, args.host, args.port, args.revision, max_batch=args.max_batch, queue_size=args.queue_size,
              device=args.device)
    return 0


def device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="where the models run: auto (a CUDA GPU where there is one, else the CPU), cpu, cuda, cuda:N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audiolm", description="Token-based audio language model pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)
    tokenize = commands.add_parser("tokenize", help="audio files -> token ids (.npy)")
    kinds = tokenize.add_subparsers(dest="kind", required=True)
    semantic = kinds.add_parser("semantic", help="semantic token ids, one int64 row per file")
    semantic.add_argument("--model", required=True, help="semantic tokenizer folder (runs/demo/semantic) or Hub id")
    semantic.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    device_arg(semantic)
    semantic.add_argument("inputs", nargs="+", metavar="IN.wav")
    semantic.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    semantic.set_defaults(func=_tokenize_semantic)
    features = kinds.add_parser("features", help="ZeroSpeech feature files for ABX and other scorers: one 2-D array "
                                                 "[frames, dim] per file, the frame shift in OUTDIR/features.json")
    features.add_argument("--model", required=True, help="semantic tokenizer folder (runs/demo/semantic) or Hub id")
    features.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    device_arg(features)
    features.add_argument("--units", action="store_true", help="the units, one-hot, instead of the features k-means sees")
    features.add_argument("--format", choices=["npy", "txt"], default="npy", help="txt: as ZeroSpeech 2021 submissions")
    features.add_argument("inputs", nargs="+", metavar="IN.wav")
    features.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    features.set_defaults(func=_tokenize_features)

    def codec_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--codec", required=True, help="codec folder (runs/demo/codec) or Hub id (facebook/encodec_24khz)")
        p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
        device_arg(p)

    encode = commands.add_parser("encode", help="audio files -> acoustic codes (.npy, int64 [k, t])")
    codec_args(encode)
    encode.add_argument("inputs", nargs="+", metavar="IN.wav")
    encode.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    encode.add_argument("--num-codebooks", type=int, default=None, help="fewer codebooks = lower bitrate")
    encode.set_defaults(func=_encode)
    decode = commands.add_parser("decode", help="acoustic codes (.npy [k, t]) -> wav at the codec's rate")
    codec_args(decode)
    decode.add_argument("inputs", nargs="+", metavar="CODES.npy")
    decode.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    decode.set_defaults(func=_decode)
    cli_eval.add_commands(commands, codec_args, device_arg)
    cli_interop.add_commands(commands, device_arg)
    cli_finetune.add_commands(commands)
    cont = commands.add_parser("continue", help="continue speech from a prompt (semantic -> coarse -> fine -> codec)")
    cont.add_argument("prompt", metavar="PROMPT.wav", help="any rate, mono or multi-channel")
    cont.add_argument("-o", "--output", required=True, metavar="OUT.wav")

    def model_args(p: argparse.ArgumentParser, sampling: bool = True) -> None:
        p.add_argument("--model", required=True, help="a run folder (runs/demo) or a Hub id with the same layout")
        p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
        device_arg(p)
        if sampling:
            p.add_argument("--temperature", type=float, default=None, help="every stage (default: the run's config)")
            p.add_argument("--top-k", type=int, default=None)
            p.add_argument("--top-p", type=float, default=None)
            p.add_argument("--seed", type=int, default=0, help="the same seed gives the same audio")

    cont.add_argument("--seconds", type=float, default=4.0, help="seconds to generate (default: %(default)s)")
    cont.add_argument("--include-prompt", action="store_true", help="write prompt + continuation")
    cont.add_argument("--stream", action="store_true",
                      help="write OUT.wav.part as the audio is generated (a player can follow it), OUT.wav when done")
    model_args(cont)
    cont.set_defaults(func=_continue)
    speak = commands.add_parser("speak", help="text -> speech in the voice of a prompt (reading, coarse, fine, codec)")
    speak.add_argument("text", metavar="TEXT", help="any English text (eSpeak NG's rules give its phones)")
    speak.add_argument("--voice", default=None, metavar="PROMPT.wav", help="a voice to speak in (default: one of the corpus)")
    speak.add_argument("-o", "--output", required=True, metavar="OUT.wav")
    model_args(speak)
    speak.set_defaults(func=_speak)
    transcribe = commands.add_parser("transcribe", help="speech -> text (semantic ids, then the transcription LM)")
    transcribe.add_argument("inputs", nargs="+", metavar="IN.wav")
    transcribe.add_argument("-o", "--output", default=None, metavar="OUT.jsonl", help="also write {path, text} lines")
    model_args(transcribe, sampling=False)
    transcribe.set_defaults(func=_transcribe)
    convert = commands.add_parser("convert", help="voice conversion: the words of SOURCE in the voice of --voice")
    convert.add_argument("source", metavar="SOURCE.wav")
    convert.add_argument("--voice", required=True, metavar="TARGET.wav")
    convert.add_argument("-o", "--output", required=True, metavar="OUT.wav")
    model_args(convert)
    convert.set_defaults(func=_convert)
    serve = commands.add_parser("serve", help="a web page to try the model: continue, speak, convert, transcribe")
    model_args(serve, sampling=False)
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines (default: this one only)")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--max-batch", type=int, default=8, help="continuations generated together (default: %(default)s)")
    serve.add_argument("--queue-size", type=int, default=32,
                       help="requests that may wait; more are told the page is busy (default: %(default)s)")
    serve.set_defaults(func=_serve)
    push = commands.add_parser("push", help="upload a run (semantic tokenizer, codec, three LMs, model card) as one Hub repo")
    push.add_argument("run", metavar="RUN_DIR", help="a run folder after stage 3 (stage 4's numbers go into the card)")
    push.add_argument("repo_id", metavar="REPO_ID", help="user/name or org/name; created if missing")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--token", default=None, help="Hub token (default: the one `hf auth login` stored)")
    push.set_defaults(func=_push)
    save = commands.add_parser("save", help="write the bundle `push` would upload to a local folder")
    save.add_argument("run", metavar="RUN_DIR")
    save.add_argument("output", metavar="OUTDIR")
    save.add_argument("--repo-id", default="REPO_ID", help="the id the model card's usage snippet shows")
    save.set_defaults(func=_save)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError) as err:  # a wrong --codec/--model/--data: one line, no traceback
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
