"""Sharing on the Hugging Face Hub: one mixin for every component, and loading that runs no code.

Each component (the semantic tokenizer, the codec, the language models) and the whole `AudioLM`
bundle has

    part.save_pretrained("folder")                              # config.json, *.safetensors, README.md
    Part.from_pretrained("folder" or "user/repo", revision=None, token=None)
    part.push_to_hub("user/repo", private=True)

`huggingface_hub.ModelHubMixin` gives the model card and `push_to_hub` (create the repository, save
into a temporary folder, upload it as one commit). Loading is ours, not the mixin's: its PyTorch
variant falls back to a pickle and loads weights non-strictly. Here a local folder, or a Hub
snapshot limited to JSON, safetensors and the card, is read; a folder holding a pickle is refused;
and a Hub id that is not in the cache while offline gives one line saying so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin

from audiolm.files import atomic_dir

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"})
SAFE_PATTERNS = ("*.json", "*.safetensors", "README.md")  # all that loading ever reads from the Hub
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

COMPONENT_CARD = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

```python
{{ usage }}
```

Saved with the `audiolm` library: `config.json` and safetensors weights only; loading never runs code
from the repository.
"""


def is_hub_id(name: str | os.PathLike) -> bool:
    """'user/repo' or 'repo' (not a path that merely does not exist yet)."""
    text = str(name)
    return bool(_HUB_ID.fullmatch(text)) and not text.startswith(".") and ".." not in text


def refuse_pickles(folder: Path) -> None:
    """Pickles can run code when loaded; a folder that holds one is not read at all."""
    for file in sorted(folder.rglob("*")):
        if file.suffix.lower() in PICKLES:
            raise ValueError(f"{file}: a pickle ({file.suffix}); audiolm loads weights from safetensors only, never "
                             "from pickles, which can run code (convert it with safetensors.torch.save_file)")


def resolve_folder(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
                   subfolder: str = "", cache_dir: str | os.PathLike | None = None, force_download: bool = False,
                   local_files_only: bool = False) -> Path:
    """A local folder, or the cached snapshot of a Hub repository (downloaded if need be): its
    JSON, safetensors and model card only. Errors are one line naming the folder or id."""
    path = Path(name_or_path)
    if path.exists():  # a local folder wins over a Hub id of the same spelling
        folder = path / subfolder if subfolder else path
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder}: not a folder")
        return folder
    if not is_hub_id(name_or_path):
        raise FileNotFoundError(f"{name_or_path}: no such folder")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = [f"{subfolder}/{p}" if subfolder else p for p in SAFE_PATTERNS]
    at = f" at revision {revision}" if revision else ""
    try:
        root = snapshot_download(str(name_or_path), revision=revision, token=token, cache_dir=cache_dir,
                                 allow_patterns=patterns, force_download=force_download,
                                 local_files_only=local_files_only)
    except GatedRepoError:
        raise PermissionError(f"{name_or_path}: a gated repository; accept its terms on the Hub and pass a token") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{name_or_path}: no such folder, and no such model on the Hugging Face Hub "
                                "(or it is private: log in or pass a token)") from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{name_or_path}: the Hub repository has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE or local_files_only:
            raise FileNotFoundError(f"{name_or_path}{at}: not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 "
                                    "forbids downloading it (unset HF_HUB_OFFLINE once to fetch it)") from None
        raise FileNotFoundError(f"{name_or_path}{at}: not in the local Hugging Face cache, and the Hub cannot be "
                                "reached to download it") from None
    except HfHubHTTPError as err:
        raise OSError(f"{name_or_path}: download failed ({str(err).splitlines()[0]})") from None
    folder = Path(root) / subfolder
    if not folder.is_dir():
        raise FileNotFoundError(f"{name_or_path}{at}: no {subfolder}/ in this repository")
    return folder


def read_config(folder: Path, component: str) -> dict[str, Any]:
    """config.json of a saved `component`, checked to be one, in a folder without pickles."""
    refuse_pickles(folder)
    file, what = folder / CONFIG_NAME, component.replace("-", " ")
    if not file.exists():
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME} (not a saved {what})")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("component") != component:
        found = config.get("component") if isinstance(config, dict) else None
        raise ValueError(f"{folder}: holds {'a ' + found.replace('-', ' ') if found else 'something else'}, not a {what}")
    return config


def weights_file(folder: Path, name: str = WEIGHTS_NAME) -> str:
    file = folder / name
    if not file.exists():
        refuse_pickles(folder)
        raise FileNotFoundError(f"{folder}: no {name} (weights are read from safetensors only)")
    return str(file)


def config_from(cls: type, values: dict[str, Any]):
    """Dataclass `cls` from a saved config's values; keys it does not know (written by another
    version) are ignored."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


def copy_model_files(source: Path, dest: Path) -> None:
    """A local transformers model's config and safetensors files (never a pickle) into `dest`, so
    a saved part that uses it works where `source` does not exist."""
    dest.mkdir()
    for file in source.iterdir():
        if file.suffix in (".json", ".safetensors"):
            shutil.copy2(file, dest / file.name)


def content_hash(folder: Path) -> str:
    """sha256 over a component's config and weights (relative names and bytes), not its card: the
    same parts give the same hash wherever they were saved."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and (p.name == CONFIG_NAME or p.suffix == ".safetensors"))
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def part_hash(name_or_path: str | os.PathLike, subfolder: str, revision: str | None = None) -> str:
    """The content hash of one part of a bundle (a run folder, a saved bundle or a Hub id): what a
    fine-tune records of its parent, and what its stages are redone for when it changes."""
    return content_hash(resolve_folder(name_or_path, revision=revision, subfolder=subfolder))


class HubMixin(ModelHubMixin, library_name="audiolm", license="mit", tags=["audiolm", "audio"]):
    """`save_pretrained` / `from_pretrained` / `push_to_hub` for one component. A subclass sets
    `component` (the value of `component` in its config.json), writes its files in `_write` and
    builds itself from a folder in `_load`."""

    component: ClassVar[str]
    card_title: ClassVar[str]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Atomic: a half-written component never appears under its name."""
        if kwargs.get("push_to_hub"):
            raise ValueError("save the folder, then call push_to_hub(repo_id)")
        with atomic_dir(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        config = {"component": self.component, **self._write(save_directory)}
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    def _write(self, folder: Path) -> dict[str, Any]:
        """Write the weights into `folder`; return the rest of config.json."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: str | bool | None = None, subfolder: str = "", cache_dir: str | os.PathLike | None = None,
                        force_download: bool = False, local_files_only: bool = False, **kwargs: Any):
        """A folder written by `save_pretrained`, or a Hub id (`subfolder` for one part of a bundle)."""
        folder = resolve_folder(name_or_path, revision=revision, token=token, subfolder=subfolder, cache_dir=cache_dir,
                                force_download=force_download, local_files_only=local_files_only)
        return cls._load(folder, read_config(folder, cls.component), **kwargs)

    @classmethod
    def _load(cls, folder: Path, config: dict[str, Any], **kwargs: Any):
        raise NotImplementedError

    def card_usage(self) -> str:
        owner = next(c for c in type(self).__mro__ if "component" in c.__dict__)  # Codec, not SourceFilterCodec
        return f"from {owner.__module__} import {owner.__name__}\n\npart = {owner.__name__}.from_pretrained(\"REPO_ID\")"

    def card_description(self) -> str:
        return f"One part of an AudioLM-style pipeline: {self.card_title}."

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        data = ModelCardData(**self._hub_mixin_info.model_card_data.to_dict())
        data.tags = sorted({*(data.tags or []), self.component} - {"model_hub_mixin"})
        return ModelCard.from_template(card_data=data, template_str=COMPONENT_CARD, title=self.card_title,
                                       description=self.card_description(), usage=self.card_usage(), **kwargs)
