# libFuzzer harnesses and their corpora (test/fuzz/), included by the Makefile.
#
#   make fuzz FUZZ_SECONDS=N   build each harness with clang -fsanitize=fuzzer,address,undefined
#                              into $(BUILD)/fuzz/ and run each for N seconds (default 60), one
#                              after the other, on a scratch copy of its corpus; prints each
#                              one's executions and coverage, keeps new inputs in
#                              $(BUILD)/fuzz/corpus/<target>/ and findings in
#                              $(BUILD)/fuzz/findings/
#   make fuzz-replay           run every checked-in input once through each harness, twice:
#                              built with $(CC) $(CFLAGS) (so SANITIZE applies), then with
#                              clang -fsanitize=address,undefined -fno-sanitize-recover=all
#                              (fuzz-replay-clang); `make unit` runs it
#
# A finding is fixed in the source and its input checked in as
# test/fuzz/corpus/<target>/crash-<what>, so that every test run replays it.

FUZZ_TARGETS  := http_parser ws_handshake ws_frames ws_inflate api_json conf redis_url
FUZZ_SECONDS  ?= 60
FUZZ_CC       ?= clang
FUZZ_DIR      := $(BUILD)/fuzz
FUZZ_SAN      := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
                 -fno-omit-frame-pointer
FUZZ_SUPPORT  := test/fuzz/fuzz_worker.c

# Everything the harnesses link is built again with clang, so that libFuzzer sees the
# coverage of the library and not only of the harness.
FUZZ_LIB_OBJ  := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o) $(FUZZ_SUPPORT:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_BINS     := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)

REPLAY_DIR    := $(BUILD)/fuzz-replay
REPLAY_OBJ    := $(BUILD)/test/fuzz/replay.o $(FUZZ_SUPPORT:%.c=$(BUILD)/%.o)
REPLAY_BINS   := $(FUZZ_TARGETS:%=$(REPLAY_DIR)/fuzz_%)
CLANG_REPLAY_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/replay_%)

.PHONY: fuzz fuzz-build fuzz-replay fuzz-replay-clang

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_SAN) -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/test/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# One harness at a time, each in one process: the machine is shared. libFuzzer's last
# "DONE" line carries the totals (#executions, cov: edges, ft: features).
fuzz: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	    work=$(FUZZ_DIR)/corpus/$$t; log=$(FUZZ_DIR)/fuzz_$$t.log; \
	    rm -rf $$work; mkdir -p $$work $(FUZZ_DIR)/findings; \
	    cp test/fuzz/corpus/$$t/* $$work/; \
	    $(FUZZ_DIR)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/findings/$$t- \
	        $$work >$$log 2>&1 || failed="$$failed $$t"; \
	    stats=$$(sed -nE 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+cov: ([0-9]+) ft: ([0-9]+).*/\1 executions, cov: \2, ft: \3/p' $$log | tail -n 1); \
	    printf '%-14s %s\n' $$t "$${stats:-stopped early: see $$log}"; \
	done; \
	if [ -n "$$failed" ]; then \
	    echo "fuzz: findings in:$$failed (logs in $(FUZZ_DIR)/, inputs in $(FUZZ_DIR)/findings/)"; \
	    exit 1; \
	fi

$(REPLAY_DIR)/fuzz_%: $(BUILD)/test/fuzz/fuzz_%.o $(REPLAY_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-replay: $(REPLAY_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    $(REPLAY_DIR)/fuzz_$$t test/fuzz/corpus/$$t || exit 1; \
	done
	@$(MAKE) --no-print-directory SANITIZE= fuzz-replay-clang

# The same replay under clang's UBSan and ASan. gcc's UBSan lacks checks that clang's has
# (pointer arithmetic on NULL, for one), so that without this a defect that `make fuzz`
# stops on at once would pass every test run. The harnesses are linked from the objects
# of `make fuzz` (their coverage hooks are inert without libFuzzer), and fuzz-replay asks
# for them with SANITIZE unset, so that they are built once, in build/fuzz/, and the
# SANITIZE run of CI reuses what the plain one built.
$(FUZZ_DIR)/replay_%: $(FUZZ_DIR)/obj/test/fuzz/fuzz_%.o $(FUZZ_DIR)/obj/test/fuzz/replay.o \
                      $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) -fsanitize=address,undefined -o $@ $^ $(LDLIBS)

fuzz-replay-clang: $(CLANG_REPLAY_BINS)
	@for t in $(FUZZ_TARGETS); do \
	    UBSAN_OPTIONS=print_stacktrace=1 $(FUZZ_DIR)/replay_$$t test/fuzz/corpus/$$t || exit 1; \
	done

# The objects that only pattern rules name would otherwise be deleted as intermediates
# (make fuzz built the whole library again on every run).
.SECONDARY: $(FUZZ_TARGETS:%=$(BUILD)/test/fuzz/fuzz_%.o) $(REPLAY_OBJ) \
            $(FUZZ_TARGETS:%=$(FUZZ_DIR)/obj/test/fuzz/fuzz_%.o) $(FUZZ_LIB_OBJ) \
            $(FUZZ_DIR)/obj/test/fuzz/replay.o
