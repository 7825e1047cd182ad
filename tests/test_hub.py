"""Sharing: every component and the whole pipeline save, load (by folder, by Hub id from the cache,
offline) and push through the same `huggingface_hub` code; bundles whose parts disagree, were
changed after saving, or hold pickles are refused at load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from audiolm.codec import load_codec
from audiolm.codec.source_filter import SourceFilterCodec, SourceFilterCodecConfig
from audiolm.continuation import TEXT_PARTS, AudioLM
from audiolm.lm.model import Decoder
from audiolm.pipeline import share
from audiolm.semantic.tokenizer import SemanticTokenizer
from tests.conftest import REPO, run_cli
from tests.probe_continuation import probe

PARTS = ("semantic", "codec", "lm-semantic", "lm-coarse", "lm-fine")


@pytest.fixture(scope="module")
def bundle(tiny_continuations, tmp_path_factory):
    """The tiny run saved as a bundle, as `audiolm save` writes it."""
    out = tmp_path_factory.mktemp("bundle") / "tiny-audiolm"
    result = run_cli("save", tiny_continuations.run_dir, out, "--repo-id", "someone/tiny-audiolm")
    assert result.returncode == 0, result.stderr
    return out


def _files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _fake_cache(bundle, cache, repo_id: str, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """The Hugging Face cache layout `snapshot_download` leaves behind: refs/main -> snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(bundle, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


def _offline_env(cache) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}


def test_a_bundle_holds_each_part_its_config_and_a_card(bundle):
    expected = {"config.json", "README.md"}
    for part, weights in (("semantic", "kmeans.safetensors"), ("codec", "model.safetensors"),
                          ("lm-semantic", "model.safetensors"), ("lm-coarse", "model.safetensors"),
                          ("lm-fine", "model.safetensors"), ("text", "text.safetensors"),  # the tiny run has the text parts
                          ("lm-reading", "model.safetensors"), ("lm-transcription", "model.safetensors")):
        expected |= {f"{part}/config.json", f"{part}/{weights}", f"{part}/README.md"}
        if part.startswith("lm-"):  # transformers' Llama layout (audiolm.lm.stock)
            expected.add(f"{part}/generation_config.json")
            if json.loads((bundle / part / "config.json").read_text())["audiolm_stock"] == "trunk":
                expected.add(f"{part}/audiolm_extra.safetensors")  # weights no stock class has
    assert _files(bundle) == expected
    assert json.loads((bundle / "lm-semantic" / "config.json").read_text())["audiolm_stock"] == "exact"
    record = json.loads((bundle / "config.json").read_text())
    assert record["component"] == "audiolm" and set(record["parts"]) == set(PARTS) | set(TEXT_PARTS)
    codec = json.loads((bundle / "codec" / "config.json").read_text())
    assert {k: record["parts"]["codec"][k] for k in ("codebook_size", "num_codebooks", "frame_rate")} == {
        k: codec[k] for k in ("codebook_size", "num_codebooks", "frame_rate")}
    assert record["parts"]["lm-coarse"]["layout"]["codebook_size"] == codec["codebook_size"]
    assert all(len(p["sha256"]) == 64 for p in record["parts"].values())


def test_save_then_load_in_a_fresh_process_gives_identical_tokens_and_continuation(tiny_continuations, bundle,
                                                                                   speech_wav, tmp_path):
    here = probe(str(tiny_continuations.run_dir), str(speech_wav))  # the run folder, in this process
    out = tmp_path / "probe.npz"
    result = subprocess.run([sys.executable, "-m", "tests.probe_continuation", str(bundle), str(speech_wav), str(out)],
                            cwd=REPO, capture_output=True, text=True, env=_offline_env(tmp_path / "empty-cache"))
    assert result.returncode == 0, result.stderr
    there = np.load(out)
    assert here["continuation"].size > 0.5 * 16000
    for key, value in here.items():
        np.testing.assert_array_equal(there[key], value, err_msg=key)


def test_each_part_loads_alone_from_a_bundle_folder(bundle, tiny_continuations, speech):
    """Each part of the bundle, loaded by itself, is the run's part: same ids, same weights, same codes."""
    import torch

    from audiolm.audio import resample

    run = tiny_continuations.run_dir
    wav = resample(speech[0], speech[1], 16000)
    tokenizer = SemanticTokenizer.from_pretrained(bundle, subfolder="semantic")
    original = SemanticTokenizer.from_pretrained(run / "semantic")
    np.testing.assert_array_equal(tokenizer.encode([wav])[0], original.encode([wav])[0])
    coarse = Decoder.from_pretrained(bundle / "lm-coarse")
    for name, tensor in Decoder.from_pretrained(run / "lm-coarse").state_dict().items():
        assert (coarse.state_dict()[name] == tensor).all(), name
    codec, original = load_codec(bundle / "codec"), load_codec(run / "codec")
    for name, tensor in original.state_dict().items():
        assert torch.equal(codec.state_dict()[name], tensor), name
    x = torch.from_numpy(wav).unsqueeze(0)
    assert torch.equal(codec.encode(x), original.encode(x))
    with pytest.raises(ValueError, match="holds a codec, not a language model"):
        Decoder.from_pretrained(bundle / "codec")


def test_push_uploads_exactly_the_bundle_with_a_valid_card(tiny_continuations, bundle, fake_hub):
    """The whole push code path up to the network call: the repository is created as asked, and
    the folder handed to `upload_folder` is what `audiolm save` writes."""
    calls = fake_hub
    share.push(tiny_continuations.run_dir, "someone/tiny-audiolm", private=True)
    assert calls["create"] == {"repo_id": "someone/tiny-audiolm", "private": True, "exist_ok": True}
    assert calls["upload"]["files"] == _files(bundle)
    assert calls["upload"]["card"] == (bundle / "README.md").read_text()
    assert calls["upload"]["record"] == (bundle / "config.json").read_text()

    card = ModelCard.load(bundle / "README.md")
    data = card.data
    assert data.library_name == "audiolm" and data.pipeline_tag == "audio-to-audio" and data.license == "mit"
    assert {"audiolm", "speech", "speech-continuation"} <= set(data.tags) and data.language == ["en"]
    model_name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert model_name == "AudioLM (tiny)"
    measured = json.loads((tiny_continuations.run_dir / "continuations" / "results.json").read_text())
    by_name = {r.metric_name: r.metric_value for r in results}
    kept = measured["speaker"]["training voices"]["scores"]["continuation"]["accuracy"]
    assert by_name["voice kept, continuations with the acoustic prompt, training voices"] == kept
    coarse = json.loads((tiny_continuations.run_dir / "lm-coarse" / "stage.json").read_text())
    assert by_name["coarse LM held-out perplexity per codebook"] == coarse["heldout_perplexity"]
    assert 'AudioLM.from_pretrained("someone/tiny-audiolm")' in card.text


@pytest.fixture
def fake_hub(monkeypatch):
    """HfApi's create_repo and upload_folder, recording what they were given instead of calling the Hub."""
    calls = {}

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        calls["create"] = {"repo_id": repo_id, "private": private, "exist_ok": exist_ok}
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, **kwargs):
        folder = type(REPO)(folder_path)
        calls["upload"] = {"repo_id": repo_id, "files": _files(folder), "card": (folder / "README.md").read_text(),
                           "record": (folder / "config.json").read_text()}
        return f"https://huggingface.co/{repo_id}/commit/0123"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


@pytest.mark.parametrize("part, loader", [("semantic", SemanticTokenizer), ("codec", load_codec), ("lm-fine", Decoder)])
def test_each_part_pushes_its_config_weights_and_card(bundle, fake_hub, part, loader):
    component = loader(bundle / part) if loader is load_codec else loader.from_pretrained(bundle / part)
    component.push_to_hub(f"someone/{part}", private=False)
    weights = "kmeans.safetensors" if part == "semantic" else "model.safetensors"
    saved = {p.name for p in (bundle / part).iterdir()} - {"README.md", "config.json", weights}  # an LM's other files
    assert fake_hub["upload"]["files"] == {"config.json", weights, "README.md", *saved}
    if part == "lm-fine":
        assert "generation_config.json" in saved
    assert fake_hub["upload"]["record"] == (bundle / part / "config.json").read_text()
    card = ModelCard(fake_hub["upload"]["card"])  # what was uploaded, not what lies in the bundle
    assert card.data.library_name == "audiolm" and "audiolm" in card.data.tags


def test_the_cards_usage_snippet_runs(bundle, speech_wav, tmp_path, monkeypatch):
    card = ModelCard.load(bundle / "README.md")
    snippet = card.text.split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    shutil.copy(speech_wav, "prompt.wav")
    exec(snippet.replace('"someone/tiny-audiolm"', repr(str(bundle))), {})
    assert (tmp_path / "continued.wav").stat().st_size > (tmp_path / "prompt.wav").stat().st_size * 0.5


def test_one_part_of_a_cached_hub_bundle_loads_by_subfolder(bundle, tmp_path):
    cache = tmp_path / "hub-cache"
    _fake_cache(bundle, cache, "someone/tiny-audiolm")
    coarse = Decoder.from_pretrained("someone/tiny-audiolm", subfolder="lm-coarse", cache_dir=cache, local_files_only=True)
    assert coarse.task["task"] == "coarse"
    with pytest.raises(FileNotFoundError, match="someone/other: not in the local Hugging Face cache"):
        Decoder.from_pretrained("someone/other", subfolder="lm-coarse", cache_dir=cache, local_files_only=True)


def test_a_cached_hub_id_loads_offline_and_an_uncached_one_is_one_line(bundle, speech_wav, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    from audiolm import cli

    cache = tmp_path / "hub-cache"
    commit = _fake_cache(bundle, cache, "someone/tiny-audiolm")
    result = subprocess.run([sys.executable, "-m", "audiolm.cli", "continue", str(speech_wav), "-o", str(tmp_path / "out.wav"),
                             "--model", "someone/tiny-audiolm", "--seconds", "0.3"], cwd=REPO, capture_output=True,
                            text=True, env=_offline_env(cache))  # the environment a user sets
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.wav").stat().st_size > 1000
    # the same settings in this process (a fresh one costs 5 s of imports): a revision, an uncached id
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert cli.main(["continue", str(speech_wav), "-o", str(tmp_path / "rev.wav"), "--model", "someone/tiny-audiolm",
                     "--seconds", "0.3", "--revision", commit]) == 0
    assert (tmp_path / "rev.wav").stat().st_size > 1000
    capsys.readouterr()
    assert cli.main(["encode", "--codec", "someone/not-cached", str(speech_wav), "-o", str(tmp_path / "codes")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert "someone/not-cached: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1" in stderr


def test_a_bundle_whose_codec_disagrees_with_the_coarse_lm_is_refused_naming_the_field(bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    SourceFilterCodec(SourceFilterCodecConfig(dim=32, ffn_dim=64, encoder_layers=1, decoder_layers=1, latent_dim=16,
                                              num_codebooks=4, codebook_size=1024)).save_pretrained(bad / "codec")
    with pytest.raises(ValueError, match=r"the codec \(codec/\) has codebook size 1024, but the coarse LM \(lm-coarse/\) "
                                         r"expects 64"):
        AudioLM.from_pretrained(bad)


def test_a_part_changed_after_saving_is_refused(bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    fine = Decoder.from_pretrained(bad / "lm-fine")
    with __import__("torch").no_grad():
        fine.lm_head.weight.mul_(1.01)
    fine.save_pretrained(bad / "lm-fine")
    with pytest.raises(ValueError, match=r"lm-fine: its content differs from what the bundle recorded"):
        AudioLM.from_pretrained(bad)


@pytest.mark.parametrize("pickle", ["pytorch_model.bin", "model.pt", "weights.ckpt", "kmeans.pkl"])
def test_a_folder_with_a_pickle_is_refused(bundle, tmp_path, pickle):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    part = "semantic" if pickle == "kmeans.pkl" else "lm-fine"
    for weights in (bad / part).glob("*.safetensors"):
        weights.unlink()  # a pickle instead of the safetensors
    (bad / part / pickle).write_bytes(b"never unpickled")
    with pytest.raises(ValueError, match=rf"{pickle}: a pickle"):
        AudioLM.from_pretrained(bad)
    loader = SemanticTokenizer if part == "semantic" else Decoder
    with pytest.raises(ValueError, match=rf"{pickle}: a pickle"):
        loader.from_pretrained(bad / part)


def test_push_errors_are_one_line(tiny_continuations, tmp_path):
    result = run_cli("push", tmp_path / "no-run", "someone/x")
    assert result.returncode == 2 and "no such folder" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.network
def test_the_card_validates_on_the_hub(bundle):
    ModelCard.load(bundle / "README.md").validate()


def test_a_part_saved_by_an_older_audiolm_is_rebuilt_not_loaded(tmp_path):
    """Before parts were saved with config.json (codec_config.json, lm_config.json, ...), a stage
    marker alone said "up to date"; now such a folder counts as stale and the stage redoes it."""
    from audiolm.pipeline import rundir

    rundir.write_marker(tmp_path, "abc")
    (tmp_path / "lm_config.json").write_text("{}")
    assert rundir.is_up_to_date(tmp_path, "abc") and not rundir.is_up_to_date(tmp_path, "abc", saved_part=True)
    (tmp_path / "config.json").write_text("{}")
    assert rundir.is_up_to_date(tmp_path, "abc", saved_part=True)
