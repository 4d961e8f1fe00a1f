# sessiond: one plain Makefile.
#   make                 build build/sessiond
#   make check           install missing packages, then unit and integration tests
#   make SANITIZE=address,undefined check    the same under ASan and UBSan (own build dir)
#   make bench           scripts/bench all
#   make fuzz            FUZZ_SECONDS=60: run each libFuzzer harness of test/fuzz/ (clang)
#   make fuzz-replay     replay the fuzz corpora with $(CC), then clang's ASan+UBSan (make unit)
#   make run             build and run on conf/sessiond.conf in the foreground
#   make install         PREFIX=/usr/local DESTDIR=

PREFIX    ?= /usr/local
DESTDIR   ?=
CC        ?= cc
PYTHON    ?= /usr/bin/python3
SANITIZE  ?=
BUILD     ?= build$(if $(SANITIZE),-san)

# The version: the one place it is written. -v, /api/health and -s status print it, and
# test_config_edges.py holds the man pages to it.
VERSION   := 0.1.0

PKGS      := jansson zlib openssl lmdb hiredis
WARN      := -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion -Wstrict-prototypes \
             -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
CFLAGS    ?= -O2 -g
# common/ stands alone: its files are compiled with their own headers only, so that an
# include of a worker/ or master/ header fails the build rather than tangle the layers.
# ($< is the source being compiled; the variable is expanded in each recipe.)
INCLUDES   = $(if $(filter common/%,$<),-Icommon,-Icommon -Iworker -Imaster)
VERSION_DEF := -DSESSIOND_VERSION=\"$(VERSION)\"
CFLAGS    += -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP $(INCLUDES) $(VERSION_DEF)
CFLAGS    += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    += -lev -lwslay $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
ifneq ($(SANITIZE),)
CFLAGS    += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=$(SANITIZE)
endif

COMMON_SRC := $(wildcard common/*.c)
WORKER_SRC := $(wildcard worker/*.c)
MASTER_SRC := $(filter-out master/main.c,$(wildcard master/*.c))
LIB_SRC    := $(COMMON_SRC) $(WORKER_SRC) $(MASTER_SRC)
UNIT_SRC   := $(wildcard test/unit/*.c)

LIB_OBJ      := $(LIB_SRC:%.c=$(BUILD)/%.o)
TESTLIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/test-hooks/%.o)
UNIT_OBJ     := $(UNIT_SRC:%.c=$(BUILD)/%.o)

.PHONY: all check unit integration deps bench run install clean lint
all: $(BUILD)/sessiond

$(BUILD)/sessiond: $(BUILD)/master/main.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The objects that print the version are rebuilt when it changes (with the Makefile).
VERSION_SRC  := $(shell grep -l SESSIOND_VERSION $(LIB_SRC) master/main.c)
$(VERSION_SRC:%.c=$(BUILD)/%.o) $(VERSION_SRC:%.c=$(BUILD)/test-hooks/%.o): Makefile

# The same daemon with the test-only debug hooks (worker/debug.c) compiled in; the
# integration tests run this one, the installed binary never has them.
$(BUILD)/sessiond-test: $(BUILD)/test-hooks/master/main.o $(TESTLIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit-tests: $(UNIT_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs check)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/test-hooks/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DSESSIOND_TEST_HOOKS -c -o $@ $<

$(BUILD)/test/unit/%.o: test/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(shell pkg-config --cflags check) -c -o $@ $<

deps:
	@scripts/install-deps

check: deps
	$(MAKE) unit integration

unit: $(BUILD)/unit-tests
	cd test/unit && CK_DEFAULT_TIMEOUT=30 ../../$(BUILD)/unit-tests
	$(MAKE) --no-print-directory fuzz-replay

integration: $(BUILD)/sessiond $(BUILD)/sessiond-test
	SESSIOND_BIN=$(CURDIR)/$(BUILD)/sessiond-test $(PYTHON) -m pytest -q -p no:cacheprovider test/integration

bench: $(BUILD)/sessiond
	SESSIOND_BIN=$(CURDIR)/$(BUILD)/sessiond scripts/bench all

run: deps $(BUILD)/sessiond
	$(BUILD)/sessiond -c conf/sessiond.conf

# clang-tidy runs the checks in .clang-tidy over every daemon source, one file per
# process, LINT_JOBS at a time, largest first (worker/ws.c alone is half the time); any
# finding fails (WarningsAsErrors). A file's output is shown only when it fails, without
# clang-tidy's "N warnings generated" counts of what it suppressed in system headers.
LINT_JOBS  ?= 2
TIDY_SRC   := $(COMMON_SRC) $(WORKER_SRC) $(wildcard master/*.c)
TIDY_FLAGS := -std=c11 -D_GNU_SOURCE $(VERSION_DEF) -Icommon -Iworker -Imaster \
              $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

lint:
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
	    --inline-suppr -Icommon -Iworker -Imaster common worker master
	@echo "clang-tidy: $(words $(TIDY_SRC)) files, $(LINT_JOBS) at a time"
	@ls -S $(TIDY_SRC) | xargs -P$(LINT_JOBS) -I{} sh -c \
	    'out=$$(clang-tidy --quiet "$$0" -- $(TIDY_FLAGS) 2>&1) || \
	     { printf "%s\n" "$$out" | grep -Ev "^[0-9]+ warnings? generated\.$$"; exit 1; }' {}

install: $(BUILD)/sessiond
	install -Dm755 $(BUILD)/sessiond $(DESTDIR)$(PREFIX)/sbin/sessiond
	install -Dm644 man/sessiond.8 $(DESTDIR)$(PREFIX)/share/man/man8/sessiond.8
	install -Dm644 man/sessiond.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/sessiond.conf.5
	install -Dm644 conf/sessiond.conf $(DESTDIR)$(PREFIX)/share/doc/sessiond/sessiond.conf.example

clean:
	rm -rf build build-san

include test/fuzz/fuzz.mk

# The files of web/ are linked into the binary by worker/assets.c.
ASSETS := $(wildcard web/*)
$(BUILD)/worker/assets.o $(BUILD)/test-hooks/worker/assets.o $(FUZZ_DIR)/obj/worker/assets.o: $(ASSETS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
