/* SPDX-License-Identifier: MIT */
/*
 * Setup and teardown: defaults, rounding, the published layout, parameter
 * validation (-EINVAL for unknown flags, non-zero reserved fields and sizes
 * out of range), backend choice (kernel without /dev/aem is -ENODEV, never a
 * fallback), and no fd or mapping left behind by setup/teardown cycles.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include "aem_test.h"

static unsigned count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	unsigned n = 0;

	if (!d)
		t_fail("opendir %s: %s", path, strerror(errno));
	while ((e = readdir(d)))
		n++;
	closedir(d);
	return n;
}

static unsigned count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned n = 0;
	int ch;

	if (!f)
		t_fail("fopen %s: %s", path, strerror(errno));
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

static uint32_t ring_u32(const struct aem_ring *r, uint32_t off)
{
	return *(const uint32_t *)((const uint8_t *)r->region[AEM_REGION_RINGS] + off);
}

static void check_layout(const struct aem_ring *r, const struct aem_params *p)
{
	uint8_t *rings = r->region[AEM_REGION_RINGS];
	unsigned c;

	t_eq(p->api_version, AEM_API_VERSION);
	t_eq(r->nr_classes, p->nr_classes);
	t_eq(r->sq.ring_entries, p->sq_entries);
	t_eq(r->slot_size, p->slot_size);
	t_eq(r->slot_count, p->slot_count);
	t_eq(r->send_slots, p->send_slots);
	t_assert(r->fd >= 0, "ring fd %d", r->fd);
	t_assert(aem_backend_name(r) != NULL, "no backend name");
	t_eq(!!(p->features & AEM_FEAT_KERNEL), r->backend == AEM_BACKEND_KERNEL);
	for (c = 0; c < AEM_NR_REGIONS; c++)
		t_assert(r->region[c] && p->region_size[c], "region %u missing", c);
	t_assert(p->region_size[AEM_REGION_CQES] >=
		 (uint64_t)p->cq_entries * p->nr_classes * sizeof(struct aem_cqe),
		 "CQES region too small for %u classes of %u", p->nr_classes, p->cq_entries);
	t_assert(p->region_size[AEM_REGION_PAYLOAD] >=
		 (uint64_t)(p->slot_count + p->send_slots) * p->slot_size, "PAYLOAD region too small");

	/* The pointers libaem built are the published offsets, and the values there agree. */
	t_assert((uint8_t *)r->sq.khead == rings + p->sq_off.head, "sq head not at sq_off.head");
	t_assert((uint8_t *)r->sq.ktail == rings + p->sq_off.tail, "sq tail not at sq_off.tail");
	t_eq(ring_u32(r, p->sq_off.ring_mask), p->sq_entries - 1);
	t_eq(ring_u32(r, p->sq_off.ring_entries), p->sq_entries);
	t_assert(p->sq_off.head / 64 != p->sq_off.tail / 64, "SQ head and tail share a cache line");
	for (c = 0; c < p->nr_classes; c++) {
		t_eq(r->cq[c].ring_entries, p->cq_entries);
		t_assert((uint8_t *)r->cq[c].khead == rings + p->cq_off[c].head, "cq %u head", c);
		t_assert((uint8_t *)r->cq[c].ktail == rings + p->cq_off[c].tail, "cq %u tail", c);
		t_eq(ring_u32(r, p->cq_off[c].ring_mask), p->cq_entries - 1);
		t_eq(ring_u32(r, p->cq_off[c].ring_entries), p->cq_entries);
		t_assert(p->cq_off[c].head / 64 != p->cq_off[c].tail / 64,
			 "CQ %u head and tail share a cache line", c);
		t_eq(*r->cq[c].khead, 0);
		t_eq(*r->cq[c].ktail, 0);
	}
	for (; c < AEM_MAX_CLASSES; c++) {
		static const struct aem_ring_offsets zero;

		t_assert(!memcmp(&p->cq_off[c], &zero, sizeof(zero)), "unused class %u offsets not zeroed", c);
	}
	t_eq(*r->sq.khead, 0);
	t_eq(*r->sq.ktail, 0);
}

enum { BAD_FLAG_HIGH, BAD_FLAG_NEXT, BAD_FLAG_BOTH_BACKENDS, BAD_RESV0, BAD_REMOTE_LANES, BAD_RESV2_0,
       BAD_RESV2_3, BAD_CLASSES, BAD_SQ, BAD_CQ, BAD_SLOT_BIG, BAD_SLOT_SMALL, BAD_SLOTS,
       BAD_BACKLOG, BAD_CALL_QUOTA, BAD_SOCK_CONNS, BAD_SQ_IDLE, BAD_SQ_IDLE_NO_POLLER, BAD_NR };

static const char *const bad_name[BAD_NR] = {
	"flags bit 31", "first undefined flag", "EMBEDDED|KERNEL", "resv[0]", "remote_lanes > max",
	"resv2[0]", "resv2[3]", "nr_classes > max", "sq_entries > max", "cq_entries > max",
	"slot_size > max", "slot_size < min", "slot_count + send_slots > max",
	"backlog_limit > max", "call_quota > max", "sock_conns > max",
	"sq_idle_ms > max", "sq_idle_ms without AEM_SETUP_SQPOLL",
};

static void make_bad(struct aem_params *p, int i)
{
	memset(p, 0, sizeof(*p));
	switch (i) {
	case BAD_FLAG_HIGH:		p->flags = 1U << 31; break;
	case BAD_FLAG_NEXT:		p->flags = (AEM_SETUP_FLAGS_ALL << 1) & ~AEM_SETUP_FLAGS_ALL; break;
	case BAD_FLAG_BOTH_BACKENDS:	p->flags = AEM_SETUP_EMBEDDED | AEM_SETUP_KERNEL; break;
	case BAD_RESV0:			p->resv[0] = 1; break;
	case BAD_REMOTE_LANES:	p->remote_lanes = AEM_MAX_LANES + 1; break;
	case BAD_RESV2_0:		p->resv2[0] = 1; break;
	case BAD_RESV2_3:		p->resv2[3] = 1ull << 63; break;
	case BAD_CLASSES:		p->nr_classes = AEM_MAX_CLASSES + 1; break;
	case BAD_SQ:			p->sq_entries = AEM_MAX_SQ_ENTRIES + 1; break;
	case BAD_CQ:			p->cq_entries = AEM_MAX_CQ_ENTRIES + 1; break;
	case BAD_SLOT_BIG:		p->slot_size = AEM_MAX_SLOT_SIZE + 1; break;
	case BAD_SLOT_SMALL:		p->slot_size = AEM_MIN_SLOT_SIZE / 2; break;
	case BAD_SLOTS:			p->slot_count = AEM_MAX_SLOTS; p->send_slots = 1; break;
	case BAD_BACKLOG:		p->backlog_limit = AEM_MAX_BACKLOG + 1; break;
	case BAD_CALL_QUOTA:		p->call_quota = AEM_MAX_CALL_QUOTA + 1; break;
	case BAD_SOCK_CONNS:		p->sock_conns = AEM_MAX_SOCK_CONNS + 1; break;
	case BAD_SQ_IDLE:		p->flags = AEM_SETUP_SQPOLL; p->sq_idle_ms = AEM_MAX_SQ_IDLE_MS + 1; break;
	case BAD_SQ_IDLE_NO_POLLER:	p->sq_idle_ms = 1; break;
	}
}

static void check_backends(void)
{
	const char *saved = getenv("AEM_BACKEND");
	char *keep = saved ? strdup(saved) : NULL;
	bool have_dev = access(AEM_DEVICE_PATH, F_OK) == 0;
	struct aem_params p;
	struct aem_ring r;
	int ret;

	setenv("AEM_BACKEND", "embedded", 1);
	memset(&p, 0, sizeof(p));
	t_ok(aem_setup(&p, &r));
	t_eq(r.backend, AEM_BACKEND_EMBEDDED);
	t_assert(!(p.features & AEM_FEAT_KERNEL), "embedded ring claims AEM_FEAT_KERNEL");
	aem_teardown(&r);

	setenv("AEM_BACKEND", "kernel", 1);
	memset(&p, 0, sizeof(p));
	ret = aem_setup(&p, &r);
	if (have_dev) {
		t_ok(ret);
		t_eq(r.backend, AEM_BACKEND_KERNEL);
		t_assert(p.features & AEM_FEAT_KERNEL, "kernel ring lacks AEM_FEAT_KERNEL");
		aem_teardown(&r);

		/* The flag beats the environment. */
		memset(&p, 0, sizeof(p));
		p.flags = AEM_SETUP_EMBEDDED;
		t_ok(aem_setup(&p, &r));
		t_eq(r.backend, AEM_BACKEND_EMBEDDED);
		aem_teardown(&r);
	} else {
		if (ret == 0)
			t_fail("AEM_BACKEND=kernel without %s set up a %s ring (fallback)",
			       AEM_DEVICE_PATH, aem_backend_name(&r));
		t_eq(ret, -ENODEV);

		unsetenv("AEM_BACKEND");
		memset(&p, 0, sizeof(p));
		p.flags = AEM_SETUP_KERNEL;
		ret = aem_setup(&p, &r);
		if (ret == 0)
			t_fail("AEM_SETUP_KERNEL without %s set up a %s ring", AEM_DEVICE_PATH,
			       aem_backend_name(&r));
		t_eq(ret, -ENODEV);

		/* Neither flag nor environment: embedded, since there is no module. */
		memset(&p, 0, sizeof(p));
		t_ok(aem_setup(&p, &r));
		t_eq(r.backend, AEM_BACKEND_EMBEDDED);
		aem_teardown(&r);
	}

	if (keep)
		setenv("AEM_BACKEND", keep, 1);
	else
		unsetenv("AEM_BACKEND");
	free(keep);
}

int main(void)
{
	struct aem_params p;
	struct aem_ring r, r2;
	unsigned fds, maps, i;
	int ret;

	/* Defaults. */
	memset(&p, 0, sizeof(p));
	t_setup(&r, &p);
	printf("backend %s, features %#x, ring id %u\n", aem_backend_name(&r), p.features, p.ring_id);
	t_eq(p.sq_entries, AEM_DEFAULT_SQ_ENTRIES);
	t_eq(p.cq_entries, AEM_DEFAULT_CQ_ENTRIES);
	t_eq(p.nr_classes, AEM_DEFAULT_CLASSES);
	t_eq(p.slot_size, AEM_DEFAULT_SLOT_SIZE);
	t_eq(p.slot_count, AEM_DEFAULT_SLOTS);
	t_eq(p.send_slots, AEM_DEFAULT_SEND_SLOTS);
	t_assert(p.backlog_limit > 0 && p.backlog_limit <= AEM_MAX_BACKLOG, "backlog_limit %u",
		 p.backlog_limit);
	check_layout(&r, &p);

	/* Two rings at once have different addresses. */
	t_setup(&r2, NULL);
	t_assert(r.ring_id != r2.ring_id, "two rings share ring id %u", r.ring_id);
	aem_teardown(&r2);

	if (t_kernel(&r)) {
		/* A second setup on the same device fd. */
		struct aem_params p2;

		memset(&p2, 0, sizeof(p2));
		ret = ioctl(r.fd, AEM_IOC_SETUP, &p2);
		t_assert(ret < 0 && errno == EBUSY, "second AEM_IOC_SETUP: ret %d errno %d", ret, errno);
	}
	aem_teardown(&r);

	/* Rounding up to powers of two, and the smallest and largest class counts. */
	p = t_params(100, 1000, 1);
	p.slot_size = 100;
	p.slot_count = 10;
	p.send_slots = 3;
	t_setup(&r, &p);
	t_eq(p.sq_entries, 128);
	t_eq(p.cq_entries, 1024);
	t_eq(p.slot_size, 128);
	t_assert(p.slot_count >= 10, "slot_count %u < 10", p.slot_count);
	t_assert(p.send_slots >= 3, "send_slots %u < 3", p.send_slots);
	check_layout(&r, &p);
	aem_teardown(&r);

	p = t_params(1, 1, AEM_MAX_CLASSES);
	t_setup(&r, &p);
	t_eq(p.nr_classes, AEM_MAX_CLASSES);
	check_layout(&r, &p);
	aem_teardown(&r);

	/* Every bad parameter is -EINVAL. */
	for (i = 0; i < BAD_NR; i++) {
		make_bad(&p, i);
		ret = aem_setup(&p, &r);
		if (ret == 0) {
			aem_teardown(&r);
			t_fail("setup with bad %s succeeded", bad_name[i]);
		}
		if (ret != -EINVAL)
			t_fail("setup with bad %s: %s, want -EINVAL", bad_name[i], strerror(-ret));
	}

	/* Setup/teardown cycles leave no fd or mapping behind. */
	t_setup(&r, NULL);
	aem_teardown(&r);
	fds = count_dir("/proc/self/fd");
	maps = count_lines("/proc/self/maps");
	for (i = 0; i < 200; i++) {
		p = t_params(64 << (i % 4), 128 << (i % 3), 1 + i % AEM_MAX_CLASSES);
		t_setup(&r, &p);
		aem_teardown(&r);
	}
	t_eq(count_dir("/proc/self/fd"), fds);
	t_eq(count_lines("/proc/self/maps"), maps);

	check_backends();
	return T_EXIT_PASS;
}
