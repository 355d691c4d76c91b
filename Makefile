# Portico — plain Makefile.
#   make            build build/portico
#   make run        install missing Debian packages, build, run on conf/portico.ini
#   make test       install missing packages, build, unit + integration tests, then the same
#                   tests again under ASan+UBSan
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS (default 60) each
#   make bench      benchmark against nginx and HAProxy on loopback (see scripts/bench.sh)
#   make soak       10 minutes of mixed, misbehaving traffic and reloads, then leak and log
#                   checks (SOAK_SECONDS to change; see scripts/soak.sh); not part of make test
#
# Variables: BUILD (output dir, default build), SAN=1 (sanitizer build), CC.

BUILD    ?= build
SAN      ?=
PKGS     := libevent libevent_openssl libevent_pthreads openssl inih
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS)) -lpthread
TEST_LIBS  = $(shell pkg-config --libs cmocka)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-qual -Wformat=2 -Wno-format-nonliteral
OPT      := -O2 -g
ifeq ($(SAN),1)
OPT      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN    := -fsanitize=address,undefined
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

.PHONY: all run test check check-unit check-integration deps fuzz bench soak clean tests
all: $(BUILD)/portico

deps:
	@./scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/portico
	./$(BUILD)/portico -c conf/portico.ini

# Plain build first, then the sanitizer build of everything, each running every test.
test: deps
	@$(MAKE) --no-print-directory -j$(JOBS) check
	@$(MAKE) --no-print-directory -j$(JOBS) check BUILD=build/asan SAN=1
	@echo "make test: all tests passed (plain and ASan+UBSan)"

tests: $(BUILD)/portico $(UNIT_BINS) $(INTEG_BINS)

check: tests
	@./scripts/run-tests.sh $(BUILD)

$(BUILD)/proxy/main.o: VERSION

$(BUILD)/portico: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# test_sock makes evbuffer_new fail on demand to check who frees what.
$(BUILD)/tests/unit/test_sock: LDFLAGS += -Wl,--wrap=evbuffer_new

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

# Makes Portico's own allocations fail one by one: they go through the test's wrappers.
$(BUILD)/tests/unit/test_config_alloc: LDFLAGS += \
	-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=free

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(SUPPORT_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(TEST_LIBS)

# libFuzzer targets link the parser objects built with clang and coverage instrumentation.
FUZZ_DIR   := build/fuzz
FUZZ_FLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude
FUZZ_LIBSRC := proxy/http1.c
FUZZ_CONFIG_SRC := proxy/config.c proxy/config_keys.c proxy/route.c proxy/failure.c proxy/tls.c \
                   proxy/util.c
$(FUZZ_DIR)/fuzz_config: tests/fuzz/fuzz_config.c $(FUZZ_CONFIG_SRC)
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $$(pkg-config --cflags $(PKGS)) -o $@ $^ $$(pkg-config --libs $(PKGS)) -lpthread
$(FUZZ_DIR)/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h $(FUZZ_LIBSRC)
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) $$(pkg-config --cflags $(PKGS)) -o $@ $(filter %.c,$^) $$(pkg-config --libs $(PKGS)) -lpthread

fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_DIR)/%)
	@./scripts/fuzz.sh $(FUZZ_SECONDS)

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/portico
	@./scripts/bench.sh

# PORTICO follows BUILD: `make soak BUILD=build/asan SAN=1` soaks the sanitizer build.
soak: deps
	@$(MAKE) --no-print-directory $(BUILD)/portico
	@PORTICO=$(CURDIR)/$(BUILD)/portico ./scripts/soak.sh

clean:
	rm -rf build

.SECONDARY:
-include $(OBJS:.o=.d) $(SUPPORT_OBJS:.o=.d) $(UNIT_BINS:%=%.d) $(INTEG_BINS:%=%.d)
