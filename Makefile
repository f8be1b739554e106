# AEM — top-level targets.
#
#   make run           aembench's default scenarios on the embedded backend
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
#   make fuzz          every fuzz target for FUZZTIME (default 30s)
#
# Parts of `make test` that cannot run here (not root and packages missing)
# say so and are skipped; set AEM_TEST_STRICT=1 to make a skip fail.

GO	?= go
FUZZTIME ?= 30s
BENCHCOUNT ?= 10
export FUZZTIME KERNELS DEBUG_LINE

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
	vmtest vmtest-deb vmtest-debug deb bench bench-c fuzz clean

all: libaem

deps:
	@tools/deps.sh build bench fuzz

libaem: deps
	$(MAKE) -C libaem

kmod:
	$(MAKE) -C kmod $(if $(KDIR),KDIR=$(KDIR))

run: libaem
	$(GO) run ./cmd/aembench

# Fast suites first, so a broken build fails in seconds, not after a VM boot.
test: test-c test-c-san test-go test-fuzz-seeds vmtest vmtest-deb vmtest-debug
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

fuzz: deps
	fuzz/run.sh fuzz

clean:
	rm -rf build
	-$(MAKE) -C kmod clean
