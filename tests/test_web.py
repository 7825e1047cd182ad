"""`audiolm serve`: every endpoint of the page called through gradio_client, as a script or another
Space would, on the tiny pipeline's run; bad uploads come back as messages naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("gradio", reason="the web extra is not installed (pip install -e '.[web]')")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from audiolm import web  # noqa: E402
from audiolm.continuation import AudioLM  # noqa: E402


@pytest.fixture(scope="module")
def client(served):
    return Client(served[0], verbose=False, download_files=True)


def test_the_page_has_a_tab_per_task_of_the_model(tiny_continuations):
    model = AudioLM.from_pretrained(tiny_continuations.run_dir)
    assert web.Page(model, "tiny").tasks == ["continue", "speak", "convert", "transcribe"]
    for task in ("reading", "transcription"):  # a run without the text LMs: continue and convert only
        del model.models[task]
    assert web.Page(model, "tiny").tasks == ["continue", "convert"]


def test_every_endpoint_gives_audio_or_text_and_a_spectrogram(client, speech_wav):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/continue", "/speak", "/convert", "/transcribe"}
    rate = sf.info(speech_wav).samplerate
    prompt = handle_file(str(speech_wav))

    played, wav_path, png = client.predict(prompt, 2.0, 0.8, 0, api_name="/continue")
    wav, out_rate = sf.read(wav_path)
    assert abs(len(wav) / out_rate - 2.0) < 0.05 and np.abs(wav).max() > 0  # the seconds asked, not silence
    if not web.ffmpeg_on_path():  # without ffmpeg the player gets the wav when it is whole
        assert np.array_equal(sf.read(played)[0], wav)
    _, again, _ = client.predict(prompt, 2.0, 0.8, 0, api_name="/continue")
    assert np.array_equal(sf.read(again)[0], wav)  # the same seed, the same audio
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    for name, args in (("/speak", ("Good morning to you.", prompt, 0.8, 1)), ("/speak", ("Good morning.", None, 0.8, 1)),
                       ("/convert", (prompt, prompt, 0.8, 2))):
        wav_path, png = client.predict(*args, api_name=name)
        wav, _ = sf.read(wav_path)
        assert len(wav) > 0 and np.isfinite(wav).all(), name  # how long: what the tiny reading LM (40 steps) says
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", name
    text, png = client.predict(prompt, api_name="/transcribe")
    assert isinstance(text, str) and open(png, "rb").read(4) == b"\x89PNG"
    assert rate != out_rate  # the prompt (eSpeak's 22.05 kHz) was resampled on the way


def test_a_continuation_plays_as_it_is_generated(client, speech_wav):
    """The streamed player gets the continuation in pieces (an HLS playlist per chunk gradio has
    encoded) before the whole wav and the spectrogram come."""
    if not web.ffmpeg_on_path():
        pytest.skip("no ffmpeg and ffprobe on PATH (apt-get install ffmpeg): the page does not stream")
    outputs = list(client.submit(handle_file(str(speech_wav)), 2.0, 0.8, 0, api_name="/continue"))
    pieces = [played for played, _, _ in outputs[:-1]]
    assert len(pieces) >= 3 and all(str(p).endswith(".m3u8") for p in pieces)
    _, wav_path, png = outputs[-1]
    assert abs(sf.info(wav_path).duration - 2.0) < 0.05 and png.endswith(".png")


def test_bad_uploads_are_messages_naming_the_problem(client, tmp_path, bad_audio_files, speech):
    wav, rate = speech
    silent, short, long_ = tmp_path / "silent.wav", tmp_path / "short.wav", tmp_path / "long.wav"
    sf.write(silent, np.zeros(2 * rate, np.float32), rate)
    sf.write(short, wav[: rate // 4], rate)
    sf.write(long_, np.tile(wav, int(web.MAX_UPLOAD_SECONDS * rate / len(wav)) + 1), rate)
    corrupt, problem = bad_audio_files[0]
    cases = [(corrupt, problem), (silent, "silent"), (short, "too short"), (long_, "too long")]
    for path, expected in cases:
        with pytest.raises(AppError) as err:
            client.predict(handle_file(str(path)), 2.0, 0.8, 0, api_name="/continue")
        message = str(err.value)
        assert message.startswith("prompt: ") and expected in message and "Traceback" not in message, (path.name, message)
    with pytest.raises(AppError, match="text: empty"):
        client.predict("   ", None, 0.8, 0, api_name="/speak")
    good = tmp_path / "speech.wav"
    sf.write(good, wav, rate)
    with pytest.raises(AppError, match="voice: silent"):  # the second upload named, not the first
        client.predict(handle_file(str(good)), handle_file(str(silent)), 0.8, 0, api_name="/convert")


def test_a_taken_port_is_one_line_naming_it(served, tiny_continuations):
    url, _ = served
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError, match=f"cannot serve on 127.0.0.1:{port} .*choose another with --port"):
        web.serve(str(tiny_continuations.run_dir), port=port, block=False)


def test_each_tab_offers_the_runs_held_out_prompts(served, tiny_continuations, tmp_path):
    """A newcomer has no wav at hand: every tab has one-click examples, stage 4's prompts of the run
    (labelled with voice and group), and the server hands their files out."""
    import json
    from pathlib import Path

    examples = web.run_examples(tiny_continuations.run_dir)
    results = json.loads((tiny_continuations.run_dir / "continuations" / "results.json").read_text())
    stems = [s for ids in results["example_groups"].values() for s in ids[:2]]
    assert [Path(wav).name for _, wav in examples] == [f"{s}.prompt.wav" for s in stems] and len(examples) == 2
    assert all(label.endswith(", training voice") for label, _ in examples)  # the tiny corpus has no unseen voices
    assert web.run_examples(tmp_path) == []  # a bundle or Hub model: none
    url, blocks = served
    tables = [c for c in blocks.config["components"] if c["type"] == "dataset"]
    assert len(tables) == 4  # continue, speak, convert, transcribe
    assert tables[0]["props"]["sample_labels"] == [label for label, _ in examples]
    loaders = [d["api_name"] for d in blocks.config["dependencies"] if d["api_name"].startswith("load_example")]
    assert len(loaders) == 4
    # a click on the continue tab's second example: the prompt input gets that wav
    update = Client(url, verbose=False).predict(1, api_name=f"/{loaders[0]}")
    assert Path(update["value"]).read_bytes() == Path(examples[1][1]).read_bytes()


@pytest.mark.slow  # 23 s on a slow day (make test-slow runs it)
def test_a_full_queue_is_a_busy_message_not_a_wait(tiny_continuations, speech_wav):
    """More requests than the queue holds: the extra ones are told at once to try again."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client.utils import QueueError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocks = web.serve(str(tiny_continuations.run_dir), port=port, block=False, max_batch=1, queue_size=1)
    try:
        def press(seed: int) -> str:
            client = Client(blocks.local_url, verbose=False)
            try:
                client.predict(handle_file(str(speech_wav)), 1.5, 0.8, seed, api_name="/continue")
                return "answered"
            except QueueError as err:
                assert "full" in str(err).lower() and "try again" in str(err).lower()
                return "busy"

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(press, range(6)))
    finally:
        blocks.close()
    assert outcomes.count("busy") >= 1 and outcomes.count("answered") >= 1, outcomes


@pytest.mark.slow
def test_the_page_under_load(tiny_continuations, speech_wav):
    """benchmarks/serve_load.py on the tiny run: 8 users x 3 requests at once, one corrupt upload,
    one visitor who leaves mid-way, the other tabs: every valid request answered, batches formed,
    the server still serving, its memory within 300 MB of before. (Its latencies are the
    benchmark's to report, not a test's to time.)"""
    from benchmarks import serve_load

    s = serve_load.run(tiny_continuations.run_dir, users=8, requests=3, seconds=2.0, prompts=[str(speech_wav)])
    print(serve_load.table(s, 8, 3, 2.0))
    assert s["answered"] == s["valid"] == 23, s["failures"]
    assert s["corrupt_refused"] and "prompt" in s["corrupt_message"]
    assert set(s["other_tabs"]) == {"convert", "speak", "transcribe"}
    assert max(s["batch_sizes"]) > 1  # requests that came together went together
    assert s["still_serving"] and s["rss_after_mb"] - s["rss_before_mb"] < 300
    assert s["first_audio_p50"] is None or s["first_audio_p50"] < s["latency_p50"]  # streamed before the end
