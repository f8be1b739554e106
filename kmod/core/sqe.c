// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * SQE validation shared by every opcode: the checks the opcode table
 * (opdef.c) declares, run before the handler sees the SQE, and the
 * payload an SQE names (inline bytes or a slot).  The SQE is the core's
 * private copy: nothing here reads shared memory twice.
 */
#include "aem_core_int.h"

static bool all_zero(const void *p, u32 n)
{
	const u8 *b = p;
	u32 i;

	for (i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/*
 * What the table says of @def: the SQE flags it takes, a class below
 * nr_classes, and zero in every field it does not use.
 */
int __aem_sqe_check(struct aem_ctx *r, const struct aem_op_def *def,
		    const struct aem_sqe *sqe, u32 *reason)
{
	NEED(!(sqe->flags & ~def->sqe_flags));
	NEED(sqe->prio < r->nr_classes);
	NEED((def->uses & AEM_OPF_SOURCE) || !sqe->source);
	NEED((def->uses & AEM_OPF_LEN) || !sqe->len);
	NEED((def->uses & AEM_OPF_TARGET) || !sqe->target);
	NEED((def->uses & AEM_OPF_SLOT) || !sqe->slot);
	NEED((def->uses & AEM_OPF_ARG) || !sqe->arg);
	NEED((def->uses & AEM_OPF_ARGS) || all_zero(sqe->data, sizeof(sqe->data)));
	return 0;
}

/*
 * Payload of a writeback/post/call SQE: checks len and the slot.  Post and
 * call take send slots; a writeback only the delivery slot its event came
 * in, which the core takes back (*took).
 */
int __aem_sqe_payload(struct aem_ctx *r, const struct aem_sqe *sqe, bool writeback,
		       const void **data, u32 *took, u32 *reason)
{
	unsigned long f;
	int ret;

	*took = AEM_NIL;
	if (!(sqe->flags & AEM_SQE_F_SLOT)) {
		NEED(sqe->len <= AEM_SQE_INLINE && !sqe->slot);
		*data = sqe->data;
		return 0;
	}
	NEED(sqe->len <= r->slot_size);
	if (!writeback) {
		if (sqe->slot >= r->send_slots) {
			*reason = AEM_REFUSE_SLOT;
			return -EINVAL;
		}
		*data = __aem_slot_ptr(r, sqe->slot);
		return 0;
	}
	aem_spin_lock_irqsave(&r->cq_lock, f);
	ret = __aem_slot_take_user(r, sqe->slot, sqe->target);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (ret) {
		*reason = AEM_REFUSE_SLOT;
		return ret;
	}
	*took = sqe->slot;
	*data = __aem_slot_ptr(r, sqe->slot);
	return 0;
}
