# The two commands a fresh machine needs: `make demo` (the main job) and `make test` (every test).
# Both run scripts/setup.sh first, which installs what is missing and nothing else.
.PHONY: setup demo test lint fuzz bench-decrypt bench-cpu

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

test: lint
	cargo test --workspace --locked

# Bounded fuzzing of every parser (needs the nightly toolchain; installs cargo-fuzz if missing).
FUZZ_SECONDS ?= 60
fuzz:
	@TAO_SETUP_FUZZ=1 bash scripts/setup.sh
	cd fuzz && for t in $$(cargo +nightly fuzz list); do \
		cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

bench-decrypt: setup
	cargo run --release -p etlt --example decrypt_bench

bench-cpu: setup
	bash scripts/bench_cpu.sh
