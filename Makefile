# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv on first use.
PIPELINE ?= pipelines/demo.yaml
OVERRIDES ?=
SYSTEM_PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAGE_ARGS = --pipeline $(PIPELINE) $(OVERRIDES)
# PROCS=N: stages 0-3 in N processes (accelerate launch; gloo on CPU, one process per GPU on GPUs): the
# corpus, tokens and codes shard by shard in every process, training with the global batch split
PROCS ?=
RUN_STAGE = $(if $(PROCS),$(VENV)/bin/accelerate launch --multi_gpu --num_processes $(PROCS) --num_machines 1 \
	--mixed_precision no --dynamo_backend no -m,$(PY) -m)

# RUN: the run `make serve` serves; HOST, PORT: where (default 127.0.0.1:7860)
RUN ?= runs/demo

.PHONY: install web serve demo demo-text demo-long demo-long-text finetune-demo finetune-language stage-0 stage-1 stage-2 stage-3 stage-4 test test-slow bench bench-scale gpu-check lint clean

install: $(VENV)/.installed

# torch first, pinned, so that pip takes the CPU wheel instead of resolving a CUDA build. --no-compile:
# pip would byte-compile all ~16,600 installed .py files (over a minute on 2 slow cores); Python compiles
# the few it imports on first use instead
PIP := $(PY) -m pip install -q --no-compile
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "torch==2.13.0"
	$(PIP) -e ".[dev]"
	@! $(PY) -m pip show torchaudio >/dev/null 2>&1 || (echo "torchaudio got installed; it breaks transformers here" && exit 1)
	touch $@

# the optional extra of `audiolm serve` (gradio), which the tests exercise too
web: $(VENV)/.web

$(VENV)/.web: $(VENV)/.installed
	$(PIP) -e ".[dev,web]"
	touch $@

# after `make demo`: a local web page to try the run (continue, convert; speak and transcribe with the text LMs)
serve: web
	@test -f $(RUN)/lm-fine/config.json || (echo "serve: $(RUN) has no trained models yet; run \`make demo\` first (or RUN=runs/<name>)" && exit 1)
	$(VENV)/bin/audiolm serve --model $(RUN) $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

stage-0: install
	$(RUN_STAGE) stages.stage0_corpus $(STAGE_ARGS)

stage-1: stage-0
	$(RUN_STAGE) stages.stage1_semantic $(STAGE_ARGS)

stage-2: stage-1
	$(RUN_STAGE) stages.stage2_codec $(STAGE_ARGS)

# TASK=semantic|coarse|fine|reading|transcription trains one language model only (default: all three,
# and the two text LMs where lm.text is on).
stage-3: stage-2
	$(RUN_STAGE) stages.stage3_lm $(if $(TASK),--task $(TASK)) $(STAGE_ARGS)

stage-4: stage-3
	$(PY) -m stages.stage4_continue $(STAGE_ARGS)

demo: PIPELINE = pipelines/demo.yaml
demo: stage-4
	@echo "demo: done. Continuations: runs/demo/continuations/ (<id>.prompt.wav, <id>.continuation.wav, <id>.full.wav)"
	@echo "demo: report (perplexities, speaker accuracy, spectrograms, loss curves, examples to listen to): runs/demo/report.html (and .md)"
	@echo "demo: try it in a browser: make serve"

# the demo plus the text tasks (speak, transcribe, convert): only the text LMs train on top of `make demo`
demo-text: PIPELINE = pipelines/demo-text.yaml
demo-text: stage-4
	@echo "demo-text: done. Text figures: runs/demo/report.md; try: .venv/bin/audiolm speak \"Hello there.\" --model runs/demo -o hello.wav"

# 4x the demo's training (about 30 minutes on 2 cores): how far more training moves each figure
demo-long: PIPELINE = pipelines/demo-long.yaml
demo-long: stage-4
	@echo "demo-long: done. Report: runs/demo-long/report.md"

demo-long-text: PIPELINE = pipelines/demo-long-text.yaml
demo-long-text: stage-4
	@echo "demo-long-text: done. Report: runs/demo-long/report.md"

# after `make demo`: the demo model adapted to 5 minutes of a voice no model trained on (u00), in full and with
# LoRA (about 4 minutes each, and 2-3 minutes of judging per model), then the before / after table
# (docs/finetune.md). FT_MINUTES="2 5" adapts on 2 and on 5 minutes of the voice
FT_MINUTES ?= 5
finetune-demo: install
	@test -f runs/demo/lm-fine/config.json || (echo "finetune-demo: run \`make demo\` first" && exit 1)
	$(PY) -m stages.finetune_demo --minutes $(FT_MINUTES)

# after `make demo`: its semantic and coarse LMs adapted to 10 minutes of another eSpeak NG language, against the
# same LMs trained from scratch on it for the same time (about 10 minutes; docs/finetune.md)
FT_LANGUAGE ?= de
finetune-language: install
	@test -f runs/demo/lm-fine/config.json || (echo "finetune-language: run \`make demo\` first" && exit 1)
	$(PY) -m stages.finetune_demo --language $(FT_LANGUAGE)

test: web
	$(PY) -m pytest -q -m "not slow"

test-slow: web
	$(PY) -m pytest -q -m slow

# The suite (figures with same-run baselines); --quick takes under 5 minutes on 2 cores.
bench: install
	$(PY) -m benchmarks.run --json runs/benchmarks.json

# stages 0-2 on folders of long untranscribed files of 20 and 200 minutes, in 1 and 2 processes (about 15 minutes)
bench-scale: install
	$(PY) -m benchmarks.scale --json runs/bench-scale.json
	$(PY) -m benchmarks.lm_scale --json runs/bench-lm-scale.json

# On a machine with a CUDA GPU: the tiny pipeline on the device with every model and batch checked to be
# there, then the GPU's figures (stages 1-2 hours of audio per second, a GPT-2-small LM step's tokens/s
# and MFU, the continuation's real-time factor; docs/scale.md). Without a GPU: one line, exit 0.
# It runs with the python that has CUDA torch (GPU_PY; .venv's torch is the CPU build), the project
# on its path, no install step (the GPU machine has no network: docs/scale.md says what to carry).
GPU_PY ?= $(if $(shell python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && echo y),python3,$(if $(wildcard $(PY)),$(PY),python3))
gpu-check:
	@PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(GPU_PY) -m benchmarks.gpu_check --json runs/gpu-check.json

lint: install
	$(VENV)/bin/ruff check audiolm stages tests benchmarks

clean:
	rm -rf runs
