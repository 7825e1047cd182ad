"""A token-based audio language model pipeline in the style of AudioLM.

    from audiolm import AudioLM
    model = AudioLM.from_pretrained("runs/demo")
    wav = model.continue_speech(prompt, sample_rate, seconds=4)
"""


def __getattr__(name: str):
    # Lazy: `import audiolm.audio` must not pay for torch models and transformers.
    if name == "AudioLM":
        from audiolm.continuation import AudioLM

        return AudioLM
    raise AttributeError(f"module 'audiolm' has no attribute {name!r}")
