# Two commands matter: `make lab` and `make test`. Both create .venv when missing and install
# what they need; torch is always installed pinned first so no resolver ever pulls a CUDA build.
# `make lab` is the learner's JupyterLab on course/ (nbgrader's instructor tools hidden, no news
# prompt, a warning when no Chinese font is installed); `make instructor-lab` keeps every nbgrader
# tool and opens the repository, or COURSE_DIR=~/your-course-folder (see grader/lab/launcher.py).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_SPEC ?= torch==$(TORCH_VERSION)
PYTEST_ARGS ?=
LAB_ARGS ?=
COURSE_DIR ?=
ONLY ?=

PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := $(VENV)/torch-constraint.txt

.PHONY: lab instructor-lab test bench course install-course install-dev clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(CONSTRAINTS): $(PY)
	$(PIP) install --quiet "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(CONSTRAINTS)

$(VENV)/.course-installed: pyproject.toml $(CONSTRAINTS)
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PIP) install --quiet -e ".[course]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(CONSTRAINTS)
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PIP) install --quiet -e ".[course,dev]"
	touch $@ $(VENV)/.course-installed

install-course: $(VENV)/.course-installed
install-dev: $(VENV)/.dev-installed

lab: install-course
	$(PY) -m grader.lab $(LAB_ARGS)

instructor-lab: install-course
	$(PY) -m grader.lab --instructor $(if $(COURSE_DIR),--course-dir "$(COURSE_DIR)") $(LAB_ARGS)

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# `make bench` runs every benchmark, `make bench ONLY=name` one of them.
bench: install-dev
	$(PY) -m benchmarks.run $(if $(ONLY),--only $(ONLY))

course: install-course
	$(PY) -m grader generate

clean-venv:
	rm -rf $(VENV)
