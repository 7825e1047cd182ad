"""Stage 2: train our codec (or reference a pretrained one), then encode the corpus.

Outputs: `runs/<name>/codec/` (loadable with `audiolm.codec.load_codec`), training state in
`runs/<name>/codec-train/` (checkpoints, TensorBoard, log.jsonl; a killed run resumes from the
last checkpoint), and `runs/<name>/acoustic/`: a sharded table of id and `acoustic_codes` ([k, t]
per utterance, in the smallest integer type of the codebook) row for row with the corpus, with the
codec's frame rate in its stage.json. Stage 3 reads it beside stage 1's `tokens/`
(`lm_stage.read_tokens`); encoding goes shard by shard into `runs/<name>/.acoustic.partial/`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm

from audiolm.codec import Codec, load_codec
from audiolm.codec.source_filter import SourceFilterCodec, SourceFilterCodecConfig
from audiolm.config import CodecConfig, PipelineConfig, config_hash
from audiolm.data import shards
from audiolm.data.corpus import CorpusAudio, read_wavs, wav_batches
from audiolm.data.prefetch import prefetch
from audiolm.hub import part_hash, resolve_folder
from audiolm.lm.lora import add_lora, has_lora, merge_lora
from audiolm.pipeline import corpus_stage, rundir
from audiolm.tokens import id_dtype
from audiolm.train import distributed
from audiolm.train.codec_task import CodecTask
from audiolm.train.trainer import Trainer

FORMAT = 2  # 2: a table of its own (acoustic/), batched encoding, codes in the smallest integer type


def acoustic_dir(cfg: PipelineConfig) -> Path:
    return cfg.run_dir / "acoustic"


OURS = ("source-filter",)


def codec_hash(cfg: PipelineConfig) -> str:
    c = cfg.codec
    if c.init_from:  # a bundle's, as it is or trained on: its content, and the training when there is some
        parent = part_hash(c.init_from, "codec")
        if not c.train.steps:
            return config_hash("codec-from", parent)
        trained = {k: v for k, v in dataclasses.asdict(c).items() if k in ("segment_seconds", "augment", "augmentation",
                                                                             "exclude_speakers", "train", "lora")}
        return config_hash("codec-from", parent, trained, corpus_stage.corpus_hash(cfg))
    if c.model not in OURS:  # a pretrained codec depends on nothing we train
        return config_hash("codec-pretrained", c.model, c.revision, c.num_codebooks)
    # how the corpus is encoded after does not change the codec; nor does a key left empty
    trained = {k: v for k, v in dataclasses.asdict(c).items()
               if k != "batch_seconds" and not (k in ("init_from", "lora") and not v)}
    return config_hash(f"codec-{c.model}", trained, corpus_stage.corpus_hash(cfg))


def build_codec(c: CodecConfig) -> SourceFilterCodec:
    """A new (untrained) codec of ours, as `codec.model` names it."""
    if c.model != "source-filter":
        raise ValueError(f"codec.model '{c.model}' is not a codec we train (ours: {', '.join(OURS)})")
    return SourceFilterCodec(SourceFilterCodecConfig(
        sample_rate=c.sample_rate, hop_length=c.hop_length, stft_hop=c.stft_hop, n_fft=c.n_fft, dim=c.dim,
        ffn_dim=c.ffn_dim, encoder_layers=c.encoder_layers, decoder_layers=c.decoder_layers, latent_dim=c.latent_dim,
        num_codebooks=c.num_codebooks, codebook_size=c.codebook_size, quantizer_dropout=c.quantizer_dropout,
        commitment_weight=c.commitment_weight, pitch_steps=c.pitch_steps))


def acoustic_hash(cfg: PipelineConfig) -> str:
    """The acoustic codes: the codec, the corpus and the encoding batches (padding reaches the last
    frames of an utterance through the encoder's receptive field)."""
    return config_hash("acoustic-codes", codec_hash(cfg), corpus_stage.corpus_hash(cfg), cfg.codec.batch_seconds, FORMAT)


DECODER_LINEAR = r"decoder\.(blocks\.\d+\.mlp\.[02]|out)"


def start_codec(c: CodecConfig) -> SourceFilterCodec:
    """The codec training starts from: a new one, or the bundle's (`init_from`), which must be ours, with
    only its decoder to train (the codes keep their meaning for the bundle's LMs)."""
    if not c.init_from:
        return build_codec(c)
    codec = load_codec(resolve_folder(c.init_from, subfolder="codec"))
    if not isinstance(codec, SourceFilterCodec):
        raise ValueError(f"codec.init_from: the codec of {c.init_from} is {type(codec).__name__}, which audiolm cannot "
                         "train on (ours, source-filter, only); leave codec out of the parts to fine-tune")
    codec.freeze_codes()
    if c.lora:  # the decoder's linear layers (its ConvNeXt blocks' MLPs and its output); merged when saved
        add_lora(codec, c.lora, DECODER_LINEAR)
    return codec


def train_codec(cfg: PipelineConfig, corpus: datasets.DatasetDict, corpus_rate: int,
                out: Path) -> SourceFilterCodec:
    torch.manual_seed(cfg.codec.train.seed)
    codec = start_codec(cfg.codec)
    excluded = set(cfg.codec.exclude_speakers)
    rows = [i for i, s in enumerate(corpus["train"]["speaker"]) if s not in excluded]
    if not rows:
        raise ValueError(f"codec.exclude_speakers={sorted(excluded)} leaves no training utterances")
    train = CorpusAudio(corpus["train"], rows, corpus_rate, codec.sample_rate)  # crops read from disk
    heldout_rows = [i for i, s in enumerate(corpus["heldout"]["speaker"]) if s not in excluded][:16]
    # training-time evaluation on at most 10 s a clip (segments of long files run to data.max_seconds)
    heldout = [w[: 10 * codec.sample_rate] for w in read_wavs(corpus["heldout"], heldout_rows, corpus_rate, codec.sample_rate)]
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
    if has_lora(codec):
        merge_lora(codec)
    distributed.on_main(codec.save_pretrained, out)
    return codec


def _encode_split(codec: Codec, split: str, ds: datasets.Dataset, corpus_rate: int, partial: Path,
                  batch_seconds: float, progress: tqdm, shard_size: int) -> None:
    durations = ds["duration"]
    features = datasets.Features({"id": datasets.Value("string"), "acoustic_codes": datasets.Sequence(
        datasets.Sequence(datasets.Value(id_dtype(codec.codebook_size))))})
    device = next(codec.parameters()).device

    @torch.inference_mode()
    def make_shard(indices: list[int]) -> datasets.Dataset:
        codes = {}
        # batches of similar lengths, zero-padded; each utterance's codes cut to its own frames
        ahead = 0 if device.type == "cpu" else 2  # on a GPU: the next batches read while this one encodes
        for batch, wavs in prefetch(wav_batches(ds, indices, corpus_rate, codec.sample_rate, batch_seconds), ahead):
            padded = torch.zeros(len(wavs), max(len(w) for w in wavs))
            for row, wav in enumerate(wavs):
                padded[row, : len(wav)] = torch.from_numpy(wav)
            out = codec.encode(padded.to(device, non_blocking=True)).cpu().numpy()
            for row, (i, wav) in enumerate(zip(batch, wavs, strict=True)):
                codes[i] = out[row, :, : codec.num_frames(len(wav))]
        return datasets.Dataset.from_dict({"id": ds.select(indices)["id"], "acoustic_codes": [codes[i] for i in indices]},
                                          features=features)

    rundir.sharded(ds.num_rows, split, partial, shard_size, make_shard,
                   lambda indices: progress.update(sum(durations[i] for i in indices)))


def run(cfg: PipelineConfig, force: bool = False) -> Path:
    """Under `accelerate launch` our codec trains in every process, then every process encodes its
    shards of the corpus (on its own GPU where there is one) and the main one moves them into place."""
    corpus = corpus_stage.load(cfg)
    corpus_rate = rundir.read_marker(corpus_stage.corpus_dir(cfg))["sample_rate"]
    out, codec_dir = acoustic_dir(cfg), cfg.run_dir / "codec"
    digest, codes_digest = codec_hash(cfg), acoustic_hash(cfg)
    if not force and rundir.is_up_to_date(out, codes_digest) and rundir.is_up_to_date(codec_dir, digest, saved_part=True):
        distributed.print_main(f"stage 2 (codec): {codec_dir} and the acoustic codes in {out} are up to date")
        return codec_dir
    if force or not rundir.is_up_to_date(codec_dir, digest, saved_part=True):
        if cfg.codec.init_from and not cfg.codec.train.steps:  # the bundle's, as it is
            if distributed.is_main():
                load_codec(resolve_folder(cfg.codec.init_from, subfolder="codec")).save_pretrained(codec_dir)
        elif cfg.codec.model in OURS or cfg.codec.init_from:
            train_codec(cfg, corpus, corpus_rate, codec_dir)  # in every process under `accelerate launch`
        elif distributed.is_main():
            load_codec(cfg.codec.model, cfg.codec.revision or None, cfg.codec.num_codebooks).save_pretrained(codec_dir)
        if distributed.is_main():
            rundir.write_marker(codec_dir, digest, stage="codec")
            rundir.write_resolved_config(cfg, codec_dir)
        distributed.wait()
    codec = load_codec(codec_dir).eval().to(distributed.state().device)
    partial = cfg.run_dir / ".acoustic.partial"
    distributed.on_main(rundir.prepare_partial, partial, codes_digest, "acoustic-codes", force)
    total = sum(sum(corpus[s]["duration"]) for s in corpus)
    start = time.monotonic()
    with tqdm(total=total, desc="stage 2: encoding", unit="s audio", disable=None if distributed.is_main() else True,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}, {rate_fmt}]") as progress:
        for split in corpus:
            _encode_split(codec, split, corpus[split], corpus_rate, partial, cfg.codec.batch_seconds, progress,
                          cfg.data.shard_size)
    distributed.wait()  # every process's shards are there
    if not distributed.is_main():
        return codec_dir
    rundir.finish_partial(partial, out, codes_digest, stage="acoustic-codes", acoustic_hash=codes_digest,
                          acoustic_frame_rate=codec.frame_rate, acoustic_num_codebooks=codec.num_codebooks,
                          acoustic_codebook_size=codec.codebook_size, acoustic_sample_rate=codec.sample_rate,
                          codec="codec", codec_config=dataclasses.asdict(cfg.codec),
                          encode_seconds=round(time.monotonic() - start, 2), processes=distributed.world_size())
    rundir.write_resolved_config(cfg, out)
    print(f"stage 2 (codec): wrote acoustic codes to {out} ({codec.frame_rate:g} Hz, {codec.num_codebooks} x "
          f"{codec.codebook_size}, {shards.disk_bytes(out) / 2**20:.1f} MB)")
    return codec_dir
