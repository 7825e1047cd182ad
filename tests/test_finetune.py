"""`audiolm finetune` on the tiny pipeline: full and LoRA fine-tunes change only the parts asked for,
a killed fine-tune resumes, an adapter bundle loads (its parent checked) and continues, and the merged
bundle gives the outputs of parent + adapter (also through stock transformers + PEFT)."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from audiolm import audio, cli
from audiolm.continuation import AudioLM
from audiolm.data.espeak import Voice, synthesize
from audiolm.hub import content_hash
from audiolm.lm.sequences import TASKS
from audiolm.pipeline import adapt, finetune, lm_stage
from audiolm.train.trainer import Trainer


@pytest.fixture(scope="module")
def new_voice(tmp_path_factory):
    """A manifest of 10 sentences by a voice the tiny run never heard (8 train, 2 held out)."""
    folder = tmp_path_factory.mktemp("new-voice")
    voice = Voice("en-gb-x-rp+klatt3", pitch=75, pitch_range=60, rate=170)
    texts = [f"Sentence number {n} was read aloud by the new voice today." for n in
             ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")]
    rows = [("path", "text", "speaker", "split")]
    for i, s in enumerate(synthesize([(t, voice) for t in texts])):
        audio.save(folder / f"{i}.wav", s.wav, s.sample_rate)
        rows.append((f"{i}.wav", texts[i], "new", "train" if i < 8 else "heldout"))
    with open(folder / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return folder / "manifest.csv"


def _weights(model: AudioLM) -> dict[str, dict[str, torch.Tensor]]:
    """The codec's and the three LMs' weights (a fine-tune does not carry the parent's text LMs)."""
    parts = {f"lm-{t}": model.models[t].state_dict() for t in TASKS}
    return {**parts, "codec": model.codec.state_dict()}


def _changed(a: dict, b: dict) -> dict[str, set[str]]:
    """part -> the top-level modules whose weights differ."""
    return {part: {k.split(".")[0] for k in a[part] if not torch.equal(a[part][k], b[part][k])} for part in a}


def _finetune(capsys, *args) -> str:
    rc = cli.main(["finetune", *map(str, args)])
    out, err = capsys.readouterr()
    assert rc == 0, err[-2000:]
    return out


def test_full_finetune_killed_midway_resumes_and_changes_only_its_part(tiny_continuations, new_voice, tmp_path, capsys,
                                                                      monkeypatch):
    parent = tiny_continuations.run_dir
    run = tmp_path / "full"
    args = [parent, "--data", new_voice, "-o", run, "--parts", "coarse", "--steps", 8]
    save = Trainer.save

    def killed_after_step_4(self):
        path = save(self)
        if self.step == 4:
            raise KeyboardInterrupt  # as a kill right after the checkpoint
        return path

    monkeypatch.setattr(Trainer, "save", killed_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["finetune", *map(str, args)])
    monkeypatch.setattr(Trainer, "save", save)
    out = _finetune(capsys, *args)
    assert "resuming from step 4" in out
    marker = json.loads((run / "lm-coarse" / "stage.json").read_text())
    assert marker["steps"] == 8 and marker["steps_this_run"] == 4 and marker["trained"] == "full"
    # measured before and after, on the new voice and on the tiny run's own held-out data
    assert set(marker["before"]) == set(marker["after"]) == {"new", "old"}
    assert marker["after"]["new"] < marker["before"]["new"]
    assert "| coarse | full | 8 |" in out
    for task in ("semantic", "fine"):  # kept as they are: a reference to the parent, no weights
        kept = run / f"lm-{task}"
        assert json.loads((kept / "config.json").read_text())["adapter"]["rank"] == 0
        assert not list(kept.glob("*.safetensors"))
    before, after = AudioLM.from_pretrained(parent), AudioLM.from_pretrained(run)
    changed = _changed(_weights(before), _weights(after))
    assert changed.pop("lm-coarse") >= {"model", "lm_head"}
    assert not any(changed.values()), changed
    assert content_hash(run / "semantic") == content_hash(parent / "semantic")  # tokenized with the parent's own
    # the same command again: every stage up to date, nothing retrained
    assert "lm-coarse is up to date" in _finetune(capsys, *args)


def test_lora_adapters_load_on_their_parent_and_merge_to_the_same_outputs(tiny_continuations, new_voice, tmp_path, capsys):
    from peft import PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from audiolm.lm.lora import ADAPTER_WEIGHTS, add_lora
    from audiolm.lm.model import Decoder
    from audiolm.lm.sequences import TaskSpec
    from audiolm.pipeline import share

    bundle = share.save(tiny_continuations.run_dir, tmp_path / "bundle")  # a saved bundle as the parent
    run = tmp_path / "lora"
    out = _finetune(capsys, bundle, "--data", new_voice, "-o", run, "--parts", "semantic,fine,codec", "--lora", 2,
                    "--steps", 6, "--lr", 0.02)
    assert "| fine | lora-2 | 6 |" in out
    parent, adapted = AudioLM.from_pretrained(bundle), AudioLM.from_pretrained(run)
    changed = _changed(_weights(parent), _weights(adapted))
    assert changed.pop("codec") == {"decoder"}  # the codes keep their meaning: encoder and codebooks untouched
    assert changed.pop("lm-semantic") == changed.pop("lm-fine") == {"model"}  # the projections, merged in
    assert not any(changed.values()), changed
    for task in ("semantic", "fine"):  # small: the adapters only, beside the reference
        folder = run / f"lm-{task}"
        assert (folder / ADAPTER_WEIGHTS).stat().st_size < (bundle / f"lm-{task}" / "model.safetensors").stat().st_size / 2
        assert not (folder / "model.safetensors").exists()
    # parent + adapter, unmerged (PEFT's LoRA layers), scores the held-out tokens as the merged model does
    rows = list(lm_stage.utterances(lm_stage.read_tokens(adapt.parent_run(run))[0]["heldout"]))
    for task in ("semantic", "fine"):
        unmerged = add_lora(Decoder.from_pretrained(bundle / f"lm-{task}"), 2)
        set_peft_model_state_dict(unmerged, {k.removeprefix("base_model.model."): v
                                             for k, v in load_file(run / f"lm-{task}" / ADAPTER_WEIGHTS).items()})
        merged_lm = Decoder.from_pretrained(run / f"lm-{task}")
        spec = TaskSpec.from_dict(merged_lm.task)
        ppl = adapt.perplexity(unmerged, spec, rows)
        assert ppl == pytest.approx(adapt.perplexity(merged_lm, spec, rows), rel=1e-5)
        assert ppl != adapt.perplexity(Decoder.from_pretrained(bundle / f"lm-{task}"), spec, rows)
    # the merged bundle `audiolm save` writes: the same model, standalone, continuing to the same audio
    merged = share.save(run, tmp_path / "merged")
    card = (merged / "README.md").read_text()  # the card names the parent and how each part was adapted
    assert f"Adapted from `{bundle}`" in card and "fine LoRA rank 2" in card and "coarse as it was" in card
    again = AudioLM.from_pretrained(merged)
    wav, rate = audio.load(new_voice.parent / "9.wav")
    a = adapted.continue_speech(wav[: rate], rate, seconds=0.5, seed=3)
    b = again.continue_speech(wav[: rate], rate, seconds=0.5, seed=3)
    assert np.array_equal(a, b) and len(a) >= int(0.5 * adapted.codec.sample_rate)
    # stock transformers + PEFT read the semantic LM's adapter as it is (our names are Llama's)
    stock = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bundle / "lm-semantic"), run / "lm-semantic")
    ids = torch.randint(3, 30, (2, 24))
    with torch.no_grad():
        ours = Decoder.from_pretrained(merged / "lm-semantic")(ids)
        assert torch.allclose(stock.eval()(input_ids=ids).logits, ours, atol=1e-4)
    # the parent moved away, or changed: refused in one line
    shutil.move(bundle, tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="the model it adapts, .*lm-semantic, is missing"):
        AudioLM.from_pretrained(run)
    shutil.move(tmp_path / "elsewhere", bundle)
    config = bundle / "lm-fine" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "note": "edited"}))
    with pytest.raises(ValueError, match="differs from the one its adapters were trained on"):
        Decoder.from_pretrained(run / "lm-fine")


def test_finetune_refusals_are_one_line(tiny_continuations, tmp_path, capsys):
    parent = tiny_continuations.run_dir
    partial = tmp_path / "partial"
    partial.mkdir()
    for sub in ("semantic", "codec", "lm-semantic", "lm-coarse"):
        shutil.copytree(parent / sub, partial / sub)
    silent = tmp_path / "silent"
    silent.mkdir()
    audio.save(silent / "a.wav", np.zeros(800, np.float32), 16000)  # 0.05 s: shorter than data.min_seconds
    cases = [([parent, "--parts", "coarse,vocoder"], "unknown part 'vocoder'"),
             ([partial, "--parts", "fine"], "has no lm-fine/ (--parts names fine"),
             ([parent, "--lora", "-1"], "--lora must be a positive rank"),
             ([parent, "--data", silent], "has no usable clips")]
    for args, message in cases:
        if "--data" not in args:
            args = [*args, "--data", silent]
        rc = cli.main(["finetune", *map(str, args), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and message in err, (args, err)
    assert finetune.PARTS == ("codec", "semantic", "coarse", "fine")
