/* SPDX-License-Identifier: MIT */
/*
 * The mapping rules: CQES is read-only (PROT_WRITE refused with EPERM,
 * mprotect cannot add it later), no region is ever executable (PROT_EXEC
 * refused with EPERM, mprotect cannot add it), every region is shared-only, offsets name
 * whole regions, a mapping cannot outgrow its region (not at mmap, not by
 * mremap), and mappings made before close keep working pages afterwards.
 */
#include "aem_test.h"

static void *map(struct vring *r, int region, size_t len, int prot, int flags, uint64_t extra)
{
	return mmap(NULL, len, prot, flags, r->fd, (off_t)(vr_off[region] + extra));
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct vring r;
	size_t cq_len;
	void *m, *m2;
	int fd, i;

	/* Nothing to map before setup. */
	fd = vr_open();
	t_assert(fd >= 0, "open: %s", strerror(-fd));
	m = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, 0);
	t_assert(m == MAP_FAILED, "mapped a ring that does not exist");
	t_eq(errno, EBADFD);
	close(fd);

	vr_setup_or_die(&r, NULL);
	cq_len = r.size[AEM_REGION_CQES];

	/* CQES: writable mapping refused; read-only mapping cannot become writable. */
	m = map(&r, AEM_REGION_CQES, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	t_assert(m == MAP_FAILED, "CQES mapped writable");
	t_eq(errno, EPERM);
	m = map(&r, AEM_REGION_CQES, cq_len, PROT_WRITE, MAP_SHARED, 0);
	t_assert(m == MAP_FAILED, "CQES mapped write-only");
	t_eq(errno, EPERM);
	m = map(&r, AEM_REGION_CQES, cq_len, PROT_READ, MAP_SHARED, 0);
	t_assert(m != MAP_FAILED, "CQES read-only: %s", strerror(errno));
	t_assert(mprotect(m, cq_len, PROT_READ | PROT_WRITE) < 0, "mprotect added PROT_WRITE to CQES");
	t_eq(errno, EACCES);
	munmap(m, cq_len);

	/* No region is code: PROT_EXEC refused at mmap and by mprotect. */
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		int prot = i == AEM_REGION_CQES ? PROT_READ : PROT_READ | PROT_WRITE;

		if (!r.size[i])
			continue;
		m = map(&r, i, page, prot | PROT_EXEC, MAP_SHARED, 0);
		t_assert(m == MAP_FAILED, "region %d mapped executable", i);
		t_eq(errno, EPERM);
		m = map(&r, i, page, PROT_EXEC, MAP_SHARED, 0);
		t_assert(m == MAP_FAILED, "region %d mapped exec-only", i);
		t_eq(errno, EPERM);
		m = map(&r, i, page, prot, MAP_SHARED, 0);
		t_assert(m != MAP_FAILED, "region %d plain mapping: %s", i, strerror(errno));
		t_assert(mprotect(m, page, prot | PROT_EXEC) < 0, "mprotect made region %d executable", i);
		t_eq(errno, EACCES);
		/* Still the plain mapping it was, and still the ring's pages. */
		t_eq(*(volatile uint8_t *)m, *(uint8_t *)r.region[i]);
		munmap(m, page);
	}

	/* Private mappings would copy on write: the kernel would not see them. */
	m = map(&r, AEM_REGION_SQES, page, PROT_READ | PROT_WRITE, MAP_PRIVATE, 0);
	t_assert(m == MAP_FAILED, "MAP_PRIVATE accepted");
	t_eq(errno, EINVAL);

	/* Offsets must name a region start; sizes must fit the region. */
	m = map(&r, AEM_REGION_SQES, page, PROT_READ, MAP_SHARED, (uint64_t)page);
	t_assert(m == MAP_FAILED, "offset inside a region accepted");
	t_eq(errno, EINVAL);
	m = mmap(NULL, page, PROT_READ, MAP_SHARED, r.fd, (off_t)0x40000000);
	t_assert(m == MAP_FAILED, "offset past the last region accepted");
	t_eq(errno, EINVAL);
	m = map(&r, AEM_REGION_RINGS, r.size[AEM_REGION_RINGS] + 2 * page,
		PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	t_assert(m == MAP_FAILED, "mapping larger than the region accepted");
	t_eq(errno, EINVAL);

	/* A partial mapping of a region is fine. */
	m = map(&r, AEM_REGION_PAYLOAD, page, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	t_assert(m != MAP_FAILED, "partial PAYLOAD mapping: %s", strerror(errno));

	/* mremap: growth refused (VM_DONTEXPAND), moving keeps the same pages. */
	m2 = mremap(r.region[AEM_REGION_RINGS], r.size[AEM_REGION_RINGS],
		    r.size[AEM_REGION_RINGS] + page, MREMAP_MAYMOVE);
	t_assert(m2 == MAP_FAILED, "mremap grew a ring mapping");
	t_eq(errno, EFAULT);
	m2 = mremap(m, page, 4 * page, MREMAP_MAYMOVE);
	t_assert(m2 == MAP_FAILED, "mremap grew a payload mapping");
	munmap(m, page);

	/* The ring still works, and a second RINGS mapping sees the same pages. */
	vr_nop_ok(&r);
	m = map(&r, AEM_REGION_RINGS, r.size[AEM_REGION_RINGS], PROT_READ, MAP_SHARED, 0);
	t_assert(m != MAP_FAILED, "second RINGS mapping: %s", strerror(errno));
	t_eq(*(uint32_t *)((char *)m + r.p.sq_off.head), *vr_u32(&r, r.p.sq_off.head));

	/* Close the fd with mappings alive: their pages stay valid until munmap. */
	close(r.fd);
	r.fd = -1;
	t_eq(*(volatile uint32_t *)((char *)m + r.p.sq_off.head), *vr_u32(&r, r.p.sq_off.head));
	memset(r.region[AEM_REGION_SQES], 0xa5, r.size[AEM_REGION_SQES]);
	munmap(m, r.size[AEM_REGION_RINGS]);
	vr_close(&r);
	return T_EXIT_PASS;
}
