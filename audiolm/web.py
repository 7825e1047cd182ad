"""`audiolm serve`: a Gradio page to try a model by ear, a tab per task the model has.

    audiolm serve --model runs/demo            # or a Hub id; http://127.0.0.1:7860

Continue (a prompt, uploaded or recorded) and convert work with every model; speak and transcribe
where the run trained the text LMs. Each result comes with a log-mel spectrogram of what went in
and what came out on one time axis. A continuation plays as it is generated, and continuations that
visitors ask for at the same moment are generated as one batch (`audiolm.batching`); the other tabs
run one request at a time. A full queue is gradio's "queue is full, try again" message, not a
wait without end. Bad input (unreadable, silent, too short, too long) is a message on the page
naming the problem. Nothing leaves the machine: no analytics, no share link, fonts and scripts
served locally.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf
import torch

from audiolm import audio
from audiolm.batching import ContinuationEngine, ContinuationQueue
from audiolm.continuation import AudioLM
from audiolm.pipeline.report import timeline
from audiolm.speech_text import MIN_VOICE_SECONDS

MAX_UPLOAD_SECONDS = 60.0  # longer uploads are refused: the LMs look back far less than this
MAX_TEXT_CHARS = 500  # about five sentences: a minute of generation on 2 CPU cores
ONE_AT_A_TIME = "generation"  # every tab's button shares one queue slot: two generations would halve each's CPU
MAX_FILE_SIZE = "20mb"  # a minute of 44.1 kHz stereo 16-bit wav is 10 MB


def ffmpeg_on_path() -> bool:
    """Whether gradio can stream audio to the page: it encodes the chunks with an ffmpeg process,
    and once ffmpeg is there it probes every audio file it serves with ffprobe (Debian's `ffmpeg`
    package has both)."""
    return all(shutil.which(tool) for tool in ("ffmpeg", "ffprobe"))


def _wav_bytes(chunk: np.ndarray, rate: int) -> bytes:
    """One streamed chunk as 16-bit wav (what gradio's stream encoder reads without a subprocess)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(chunk, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def run_examples(folder: Path, per_group: int = 2) -> list[tuple[str, str]]:
    """(label, wav) of a run's held-out prompts that stage 4 continued, `per_group` of each voice
    group (a voice the models trained on, one they never heard): a newcomer's first clicks. A bundle
    or Hub model has none."""
    results = Path(folder) / "continuations" / "results.json"
    if not results.is_file():
        return []
    r = json.loads(results.read_text())
    groups = r.get("example_groups") or {"held-out voices": r.get("examples", [])}  # runs before groups were kept
    out = []
    for group, ids in groups.items():
        for stem in ids[:per_group]:
            wav = results.parent / f"{stem}.prompt.wav"
            if wav.is_file():
                out.append((f"{stem.rsplit('_', 1)[-1]}, {group.removesuffix('s')}", str(wav)))
    return out


class Page:
    """The model and what each tab's button does. Handlers raise `gr.Error` for bad input, which the
    page shows as a message; anything else is a bug and shows gradio's generic error. `examples`
    ((label, wav) pairs, `run_examples`) are offered under each tab's inputs."""

    def __init__(self, model: AudioLM, name: str, examples: list[tuple[str, str]] | None = None, max_batch: int = 8,
                 queue_size: int = 32, continuations: ContinuationQueue | ContinuationEngine | None = None):
        """`max_batch`: continuations generated together at most; `queue_size`: requests waiting at
        most (all tabs), beyond which a visitor is told the page is busy; `continuations`: what
        generates the continue tab's (continuations asked for together run as one batch; `serve`
        gives a `ContinuationEngine`, default a `ContinuationQueue` in this process)."""
        self.model, self.name, self.examples = model, name, examples or []
        self.queue = continuations or ContinuationQueue(model, max_batch)
        self.max_batch, self.queue_size = max_batch, queue_size
        self.streaming = ffmpeg_on_path()  # gradio encodes the streamed player's audio with ffmpeg
        self._outputs = tempfile.TemporaryDirectory(prefix="audiolm-serve-")  # removed with the page

    @property
    def tasks(self) -> list[str]:
        text = [t for t, lm in (("speak", "reading"), ("transcribe", "transcription")) if lm in self.model.models]
        return ["continue", *text[:1], "convert", *text[1:]]

    # -- input -----------------------------------------------------------------------------------
    @staticmethod
    def read(path: str | None, what: str, min_seconds: float) -> tuple[np.ndarray, int]:
        """An uploaded or recorded file -> (mono audio, rate), or gr.Error naming `what` is wrong."""
        if not path:
            raise gr.Error(f"{what}: none given; upload a file or record one", print_exception=False)
        try:
            seconds = sf.info(path).duration
        except Exception:  # not audio at all: audio.load below says what is wrong with it
            seconds = 0.0
        try:
            if seconds > MAX_UPLOAD_SECONDS:
                raise audio.AudioError(what, f"too long: {seconds:.1f} s, at most {MAX_UPLOAD_SECONDS:g} s")
            wav, rate = audio.load(path)
            audio.check_audible(audio.check_waveform(wav, what, min_seconds, rate), what)
        except audio.AudioError as err:
            problem = err.problem if err.source in (what, str(path)) else str(err)  # the upload's temporary name says nothing
            raise gr.Error(f"{what}: {problem}", print_exception=False) from None
        return wav, rate

    def _sampling(self, temperature: float | None):
        return self.model.sampling_with(temperature=None if temperature is None else float(temperature))

    def _spectrogram(self, stem: Path, segments: list[tuple[str, np.ndarray]], rate: int) -> str:
        timeline(segments, rate, stem.with_suffix(".png"))
        return str(stem.with_suffix(".png"))

    def _stem(self, task: str) -> Path:
        return Path(self._outputs.name) / f"{task}-{uuid.uuid4().hex[:8]}"

    def _write(self, task: str, segments: list[tuple[str, np.ndarray]], rate: int) -> tuple[str, str]:
        """The result (the last segment) as a wav, and the spectrogram of all segments as a PNG."""
        stem = self._stem(task)
        audio.save(stem.with_suffix(".wav"), segments[-1][1], rate)
        return str(stem.with_suffix(".wav")), self._spectrogram(stem, segments, rate)

    def _run(self, generate):
        try:
            return generate()
        except (audio.AudioError, ValueError) as err:  # the input, named: too short for the tokenizer, no speakable word
            raise gr.Error(str(err), print_exception=False) from None

    # -- the tabs' buttons -------------------------------------------------------------------------
    def continue_(self, prompt: str | None, seconds: float, temperature: float, seed: float):
        """Yields the continuation's chunks to the streamed player as they are generated (through the
        queue that batches visitors' requests), then the whole as a wav and the spectrogram."""
        wav, rate = self.read(prompt, "prompt", MIN_VOICE_SECONDS)
        m, chunks, at = self.model, [], self.model.codec.sample_rate
        try:  # the prompt as the model uses it (at the codec's rate, its end): also the spectrogram's
            (used,), _ = m.cut_prompts([audio.resample(wav, rate, at)], at)
            for chunk in self.queue.stream(used, at, float(seconds), int(seed or 0), self._sampling(temperature)):
                chunks.append(chunk)
                if self.streaming:
                    yield _wav_bytes(chunk, at), gr.skip(), gr.skip()
        except (audio.AudioError, ValueError) as err:
            raise gr.Error(str(err), print_exception=False) from None
        wav_path, png = self._write("continue", [("prompt", used), ("continuation", np.concatenate(chunks))], at)
        yield (gr.skip() if self.streaming else wav_path), wav_path, png

    def speak(self, text: str, voice: str | None, temperature: float, seed: float,
              progress=gr.Progress(track_tqdm=True)) -> tuple[str, str]:
        text = (text or "").strip()
        if not text:
            raise gr.Error("text: empty; type a sentence to speak", print_exception=False)
        if len(text) > MAX_TEXT_CHARS:
            raise gr.Error(f"text: {len(text)} characters, at most {MAX_TEXT_CHARS}", print_exception=False)
        wav, rate = self.read(voice, "voice", MIN_VOICE_SECONDS) if voice else (None, 16000)
        progress(0, desc="reading")
        out = self._run(lambda: self.model.speak(text, wav, rate, int(seed or 0), self._sampling(temperature)))
        segments = [("voice", audio.resample(wav, rate, self.model.codec.sample_rate))] if wav is not None else []
        return self._write("speak", [*segments, ("speech", out)], self.model.codec.sample_rate)

    def convert(self, source: str | None, voice: str | None, temperature: float, seed: float,
                progress=gr.Progress(track_tqdm=True)) -> tuple[str, str]:
        src, src_rate = self.read(source, "source", MIN_VOICE_SECONDS)
        wav, rate = self.read(voice, "voice", MIN_VOICE_SECONDS)
        progress(0, desc="converting")
        out = self._run(lambda: self.model.convert(src, src_rate, wav, rate, int(seed or 0), self._sampling(temperature)))
        at = self.model.codec.sample_rate
        return self._write("convert", [("source", audio.resample(src, src_rate, at)), ("converted", out)], at)

    def transcribe(self, speech: str | None, progress=gr.Progress(track_tqdm=True)) -> tuple[str, str]:
        wav, rate = self.read(speech, "speech", MIN_VOICE_SECONDS)
        progress(0, desc="transcribing")
        (text,) = self._run(lambda: self.model.transcribe([wav], rate, names=["speech"]))
        return text, self._spectrogram(self._stem("transcribe"), [("speech", wav)], rate)

    # -- layout ------------------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        s = self.model.sampling["semantic"]
        # analytics off: no telemetry, no version check against gradio's server
        with gr.Blocks(title=f"audiolm: {self.name}", analytics_enabled=False) as page:
            gr.Markdown(f"# audiolm · `{self.name}`\nSemantic tokens, a codec, decoder-only LMs. Upload or record a "
                        f"prompt of {MIN_VOICE_SECONDS:g}-{MAX_UPLOAD_SECONDS:g} s; generation runs on this machine: "
                        "continuations play as they are generated, and those asked for at the same moment are made "
                        "together.")

            def upload(label: str, elem_id: str):
                return gr.Audio(label=label, sources=["upload", "microphone"], type="filepath", format=None, elem_id=elem_id)

            def generating(task: str, handler, inputs: list, streamed: bool = False) -> None:
                """What every generating tab ends with: temperature, seed, the button, audio and spectrogram;
                `streamed`: first a player that plays the result as it is generated (continue), whose
                requests go to the batching queue instead of the one-at-a-time slot of the others."""
                temperature = gr.Slider(0.1, 1.5, value=s.temperature, step=0.05, label="temperature (every LM)")
                seed = gr.Number(value=0, precision=0, label="seed (the same seed, the same audio)")
                button = gr.Button(task.capitalize(), variant="primary", elem_id=f"{task}-button")
                if streamed:  # first under the button: what the visitor hears first
                    live = gr.Audio(label="playing as it is generated" if self.streaming else "result (this server has "
                                    "no ffmpeg to stream with)", streaming=self.streaming, autoplay=self.streaming,
                                    interactive=False, elem_id=f"{task}-stream")
                outputs = [gr.Audio(label="result" + (" (wav)" if streamed else ""), type="filepath", interactive=False,
                                    elem_id=f"{task}-result"),
                           gr.Image(label="log-mel spectrogram: input | result", type="filepath", interactive=False,
                                    elem_id=f"{task}-spectrogram")]
                if streamed:
                    button.click(handler, [*inputs, temperature, seed], [live, *outputs], api_name=task,
                                 concurrency_id=task, concurrency_limit=self.max_batch)
                else:
                    button.click(handler, [*inputs, temperature, seed], outputs, api_name=task,
                                 concurrency_id=ONE_AT_A_TIME)

            labels, wavs = [label for label, _ in self.examples], [wav for _, wav in self.examples]

            def examples(inputs: list, rows: list[list], names: list[str]) -> None:
                """One-click examples under a tab's inputs (the run's held-out prompts)."""
                if rows:
                    gr.Examples(rows, inputs, label="held-out prompts of this run", example_labels=names)

            with gr.Tab("Continue", id="continue"):
                prompt = upload("prompt", "continue-prompt")
                examples([prompt], [[w] for w in wavs], labels)
                generating("continue", self.continue_, [
                    prompt, gr.Slider(1, 10, value=4, step=0.5, label="seconds to generate")], streamed=True)
            if "speak" in self.tasks:
                with gr.Tab("Speak", id="speak"):
                    text = gr.Textbox(label="text", value="The quick brown fox jumps over the lazy dog.", max_lines=4)
                    voice = upload("voice (optional: without it, a voice of the corpus)", "speak-voice")
                    examples([voice], [[w] for w in wavs], labels)
                    generating("speak", self.speak, [text, voice])
            with gr.Tab("Convert", id="convert"):
                source = upload("source: the words", "convert-source")
                voice = upload("voice: the target speaker", "convert-voice")
                # each prompt's words in the next prompt's voice
                pairs = [(wavs[i], wavs[(i + 1) % len(wavs)]) for i in range(len(wavs))] if len(wavs) > 1 else []
                examples([source, voice], [list(p) for p in pairs],
                         [f"{labels[i]} -> voice {labels[(i + 1) % len(wavs)]}" for i in range(len(pairs))])
                generating("convert", self.convert, [source, voice])
            if "transcribe" in self.tasks:
                with gr.Tab("Transcribe", id="transcribe"):
                    speech = upload("speech", "transcribe-speech")
                    examples([speech], [[w] for w in wavs], labels)
                    button = gr.Button("Transcribe", variant="primary", elem_id="transcribe-button")
                    text_out = gr.Textbox(label="transcription", interactive=False)
                    png = gr.Image(label="log-mel spectrogram", type="filepath", interactive=False)
                    button.click(self.transcribe, [speech], [text_out, png], api_name="transcribe",
                                 concurrency_id=ONE_AT_A_TIME)
        return page.queue(default_concurrency_limit=1, max_size=self.queue_size)


def serve(model: str, host: str = "127.0.0.1", port: int = 7860, revision: str | None = None,
          block: bool = True, max_batch: int = 8, queue_size: int = 32, device: str = "auto") -> gr.Blocks:
    """Load `model` (a run folder, a bundle or a Hub id) on `device` and serve its page (the engine
    process generates on the same device); with `block=False` return once the server is up (tests)."""
    local = Path(model).exists()
    examples = run_examples(Path(model)) if local else []
    # One intra-op thread here and one in the engine process: on a small machine two processes of 2
    # OpenMP threads each stall every parallel region on whichever thread is descheduled (measured:
    # the load test's whole run 39 s with 2 threads in the engine, 24 s with 1).
    torch.set_num_threads(1)
    lm = AudioLM.from_pretrained(model, revision=revision, device=device)
    engine = ContinuationEngine(lm, model, revision, max_batch)  # continuations in a process of their own
    page = Page(lm, Path(model).name if local else model, examples, max_batch, queue_size, engine)
    blocks = page.blocks()
    blocks.page = page  # the temporary folder of results lives as long as the server
    close = blocks.close

    def close_all(*args, **kwargs):  # the engine process goes with the server
        close(*args, **kwargs)
        engine.close()

    blocks.close = close_all
    try:
        blocks.launch(server_name=host, server_port=port, share=False, max_file_size=MAX_FILE_SIZE, ssr_mode=False,
                      quiet=True, footer_links=["api"], prevent_thread_lock=True, show_error=False, pwa=False,
                      mcp_server=False, allowed_paths=sorted({str(Path(wav).parent) for _, wav in examples}))
    except OSError as err:
        engine.close()
        raise OSError(f"cannot serve on {host}:{port} ({str(err).split('.')[0]}); choose another with --port") from None
    print(f"audiolm serve: {page.name} ({', '.join(page.tasks)}) on {blocks.local_url} "
          f"({'this machine only' if host in ('127.0.0.1', 'localhost') else 'open to the network'}; Ctrl+C stops)", flush=True)
    if block:
        blocks.block_thread()
    return blocks
