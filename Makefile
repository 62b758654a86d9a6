# The only two commands a new user needs on a fresh Debian 12 machine:
#   make run    install what is missing, build, run a development gateway (rsgate serve --dev)
#   make test   install what is missing, build and run the whole suite, then again under
#               AddressSanitizer + UndefinedBehaviorSanitizer, then the concurrency, channel
#               and OpenSSH tests under ThreadSanitizer, then a short fuzzing pass
# Other targets: build, bench, bench-tunnel, bench-http and bench-scale (tests/bench, by hand), fuzz (longer libFuzzer
# runs), clean.

FUZZ_SECONDS ?= 10

.PHONY: all deps build run test test-release test-dev test-tsan fuzz-smoke fuzz bench bench-tunnel bench-http bench-scale clean

all: build

# The browser tests' Node packages (playwright-core, no browser download) from the committed lock file.
deps:
	@bash scripts/install-deps.sh
	@cd tests/console && npm ci --no-audit --no-fund --loglevel=error

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release

run: build
	./build/release/gateway/rsgate serve --dev

test: deps
	$(MAKE) --no-print-directory test-release
	$(MAKE) --no-print-directory test-dev
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory fuzz-smoke FUZZ_SECONDS=$(FUZZ_SECONDS)

test-release:
	cmake --preset release >/dev/null
	cmake --build --preset release
	ctest --preset release

test-dev:
	cmake --preset dev >/dev/null
	cmake --build --preset dev
	ctest --preset dev

# ThreadSanitizer (GCC, -O1): only the test files named TSAN in tests/CMakeLists.txt and the
# programs they start; a report from any process, a child included, fails the run
# (tests/tsan.cmake); tests/tsan.supp holds the analysed library false positives.
test-tsan:
	cmake --preset tsan >/dev/null
	cmake --build --preset tsan --target tsan_tests
	ctest --preset tsan

# libFuzzer (clang) explores each target from its checked-in corpus for FUZZ_SECONDS.
fuzz-smoke:
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz
	bash tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

fuzz:
	$(MAKE) --no-print-directory fuzz-smoke FUZZ_SECONDS=300

bench: deps
	cmake --preset release >/dev/null
	cmake --build --preset release --target journal_bench
	./build/release/tests/bench/journal_bench

# The data path against ssh -L, stunnel and three socat relays on loopback (tests/bench/tunnel_bench.sh).
bench-tunnel: deps
	RSGATE_EXTRA_PACKAGES="iperf3 stunnel4 socat" bash scripts/install-deps.sh
	cmake --preset release >/dev/null
	cmake --build --preset release --target rsgate rsgate-agent
	bash tests/bench/tunnel_bench.sh

# The HTTPS API under wrk: /healthz against nginx serving the same bytes, and the PMR lookup
# on a 1,000,000-entry journal (tests/bench/http_bench.py; about 5 minutes).
bench-http: deps
	RSGATE_EXTRA_PACKAGES="wrk nginx-light" bash scripts/install-deps.sh
	cmake --preset release >/dev/null
	cmake --build --preset release --target rsgate journal_fill
	python3 tests/bench/http_bench.py

# The gateway at scale: 10,000 idle tunnels against stunnel, CPU per establishment against
# openssl s_server at 0 and 100,000 ended sessions, resumes after a restart
# (tests/bench/scale_bench.py; about 25 minutes).
bench-scale: deps
	RSGATE_EXTRA_PACKAGES="stunnel4 openssl python3" bash scripts/install-deps.sh
	cmake --preset release >/dev/null
	cmake --build --preset release --target rsgate tunnel_swarm
	python3 tests/bench/scale_bench.py

clean:
	rm -rf build
