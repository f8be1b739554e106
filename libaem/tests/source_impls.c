/* SPDX-License-Identifier: MIT */
/*
 * Two implementations of one source loaded at once, chosen per
 * subscription: the fd source's implementation 1 (aem_fd.ko; embedded:
 * the built-in one) and 2 (aem_fd_v2.ko, loaded here; embedded: the test
 * hook aem_embedded_source_impl()).  A version 4 ring names each in its
 * SUBSCRIBE; a version 3 ring (arg 0) gets the newest.  The probe lists
 * both, with their ABI versions.  Implementation 2 is then unloaded while
 * rings of both versions are open: its subscriptions end (AEM_CQE_F_FINAL),
 * implementation 1's go on delivering, the probe no longer lists it,
 * naming it is -EOPNOTSUPP; loaded again, it is listed and serves again.
 * Kernel backend: needs root and /lib/modules/aem_fd_v2.ko (the VM);
 * skips (77) otherwise.
 */
#include <sys/socket.h>
#include <sys/syscall.h>
#include "aem_test.h"

#define V2_KO	"/lib/modules/aem_fd_v2.ko"

static bool kernel;

static int impl_load(bool load)
{
	int fd, ret;

	if (!kernel)
		return aem_embedded_source_impl(AEM_SRC_FD, 2, load);
	if (!load)
		return syscall(SYS_delete_module, "aem_fd_v2", O_NONBLOCK) ? -errno : 0;
	fd = open(V2_KO, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = syscall(SYS_finit_module, fd, "", 0) ? -errno : 0;
	close(fd);
	return ret;
}

/* The probe's fd implementations as a bit set (1 << impl); each must serve versions 2..4. */
static unsigned probe_fd_impls(struct aem_ring *r)
{
	struct aem_probe p;
	unsigned i, set = 0;

	t_ok(aem_probe(r, 0, &p));
	for (i = 0; i < p.nr_sources; i++) {
		const struct aem_probe_source *ps = &p.sources[i];

		if (i)
			t_assert(ps->source > p.sources[i - 1].source ||
				 (ps->source == p.sources[i - 1].source && ps->impl > p.sources[i - 1].impl),
				 "probe entries out of order at %u", i);
		if (ps->source != AEM_SRC_FD)
			continue;
		t_assert(ps->impl >= 1 && ps->impl < 32, "fd implementation %u", ps->impl);
		t_assert(!strcmp(ps->name, "fd"), "fd implementation %u is named %s", ps->impl, ps->name);
		t_eq(ps->api_versions & 0x1c, 0x1c);
		set |= 1U << ps->impl;
	}
	return set;
}

static int sub_fd(struct aem_ring *r, int fd, unsigned impl, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_subscribe_fd(sqe, fd, AEM_FD_READABLE, 0, tag);
	aem_sqe_set_impl(sqe, impl);
	return t_do(r, tag);
}

/* The next event of @tag on @r: true if it is its final one. */
static bool next_of(struct aem_ring *r, uint64_t tag, const char *what)
{
	struct aem_cqe c;
	unsigned n;

	for (n = 0; n < 1000; n++) {
		t_assert(t_next(r, &c, 5000), "no event for %s", what);
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(r, c.slot);
		if (c.flags & AEM_CQE_F_RESULT)
			continue;
		if (c.user_data == tag) {
			t_eq(c.source, AEM_SRC_FD);
			return c.flags & AEM_CQE_F_FINAL;
		}
	}
	t_fail("no event for %s among 1000", what);
}

/* Make @sv[0] readable and see the event of @tag (not final). */
static void ping(struct aem_ring *r, int sv[2], uint64_t tag, const char *what)
{
	char b;

	t_assert(write(sv[1], "x", 1) == 1, "write");
	t_assert(!next_of(r, tag, what), "%s: a final event where readiness was due", what);
	t_assert(read(sv[0], &b, 1) == 1, "read");
}

int main(void)
{
	struct aem_ring r4, r3;
	struct aem_params p;
	int a[2], b[2], c3[2], ret;
	unsigned set;

	memset(&p, 0, sizeof(p));
	t_setup(&r4, &p);
	memset(&p, 0, sizeof(p));
	p.api_version = 3;
	t_setup(&r3, &p);
	kernel = t_kernel(&r4);
	set = probe_fd_impls(&r4);
	if (!(set & 2))
		t_skip("no fd source on the %s backend", aem_backend_name(&r4));
	if (kernel && geteuid() != 0)
		t_skip("loading aem_fd_v2.ko needs root");
	if (!(set & 4)) {
		ret = impl_load(true);
		if (ret == -ENOENT)
			t_skip("no %s here", V2_KO);
		t_assert(ret == 0, "loading implementation 2: %s", strerror(-ret));
	}
	t_eq(probe_fd_impls(&r4) & 6, 6);
	printf("fd implementations 1 and 2 loaded on the %s backend\n", aem_backend_name(&r4));

	t_assert(!socketpair(AF_UNIX, SOCK_STREAM, 0, a) && !socketpair(AF_UNIX, SOCK_STREAM, 0, b) &&
		 !socketpair(AF_UNIX, SOCK_STREAM, 0, c3), "socketpair: %s", strerror(errno));
	t_eq(sub_fd(&r4, a[0], 1, 0xa1), 0);
	t_eq(sub_fd(&r4, b[0], 2, 0xb2), 0);
	t_eq(sub_fd(&r4, b[0], 3, 0xb3), -EOPNOTSUPP);	/* not loaded */
	t_eq(sub_fd(&r3, c3[0], 2, 0xc2), -EINVAL);	/* version 3 cannot name one */
	t_eq(sub_fd(&r3, c3[0], 0, 0xc0), 0);		/* the newest: 2 */
	ping(&r4, a, 0xa1, "implementation 1");
	ping(&r4, b, 0xb2, "implementation 2");
	ping(&r3, c3, 0xc0, "the newest, on a version 3 ring");

	/* Implementation 2 goes while both rings are open: only its subscriptions end. */
	t_eq(impl_load(false), 0);
	t_eq(probe_fd_impls(&r4) & 6, 2);
	t_assert(next_of(&r4, 0xb2, "implementation 2's end"), "implementation 2's subscription did not end");
	t_assert(next_of(&r3, 0xc0, "the v3 ring's end"), "the v3 ring's subscription did not end");
	ping(&r4, a, 0xa1, "implementation 1 after 2 went");
	t_eq(sub_fd(&r4, b[0], 2, 0xb4), -EOPNOTSUPP);

	/* Loaded again: listed, and it serves both versions again. */
	t_eq(impl_load(true), 0);
	t_eq(probe_fd_impls(&r4) & 6, 6);
	t_eq(sub_fd(&r4, b[0], 2, 0xb5), 0);
	t_eq(sub_fd(&r3, c3[0], 0, 0xc5), 0);
	ping(&r4, b, 0xb5, "implementation 2 reloaded");
	ping(&r3, c3, 0xc5, "implementation 2 reloaded, version 3 ring");
	ping(&r4, a, 0xa1, "implementation 1 beside the reloaded 2");

	aem_teardown(&r3);
	aem_teardown(&r4);
	/* Leave the module as the harness loaded it: implementation 2 is the tests' to load. */
	t_eq(impl_load(false), 0);
	return t_exit();
}
