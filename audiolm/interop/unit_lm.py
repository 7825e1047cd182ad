"""A released unit LM (TWIST, SLAM) as this project's semantic LM.

Two layouts are recognised from the folder's config.json:

- slamkit's `UnitLM` (slprl/slam, slprl/slam_scaled): `model_type: speech_language_model`, the causal
  LM's own config under `base_config` (Qwen2 for SLAM), its weights prefixed `lm.`; ids: PAD 0,
  BOS = EOS 1, unit u = u + 2 (slamkit's `UnitTokeniser`: after the largest special id). A sequence
  is `<S> units <S>` for scoring, `<S> units` as a prompt.
- TWIST (slprl/TWIST-350M, -1.3B, -7B, textlesslib's checkpoints): a stock causal LM whose config has
  `offset`; unit u = u + offset, no BOS (textlesslib's `generate_with_offset` feeds the units alone).

`ReleasedUnitLM` runs the transformers model and answers what the continuation and the scorer ask
of a semantic `Decoder`, in our ids (`audiolm.lm.sequences`: PAD BOS SEP EOS, then the units): our
BOS becomes the model's (or, for a model trained without one, a masked position whose prediction
of the first unit is uniform, log K for every recording alike), units are shifted to the model's
ids, and only the units' logits come back. Weights load from safetensors only, and no remote code runs.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from audiolm.hub import copy_model_files, refuse_pickles
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout

UNITLM = "speech_language_model"  # slamkit's UnitLMConfig.model_type
BUNDLED = "model"  # a reference's copy of a local model folder (audiolm.interop.language_models)


def cache_keyword(model: nn.Module) -> str:
    """The name the model's forward takes its KV cache by (transformers 5 renamed `past_key_values`)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    """The KV cache a forward returned, under either name."""
    return getattr(output, "past_key_values", None) or getattr(output, "cache", None)


@dataclass
class ReleasedShape:
    """What the generation and scoring code reads of a decoder's config."""

    max_positions: int
    group: int = 1
    depth_layers: int = 0
    voice_pool: bool = False


@dataclass
class UnitIds:
    """Where our ids go in the released model's vocabulary."""

    layout: str  # "unitlm" or "twist"
    offset: int  # unit u is id u + offset
    bos: int | None  # the model's BOS, None: trained without one
    pad: int


def recognise(config: dict[str, Any]) -> UnitIds:
    """The id layout of a released unit LM's config.json, or a ValueError saying what it lacks."""
    if config.get("model_type") == UNITLM:
        base = config.get("base_config") or {}
        specials = [v for v in (base.get("pad_token_id"), base.get("bos_token_id"), base.get("eos_token_id"),
                                config.get("pad_token_id"), config.get("bos_token_id")) if isinstance(v, int)]
        bos = base.get("bos_token_id", config.get("bos_token_id", 1))
        return UnitIds("unitlm", max(specials, default=1) + 1, bos, base.get("pad_token_id", config.get("pad_token_id", 0)) or 0)
    if isinstance(config.get("offset"), int):
        return UnitIds("twist", config["offset"], None, 0)
    raise ValueError("not a released unit LM: its config.json has neither slamkit's UnitLM layout "
                     f"(model_type {UNITLM!r}) nor TWIST's `offset`")


def _load_model(folder: Path, config: dict[str, Any], ids: UnitIds) -> nn.Module:
    """The transformers causal LM, weights from safetensors only."""
    from transformers import AutoConfig, AutoModelForCausalLM

    refuse_pickles(folder)
    if ids.layout == "twist":
        return AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    base = dict(config["base_config"])
    base_config = AutoConfig.for_model(base.pop("model_type"), **{k: v for k, v in base.items() if k != "torch_dtype"})
    base_config.vocab_size = config.get("vocab_size", base_config.vocab_size)
    model = AutoModelForCausalLM.from_config(base_config)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights (released unit LMs are read from safetensors only)")
    state = {k.removeprefix("lm."): v for f in files for k, v in load_file(str(f)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if base_config.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:
        raise ValueError(f"{folder}: the weights do not fit its config (missing {sorted(set(missing) - tied)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]})")
    model.tie_weights()
    return model


class _Cache:
    def __init__(self):
        self.pos, self.past, self.mask = 0, None, None


class ReleasedUnitLM(nn.Module):
    """A released unit LM behind the semantic `Decoder`'s generation and scoring methods. `reference`:
    the config.json naming it in a run or bundle (what `save_pretrained` writes again)."""

    component = "language-model"
    reference: dict[str, Any] | None = None

    def __init__(self, model: nn.Module, ids: UnitIds, task: dict[str, Any], source: str = ""):
        super().__init__()
        self.model, self.ids, self.task, self.source = model.eval(), ids, task, source
        spec = TaskSpec.from_dict(task)
        k = spec.layout.semantic_size
        vocab = model.get_input_embeddings().weight.shape[0]
        if ids.offset + k > vocab:
            raise ValueError(f"{source}: {k} units from id {ids.offset} do not fit its vocabulary of {vocab}")
        ours = torch.full((spec.vocab_size,), ids.pad, dtype=torch.long)  # our id -> the model's
        ours[TokenLayout.BOS] = ids.bos if ids.bos is not None else ids.pad
        ours[spec.layout.semantic_offset :] = torch.arange(k) + ids.offset
        self.register_buffer("to_model", ours, persistent=False)
        positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 2048)
        self.config = ReleasedShape(max_positions=int(positions))
        self._cache_arg = cache_keyword(model)

    def save_pretrained(self, out: str | Path) -> None:
        """The reference again (with its copy of a local model's files), e.g. into a bundle."""
        from audiolm.files import atomic_dir

        if self.reference is None:
            raise ValueError(f"{self.source}: loaded without a reference; write one with audiolm import-lm")
        with atomic_dir(out) as tmp:
            if self.reference["released"].get("bundled"):
                copy_model_files(Path(self.source), tmp / BUNDLED)
            (tmp / "config.json").write_text(json.dumps(self.reference, indent=2) + "\n")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def prepare_generation(self, *args: Any, **kwargs: Any) -> ReleasedUnitLM:
        return self  # transformers' own kernels; no low-precision copies

    def new_cache(self, batch: int, length: int) -> _Cache:
        if length > self.config.max_positions:
            raise ValueError(f"a sequence of {length} ids is longer than {self.source}'s {self.config.max_positions} positions")
        return _Cache()

    def hidden(self, ids: torch.Tensor, cache: _Cache | None = None, reference: torch.Tensor | None = None,
               pad: torch.Tensor | None = None) -> torch.Tensor:
        """Our ids [b, t] -> the model's logits [b, t, its vocabulary] (what `logits` reads our ids' from).
        Left padding (`pad`, with a cache given on the first call) is masked out of attention and
        positions; so is our BOS for a model trained without one."""
        b, t = ids.shape
        mask = torch.ones(b, t, dtype=torch.long, device=ids.device)
        if pad is not None:
            mask[torch.arange(t, device=ids.device)[None] < pad[:, None]] = 0
        if self.ids.bos is None:
            mask[ids == TokenLayout.BOS] = 0
        if cache is not None and cache.mask is not None:
            mask = torch.cat([cache.mask, mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)[:, -t:]
        past = {self._cache_arg: cache.past} if cache is not None and cache.past is not None else {}
        out = self.model(input_ids=self.to_model[ids], attention_mask=mask, position_ids=positions,
                         use_cache=cache is not None, **past)
        if cache is not None:
            cache.past = cache_of(out)
            cache.mask, cache.pos = mask, cache.pos + t
        logits = out.logits.float()
        if self.ids.bos is None:  # no prediction from a position the model never had: uniform over the units
            uniform = torch.full_like(logits[0, 0], float("-inf"))
            uniform[self.to_model[TokenLayout.NUM_SPECIAL :]] = 0.0
            logits = torch.where((ids == TokenLayout.BOS)[..., None], uniform, logits)
        return logits

    def step(self, ids: torch.Tensor, cache: _Cache) -> torch.Tensor:
        return self.hidden(ids, cache)

    def logits(self, x: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """The model's logits -> those of our ids [lo, hi) (all ours without `vocab`)."""
        lo, hi = vocab if vocab is not None else (0, len(self.to_model))
        return x[..., self.to_model[lo:hi]]

    def forward(self, ids: torch.Tensor, select: torch.Tensor | None = None,
                vocab_ranges: list[tuple[int, int, torch.Tensor]] | None = None, **unused: Any):
        """The scorer's call (`Decoder.forward` with `select` and `vocab_ranges`), or all our logits.
        With `vocab_ranges`, each range's logits come with one more column: the log-sum-exp of all the
        model's other ids, so a softmax over the row is the model's own (slamkit's scores normalise
        over the whole vocabulary, not over the units alone); the scorer reads the range's columns."""
        x = self.hidden(ids)
        if select is None:
            return self.logits(x)
        x = x[select] if select.dtype == torch.bool else x.flatten(0, 1)[select]
        if vocab_ranges is None:
            return self.logits(x)
        out = []
        for lo, hi, rows in vocab_ranges:
            part = x[rows]  # a copy (advanced indexing): its range's columns are masked for the rest
            ours = self.logits(part, (lo, hi))
            part[:, self.to_model[lo:hi]] = float("-inf")
            out.append(torch.cat([ours, part.logsumexp(-1, keepdim=True)], dim=-1))
        return out


def unit_task(num_units: int, frame_rate: float, context: int, dedup: bool = True, mean_run: float = 1.0) -> dict:
    """Our semantic task over a released LM's units, in windows of `context` ids. The layout's codec
    fields are placeholders: a semantic LM never reads codes."""
    layout = TokenLayout(semantic_size=num_units, codebook_size=1, num_codebooks=2, coarse_codebooks=1)
    window = max(1, context - 2)  # ids a window holds besides BOS (and one spare)
    return TaskSpec("semantic", layout, frame_rate, frame_rate, window / frame_rate, dedup=dedup, mean_run=mean_run).to_dict()


def load_released(folder: str | Path, task: dict[str, Any], name: str | None = None) -> ReleasedUnitLM:
    """A released unit LM from a local folder (a Hub id goes through `audiolm.hub.resolve_folder`
    first), over the units of `task` (`unit_task`); errors name it as `name` (default: the folder)."""
    folder = Path(folder)
    name = name or str(folder)
    file = folder / "config.json"
    if not file.exists():
        raise FileNotFoundError(f"{name}: no config.json (not a transformers model folder)")
    config = json.loads(file.read_text())
    try:
        ids = recognise(config)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return ReleasedUnitLM(_load_model(folder, config, ids), ids, task, str(folder))
