# iomux-labs: `make help` lists the targets.

# Labs the grader can grade today, in teaching order.
LABS := poll_echo epoll_lt epoll_et

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
GRADER := $(TARGET_DIR)/release/grader
GRADER_FLAGS := $(if $(CHECK),--only $(CHECK)) $(if $(FORMAT),--format $(FORMAT)) $(if $(VERBOSE),--verbose)

.PHONY: help grade grade-solution grade-solutions test build grader check-lab bench

help:
	@echo "iomux-labs: graded labs on Linux I/O multiplexing"
	@echo ""
	@echo "Students:"
	@echo "  make grade LAB=<lab>            build labs/<lab> and grade it (the checklist to turn green)"
	@echo "  make grade LAB=<lab> CHECK=<c>  run one check (CHECK=a,b for several)"
	@echo "                                  VERBOSE=1 shows measurements, FORMAT=json|gradescope"
	@echo "Instructors and developers:"
	@echo "  make grade-solution LAB=<lab>   grade the reference solution of <lab>"
	@echo "  make grade-solutions            grade every solution; fails unless each scores full marks"
	@echo "  make test                       fmt, clippy, every test, and grade-solutions"
	@echo "  make bench                      poll vs epoll vs threads vs tokio, many clients (docs/bench.md)"
	@echo "  make bench LAB=<lab> [BIN=path] the same with your program added (default: labs/<lab>)"
	@echo ""
	@echo "Labs: $(LABS)"

# `make grade` without a valid LAB names the labs and stops.
check-lab:
	@if [ -z "$(LAB)" ]; then \
	  echo "make grade needs LAB=<lab>, one of: $(LABS)" >&2; \
	  echo "example: make grade LAB=poll_echo" >&2; exit 2; \
	fi
	@case " $(LABS) " in *" $(LAB) "*) ;; *) \
	  echo "unknown LAB '$(LAB)'; the labs are: $(LABS)" >&2; exit 2;; esac

grader:
	@echo "==> building the grader (release)"
	@$(CARGO) build --quiet --release -p grader

grade: check-lab grader
	@echo "==> building labs/$(LAB) (release)"
	@$(CARGO) build --release -p $(LAB)
	@echo "==> grading labs/$(LAB)"
	@$(GRADER) $(LAB) --bin $(TARGET_DIR)/release/$(LAB) $(GRADER_FLAGS)

grade-solution: check-lab grader
	@echo "==> building solutions/$(LAB) (release)"
	@$(CARGO) build --quiet --release -p $(LAB)_solution
	@echo "==> grading solutions/$(LAB)"
	@$(GRADER) $(LAB) --bin $(TARGET_DIR)/release/$(LAB)_solution $(GRADER_FLAGS)

grade-solutions: grader
	@echo "==> building every solution (release)"
	@$(CARGO) build --quiet --release $(foreach lab,$(LABS),-p $(lab)_solution)
	@failed=""; for lab in $(LABS); do \
	  echo "==> grading solutions/$$lab"; \
	  $(GRADER) $$lab --bin $(TARGET_DIR)/release/$${lab}_solution || failed="$$failed $$lab"; \
	done; \
	if [ -n "$$failed" ]; then echo "==> FAILED: these solutions do not score full marks:$$failed" >&2; exit 1; fi; \
	echo "==> every solution scores full marks"

# The benchmark of docs/bench.md: the reference servers and two baselines
# under many idle and active clients; a table, target/bench/bench.{csv,svg}.
# LAB=<lab> adds labs/<lab> (or BIN=path) to the sweep; BENCH_FLAGS passes
# options (e.g. BENCH_FLAGS="--idle 0,1000 --duration-ms 1000").
BENCH_LABS := poll_echo epoll_lt epoll_et timeouts
bench:
	@if [ -n "$(BIN)" ] && [ -z "$(LAB)" ]; then \
	  echo "make bench BIN=... needs LAB=<lab>, one of: $(BENCH_LABS)" >&2; exit 2; fi
	@if [ -n "$(LAB)" ]; then case " $(BENCH_LABS) " in *" $(LAB) "*) ;; *) \
	  echo "make bench: unknown LAB '$(LAB)'; one of: $(BENCH_LABS)" >&2; exit 2;; esac; fi
	@echo "==> building the bench and the reference solutions (release)"
	@$(CARGO) build --quiet --release -p bench -p poll_echo_solution -p epoll_lt_solution \
	  -p epoll_et_solution $(if $(LAB),$(if $(BIN),,-p $(LAB)))
	@$(TARGET_DIR)/release/bench \
	  $(if $(LAB),--lab $(LAB) --bin $(or $(BIN),$(TARGET_DIR)/release/$(LAB))) $(BENCH_FLAGS)

build:
	@$(CARGO) build --release --workspace

test:
	@echo "==> cargo fmt --check"
	@$(CARGO) fmt --all -- --check
	@echo "==> cargo clippy --all-targets -- -D warnings"
	@$(CARGO) clippy --quiet --workspace --all-targets -- -D warnings
	@echo "==> cargo test --workspace"
	@$(CARGO) test --workspace
	@$(MAKE) --no-print-directory grade-solutions
