"""Acoustic codecs: ours (source-filter + RVQ) and pretrained ones, behind one `Codec` interface."""

from __future__ import annotations

import json
import os

from audiolm.codec.base import Codec
from audiolm.devices import resolve_device
from audiolm.hub import CONFIG_NAME, refuse_pickles, resolve_folder


def load_codec(name_or_dir: str | os.PathLike, revision: str | None = None, num_codebooks: int | None = None,
               token: str | bool | None = None, device: str = "cpu") -> Codec:
    """A codec saved by us (ours, or a reference to a pretrained one), or a transformers codec
    (EnCodec, DAC, Mimi): a local folder or a Hub id, either way; on `device` ("auto": the GPU
    where there is one)."""
    return _load_codec(name_or_dir, revision, num_codebooks, token).to(resolve_device(device)).eval()


def _load_codec(name_or_dir: str | os.PathLike, revision: str | None, num_codebooks: int | None,
                token: str | bool | None) -> Codec:
    from audiolm.codec.pretrained import TransformersCodec

    folder = resolve_folder(name_or_dir, revision=revision, token=token)
    refuse_pickles(folder)
    file = folder / CONFIG_NAME
    config = json.loads(file.read_text()) if file.exists() else {}
    if config.get("component") == Codec.component:
        codec = Codec.from_pretrained(folder, token=token)
        if num_codebooks:
            codec._check_codebooks(num_codebooks)
        return codec
    if "model_type" not in config:
        raise FileNotFoundError(f"{name_or_dir}: not a codec (no {CONFIG_NAME} of ours or of a transformers model)")
    source = str(name_or_dir) if not os.path.exists(name_or_dir) else str(folder)  # a Hub id stays an id
    return TransformersCodec(source, revision, num_codebooks, token)


__all__ = ["Codec", "load_codec"]
