"""The web page's continuation queue: requests pressed close together share a batch, and the
engine process (generation outside the server's process) streams what `continue_speech` returns."""

import threading
import time

import numpy as np
import pytest

from audiolm.audio import AudioError
from audiolm.batching import ContinuationEngine, ContinuationQueue
from audiolm.continuation import AudioLM


@pytest.fixture(scope="module")
def model(tiny_continuations):
    return AudioLM.from_pretrained(tiny_continuations.run_dir)


def test_requests_spread_over_the_quiet_time_share_a_batch(model, speech):
    """Three presses 0.1 s apart (each less than `quiet_seconds` after the one before), each with a
    prompt of another length, go into one batch, which starts only once the quiet time after the last
    has passed."""
    wav, rate = speech
    queue = ContinuationQueue(model, quiet_seconds=0.3, gather_seconds=2.0, log=False)
    prompts = [wav[: len(wav) - seed * rate // 4] for seed in range(3)]  # 0.25 s shorter each
    results = {}

    def press(seed: int) -> None:
        results[seed] = np.concatenate(list(queue.stream(prompts[seed], rate, 0.4, seed=seed)))

    threads = []
    for seed in range(3):
        threads.append(threading.Thread(target=press, args=(seed,)))
        threads[-1].start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert [size for size, _, _ in queue.batches] == [3]
    assert queue.batches[0][1] >= 0.3 + 0.2  # it waited the quiet time after the last press
    for seed, out in results.items():  # each with its own seed, as if alone
        alone = model.continue_speech(prompts[seed], rate, 0.4, seed=seed)
        assert np.abs(out - alone).max() <= 1e-3 * np.abs(alone).max()


def test_the_engine_process_streams_the_continuation(model, tiny_continuations, speech):
    wav, rate = speech
    engine = ContinuationEngine(model, str(tiny_continuations.run_dir))
    try:
        chunks = list(engine.stream(wav, rate, 0.8, seed=3))
        assert len(chunks) >= 2
        whole = model.continue_speech(wav, rate, 0.8, seed=3)
        joined = np.concatenate(chunks)
        assert joined.shape == whole.shape and np.abs(whole).max() > 1e-3
        assert np.abs(joined - whole).max() <= 1e-3 * np.abs(whole).max()
        with pytest.raises(AudioError, match="prompt: shorter than one codec frame"):  # checked here, at once
            next(engine.stream(wav[:10], rate, 0.8))
        reader = engine.stream(wav, rate, 2.0, seed=1)  # a visitor who leaves after the first chunk
        next(reader)
        reader.close()
        assert len(list(engine.stream(wav, rate, 0.4, seed=2))) >= 1  # the engine goes on serving
    finally:
        engine.close()
    assert not engine._process.is_alive()
    with pytest.raises(RuntimeError, match="generation process has exited"):
        next(engine.stream(wav, rate, 0.4))
