"""Released models in, ours out (audiolm/interop, docs/pretrained.md), on small models of the released
ones' classes and layouts built here: a HubertModel with a scikit-learn k-means saved by joblib, a
TWIST-style Llama with `offset`, a Qwen2 in slamkit's UnitLM layout; and the tiny run's LMs exported
to stock transformers."""

import json
import os

import joblib
import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from audiolm import cli
from audiolm.audio import resample
from audiolm.eval import slm21


class _RunsCode:
    """A pickle that runs a command when loaded (what a hostile k-means file would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    """A 25 Hz HubertModel (mHuBERT-25Hz's class and frame rate), saved as safetensors."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 4), conv_stride=(5, 2, 2, 2, 2, 2, 4),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="group")
    folder = tmp_path_factory.mktemp("mhubert")
    HubertModel(config).save_pretrained(folder)
    return folder


def test_import_kmeans_gives_scikit_learns_ids_and_refuses_code(hubert, speech, tmp_path, capsys):
    from sklearn.cluster import KMeans

    from audiolm.semantic.features import build_features
    from audiolm.semantic.tokenizer import SemanticTokenizer

    wav = resample(speech[0], speech[1], 16000)
    features = build_features("ssl", str(hubert), 2)([wav])[0].numpy()
    km = KMeans(n_clusters=12, n_init=1, random_state=0).fit(features)
    joblib.dump(km, tmp_path / "km.bin")
    assert cli.main(["import-kmeans", str(tmp_path / "km.bin"), "--encoder", str(hubert), "--layer", "2",
                     "-o", str(tmp_path / "tok"), "--device", "cpu"]) == 0
    tokenizer = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    assert tokenizer.frame_rate == 25 and tokenizer.num_clusters == 12
    assert (tokenizer.encode([wav])[0] == km.predict(features)).all()
    # a pickle that runs code, alone or inside a real k-means' state: refused, and nothing ran
    km.extra = _RunsCode(tmp_path / "ran")
    for name, payload in (("alone.bin", _RunsCode(tmp_path / "ran")), ("inside.bin", km)):
        joblib.dump(payload, tmp_path / name)
        assert cli.main(["import-kmeans", str(tmp_path / name), "--encoder", str(hubert), "--layer", "2",
                         "-o", str(tmp_path / "bad")]) == 2
        assert "refused to load: the pickle calls posix.system" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and not (tmp_path / "bad").exists()
    # stage 1 with `semantic.kmeans_file`: the released k-means instead of fitting one
    from audiolm.config import load_config
    from audiolm.pipeline import semantic_stage
    from tests.conftest import REPO

    cfg = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={tmp_path}", "semantic.backend=ssl",
                                                         f"semantic.model={hubert}", "semantic.layer=2",
                                                         f"semantic.kmeans_file={tmp_path / 'km.bin'}"])
    staged = semantic_stage.fit_or_load_tokenizer(cfg, None, 16000)  # no corpus read: nothing to fit
    assert (SemanticTokenizer.from_pretrained(cfg.run_dir / "semantic").encode([wav])[0] == km.predict(features)).all()
    assert staged.num_clusters == 12 and semantic_stage.tokenizer_hash(cfg) != semantic_stage.tokenizer_hash(
        load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={tmp_path}", "semantic.backend=ssl"]))


def _twist(folder, units):
    """A TWIST-style causal LM: a stock Llama whose config says where the units start (`offset`)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=units + 10, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, max_position_embeddings=256))
    model.config.offset = 10
    model.save_pretrained(folder)
    return model.eval()


def _slam(folder, units):
    """A Qwen2 in slamkit's UnitLM layout: its config under `base_config`, weights prefixed `lm.`,
    tied embeddings (as Qwen2.5-0.5B's), ids PAD 0, BOS = EOS 1, units from 2."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(2)
    base = Qwen2Config(vocab_size=units + 2, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_key_value_heads=1, tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=1,
                       max_position_embeddings=256)
    model = Qwen2ForCausalLM(base).eval()
    folder.mkdir()
    state = {f"lm.{k}": v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {"model_type": "speech_language_model", "architectures": ["UnitLM"], "base_model_name": "Qwen/Qwen2.5-0.5B",
              "base_config": base.to_dict(), "vocab_size": units + 2, "twist_init": True, "pad_token_id": 0,
              "bos_token_id": 1, "eos_token_id": 1}
    (folder / "config.json").write_text(json.dumps(config))
    return model


def _story_folder(folder, speech):
    wav, rate = speech
    for name, part in (("1_correct", wav), ("1_incorrect", wav[: len(wav) // 2])):
        (folder / "sSC").mkdir(parents=True, exist_ok=True)
        sf.write(folder / "sSC" / f"{name}.wav", part, rate)
    return folder


@torch.no_grad()
def _mean_log_p(model, ids, first, units):
    """The released model's own mean log-probability of `ids[first:]` (full-vocabulary softmax), the
    first unit of a model without BOS counted as 1/units."""
    log_p = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    terms = [log_p[i - 1, ids[i]].item() for i in range(max(first, 1), len(ids))]
    return (sum(terms) + (-np.log(units) if first == 0 else 0.0)) / (len(ids) - first)


def test_released_unit_lms_score_and_continue_in_front_of_our_acoustic_lms(tiny_continuations, speech, tmp_path, capsys):
    from audiolm.semantic.tokenizer import SemanticTokenizer
    from audiolm.tokens import dedup

    run = tiny_continuations.run_dir
    units = json.loads((run / "semantic" / "config.json").read_text())["num_clusters"]
    data = _story_folder(tmp_path / "data", speech)
    ids = dedup(SemanticTokenizer.from_pretrained(run / "semantic").encode(
        [resample(sf.read(data / "sSC" / "1_correct.wav")[0].astype(np.float32), speech[1], 16000)])[0])
    for name, make in (("twist", _twist), ("slam", _slam)):
        released = make(tmp_path / f"{name}-model", units)
        model_dir = tmp_path / name
        assert cli.main(["import-lm", str(tmp_path / f"{name}-model"), "-o", str(model_dir),
                         "--tokenizer", str(run / "semantic")]) == 0
        assert ("no BOS" if name == "twist" else "BOS 1") in capsys.readouterr().out
        assert cli.main(["score-lm", str(data), "--model", str(model_dir), "-o", str(tmp_path / f"{name}-sub"),
                         "--device", "cpu"]) == 0
        scores = slm21.read_submission(tmp_path / f"{name}-sub" / "sSC.txt")
        expected = (_mean_log_p(released, [int(u) + 10 for u in ids], 0, units) if name == "twist"
                    else _mean_log_p(released, [1] + [int(u) + 2 for u in ids], 1, units))
        assert scores["1_correct"] == pytest.approx(expected, abs=1e-4)
    # a folder that is no unit LM (the run's codec): one line, and nothing written
    assert cli.main(["import-lm", str(run / "codec"), "-o", str(tmp_path / "no"), "--tokenizer", str(run / "semantic")]) == 2
    assert "codec: not a released unit LM" in capsys.readouterr().err and not (tmp_path / "no").exists()
    # SLAM's units in front of the tiny run's coarse and fine LMs (trained on the same units)
    for part in ("codec", "lm-coarse", "lm-fine"):
        os.symlink(run / part, model_dir / part)
    wav, rate = speech
    sf.write(tmp_path / "prompt.wav", wav[: rate], rate)
    assert cli.main(["continue", str(tmp_path / "prompt.wav"), "-o", str(tmp_path / "out.wav"), "--model", str(model_dir),
                     "--seconds", "1", "--device", "cpu"]) == 0
    out, out_rate = sf.read(tmp_path / "out.wav")
    assert abs(len(out) / out_rate - 1.0) < 0.1 and np.isfinite(out).all() and np.abs(out).max() > 0


def test_export_gives_stock_llamas_with_our_logits_and_the_same_scores(tiny_continuations, speech, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from audiolm.config import SamplingConfig
    from audiolm.lm.generate import generate
    from audiolm.lm.model import Decoder
    from audiolm.lm.sequences import TaskSpec

    run, out = tiny_continuations.run_dir, tmp_path / "exported"
    assert cli.main(["export", str(run), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("LlamaForCausalLM") >= 3 and "lm-coarse: LlamaForCausalLM (the trunk" in printed
    # the semantic LM with plain transformers: same logits, and greedy generate continues the same ids
    stock = AutoModelForCausalLM.from_pretrained(out / "lm-semantic", use_safetensors=True).eval()
    ours = Decoder.from_pretrained(out / "lm-semantic")
    spec = TaskSpec.from_dict(ours.task)
    ids = torch.randint(*spec.allowed(0), (2, 24))
    ids[:, 0] = 1
    with torch.no_grad():
        assert (stock(ids).logits - ours(ids)).abs().max() <= 1e-4
        theirs = stock.generate(ids, do_sample=False, max_new_tokens=10)[:, 24:]
    assert torch.equal(theirs, generate(ours, ids, 10, spec.allowed, SamplingConfig(temperature=0)))
    data = _story_folder(tmp_path / "data", speech)
    for model in (run, out):
        assert cli.main(["score-lm", str(data), "--model", str(model), "-o", str(tmp_path / model.name), "--device", "cpu"]) == 0
    assert (tmp_path / run.name / "sSC.txt").read_text() == (tmp_path / out.name / "sSC.txt").read_text()
    from audiolm.continuation import AudioLM  # and the same continuation

    wav, rate = speech
    same = [AudioLM.from_pretrained(m, device="cpu").continue_speech(wav[:rate], rate, seconds=0.4, seed=3) for m in (run, out)]
    assert np.array_equal(same[0], same[1])


def _llama_mimi(folder, mimi_folder, q=4, codebook=64):
    """A Llama-Mimi-style model: a stock Llama whose tokenizer has `<code_q>` tokens, `<audio>` and
    `</audio>`, and a BOS it adds; `num_quantizers` in its config (and, ours, the codec to use)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<|begin_of_text|>", "<unk>", "hello"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<audio>", "</audio>"] + [f"<{c}_{j}>" for c in range(codebook) for j in range(q)]
    tokenizer.add_special_tokens(specials)
    tokenizer.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                             special_tokens=[("<|begin_of_text|>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", unk_token="<unk>")
    torch.manual_seed(3)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, max_position_embeddings=512, bos_token_id=0))
    model.config.num_quantizers, model.config.audio_tokenizer = q, str(mimi_folder)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return model.eval(), fast


def test_a_one_stage_model_over_flattened_mimi_codes_continues_and_scores(speech, tmp_path):
    import transformers

    from tests.codec.test_pretrained import _tiny

    torch.manual_seed(0)
    mimi = transformers.MimiModel(_tiny("mimi")).eval()
    mimi.save_pretrained(tmp_path / "mimi")
    model, tokenizer = _llama_mimi(tmp_path / "llama-mimi", tmp_path / "mimi")
    wav, rate = speech
    sf.write(tmp_path / "prompt.wav", wav[:rate], rate)
    assert cli.main(["continue", str(tmp_path / "prompt.wav"), "-o", str(tmp_path / "out.wav"),
                     "--model", str(tmp_path / "llama-mimi"), "--seconds", "0.5", "--device", "cpu"]) == 0
    out, out_rate = sf.read(tmp_path / "out.wav")
    assert out_rate == 24000 and abs(len(out) / out_rate - 0.5) < 0.1 and np.abs(out).max() > 0
    data = _story_folder(tmp_path / "data", speech)
    assert cli.main(["score-lm", str(data), "--model", str(tmp_path / "llama-mimi"), "-o", str(tmp_path / "sub"),
                     "--device", "cpu"]) == 0
    # Llama-Mimi's own eval, by its text: <audio><c_0><c_1>..</audio>, labels at 2, 2 + Q, ...
    clip = resample(sf.read(data / "sSC" / "1_correct.wav")[0].astype(np.float32), rate, 24000)
    with torch.no_grad():
        codes = mimi.encode(torch.from_numpy(clip)[None, None], num_quantizers=4).audio_codes[0]
        codes = codes[:, : int(len(clip) * mimi.config.frame_rate / 24000)]
        text = "<audio>" + "".join(f"<{int(codes[j, t])}_{j}>" for t in range(codes.shape[1]) for j in range(4)) + "</audio>"
        ids = tokenizer(text, return_tensors="pt").input_ids
        labels = torch.full_like(ids, -100)
        labels[:, 2::4] = ids[:, 2::4]
        loss = model(input_ids=ids, labels=labels).loss
    assert slm21.read_submission(tmp_path / "sub" / "sSC.txt")["1_correct"] == pytest.approx(-loss.item(), abs=1e-4)


def test_stage_3_uses_a_released_semantic_lm_named_in_the_pipeline(tiny_continuations, tmp_path):
    """`lm.semantic.released`: stage 3 writes the reference over the run's units and measures the model's
    held-out perplexity instead of training; changing the name makes the stage out of date."""
    from audiolm.config import load_config
    from audiolm.continuation import AudioLM
    from audiolm.interop.unit_lm import ReleasedUnitLM
    from audiolm.pipeline import lm_stage, rundir
    from tests.conftest import REPO

    run = tiny_continuations.run_dir
    units = json.loads((run / "semantic" / "config.json").read_text())["num_clusters"]
    _twist(tmp_path / "twist", units)
    cfg = load_config(REPO / "pipelines" / "tiny.yaml",
                      [f"runs_dir={tmp_path / 'runs'}", f"lm.semantic.released={tmp_path / 'twist'}"])
    cfg.run_dir.mkdir(parents=True)
    for part in ("tokens", "acoustic", "semantic", "codec", "lm-coarse", "lm-fine"):
        os.symlink(run / part, cfg.run_dir / part)
    lm_stage.run(cfg, tasks=["semantic"])
    marker = rundir.read_marker(cfg.run_dir / "lm-semantic")
    assert marker["released"] == str(tmp_path / "twist") and marker["steps"] == 0
    assert 1 < marker["heldout_perplexity"] < 10 * units  # a random model on the run's units: finite, near-uniform
    model = AudioLM.from_pretrained(cfg.run_dir, device="cpu")
    assert isinstance(model.models["semantic"], ReleasedUnitLM) and model.specs["semantic"].dedup
    assert model.specs["semantic"].mean_run > 1  # the run's units repeat: re-expanded by their measured mean run
    assert lm_stage.lm_hash(cfg, "semantic", {"config_hash": "x", "acoustic_hash": "y"}) != lm_stage.lm_hash(
        load_config(REPO / "pipelines" / "tiny.yaml"), "semantic", {"config_hash": "x", "acoustic_hash": "y"})
