/* SPDX-License-Identifier: MIT */
/*
 * The CQES region is read-only for the application.  Both backends: the
 * mapping libaem made is not writable (/proc/self/maps) and a store to it
 * faults.  Kernel backend: a writable mmap of CQES is refused (-EPERM),
 * mprotect cannot add write access to a read-only one, /proc/self/mem
 * cannot force a write, and mappings past a region or at an unknown offset
 * are refused.  CQEs still arrive intact afterwards.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include "aem_test.h"

static sigjmp_buf jb;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jb, 1);
}

/* Permissions of the mapping holding @addr, from /proc/self/maps. */
static bool maps_perms(const void *addr, char perms[5])
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long lo, hi;
	char line[512];
	bool found = false;

	t_assert(f, "open /proc/self/maps");
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 &&
		    (unsigned long)addr >= lo && (unsigned long)addr < hi)
			found = true;
	fclose(f);
	return found;
}

static bool store_faults(volatile uint8_t *p)
{
	struct sigaction sa = { .sa_handler = on_segv }, old_segv, old_bus;
	bool faulted;

	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	if (sigsetjmp(jb, 1) == 0) {
		*p = (uint8_t)(*p + 1);
		faulted = false;
	} else {
		faulted = true;
	}
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return faulted;
}

static void kernel_only(struct aem_ring *r, const struct aem_params *p)
{
	size_t len = p->region_size[AEM_REGION_CQES];
	uint8_t *m;
	int fd;

	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, AEM_OFF_CQES);
	t_assert(m == MAP_FAILED, "writable shared mapping of CQES granted");
	t_eq(errno, EPERM);

	m = mmap(NULL, len, PROT_READ, MAP_SHARED, r->fd, AEM_OFF_CQES);
	t_assert(m != MAP_FAILED, "read-only mapping of CQES: %s", strerror(errno));
	t_assert(mprotect(m, len, PROT_READ | PROT_WRITE) != 0, "mprotect added write access to CQES");
	t_assert(store_faults(m), "store to a second CQES mapping did not fault");
	t_assert(mremap(m, len, len * 2, 0) == MAP_FAILED, "mremap grew a CQES mapping");

	/* A debugger-style forced write through /proc/self/mem. */
	fd = open("/proc/self/mem", O_RDWR);
	if (fd >= 0) {
		uint8_t b = 0x42;

		t_assert(pwrite(fd, &b, 1, (off_t)(uintptr_t)m) != 1, "/proc/self/mem wrote into CQES");
		close(fd);
	}
	munmap(m, len);

	/* Past the region, and at offsets that name no region. */
	m = mmap(NULL, len + 4096, PROT_READ, MAP_SHARED, r->fd, AEM_OFF_CQES);
	t_assert(m == MAP_FAILED, "mapping beyond the CQES region granted");
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, r->fd, AEM_OFF_PAYLOAD + 0x10000000ULL);
	t_assert(m == MAP_FAILED, "mapping at an unknown offset granted");
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, r->fd, AEM_OFF_CQES + len);
	t_assert(m == MAP_FAILED, "mapping at the end of CQES granted");
}

int main(void)
{
	struct aem_params p;
	struct aem_sqe *sqe;
	struct aem_ring r;
	char perms[5] = "";
	int i;

	memset(&p, 0, sizeof(p));
	t_setup(&r, &p);

	t_assert(maps_perms(r.region[AEM_REGION_CQES], perms), "CQES mapping not in /proc/self/maps");
	t_assert(perms[0] == 'r' && perms[1] == '-', "CQES mapped %s", perms);
	t_assert(maps_perms((uint8_t *)r.region[AEM_REGION_CQES] + p.region_size[AEM_REGION_CQES] - 1,
			    perms) && perms[1] == '-', "end of CQES mapped %s", perms);
	t_assert(store_faults((uint8_t *)r.region[AEM_REGION_CQES]), "store to CQES did not fault");
	t_assert(store_faults((uint8_t *)r.region[AEM_REGION_CQES] + p.region_size[AEM_REGION_CQES] - 1),
		 "store to the end of CQES did not fault");
	/* The other regions are the application's to write. */
	t_assert(maps_perms(r.region[AEM_REGION_SQES], perms) && perms[1] == 'w', "SQES mapped %s", perms);
	t_assert(maps_perms(r.region[AEM_REGION_PAYLOAD], perms) && perms[1] == 'w', "PAYLOAD mapped %s", perms);

	if (t_kernel(&r))
		kernel_only(&r, &p);
	else
		t_note("embedded backend: mmap/mprotect refusals are the module's; checked the app mapping only");

	for (i = 0; i < 3; i++) {
		sqe = t_sqe(&r);
		aem_prep_nop(sqe);
		aem_sqe_set_data(sqe, 0xc0 + i);
	}
	t_submit(&r);
	for (i = 0; i < 3; i++) {
		struct aem_cqe c;

		t_assert(t_next(&r, &c, 5000), "NOP result %d", i);
		t_eq(c.user_data, 0xc0 + i);
		t_eq(c.res, 0);
	}
	aem_teardown(&r);
	return T_EXIT_PASS;
}
