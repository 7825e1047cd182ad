"""Adapted language models: LoRA adapters (PEFT) on a `Decoder`, and the small folder that holds
them beside a reference to the model they adapt (`audiolm finetune --lora R`, docs/finetune.md).

An adapted LM's folder (`lm-<task>/` of a fine-tuned run):

    config.json                  {"component": "language-model", "task": {... the parent's ...},
                                  "adapter": {"model": PARENT, "revision": "", "part": "lm-coarse",
                                              "sha256": ..., "rank": R}}
    adapter_config.json          PEFT's LoraConfig (rank 0: absent)
    adapter_model.safetensors    the adapters, under PEFT's names (rank 0: absent)

PARENT is the bundle the run was adapted from (a local folder, by absolute path, or a Hub id), and
`sha256` the content hash of its part: loading refuses a parent that is missing or not the one the
adapters were trained on. Rank 0 is a plain reference: the part of a fine-tune that did not train.
Loading gives the parent with the adapters merged into its weights, an ordinary `Decoder`; saving
that (`audiolm save`) writes the merged bundle.

Our decoder's projections carry transformers' Llama names (q_proj ... down_proj under
model.layers.N), so the adapter file is the one PEFT writes for a `LlamaForCausalLM`: for an exact
stock export (the semantic LM), `PeftModel.from_pretrained(stock parent, folder)` reads it as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from audiolm.files import atomic_dir
from audiolm.hub import CONFIG_NAME, content_hash, part_hash, resolve_folder

# every projection of the attention and the MLPs (the depth head's MLPs too): LoRA's usual targets
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # beside it, PEFT's own adapter_config.json
PEFT_PREFIX = "base_model.model."  # PeftModel's names for the wrapped model's modules


def add_lora(model: torch.nn.Module, rank: int, targets: list[str] | str = TARGETS) -> torch.nn.Module:
    """Rank-`rank` adapters on `targets` (module names, or one regular expression; default every
    projection), alpha 2 x rank as commonly set; only they train. Their B matrices start at zero, so
    the model's outputs are its parent's until a step is taken."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                        target_modules=targets if isinstance(targets, str) else list(targets))
    return inject_adapter_in_model(config, model)


def has_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """The adapters added into the weights, and the plain layers put back: an ordinary model again."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model


def adapter_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def parent_reference(init_from: str, part: str, revision: str = "") -> dict[str, Any]:
    """Where an adapted part's parent is, and its content hash. A local folder is recorded by its
    absolute path (a run folder is found wherever the command was run from)."""
    local = Path(init_from).exists()
    return {"model": str(Path(init_from).resolve()) if local else init_from, "revision": revision, "part": part,
            "sha256": part_hash(init_from, part, revision or None)}


def resolve_parent(reference: dict[str, Any], folder: Path, token: str | bool | None = None) -> Path:
    """The parent's part folder, checked to be the one the adapters were trained on (one line if not)."""
    where = f"{reference['model']}/{reference['part']}"
    try:
        parent = resolve_folder(reference["model"], revision=reference.get("revision") or None, token=token,
                                subfolder=reference["part"])
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(f"{folder}: the model it adapts, {where}, is missing (moved or deleted?); put it back "
                                "or load the merged bundle `audiolm save` wrote") from None
    found = content_hash(parent)
    if found != reference["sha256"]:
        raise ValueError(f"{folder}: the model it adapts, {where}, differs from the one its adapters were trained on "
                         f"(sha256 {found[:12]}..., recorded {reference['sha256'][:12]}...)")
    return parent


def write_adapter(out: str | Path, task: dict[str, Any], reference: dict[str, Any], model: torch.nn.Module | None = None,
                  rank: int = 0) -> None:
    """`out/` = the adapted part (atomic): the reference, and the adapters of `model` when rank > 0."""
    with atomic_dir(out) as tmp:
        config = {"component": "language-model", "task": task, "adapter": {**reference, "rank": rank}}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        if rank:
            save_file(adapter_weights(model), str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
            peft_config = model.peft_config["default"]
            peft_config.base_model_name_or_path = f"{reference['model']}/{reference['part']}"
            peft_config.save_pretrained(str(tmp))


def load_adapted(folder: Path, config: dict[str, Any], load_parent: Callable[[Path], torch.nn.Module],
                 token: str | bool | None = None) -> torch.nn.Module:
    """The parent (loaded by `load_parent`) with the adapters in `folder` merged into its weights."""
    reference = config["adapter"]
    model = load_parent(resolve_parent(reference, folder, token))
    if reference.get("rank"):
        add_lora(model, int(reference["rank"]))
        weights = {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(folder / ADAPTER_WEIGHTS)).items()}
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        expected = set(get_peft_model_state_dict(model))
        if set(weights) != expected:
            raise ValueError(f"{folder / ADAPTER_WEIGHTS}: its adapters do not fit the model it adapts "
                             f"({len(set(weights) ^ expected)} tensors differ in name)")
        set_peft_model_state_dict(model, weights)
        merge_lora(model)
    model.adapted_from = reference
    return model.eval()
