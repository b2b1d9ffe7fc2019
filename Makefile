# The two commands a fresh machine needs: `make demo` (the main job) and `make test` (every test).
# Both run scripts/setup.sh first, which installs what is missing and nothing else.
.PHONY: setup demo test lint fuzz bench-decrypt bench-cpu bench-int8 bench-pipeline

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

bench-int8: setup
	mkdir -p target/models && .venv/bin/python models/gen_detectnet_v2.py target/models/detectnet_v2_resnet18.onnx >/dev/null
	cargo run --release -p tao-engine --example int8_bench -- --detectnet target/models/detectnet_v2_resnet18.onnx --runs 11

bench-pipeline: setup
	cargo run --release --example pipeline_bench -- 200 2
	cargo run --release --example pipeline_bench -- 200 2 int8
