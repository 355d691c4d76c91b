# Portico — plain Makefile.
#   make            build build/portico
#   make run        install missing Debian packages, build, run on conf/portico.ini
#   make test       install missing packages, build, unit + integration tests, then the same
#                   tests again under ASan+UBSan, then every fuzz target for a few seconds
#   make check-layers  fail on an include cycle between modules (scripts/include-cycles.py);
#                   make test and make check run it too
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS (default 60) each
#   make valgrind   one integration test (VALGRIND_TEST) with Portico under valgrind memcheck
#   make tsan       the ThreadSanitizer build (SAN=thread, build/tsan), then the tests that run
#                   Portico's threads together and scripts/tsan-stress.sh; not part of make test
#   make bench      benchmark against nginx and HAProxy on loopback (see scripts/bench.sh)
#   make soak       10 minutes of mixed, misbehaving traffic and reloads, then leak and log
#                   checks (SOAK_SECONDS to change; see scripts/soak.sh); not part of make test
#   make install    install the binary, portico(8), the example configurations, the systemd unit,
#                   the logrotate snippet and the sysusers file (PREFIX, DESTDIR, ... below)
#   make uninstall  remove what install put there (the configuration in SYSCONFDIR stays)
#
# Variables: BUILD (output dir, default build), SAN=1 (ASan+UBSan build), SAN=thread
# (ThreadSanitizer build, as make tsan does: BUILD=build/tsan SAN=thread), CC.

BUILD    ?= build
SAN      ?=
PKGS     := libevent libevent_openssl libevent_pthreads openssl inih libnghttp2
# Each asks pkg-config once, where a recipe first needs it (after deps installed the packages),
# then keeps the answer: a plain `=` asked it again for every compile and link (~200 a build).
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $$(PKGS)) -lpthread -lm)$(PKG_LIBS)
TEST_LIBS  = $(eval TEST_LIBS := $$(shell pkg-config --libs cmocka))$(TEST_LIBS)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-qual -Wformat=2 -Wno-format-nonliteral
# build/portico is linked with link-time optimisation: one job per file leaves many small
# functions a request calls across files (event_now_us, sock_pending, h1_find, metrics_*), and
# inlining them at the link took 15,443 -> 14,379 user-space instructions per proxied keep-alive
# request (callgrind, docs/BENCHMARKS.md). The objects stay fat (machine code beside the
# compiler's IR) and the tests link their machine code (-fno-lto: gcc would run LTO for every
# test binary otherwise), as before; the integration tests run the LTO binary.
# strnlen's bound in str_copy is the destination's size, past a shorter source's string: seen
# whole at the link, gcc warns of a read that strnlen stops short of (at the NUL).
OPT      := -O2 -g -flto=auto -ffat-lto-objects
LTO_LINK := -O2 -g -flto=auto -Wno-stringop-overread
NO_LTO   := -fno-lto
ifeq ($(SAN),1)
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN    := -fsanitize=address,undefined
LTO_LINK :=
endif
# Races between Portico's threads (workers, main, drain, simulator). Not ASan's build: the two
# sanitizers cannot share a binary, so this one has its own BUILD (build/tsan). -Wno-tsan: TSan
# does not model atomic_thread_fence (the seqlocks of recent.c and fault_decide.c), but every
# word those fences order is itself atomic, so TSan reports no race there to miss or invent.
ifeq ($(SAN),thread)
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=thread -Wno-tsan
LDSAN    := -fsanitize=thread
LTO_LINK :=
endif
CFLAGS   += -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(LDSAN)

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CFLAGS   += -DPORTICO_VERSION='"$(VERSION)"'

SRCS     := $(wildcard proxy/*.c)
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS := $(filter-out $(BUILD)/proxy/main.o,$(OBJS))

SUPPORT_SRCS := $(wildcard tests/support/*.c)
SUPPORT_OBJS := $(SUPPORT_SRCS:%.c=$(BUILD)/%.o)
UNIT_SRCS    := $(wildcard tests/unit/test_*.c)
UNIT_BINS    := $(UNIT_SRCS:%.c=$(BUILD)/%)
INTEG_SRCS   := $(wildcard tests/integration/test_*.c)
INTEG_BINS   := $(INTEG_SRCS:%.c=$(BUILD)/%)
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SECONDS ?= 60
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)

# Where `make install` puts things. PREFIX moves everything but the system configuration
# (SYSCONFDIR: the configuration and the logrotate snippet, read there by the system); DESTDIR
# stages the whole tree (packaging), and the installed files name the paths without it.
PREFIX      ?= /usr/local
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/portico
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR  ?= /etc
INSTALL     ?= install

.PHONY: all run test check check-layers check-unit check-integration deps fuzz fuzz-build \
        fuzz-bins fuzz-smoke valgrind tsan bench soak clean tests install uninstall
all: $(BUILD)/portico

deps:
	@./scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/portico
	./$(BUILD)/portico -c conf/portico.ini

# Plain build first, then the sanitizer build of everything, each running every test. Each
# next build (the sanitizer one, then the fuzz targets) runs beside the unit tests before it,
# which leave the cores mostly idle; never beside integration tests. The two builds' integration
# tests then run side by side, each build's one binary at a time (run-tests.sh). (Named through
# variables: a line that says $(MAKE) itself runs under make -n.)
ASAN_BUILD := $(MAKE) --no-print-directory -j$(JOBS) tests BUILD=build/asan SAN=1
FUZZ_BUILD := $(MAKE) --no-print-directory -j$(JOBS) fuzz-bins
test: deps
	@$(MAKE) --no-print-directory check-layers
	@$(MAKE) --no-print-directory -j$(JOBS) tests
	@./scripts/run-tests.sh --only unit --beside '$(ASAN_BUILD)' build
	@./scripts/run-tests.sh --only unit --beside '$(FUZZ_BUILD)' build/asan
	@./scripts/run-tests.sh --only integration build build/asan
	@$(MAKE) --no-print-directory fuzz-smoke
	@echo "make test: all tests passed (plain, ASan+UBSan, fuzz smoke)"

tests: $(BUILD)/portico $(UNIT_BINS) $(INTEG_BINS) $(BUILD)/tests/oom_preload.so \
       $(BUILD)/tests/pause_preload.so

# An LD_PRELOAD library the integration tests start Portico with to make chosen allocations fail
# (tests/support/oom.h). Built apart and without sanitizers: it forwards to whichever allocator
# the Portico it is loaded into has (ASan's in build/asan).
$(BUILD)/tests/oom_preload.so: tests/preload/oom_preload.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -fPIC -shared $(WARN) -D_GNU_SOURCE -o $@ $< -ldl

# An LD_PRELOAD library that pauses a worker right after it sends an answer head, for finding
# tests that read a count before Portico has made it (run by hand: tests/preload/pause_preload.c).
$(BUILD)/tests/pause_preload.so: tests/preload/pause_preload.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -fPIC -shared $(WARN) -D_GNU_SOURCE -o $@ $< -ldl -lpthread

check: tests check-layers
	@./scripts/run-tests.sh $(BUILD)

# A module (proxy/X.c with include/portico/X.h) includes only headers of its own layer or below,
# so the modules' include graph has no cycle: any cycle fails here, none is allowed.
check-layers:
	@python3 scripts/include-cycles.py

$(BUILD)/proxy/main.o: VERSION

$(BUILD)/portico: $(OBJS)
	$(CC) $(LDFLAGS) $(LTO_LINK) -o $@ $^ $(PKG_LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# test_sock makes evbuffer_new fail on demand to check who frees what.
$(BUILD)/tests/unit/test_sock: LDFLAGS += -Wl,--wrap=evbuffer_new,--wrap=event_add
# and asks /proc which sockets epoll watches (testutil's tu_epoll_watches)
$(BUILD)/tests/unit/test_sock: $(BUILD)/tests/support/testutil.o

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) $(NO_LTO) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

# Makes Portico's own allocations fail one by one: they go through the test's wrappers.
$(BUILD)/tests/unit/test_config_alloc: LDFLAGS += \
	-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=free

# makes the health check's timer fail to arm (event_add, as libevent out of memory)
$(BUILD)/tests/unit/test_loop_oom: LDFLAGS += -Wl,--wrap=event_add

# Makes the copy of a metrics row's name fail (a retired shard out of memory).
$(BUILD)/tests/unit/test_metrics_alloc: LDFLAGS += -Wl,--wrap=strdup

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(SUPPORT_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) $(NO_LTO) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

# ---- libFuzzer targets ----
# Every tests/fuzz/fuzz_NAME.c is a target build/fuzz/fuzz_NAME (seeds in tests/fuzz/corpus/NAME/).
# Each links every proxy/ object but main.o, rebuilt with clang and the fuzzer's coverage
# instrumentation: the object list is derived, never written by hand, so a module that gains a
# dependency cannot break the link. Adding a target is adding its .c file and corpus directory
# (tests/fuzz/README.md); `make fuzz` and the smoke run of `make test` find it.
FUZZ_DIR      := build/fuzz
FUZZ_CC       ?= clang
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all
# -Werror stays with the gcc builds: a warning only clang has must not fail the fuzz build.
FUZZ_CFLAGS   := -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN) \
                 $(filter-out -Werror,$(WARN)) -D_GNU_SOURCE -Iinclude -MMD -MP
FUZZ_LIB_OBJS := $(filter-out $(FUZZ_DIR)/obj/proxy/main.o,$(SRCS:%.c=$(FUZZ_DIR)/obj/%.o))
FUZZ_BINS     := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_SMOKE_SECONDS ?= 3

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(PKG_LIBS)

fuzz-build: deps
	@$(MAKE) --no-print-directory -j$(JOBS) fuzz-bins

fuzz-bins: $(FUZZ_BINS)
	@:

# Each target for FUZZ_SECONDS (default 60), one after the other; FUZZ_ARGS adds libFuzzer flags.
fuzz: fuzz-build
	@./scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# Part of `make test`: each target a few seconds from its seeds, so a target that stops
# building, or crashes on its corpus or soon after, fails the tests. As many at a time as there
# are cores (JOBS): each target keeps its seconds and a core to itself, the run takes a JOBSth.
fuzz-smoke: fuzz-build
	@FUZZ_JOBS=$(JOBS) ./scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_BINS)

# ---- valgrind ----
# One broad integration test with every Portico it starts under memcheck: any invalid access or
# definite leak fails it (scripts/valgrind.sh). VALGRIND_TEST picks another test binary.
VALGRIND_TEST ?= test_failures
valgrind: deps
	$(if $(filter 1,$(SAN)),$(error make valgrind needs the plain build: drop SAN=1))
	@$(MAKE) --no-print-directory -j$(JOBS) $(BUILD)/portico \
	    $(BUILD)/tests/integration/$(VALGRIND_TEST)
	@./scripts/valgrind.sh $(BUILD) $(BUILD)/tests/integration/$(VALGRIND_TEST)

# ---- ThreadSanitizer ----
# By hand, not part of make test (5-15x slower): the unit and integration tests that run
# Portico's threads together (TSAN_UNIT, TSAN_TESTS in scripts/tsan.sh pick others), one at a
# time, then 20 s of load, TLS sessions resumed, scrapes, fault-rule changes, reloads, log
# reopens and systemd's watchdog at once (scripts/tsan-stress.sh). Any report fails it;
# tests/tsan.supp says why each suppression is not a race in Portico.
tsan: deps
	@$(MAKE) --no-print-directory -j$(JOBS) tests BUILD=build/tsan SAN=thread
	@./scripts/tsan.sh build/tsan

bench:
	@./scripts/deps.sh bench
	@$(MAKE) --no-print-directory $(BUILD)/portico
	@./scripts/bench.sh

# PORTICO follows BUILD: `make soak BUILD=build/asan SAN=1` soaks the sanitizer build.
soak: deps
	@$(MAKE) --no-print-directory $(BUILD)/portico
	@PORTICO=$(CURDIR)/$(BUILD)/portico ./scripts/soak.sh

# The configuration is installed only where there is none: an operator's file is never replaced.
install: $(BUILD)/portico
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(SYSCONFDIR)/portico \
		$(DESTDIR)$(SYSCONFDIR)/logrotate.d
	$(INSTALL) -m 755 $(BUILD)/portico $(DESTDIR)$(SBINDIR)/portico
	$(INSTALL) -m 644 docs/portico.8 $(DESTDIR)$(MANDIR)/man8/portico.8
	$(INSTALL) -m 644 LICENSE README.md docs/DEPLOYING.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 644 conf/*.ini conf/examples/*.ini $(DESTDIR)$(DOCDIR)/examples/
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		packaging/portico.service.in > $(DESTDIR)$(UNITDIR)/portico.service
	chmod 644 $(DESTDIR)$(UNITDIR)/portico.service
	$(INSTALL) -m 644 packaging/portico.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/portico
	$(INSTALL) -m 644 packaging/portico.sysusers $(DESTDIR)$(SYSUSERSDIR)/portico.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/portico/portico.ini ] || \
		$(INSTALL) -m 644 conf/portico.ini $(DESTDIR)$(SYSCONFDIR)/portico/portico.ini

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/portico $(DESTDIR)$(MANDIR)/man8/portico.8 \
		$(DESTDIR)$(UNITDIR)/portico.service $(DESTDIR)$(SYSUSERSDIR)/portico.conf \
		$(DESTDIR)$(SYSCONFDIR)/logrotate.d/portico
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf $(BUILD)

.SECONDARY:
-include $(OBJS:.o=.d) $(SUPPORT_OBJS:.o=.d) $(UNIT_BINS:%=%.d) $(INTEG_BINS:%=%.d)
-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_BINS:$(FUZZ_DIR)/%=$(FUZZ_DIR)/obj/tests/fuzz/%.d)
