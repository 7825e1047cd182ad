"""Stage 2 end to end on pipelines/tiny.yaml."""

import numpy as np

from audiolm.codec import load_codec
from audiolm.pipeline import codec_stage, lm_stage, semantic_stage


def test_acoustic_codes_join_the_tokens(tiny_run, capsys):
    codec_stage.run(tiny_run)
    tokens, marker = lm_stage.read_tokens(tiny_run)
    assert marker["acoustic_frame_rate"] == 50.0 and marker["acoustic_num_codebooks"] == 4
    assert marker["semantic_frame_rate"] == 50.0  # stage 1's record is kept
    codec = load_codec(tiny_run.run_dir / "codec")
    for row in tokens["heldout"]:
        codes = np.asarray(row["acoustic_codes"])
        assert codes.shape == (4, codec.num_frames(round(row["duration"] * 16000)))
        assert codes.min() >= 0 and codes.max() < 64
        # both 50 Hz; the codec pads to whole frames (ceil), the encoder grid drops partial windows
        assert 0 <= codes.shape[1] - len(row["semantic"]) <= 2
    capsys.readouterr()
    codec_stage.run(tiny_run)
    semantic_stage.run(tiny_run)
    out = capsys.readouterr().out
    assert out.count("up to date") == 2
    assert (tiny_run.run_dir / "codec-train" / "log.jsonl").exists()
