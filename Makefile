# Setup and checks. Pins live here (a ComfyUI install owns torch; the package never pins it).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := $(VENV)/constraints.txt
TORCH_PIN := torch==2.13.0

.PHONY: venv test bench demo preview train-default clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

venv: $(BIN)/python
	echo "$(TORCH_PIN)" > $(CONSTRAINTS)
	PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) $(BIN)/pip install -q $(TORCH_PIN)
	PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) $(BIN)/pip install -q -e '.[dev]'

test: venv
	$(BIN)/python -m pytest

# Main job: a 60 s video from the example image and prompt with the embedded default model.
DEMO_MODEL ?= default
demo: venv
	mkdir -p out
	$(BIN)/python -m pfvg_core generate --model $(DEMO_MODEL) --image demo/start.png \
		--prompt "$$(cat demo/prompt.txt)" --seconds 60 --out out/demo.webp --sheet out/demo_sheet.png

# The README's animated preview (docs/demo.webp) from the demo video.
preview: demo
	$(BIN)/python demo/make_preview.py --video out/demo.webp --out docs/demo.webp

# Reproduces the embedded default model (pfvg_core/assets/default), its training log, figures and card.
# PRESET=cpu: ~45 min on 2 CPU cores, too small a budget for a useful model (docs/embedded-model.md); PRESET=gpu
# DEVICE=cuda JOBS=16. WARM_START=pfvg_core/assets/default continues from the shipped default (its codec kept; the
# card's history grows). The commands that trained the shipped bundle are in its MODEL_CARD.md.
PRESET ?= cpu
DEVICE ?= auto
JOBS ?= 1
WARM_START ?=
train-default: venv
	$(BIN)/python -m research.embedded_recipe --work build/default --preset $(PRESET) --device $(DEVICE) --jobs $(JOBS) \
		$(if $(WARM_START),--warm-start $(WARM_START))

bench: venv
	$(BIN)/python -m bench loop --json

clean:
	rm -rf $(VENV) .pytest_cache
