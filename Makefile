# Two commands for a new user: `make run` and `make test`. Both set up .venv/ on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The app stays offline: no analytics, the Hugging Face hub offline. Only the page's Download
# button (or `ovformer weights download NAME`) reaches Google Drive and the hub, for that call.
export HF_HUB_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: run test setup browser clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip -q
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the browser tests (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

# Prints the page's URL and, when the model's files are missing, the line about Download.
run: setup
	$(VENV)/bin/ovformer app --host 127.0.0.1 --port 7860

test: setup browser
	TMPDIR=$(CURDIR)/.tmp GRADIO_TEMP_DIR=$(CURDIR)/.tmp/gradio sh -c 'mkdir -p $$TMPDIR && $(PY) -m pytest -q -x --durations=15 tests'

clean:
	rm -rf $(VENV) .tmp
