# AEM — top-level targets.
#
#   make run           aembench's default scenarios on the embedded backend
#                      (installs nothing: Go and gcc suffice); ARGS= gives
#                      aembench other flags
#   make test          every suite (installs Debian packages it needs when root)
#   make libaem        the C library: build/libaem.{a,so.1,pc}
#   make kmod          the kernel modules (KDIR= selects the kernel tree)
#   make deb           build/aem-dkms_<VERSION>_all.deb, the DKMS package
#   make vmtest        the C and Go suites against /dev/aem in a TCG VM, on
#                      each kernel line (KERNELS=6.1,6.12,7.2 by default)
#   make vmtest-deb    the package installed with apt and loaded, per line
#   make vmtest-debug  the suites under a KASAN + lockdep + kmemleak kernel
#                      of the newest line (DEBUG_LINE= picks another)
#   make bench         Go benchmarks, -count=10, for benchstat
#   make fuzz          every fuzz target for FUZZTIME (default 30s), then
#                      aemfuzz against /dev/aem in a VM for DEVFUZZ_TIME (60 s)
#   make soak          one VM looping the hostile suites and aemfuzz with
#                      random seeds for SOAK_TIME (default 30m); not in `make test`
#
# Parts of `make test` that cannot run here (not root and packages missing)
# say so and are skipped; set AEM_TEST_STRICT=1 to make a skip fail.

GO	?= go
FUZZTIME ?= 30s
DEVFUZZ_TIME ?= 60
SOAK_TIME ?= 30m
FUZZ_KERNEL ?= $(shell awk '!/^\#/ && NF { l = $$1 } END { print l }' tools/vmtest/lines)
BENCHCOUNT ?= 10
export FUZZTIME KERNELS DEBUG_LINE

# goaem compiles the C it includes from kmod/ and libaem/, which Go's build
# cache does not track; CGO_CFLAGS is part of its cache key, so a hash of
# those files there makes every Go build below see a change to them.
AEM_C_HASH := $(shell find kmod/core kmod/uapi libaem/src libaem/include -type f \
	-print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)
CGO_CFLAGS ?= -O2 -g
CGO_CFLAGS += -DAEM_C_SOURCES=$(AEM_C_HASH)
export CGO_CFLAGS

# run a script whose exit status 77 means "skipped": report it, do not fail
define skippable
	@rc=0; $(1) || rc=$$?; \
	if [ $$rc -eq 77 ]; then \
		echo "*** $(2): SKIPPED (see the reason above)"; \
		[ -z "$$AEM_TEST_STRICT" ] || exit 1; \
	elif [ $$rc -ne 0 ]; then \
		echo "*** $(2): FAILED (exit $$rc)"; exit $$rc; \
	else echo "*** $(2): passed"; fi
endef

.PHONY: all deps libaem kmod run test test-c test-c-san test-go test-fuzz-seeds \
	vmtest vmtest-deb vmtest-debug deb bench bench-c fuzz soak clean

all: libaem

deps:
	@tools/deps.sh build bench fuzz

libaem:
	$(MAKE) -C libaem

kmod:
	$(MAKE) -C kmod $(if $(KDIR),KDIR=$(KDIR))

# Needs only Go and gcc: without liburing's headers the io_uring peers are
# left out (aembench says so) rather than failing the build.
run:
	@tags=; printf '#include <liburing.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 || tags=noliburing; \
	set -x; $(GO) run -tags "$$tags" ./cmd/aembench $(ARGS)

# Fast suites first, so a broken build fails in seconds, not after a VM boot.
test: test-c test-c-san test-go test-fuzz-seeds vmtest vmtest-deb vmtest-debug
	AEM_README_CHECK_IN="make test" scripts/readme-check.sh
	@echo "*** make test: all suites passed"

test-c: libaem
	$(MAKE) -C libaem/tests check

test-c-san: deps
	$(MAKE) -C libaem SANITIZE=1
	$(MAKE) -C libaem/tests check SANITIZE=1

test-go: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

test-fuzz-seeds: deps
	fuzz/run.sh seeds

vmtest:
	@tools/deps.sh vm
	$(call skippable,tools/vmtest/vmtest.sh,vmtest)

vmtest-deb:
	@tools/deps.sh vm
	$(call skippable,tools/vmtest/deb-test.sh,vmtest-deb)

deb:
	@tools/deb/build.sh

vmtest-debug:
	@tools/deps.sh vm
	$(call skippable,tools/vmtest/vmtest-debug.sh,vmtest-debug)

bench: libaem
	$(GO) test ./bench/... ./goaem/ -run '^$$' -bench . -benchmem -count=$(BENCHCOUNT)

bench-c: libaem
	$(MAKE) -C libaem bench

# Then the module's own surface: aemfuzz (fuzz/dev) in a VM of the newest
# kernel line for DEVFUZZ_TIME seconds.
fuzz: deps
	fuzz/run.sh fuzz
	@tools/deps.sh vm
	$(call skippable,VMTEST_SUITES=devfuzz DEVFUZZ_TIME=$(DEVFUZZ_TIME) KERNELS=$(FUZZ_KERNEL) tools/vmtest/vmtest.sh,fuzz of /dev/aem)

# Not part of `make test`: one VM looping the hostile suites and aemfuzz
# with random seeds for SOAK_TIME (tools/vmtest/soak.sh).
soak:
	@tools/deps.sh vm
	$(call skippable,SOAK_TIME=$(SOAK_TIME) tools/vmtest/soak.sh,soak)

clean:
	rm -rf build
	-$(MAKE) -C kmod clean
