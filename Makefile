# Transfer Learning, hands-on: one entry point for learners, instructors and CI.
#   make book    install everything and build the website into _build/html (full profile)
#   make test    install everything and run the test suite (the full book, and the labs in the ci profile)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
JB     := $(VENV)/bin/jupyter-book
# The exact torch pair this course is tested with; pyproject.toml keeps a range for Colab.
TORCH  := torch==2.14.1 torchvision==0.29.1
SUBMISSIONS ?= submissions
GRADE_ARGS  ?=
LAB         ?=

.PHONY: setup system-packages book book-ci book-instructor test test-fast assign student-notebooks grade pretrain bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[book,test,grading]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Debian packages the tests use: bubblewrap (the grading sandbox) and Chromium (the browser test,
# driven by Playwright; no browser is downloaded). Installed where they can be (root with apt-get);
# elsewhere `make grade` refuses without a sandbox (or pass GRADE_ARGS=--no-sandbox) and the
# browser test says what to install.
system-packages:
	@missing=""; command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "warning: missing Debian packages:$$missing (the grading sandbox and the browser test need them)"; fi; \
	fi

setup: $(VENV)/.installed system-packages

# The website shows the labs' student versions: lab masters are swapped for otter's student
# notebooks in a staged copy of the sources (_build/src/student), the labs are executed two at a
# time into the book's jupyter cache (jupyter-book runs them one by one), and the built site is
# checked for solution and hidden-test text.
book: setup
	$(PY) -m tlutils.grading stage-book --edition student
	$(PY) -m tlutils.grading execute-book _build/src/student --cache _build/.jupyter_cache
	$(JB) build _build/src/student -W -n --keep-going --all --path-output .
	$(PY) -m tlutils.grading check-leaks _build/html

# The same book with every lab in the quick `ci` profile, in its own folder and cache.
book-ci: setup
	$(PY) -m tlutils.grading stage-book --edition student --dest _build_ci/src/student
	TLUTILS_PROFILE=ci $(PY) -m tlutils.grading execute-book _build_ci/src/student --cache _build_ci/_build/.jupyter_cache
	TLUTILS_PROFILE=ci $(JB) build _build_ci/src/student -W -n --keep-going --all --path-output _build_ci
	$(PY) -m tlutils.grading check-leaks _build_ci/_build/html

# The instructor edition, with solutions (never publish it): _build/instructor/_build/html
book-instructor: setup
	$(PY) -m tlutils.grading stage-book --edition instructor
	$(PY) -m tlutils.grading execute-book _build/src/instructor --cache _build/instructor/_build/.jupyter_cache
	$(JB) build _build/src/instructor -W -n --keep-going --all --path-output _build/instructor

# First the `full` book's labs, exactly as `make book` executes them (two at a time, into its
# cache) and with nothing else running: on two cores, every process beyond two slows all of them
# down, by half as much again when the test processes ran beside them. Then two test processes
# side by side: the website's tests (mark `book`: both editions built, from that cache and from
# the ci runs, every chapter claim checked on the `full` numbers, the browser test, ...) and two
# pytest workers for the rest, each test file on one worker, the longest first
# (tests/conftest.py). Every process uses one thread (on these small models that is faster than
# one process with two) and starts no worker processes of its own (TLUTILS_WORKERS=1).
# TLUTILS_TEST_RUN lets the processes share each papermill run and the machine's speed, measured
# first, while nothing else runs (the ci budget grows on a slower machine: tests/notebooks.py).
# The book's log is printed at the end; the exit status is the worse of the two.
TEST_RUN := make-$(shell date +%s%N)
test: setup
	@mkdir -p tests/_artifacts
	@TLUTILS_TEST_RUN=$(TEST_RUN) $(PY) -c "import sys; sys.path.insert(0, 'tests'); import notebooks as n; \
	print(f'this machine: {n.speed_measured():.1f} training steps per CPU second, {n.slowdown():.2f}x the reference time')"
	env -u TLUTILS_PROFILE $(PY) -m tlutils.grading stage-book --edition student >/dev/null
	env -u TLUTILS_PROFILE $(PY) -m tlutils.grading execute-book _build/src/student --cache _build/.jupyter_cache
	@export TLUTILS_TEST_RUN=$(TEST_RUN) TLUTILS_WORKERS=1; \
	OMP_NUM_THREADS=1 $(PY) -m pytest -v -m book -p no:xdist --durations=10 > tests/_artifacts/book-tests.log 2>&1 & book=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m pytest -v -n 2 --dist loadfile --no-loadscope-reorder -m "not book" --durations=15; rest=$$?; \
	wait $$book; books=$$?; echo "=== the website's tests (tests/_artifacts/book-tests.log) ==="; \
	cat tests/_artifacts/book-tests.log; exit $$(( rest > books ? rest : books ))

test-fast: setup
	$(PY) -m pytest -m "not notebook and not book" -q

assign: setup
	$(PY) -m tlutils.grading assign

# The student notebooks the website's Colab buttons open (student/labs/): rerun after editing a master.
student-notebooks: setup
	$(PY) -m tlutils.grading student-notebooks

grade: setup
	$(PY) -m tlutils.grading grade $(SUBMISSIONS) $(if $(LAB),--lab $(LAB)) $(GRADE_ARGS)

pretrain: setup
	$(PY) -m tlutils.pretrain

bench: setup
	$(PY) benchmarks/bench_fit.py

clean:
	rm -rf _build _build_ci build tests/_artifacts
