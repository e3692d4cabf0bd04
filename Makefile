# Each target is self-sufficient on a fresh machine: it creates .venv and installs the project.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= outputs/demo
MODEL_OUT ?= outputs/model
MODEL_EPOCHS ?= 30

.PHONY: demo test install clean model browser lint check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/skinray demo --out $(DEMO_OUT)

# The bundled default model (skinray/models/default): the default recipe (jobs/configs/default.yaml)
# on synthetic photos, evaluated on held-out photos of another seed, then packaged with its
# training log and evaluation (MODEL.md). About 15 minutes on 2 CPU cores (11 of them training).
# make model DATA=DIR: on real photos instead, DIR holding train/, val/ and test/ folders (the ISIC
# 2018 copy's layout): trained on train/ with SYNTHETIC_SHARE of the training pairs drawn from the
# synthetic photos, the best epoch picked on val/, evaluated on test/ (never trained on);
# DATA_NOTE and DATA_LICENCE say what the photos are and their licence (skinray info, MODEL.md).
DATA ?=
SYNTHETIC_SHARE ?= 0.25
MODEL_SIZE ?= 64
MODEL_EVAL_FLAGS ?=
MODEL_DEST ?= skinray/models/default
ifeq ($(DATA),)
MODEL_RUN := bundled
MODEL_DATA := --set data.source=$(MODEL_OUT)/data --set data.val_fraction=0.1
MODEL_HELDOUT := $(MODEL_OUT)/heldout
DATA_NOTE ?= 1600 synthetic skin photos (skinray synth, seed 0, 256 px)
DATA_LICENCE ?= synthetic photos made by skinray synth: no third-party rights
else
MODEL_RUN := bundled-real
MODEL_DATA := --set data.source=$(DATA) --set data.synthetic=$(MODEL_OUT)/data \
    --set data.synthetic_share=$(SYNTHETIC_SHARE)
MODEL_HELDOUT := $(DATA)/test
DATA_NOTE ?= the real photos of $(DATA) (train split), $(SYNTHETIC_SHARE) of the pairs synthetic skin photos (skinray synth, seed 0, 256 px)
DATA_LICENCE ?= not recorded: make model DATA_LICENCE=...
endif

model: $(STAMP)
	[ -d $(MODEL_OUT)/data ] || $(BIN)/skinray synth $(MODEL_OUT)/data --count 1600 --size 256 --seed 0
	[ -n "$(DATA)" ] || [ -d $(MODEL_OUT)/heldout ] || $(BIN)/skinray synth $(MODEL_OUT)/heldout --count 60 --size 256 --seed 7
	[ -d $(MODEL_OUT)/real ] || $(BIN)/python -m skinray.bundle --real-photos $(MODEL_OUT)/real
	$(BIN)/skinray train --config jobs/configs/default.yaml $(MODEL_DATA) \
	    --set train.storage=$(MODEL_OUT)/runs --name $(MODEL_RUN) --image-size $(MODEL_SIZE) --epochs $(MODEL_EPOCHS) \
	    --batch-size 8 --workers 2
	$(BIN)/skinray evaluate --model $(MODEL_OUT)/runs/$(MODEL_RUN) --data $(MODEL_HELDOUT) --split all \
	    --size 256 --out $(MODEL_OUT)/eval --photos $(MODEL_OUT)/real $(MODEL_EVAL_FLAGS)
	$(BIN)/python -m skinray.bundle $(MODEL_OUT)/runs/$(MODEL_RUN) $(MODEL_OUT)/eval \
	    "make model MODEL_EPOCHS=$(MODEL_EPOCHS)$(if $(DATA), DATA=$(DATA) SYNTHETIC_SHARE=$(SYNTHETIC_SHARE))" \
	    "$(DATA_NOTE)" --data-licence "$(DATA_LICENCE)" --dest $(MODEL_DEST)

test: $(STAMP)
	$(BIN)/python -m pytest

# ruff (configured in pyproject.toml): pycodestyle, pyflakes, import order, bugbear.
lint: $(STAMP)
	$(BIN)/ruff check .

# The inner loop: lint, then the tests not marked integration (no Train runs, S3 servers or
# subprocesses). make test stays the whole suite, as CI runs it.
check: lint
	$(BIN)/python -m pytest -m "not integration" -q

# Debian's chromium and its driver for the browser test (tests/integration/test_serve.py), as root;
# without them that test is skipped with the reason. .ci/run calls this before make test.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "chromium and chromedriver present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; \
	else echo "no chromium: as root, apt-get install -y chromium chromium-driver (the browser test is skipped)"; fi

clean:
	rm -rf $(VENV) outputs runs *.egg-info
