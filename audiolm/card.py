"""The model card (README.md) of a pipeline bundle: Hub metadata in its YAML header (library, tags,
license, datasets, pipeline tag, and the measured metrics as `model-index` results), what each part
is, how to use it, and how it was evaluated. Built with `huggingface_hub.ModelCard`."""

from __future__ import annotations

from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

Speech continuation in the style of AudioLM: a prompt is turned into semantic tokens and codec
tokens, three decoder-only language models continue them (semantic, then coarse acoustic, then fine
acoustic), and the codec turns the tokens back into audio. Everything needed is in this repository.

| part | folder | what it is |
|---|---|---|
{% for row in parts -%}
| {{ row.name }} | `{{ row.folder }}/` | {{ row.what }} |
{% endfor %}
## Usage

```python
from audiolm import AudioLM, audio

model = AudioLM.from_pretrained("{{ repo_id }}")
prompt, rate = audio.load("prompt.wav")          # any rate; several channels are averaged
wav = model.continue_speech(prompt, rate, seconds=4, include_prompt=True)
audio.save("continued.wav", wav, model.codec.sample_rate)
```

or from the shell: `audiolm continue prompt.wav -o continued.wav --model {{ repo_id }}`.
{% if text %}
With the text parts (`text/`, `lm-reading/`, `lm-transcription/`) the same tokens also read text
aloud in a prompt's voice, transcribe speech and convert one voice into another:

```python
wav = model.speak("Any English sentence.", voice=prompt, sample_rate=rate)
text = model.transcribe([prompt], rate)[0]
converted = model.convert(source, rate, voice=prompt, voice_rate=rate)
```

or `audiolm speak "TEXT" --voice prompt.wav -o out.wav`, `audiolm transcribe in.wav`,
`audiolm convert source.wav --voice prompt.wav -o out.wav` with `--model {{ repo_id }}`.
{% endif %}
Each part also loads alone, e.g. `Decoder.from_pretrained("{{ repo_id }}", subfolder="lm-coarse")`.

{% if metrics -%}
## Evaluation

{{ evaluation }}

| metric | value |
|---|---|
{% for m in metrics -%}
| {{ m.name }} | {{ m.shown }} |
{% endfor %}
{% endif -%}
{% if training -%}
## Training

{{ training }}

{% endif -%}
## Safety

Only `config.json` and safetensors files are read when loading; a folder holding a pickle is
refused, and no code from the repository is ever run. `config.json` at the top records each
part's rates, codebooks, vocabulary sizes and a sha256 of its files; a part that disagrees with the
others, or was changed after saving, is refused at load time with the part and field named.
"""


def _describe(sub: str, part: Any) -> str:
    if sub == "semantic":
        c = part.config
        source = f"{c.backend} features" if c.backend != "ssl" else f"`{c.model}` layer {c.layer}"
        return f"{source} -> k-means, K = {c.num_clusters}, {c.frame_rate:g} Hz, {c.sample_rate} Hz audio"
    if sub == "codec":
        return (f"{type(part).__name__}: {part.num_codebooks} codebooks of {part.codebook_size} at {part.frame_rate:g} Hz "
                f"({part.bitrate() / 1000:g} kbps), {part.sample_rate} Hz audio")
    if sub == "text":
        return (f"sentencepiece {part.config.model_type} model, {part.vocab_size} pieces; {len(part.phones)} phones "
                f"(eSpeak NG's rules for `{part.config.language}`)")
    c, n = part.config, part.num_parameters()
    size = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"
    return f"{size} parameters: {c.layers} layers, dim {c.dim}, vocabulary {c.vocab_size}"


def bundle_card(model: Any, base: ModelCardData, *, repo_id: str = "REPO_ID", model_name: str = "AudioLM bundle",
                metrics: list[dict[str, Any]] | None = None, evaluation: str = "", training: str = "",
                license: str | None = None, language: list[str] | None = None, datasets: list[str] | None = None,
                tags: list[str] | None = None, dataset_name: str = "held-out split", dataset_type: str = "audiolm-corpus",
                **template_kwargs: Any) -> ModelCard:
    """`metrics`: dicts with `name`, `value`, `type` (a metric id such as "perplexity" or
    "accuracy") and optionally `shown` (the value as the table prints it)."""
    names = {"semantic": "semantic tokenizer", "codec": "codec", "lm-semantic": "semantic LM", "lm-coarse": "coarse LM",
             "lm-fine": "fine LM", "text": "text tokenizer", "lm-reading": "reading LM (phones -> semantic ids)",
             "lm-transcription": "transcription LM (semantic ids -> text)"}
    parts = [{"name": names[sub], "folder": sub, "what": _describe(sub, part)} for sub, part in model.parts().items()]
    metrics = [{**m, "shown": m.get("shown", f"{m['value']:.4g}")} for m in metrics or []]
    data = ModelCardData(**base.to_dict())
    data.tags = sorted({*(data.tags or []), *(tags or [])} - {"model_hub_mixin"})
    data.license = license or data.license
    data.language = language or data.language
    data.datasets = datasets or None
    data.model_name = model_name
    data.eval_results = [
        EvalResult(task_type="audio-to-audio", dataset_type=dataset_type, dataset_name=dataset_name, dataset_split="heldout",
                   metric_type=m["type"], metric_name=m["name"], metric_value=float(m["value"]))
        for m in metrics
    ] or None
    return ModelCard.from_template(data, template_str=TEMPLATE, model_name=model_name, repo_id=repo_id, parts=parts,
                                   text=getattr(model, "text", None) is not None,
                                   metrics=metrics, evaluation=evaluation, training=training, **template_kwargs)
