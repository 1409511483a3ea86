# sdrepl: `make run` starts the REPL, `make test` runs the whole test suite.
# Both first install any missing Debian packages (idempotent; says what it installs).

APT_PACKAGES := pkg-config libopenblas-dev libedit-dev libpng-dev libjpeg-dev libsixel-dev zlib1g-dev libfreetype-dev fonts-dejavu-core libdnnl-dev
# Only `make test` needs these: the page export's test loads the page in headless Chromium.
TEST_APT_PACKAGES := chromium
SWIFT        ?= swift
# Tests run in a release build (with testability) so the numeric parity tests stay fast.
TEST_FLAGS   := -c release -Xswiftc -enable-testing
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test-deps apt-install build run test bench fuzz fixtures clean

all: build

deps:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"
	@command -v $(SWIFT) >/dev/null || { echo "make: swift is not on PATH (Swift 6 is needed: https://swift.org/install)" >&2; exit 1; }

test-deps: deps
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_APT_PACKAGES)"

# Installs the missing ones of PACKAGES (idempotent; says what it installs).
apt-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null \
	    || { echo "make: could not install$$missing; install them with apt-get and retry" >&2; exit 1; }; \
	fi

build: deps
	$(SWIFT) build -c release --product sdrepl

run: build
	@"$$($(SWIFT) build -c release --show-bin-path)/sdrepl" $(ARGS)

test: test-deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build

# `make bench`: full-size SD1.5 (random weights, synthesised once into ~/.cache/sdrepl/bench) at
# 512x512; the last line is one JSON object. ARGS=--full adds a whole 20-step generation;
# BENCH=gemm, BENCH=ops or BENCH=upscale (the x4 upscale alone) runs another sdbench subcommand.
BENCH        ?= model
bench: deps
	$(SWIFT) build -c release --product sdbench
	"$$($(SWIFT) build -c release --show-bin-path)/sdbench" $(BENCH) $(ARGS)

# `make fuzz FUZZ=script|safetensors|pickle|image SECONDS=n`: builds one libFuzzer target with AddressSanitizer
# and runs it for n seconds (Fuzz/run.sh; crashes land in .build-fuzz/FUZZ/artifacts). ARGS go to
# libFuzzer. Fuzzing is not part of `make test`.
SECONDS      ?= 60
fuzz: deps
	@[ -n "$(FUZZ)" ] || { echo "make: name the target: make fuzz FUZZ=script|safetensors|pickle|image SECONDS=60" >&2; exit 2; }
	Fuzz/run.sh $(FUZZ) $(SECONDS) $(ARGS)

clean:
	rm -rf .build .build-fuzz
