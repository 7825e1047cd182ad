"""Stage 2: train our codec (or reference a pretrained one), then add acoustic codes to the tokens.

Outputs: `runs/<name>/codec/` (loadable with `audiolm.codec.load_codec`), training state in
`runs/<name>/codec-train/` (checkpoints, TensorBoard, log.jsonl; a killed run resumes from the
last checkpoint), and an `acoustic_codes` column ([k, t] per utterance) in `runs/<name>/tokens/`,
joined to stage 1 by id, with the codec's frame rate recorded in its stage.json.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm

from audiolm.codec import Codec, load_codec
from audiolm.codec.source_filter import SourceFilterCodec, SourceFilterCodecConfig
from audiolm.config import CodecConfig, PipelineConfig, config_hash
from audiolm.data.corpus import read_wavs
from audiolm.pipeline import corpus_stage, rundir
from audiolm.train import distributed
from audiolm.train.codec_task import CodecTask
from audiolm.train.trainer import Trainer

SHARD_SIZE = 256


OURS = ("source-filter",)


def codec_hash(cfg: PipelineConfig) -> str:
    c = cfg.codec
    if c.model not in OURS:  # a pretrained codec depends on nothing we train
        return config_hash("codec-pretrained", c.model, c.revision, c.num_codebooks)
    return config_hash(f"codec-{c.model}", c, corpus_stage.corpus_hash(cfg))


def build_codec(c: CodecConfig) -> SourceFilterCodec:
    """A new (untrained) codec of ours, as `codec.model` names it."""
    if c.model != "source-filter":
        raise ValueError(f"codec.model '{c.model}' is not a codec we train (ours: {', '.join(OURS)})")
    return SourceFilterCodec(SourceFilterCodecConfig(
        sample_rate=c.sample_rate, hop_length=c.hop_length, stft_hop=c.stft_hop, n_fft=c.n_fft, dim=c.dim,
        ffn_dim=c.ffn_dim, encoder_layers=c.encoder_layers, decoder_layers=c.decoder_layers, latent_dim=c.latent_dim,
        num_codebooks=c.num_codebooks, codebook_size=c.codebook_size, quantizer_dropout=c.quantizer_dropout,
        commitment_weight=c.commitment_weight, pitch_steps=c.pitch_steps))


def train_codec(cfg: PipelineConfig, corpus: datasets.DatasetDict, corpus_rate: int,
                out: Path) -> SourceFilterCodec:
    torch.manual_seed(cfg.codec.train.seed)
    codec = build_codec(cfg.codec)
    excluded = set(cfg.codec.exclude_speakers)
    rows = [i for i, s in enumerate(corpus["train"]["speaker"]) if s not in excluded]
    if not rows:
        raise ValueError(f"codec.exclude_speakers={sorted(excluded)} leaves no training utterances")
    train = read_wavs(corpus["train"], rows, corpus_rate, codec.sample_rate)
    heldout_rows = [i for i, s in enumerate(corpus["heldout"]["speaker"]) if s not in excluded][:16]
    heldout = read_wavs(corpus["heldout"], heldout_rows, corpus_rate, codec.sample_rate)
    task = CodecTask(codec, cfg.codec, train, heldout)
    work = cfg.run_dir / "codec-train"
    distributed.on_main(rundir.prepare_partial, work, codec_hash(cfg), "codec-train")
    params = sum(p.numel() for p in codec.parameters()) / 1e6
    distributed.print_main(
        f"stage 2 (codec): training a {params:.1f}M-parameter {cfg.codec.model} codec, {codec.frame_rate:g} Hz x "
        f"{codec.num_codebooks} codebooks of {codec.codebook_size} ({codec.bitrate() / 1000:g} kbps), "
        f"{cfg.codec.train.steps} steps on {len(rows)} utterances"
        + (f" (left out: {', '.join(sorted(excluded))})" if excluded else ""))
    trainer = Trainer(task, cfg.codec.train, work)
    trainer.fit(on_eval=lambda m: tqdm.write(f"  step {trainer.step}: held-out mel distance {m['mel_distance']:.3f}, "
                                             f"SI-SNR {m['si_snr']:.1f} dB"))
    codec = trainer.accelerator.unwrap_model(task.models["codec"]).cpu().eval()
    if cfg.codec.train.ema_decay and "codec" in trainer.ema:
        codec.load_state_dict(trainer.ema["codec"])
    distributed.on_main(codec.save_pretrained, out)
    return codec


def _encode_split(codec: Codec, split: str, ds: datasets.Dataset, corpus_rate: int, partial: Path,
                  progress: tqdm, workers: int = 1) -> datasets.Dataset:
    durations = ds["duration"]

    def make_shard(indices: list[int]) -> datasets.Dataset:
        codes = []
        for i in indices:  # one utterance at a time: no padding can leak into the codes
            (wav,) = read_wavs(ds, [i], corpus_rate, codec.sample_rate)
            wav = torch.from_numpy(wav).unsqueeze(0)
            c = codec.encode(wav)[0, :, : codec.num_frames(wav.shape[-1])]
            codes.append(c.to(torch.int16).tolist())
        return datasets.Dataset.from_dict({"id": ds.select(indices)["id"], "acoustic_codes": codes})

    return rundir.sharded(ds.num_rows, split, partial, SHARD_SIZE, make_shard,
                          lambda indices: progress.update(sum(durations[i] for i in indices)), workers)


def run(cfg: PipelineConfig, force: bool = False) -> Path:
    corpus = corpus_stage.load(cfg)
    corpus_rate = rundir.read_marker(corpus_stage.corpus_dir(cfg))["sample_rate"]
    tokens_dir, codec_dir = cfg.run_dir / "tokens", cfg.run_dir / "codec"
    tokens_marker = rundir.read_marker(tokens_dir)
    if tokens_marker is None:
        raise FileNotFoundError(f"{tokens_dir}: no token dataset yet; run stage 1 first (make stage-1)")
    digest = codec_hash(cfg)
    if not force and tokens_marker.get("acoustic_hash") == digest and rundir.is_up_to_date(codec_dir, digest, saved_part=True):
        print(f"stage 2 (codec): {codec_dir} and the acoustic codes in {tokens_dir} are up to date")
        return codec_dir
    if force or not rundir.is_up_to_date(codec_dir, digest, saved_part=True):
        if cfg.codec.model in OURS:
            train_codec(cfg, corpus, corpus_rate, codec_dir)  # in every process under `accelerate launch`
        elif distributed.is_main():
            load_codec(cfg.codec.model, cfg.codec.revision or None, cfg.codec.num_codebooks).save_pretrained(codec_dir)
        if distributed.is_main():
            rundir.write_marker(codec_dir, digest, stage="codec")
            rundir.write_resolved_config(cfg, codec_dir)
    if not distributed.is_main():  # the main process alone encodes the corpus
        return codec_dir
    codec = load_codec(codec_dir).eval()
    partial = cfg.run_dir / ".acoustic.partial"
    rundir.prepare_partial(partial, digest, "acoustic-codes")
    tokens = datasets.load_from_disk(str(tokens_dir))
    total = sum(sum(corpus[s]["duration"]) for s in corpus)
    with tqdm(total=total, desc="stage 2: encoding", unit="s audio",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}, {rate_fmt}]") as progress:
        codes = {s: _encode_split(codec, s, corpus[s], corpus_rate, partial, progress, cfg.data.workers)
                 for s in corpus}
    joined = {}
    for split, table in tokens.items():
        if table["id"] != codes[split]["id"]:
            raise ValueError(f"{tokens_dir}: split '{split}' does not list the corpus' utterances; rerun stage 1")
        base = table.remove_columns([c for c in ("acoustic_codes",) if c in table.column_names])
        joined[split] = base.add_column("acoustic_codes", codes[split]["acoustic_codes"])
    rundir.save_dataset(datasets.DatasetDict(joined), tokens_dir)
    info = {k: v for k, v in tokens_marker.items() if k not in ("finished",)}
    info.update(acoustic_hash=digest, acoustic_frame_rate=codec.frame_rate, acoustic_num_codebooks=codec.num_codebooks,
                acoustic_codebook_size=codec.codebook_size, acoustic_sample_rate=codec.sample_rate, codec="codec",
                codec_config=dataclasses.asdict(cfg.codec))
    rundir.write_marker(tokens_dir, info.pop("config_hash"), **info)
    rundir.write_resolved_config(cfg, tokens_dir)
    shutil.rmtree(partial, ignore_errors=True)
    print(f"stage 2 (codec): wrote acoustic codes to {tokens_dir} ({codec.frame_rate:g} Hz, {codec.num_codebooks} x "
          f"{codec.codebook_size})")
    return codec_dir
