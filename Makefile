# The two commands of the README: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_LIBS := .cache/kafka/libs
UBL := .cache/ubl

.PHONY: run test lint bench bench-worker bench-close bench-query bench-portal bench-credits bench-credit-pass soak install system-deps kafka-jars ubl-schemas stripe-mock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# libvirt-python builds against libvirt's headers, the invoice layout test reads PDFs back
# with poppler, and the portal's browser test drives Debian's Chromium through its ChromeDriver:
# install them where missing (CI runs as root).
system-deps:
	@pkg-config --exists libvirt 2>/dev/null || (apt-get update -qq && apt-get install -y -qq libvirt-dev pkg-config)
	@command -v pdftotext >/dev/null || (apt-get update -qq && apt-get install -y -qq poppler-utils)
	@command -v chromedriver >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.lock
	$(MAKE) system-deps
	$(BIN)/pip install -q -r requirements-test.lock
	touch $@

# The Apache Kafka broker jars, from Maven Central, for the integration tests (Java 17).
$(KAFKA_LIBS)/.fetched: tools/kafka/pom.xml
	mvn -q -B -f tools/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(abspath $(KAFKA_LIBS))
	touch $@

kafka-jars: $(KAFKA_LIBS)/.fetched

# The OASIS UBL 2.1 schemas, from Maven Central, to validate the UBL e-invoice against.
$(UBL)/.fetched: tools/ubl/pom.xml tools/ubl/invoice.xsd
	mvn -q -B -f tools/ubl/pom.xml dependency:copy-dependencies -DexcludeTransitive=true -DoutputDirectory=$(abspath $(UBL))/jars
	cd $(UBL) && for jar in jars/*.jar; do \
		rm -rf unpacked && $(PYTHON) -m zipfile -e $$jar unpacked && \
		for dir in schemas external; do [ ! -d unpacked/$$dir ] || cp -r unpacked/$$dir . || exit 1; done; \
	done; rm -rf unpacked
	cp tools/ubl/invoice.xsd $(UBL)/invoice.xsd
	touch $@

ubl-schemas: $(UBL)/.fetched

# stripe-mock, the Stripe API's official mock server (a Go module), for the payment tests.
STRIPE_MOCK := .cache/go/bin/stripe-mock
$(STRIPE_MOCK):
	GOBIN=$(abspath .cache/go/bin) go install github.com/stripe/stripe-mock@v0.203.0

stripe-mock: $(STRIPE_MOCK)

run: install
	$(BIN)/python -m meterline.run

test: $(VENV)/.installed-test kafka-jars ubl-schemas stripe-mock
	$(BIN)/pytest -q --durations=20

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python bench/pipeline.py

bench-worker: $(VENV)/.installed-test
	$(BIN)/python bench/worker.py

# a year of a 960-VM fleet (100.9 M events) loaded, then the dashboard queries timed
# (BENCH_QUERY_DIR=path keeps the loaded data there and reuses it on the next run)
bench-query: $(VENV)/.installed-test
	$(BIN)/python bench/query.py $(if $(BENCH_QUERY_DIR),--data-dir $(BENCH_QUERY_DIR))

bench-portal: $(VENV)/.installed-test
	$(BIN)/python bench/portal.py $(if $(BENCH_PORTAL_DIR),--data-dir $(BENCH_PORTAL_DIR))

bench-credits: $(VENV)/.installed-test
	$(BIN)/python bench/credits.py

# one credit pass alone (no broker, no API): what the pass costs without the machine shared
bench-credit-pass: $(VENV)/.installed-test
	$(BIN)/python bench/credit_pass.py

bench-close: $(VENV)/.installed-test
	$(BIN)/python bench/period_close.py --issue

# an hour at 20,000 samples/s: memory and lag over time (SOAK_MINUTES=5 for a short one)
soak: $(VENV)/.installed-test
	$(BIN)/python bench/soak.py --minutes $(or $(SOAK_MINUTES),60) --rate $(or $(SOAK_RATE),20000)

clean:
	rm -rf $(VENV) .cache data test-artifacts
