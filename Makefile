# The two commands a new machine needs: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam

.PHONY: demo test faults lint build-check sam-local schema bench catalogs-extract catalogs-update catalogs-compile widget clean help

help:
	@echo "make demo         run the whole pipeline locally (moto stands in for AWS); output in out/"
	@echo "make test         run the test suite"
	@echo "make faults       the whole pipeline under injected AWS faults (1%, 3%, 10%; above and below the SDK), then a crash at every call (~20 min)"
	@echo "make lint         ruff (lint and format) on the code; cfn-lint and sam validate --lint on template.yaml"
	@echo "make build-check  sam build, then import each handler with only boto3 beside it"
	@echo "make sam-local    sam build, then sam local invoke every function in Docker against the local stack (docs/sam-local.md)"
	@echo "make schema       regenerate schema/issue.schema.json from the issue model"
	@echo "make bench        run the benchmarks (a few minutes); bench/results.json and bench/results.md"
	@echo "make catalogs-extract   the templates' and pages' own words into $(LOCALE)/messages.pot (Babel)"
	@echo "make catalogs-update    merge messages.pot into each language's messages.po (then translate)"
	@echo "make catalogs-compile   compile each messages.po to the messages.mo the functions read"
	@echo "make widget      fetch the pinned ALTCHA widget the signup pages serve, checked against its SHA-256"
	@echo ".venv/bin/newsletter --help   the editor's and operator's tool (after make demo or make test)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

# aws-sam-cli pins its own boto3, so it lives in a virtual environment of its own.
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli
	@touch $@

demo: $(VENV)/.installed
	$(PY) -m devstack.demo

# One worker per core; a test file's tests stay together (module fixtures such as the demo run once).
# The 25 slowest tests are listed at the end: the suite should stay well under 10 minutes.
test: $(VENV)/.installed
	$(PY) -m pytest -n auto --dist loadfile --durations=25

faults: $(VENV)/.installed
	$(PY) -m devstack.faults
	$(PY) -m devstack.faults --crashes
	$(PY) -m devstack.faults --rollout --seeds 1
	# A staged issue makes about 220 calls, most of them the same paths twice (cohort, then rest):
	# every third is a place to die.
	$(PY) -m devstack.faults --rollout --crashes --stride 3

lint: $(VENV)/.installed $(SAM_VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	bash scripts/lint-template.sh

build-check: $(SAM_VENV)/.installed
	bash scripts/check-build.sh

# Needs Docker (scripts/docker-engine.sh start, as root, starts an engine where none runs).
# SAM_LOCAL_FLAGS: e.g. --no-build (reuse .aws-sam/build), --image local|official|NAME, --keep.
SAM_LOCAL_FLAGS ?=
sam-local: $(VENV)/.installed $(SAM_VENV)/.installed
	$(PY) -m devstack.sam_local $(SAM_LOCAL_FLAGS)

schema: $(VENV)/.installed
	$(PY) scripts/make_schema.py

bench: $(VENV)/.installed
	$(PY) -m bench.run

# The words of the templates and the public pages (docs/issue-format.md). Babel makes the catalogs;
# the functions read the committed .mo files with the stdlib gettext (Babel itself they use only to
# write dates in a reader's locale).
LOCALE := functions/newsletter/locale
PYBABEL := $(VENV)/bin/pybabel

catalogs-extract: $(VENV)/.installed
	$(PYBABEL) extract -F babel.cfg -k N_ --no-wrap --sort-by-file --project=newsletter-mailer \
		--copyright-holder="newsletter-mailer" --add-comments=Translators: -o $(LOCALE)/messages.pot .

catalogs-update: $(VENV)/.installed
	$(PYBABEL) update -i $(LOCALE)/messages.pot -d $(LOCALE) --no-wrap --ignore-obsolete

catalogs-compile: $(VENV)/.installed
	$(PYBABEL) compile -d $(LOCALE) --statistics

# The ALTCHA widget the signup pages serve (functions/newsletter/static/README.md): fetched from
# the npm registry at a pinned version and checked against its SHA-256 before it replaces ours.
WIDGET_VERSION := 3.2.2
WIDGET_SHA256 := 9e3a335795581933ff93bf768da339c4c6af093b32f67a32b0e0a4a14d822195
STATIC := functions/newsletter/static

widget:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent altcha@$(WIDGET_VERSION) >/dev/null \
		&& tar xzf altcha-$(WIDGET_VERSION).tgz \
		&& echo "$(WIDGET_SHA256)  package/dist/main/altcha.i18n.min.js" | sha256sum -c --quiet - \
		&& cp package/dist/main/altcha.i18n.min.js $(CURDIR)/$(STATIC)/altcha.min.js \
		&& cp package/LICENSE.txt $(CURDIR)/$(STATIC)/altcha.LICENSE.txt && rm -rf $$tmp \
		&& echo "$(STATIC)/altcha.min.js: altcha $(WIDGET_VERSION)"

clean:
	rm -rf out .aws-sam .pytest_cache
