"""Acoustic codecs: ours (SEANet + RVQ) and pretrained ones, behind one `Codec` interface."""

from __future__ import annotations

import json
import os
from pathlib import Path

from audiolm.codec.base import CONFIG_NAME, Codec


def load_codec(name_or_dir: str | os.PathLike, revision: str | None = None, num_codebooks: int | None = None) -> Codec:
    """A folder saved by us (our codec, or a reference to a pretrained one), a transformers codec
    folder, or a Hub id."""
    from audiolm.codec.model import SEANetCodec
    from audiolm.codec.pretrained import TransformersCodec

    path = Path(name_or_dir)
    if (path / CONFIG_NAME).exists():
        ref = json.loads((path / CONFIG_NAME).read_text())
        if ref.get("kind") == "seanet":
            codec = SEANetCodec.from_pretrained(path)
            if num_codebooks:
                codec._check_codebooks(num_codebooks)
            return codec
        if ref.get("kind") == "transformers":
            return TransformersCodec(ref["model"], ref.get("revision") or revision, num_codebooks or ref.get("num_codebooks"))
        raise ValueError(f"{path}: unknown codec kind {ref.get('kind')!r} in {CONFIG_NAME}")
    if path.exists() and not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: not a codec folder (no {CONFIG_NAME} or config.json)")
    return TransformersCodec(str(name_or_dir), revision, num_codebooks)


__all__ = ["Codec", "load_codec"]
