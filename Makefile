# iomux-labs: `make help` lists the targets.

# Labs the grader can grade today, in teaching order.
LABS := nonblocking_read select_echo poll_echo epoll_lt epoll_et timeouts async_echo uring_echo sigio_udp tcp_udp select_telnet web_client

# The student copy (`make handout`) has no solutions/ and no tools/.
HAVE_SOLUTIONS := $(wildcard solutions)

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
GRADER := $(TARGET_DIR)/release/grader
GRADER_FLAGS := $(if $(CHECK),--only $(CHECK)) $(if $(FORMAT),--format $(FORMAT)) $(if $(VERBOSE),--verbose)

.PHONY: help grade grade-solution grade-solutions test build grader check-lab need-lab watch handout gradescope batch bench

help:
	@echo "iomux-labs: graded labs on Linux I/O multiplexing"
	@echo ""
	@echo "Students:"
	@echo "  make grade LAB=<lab>            build labs/<lab> and grade it (the checklist to turn green)"
	@echo "  make grade                      grade every lab, then a summary table"
	@echo "  make watch LAB=<lab>            re-grade each time you save a file of labs/<lab>"
	@echo "  make grade LAB=<lab> CHECK=<c>  run one check (CHECK=a,b for several)"
	@echo "                                  VERBOSE=1 shows measurements, FORMAT=json|gradescope"
	@echo "Instructors and developers:"
	@echo "  make grade-solution LAB=<lab>   grade the reference solution of <lab>"
	@echo "  make grade-solutions            grade every solution; fails unless each scores full marks"
	@echo "  make test                       fmt, clippy, every test, and grade-solutions"
	@echo "  make handout DEST=<dir>         export the student copy (no solutions, no instructor material)"
	@echo "                                  HANDOUT_LABS=\"a b\": only these labs' stubs and handouts"
	@echo "  make gradescope LAB=<lab>       a Gradescope autograder zip (HIDDEN=a,b: checks shown after publishing)"
	@echo "                                  LEADERBOARD=1: echo servers that pass get a leaderboard (never scored)"
	@echo "  make autolab LAB=<lab>          Autolab's autograde.tar, autograde-Makefile and the problems to define"
	@echo "                                  DEST=<dir> (default target/autolab/<lab>), TIMEOUT=<s> (Autolab's, default 900)"
	@echo "                                  LEADERBOARD=1: echo servers that pass get scoreboard values (never scored)"
	@echo "  make prairielearn LAB=<lab>     a PrairieLearn question and its grading image's folder (docs/instructors.md)"
	@echo "                                  DEST=<dir> (default target/prairielearn/<lab>), IMAGE=<docker image name>"
	@echo "  make classroom DEST=<dir>       a GitHub Classroom template: DEST's .github/workflows/classroom.yml"
	@echo "                                  (makes the student copy first if DEST does not exist); LABS=\"a b\": only these"
	@echo "  make batch LAB=<lab> DIR=<dir>  grade every submission folder in <dir>; CSV of points per check"
	@echo "  make bench                      select vs poll vs epoll vs io_uring vs threads vs tokio (docs/bench.md)"
	@echo "  make bench LAB=<lab> [BIN=path] the same with your program added (default: labs/<lab>)"
	@echo ""
	@echo "Labs: $(LABS)"

# A LAB, if given, must be one of LABS.
check-lab:
	@if [ -n "$(LAB)" ]; then case " $(LABS) " in *" $(LAB) "*) ;; *) \
	  echo "unknown LAB '$(LAB)'; the labs are: $(LABS)" >&2; exit 2;; esac; fi

# Same, and LAB is required.
need-lab: check-lab
	@if [ -z "$(LAB)" ]; then \
	  echo "this target needs LAB=<lab>, one of: $(LABS)" >&2; \
	  echo "example: make $(MAKECMDGOALS) LAB=poll_echo" >&2; exit 2; \
	fi

grader:
	@echo "==> building the grader (release)"
	@$(CARGO) build --quiet --release -p grader

# One lab (LAB=x), or every lab followed by a summary table. A lab that does
# not compile scores 0: the compiler's messages are shown, not a grader error.
grade: check-lab grader
ifneq ($(LAB),)
	@echo "==> building labs/$(LAB) (release)"
	@if ! $(CARGO) build --release -p $(LAB); then \
	  echo "==> labs/$(LAB) does not compile: 0 points (the compiler's messages are above)" >&2; exit 1; fi
	@echo "==> grading labs/$(LAB)"
	@$(GRADER) $(LAB) --bin $(TARGET_DIR)/release/$(LAB) $(GRADER_FLAGS)
else
	@failed=""; for lab in $(LABS); do \
	  echo "==> building labs/$$lab (release)"; \
	  $(CARGO) build --quiet --release -p $$lab || failed="$$failed,$$lab"; \
	done; \
	$(GRADER) all --dir $(TARGET_DIR)/release --labs "$(LABS)" --not-built "$$failed"
endif

# Rebuild and re-grade LAB whenever one of its files changes (Ctrl-C stops).
watch: need-lab grader
	@$(GRADER) watch $(LAB) --src labs/$(LAB) --bin $(TARGET_DIR)/release/$(LAB) \
	  $(if $(CHECK),--only $(CHECK)) -- $(CARGO) build --quiet --release -p $(LAB)

grade-solution: need-lab grader
	@echo "==> building solutions/$(LAB) (release)"
	@$(CARGO) build --quiet --release -p $(LAB)_solution
	@echo "==> grading solutions/$(LAB)"
	@$(GRADER) $(LAB) --bin $(TARGET_DIR)/release/$(LAB)_solution $(GRADER_FLAGS)

grade-solutions: grader
ifeq ($(HAVE_SOLUTIONS),)
	@echo "==> this is the student copy: there are no solutions to grade"
else
	@echo "==> building every solution (release)"
	@$(CARGO) build --quiet --release $(foreach lab,$(LABS),-p $(lab)_solution)
	@if $(GRADER) all --dir $(TARGET_DIR)/release --suffix _solution --labs "$(LABS)"; then \
	  echo "==> every solution scores full marks"; \
	else echo "==> FAILED: not every solution scores full marks (see the summary)" >&2; exit 1; fi
endif

# The benchmark of docs/bench.md: the reference servers and two baselines
# under many idle and active clients, with each server's system calls per
# round trip (perf, where it can count) and memory per idle connection; a
# table, target/bench/bench.{csv,svg}.
# LAB=<lab> adds labs/<lab> (or BIN=path) to the sweep; BENCH_FLAGS passes
# options (e.g. BENCH_FLAGS="--idle 0,1000 --duration-ms 1000").
BENCH_LABS := select_echo poll_echo epoll_lt epoll_et timeouts async_echo uring_echo tcp_udp
bench:
	@if [ -n "$(BIN)" ] && [ -z "$(LAB)" ]; then \
	  echo "make bench BIN=... needs LAB=<lab>, one of: $(BENCH_LABS)" >&2; exit 2; fi
	@if [ -n "$(LAB)" ]; then case " $(BENCH_LABS) " in *" $(LAB) "*) ;; *) \
	  echo "make bench: unknown LAB '$(LAB)'; one of: $(BENCH_LABS)" >&2; exit 2;; esac; fi
	@echo "==> building the bench$(if $(HAVE_SOLUTIONS), and the reference solutions) (release)"
	@$(CARGO) build --quiet --release -p bench \
	  $(if $(HAVE_SOLUTIONS),$(foreach lab,$(BENCH_LABS),-p $(lab)_solution)) \
	  $(if $(LAB),$(if $(BIN),,-p $(LAB)))
	@$(TARGET_DIR)/release/bench $(if $(HAVE_SOLUTIONS),,--servers threads,tokio) \
	  $(if $(LAB),--lab $(LAB) --bin $(or $(BIN),$(TARGET_DIR)/release/$(LAB))) $(BENCH_FLAGS)

build:
	@$(CARGO) build --release --workspace

# With the solutions, grade-solutions grades each of them (and prints the
# table CI shows), so the proofs' test that does the same is skipped rather
# than run twice.
test:
	@echo "==> cargo fmt --check"
	@$(CARGO) fmt --all -- --check
	@echo "==> cargo clippy --all-targets -- -D warnings"
	@$(CARGO) clippy --quiet --workspace --all-targets -- -D warnings
	@echo "==> cargo test --workspace"
	@$(CARGO) test --workspace $(if $(HAVE_SOLUTIONS),-- --skip every_solution_scores_full_marks)
	@$(if $(HAVE_SOLUTIONS),$(MAKE) --no-print-directory grade-solutions)

# Instructors: the student copy, and a Gradescope autograder.
handout:
	@if [ -z "$(DEST)" ]; then echo "usage: make handout DEST=<dir>" >&2; exit 2; fi
	@if [ ! -x tools/handout.sh ]; then echo "make handout: not available in the student copy" >&2; exit 2; fi
	@tools/handout.sh "$(DEST)" $(HANDOUT_LABS)

# Grade every submission folder under DIR: a CSV of points per check.
batch: need-lab grader
	@if [ -z "$(DIR)" ]; then echo "usage: make batch LAB=<lab> DIR=<submissions> [OUT=grades.csv] [JOBS=1]" >&2; exit 2; fi
	@$(GRADER) batch $(LAB) "$(DIR)" --workspace "$(CURDIR)" $(if $(OUT),--out "$(OUT)") $(if $(JOBS),--jobs $(JOBS)) $(if $(CHECK),--only $(CHECK))

gradescope: need-lab
	@if [ ! -x tools/gradescope.sh ]; then echo "make gradescope: not available in the student copy" >&2; exit 2; fi
	@tools/gradescope.sh $(LAB) $(TARGET_DIR)/gradescope/$(LAB)-autograder.zip "$(HIDDEN)" "$(LEADERBOARD)"

# Autolab: autograde.tar and autograde-Makefile, and the problems to define
# (one per check), in DEST.
.PHONY: autolab
autolab: need-lab
	@if [ ! -x tools/autolab.sh ]; then echo "make autolab: not available in the student copy" >&2; exit 2; fi
	@tools/autolab.sh $(LAB) "$(or $(DEST),$(TARGET_DIR)/autolab/$(LAB))" "$(TIMEOUT)" "$(LEADERBOARD)"

# PrairieLearn: the question (info.json, question.html) and the grading
# image's build folder (Dockerfile, the entrypoint, the student copy).
.PHONY: prairielearn
prairielearn: need-lab
	@if [ ! -x tools/prairielearn.sh ]; then echo "make prairielearn: not available in the student copy" >&2; exit 2; fi
	@tools/prairielearn.sh $(LAB) "$(or $(DEST),$(TARGET_DIR)/prairielearn/$(LAB))" $(IMAGE)

# GitHub Classroom: the autograding workflow, written into a student copy.
# LABS="a b" on the command line names the labs graded (by default, every
# lab of the copy); LABS from this Makefile is not a choice.
.PHONY: classroom
classroom:
	@if [ -z "$(DEST)" ]; then echo "usage: make classroom DEST=<student copy> [LABS=\"a b\"]" >&2; exit 2; fi
	@if [ ! -x tools/classroom.sh ]; then echo "make classroom: not available in the student copy" >&2; exit 2; fi
	@tools/classroom.sh "$(DEST)" $(if $(filter command line,$(origin LABS)),$(LABS))
