/* SPDX-License-Identifier: MIT */
/*
 * Use after munmap: touching an unmapped ring faults in user space only;
 * the kernel side keeps running on its own pages (enter, posts), and a
 * fresh mapping shows what happened meanwhile.
 */
#include "aem_test.h"

static void touch_unmapped(void *addr)
{
	*(volatile uint32_t *)addr = 1;
}

int main(void)
{
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct vring r;
	void *old_sq;
	uint64_t sub;
	int i, status;
	uint64_t ud = 1;

	vr_setup_or_die(&r, NULL);

	/* A message channel on our own ring, and a few posts to it. */
	sqe = vr_sqe(&r);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_MSG;
	sqe->user_data = 0x7a6;
	sqe->msg.channel = 3;
	t_eq(vr_result(&r, 0x7a6, &c), 0);
	sub = c.id;
	t_assert(sub, "no subscription id");

	for (i = 0; i < 4; i++) {
		sqe = vr_sqe(&r);
		sqe->opcode = AEM_OP_POST;
		sqe->target = AEM_ADDR(r.p.ring_id, 3);
		sqe->flags = AEM_SQE_F_SILENT;
		sqe->len = 8;
		memcpy(sqe->data, &ud, 8);
		ud++;
	}
	t_eq(vr_enter(&r, 4, 0, 0), 4);

	/* Unmap everything; the fd stays. */
	old_sq = r.region[AEM_REGION_SQES];
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		munmap(r.region[i], r.size[i]);
		r.region[i] = NULL;
	}
	status = t_child((void (*)(void *))touch_unmapped, old_sq);
	t_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		 "touching an unmapped SQ ring: status 0x%x", status);

	/* The kernel side does not care about our mappings. */
	struct aem_enter e = { .to_submit = 0 };
	t_assert(ioctl(r.fd, AEM_IOC_ENTER, &e) == 0, "enter without mappings: %s", strerror(errno));

	/* Map again: the four posts are there. */
	{
		int fd = r.fd;
		struct aem_params p = r.p;
		uint32_t tail = r.sq_tail;

		for (i = 0; i < AEM_NR_REGIONS; i++) {
			int prot = PROT_READ | (i == AEM_REGION_CQES ? 0 : PROT_WRITE);

			r.region[i] = mmap(NULL, r.size[i], prot, MAP_SHARED, fd, (off_t)vr_off[i]);
			t_assert(r.region[i] != MAP_FAILED, "remap region %d: %s", i, strerror(errno));
		}
		r.p = p;
		r.sq_tail = tail;
	}
	for (i = 0; i < 4; i++) {
		t_assert(vr_wait_cqe(&r, &c, 2000, NULL, NULL), "post %d missing after remap", i);
		t_eq(c.source, AEM_SRC_MSG);
		t_eq(c.user_data, 0x7a6);
		t_eq(c.res, 8);
	}
	vr_nop_ok(&r);
	vr_close(&r);
	return T_EXIT_PASS;
}
