// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The opcodes of sources with an .io hook (the socket source,
 * PROTOCOL.md section 10): SEND, SHUTDOWN, and WRITEBACK to such a
 * subscription's token, which carries its whole payload (a reply to
 * send) rather than a source's arguments.  The source answers at once
 * (bytes sent, 0) or later (AEM_CORE_PENDING, then aem_core_complete()).
 * The opcode table (opdef.c) has checked the fields they do not use.
 */
#include "aem_core_int.h"

/* The refusal counter of a source's -errno. */
static u32 io_reason(int err)
{
	if (err == -ENOENT)
		return AEM_REFUSE_ID;
	if (err == -ENOBUFS || err == -ENOMEM || err == -ENOSPC)
		return AEM_REFUSE_NOMEM;
	return AEM_REFUSE_FIELD;
}

/*
 * The source's answer @ret to @sqe: a result now, one later, or a
 * refusal.  -EAGAIN means "not consumed" to the submission loop (a POST's
 * full target), so a source's -EAGAIN is refused as -ENOBUFS.
 */
static int io_answer(struct aem_ctx *r, const struct aem_sqe *sqe, int ret, u32 *reason,
		     bool *answered)
{
	if (ret == AEM_CORE_PENDING) {
		*answered = true;
		return 0;
	}
	if (ret < 0) {
		if (ret == -EAGAIN || ret < -AEM_CALL_ERRNO_MAX)
			ret = -ENOBUFS;
		*reason = io_reason(ret);
		return ret;
	}
	if (!(sqe->flags & AEM_SQE_F_SILENT))
		__aem_sqe_result(r, sqe, ret, 0);
	*answered = true;
	return 0;
}

/* The live subscription @sqe targets, whose source has an .io hook. */
static struct aem_sub *io_target(struct aem_ctx *r, const struct aem_sqe *sqe,
				 const struct aem_source_ops **ops, u32 *reason, int *err)
{
	struct aem_sub *s = NULL;

	if (AEM_ID_KIND(sqe->target) == AEM_ID_KIND_SUB)
		s = __aem_sub_lookup(r, sqe->target);
	if (!s) {
		*reason = AEM_REFUSE_ID;
		*err = -ENOENT;
		return NULL;
	}
	*ops = __aem_source_ops(s->source, s->impl);
	if (!*ops || !(*ops)->io) {
		*reason = AEM_REFUSE_FIELD;
		*err = -EOPNOTSUPP;
		return NULL;
	}
	return s;
}

int __aem_op_send(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	const struct aem_source_ops *ops;
	const void *data;
	struct aem_sub *s;
	u32 took;
	int ret;

	s = io_target(r, sqe, &ops, reason, &ret);
	if (!s)
		return ret;
	ret = __aem_sqe_payload(r, sqe, false, &data, &took, reason);
	if (ret)
		return ret;
	return io_answer(r, sqe, ops->io(r, s, sqe, data, sqe->len), reason, answered);
}

int __aem_op_shutdown(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s;
	int ret;

	s = io_target(r, sqe, &ops, reason, &ret);
	if (!s)
		return ret;
	return io_answer(r, sqe, ops->io(r, s, sqe, NULL, 0), reason, answered);
}

/*
 * WRITEBACK to the token of @s, whose source has an .io hook: the payload
 * (inline, or the event's own slot, which comes back to the core once the
 * source has read it; a refused writeback leaves it with the user).
 */
int __aem_io_writeback(struct aem_ctx *r, struct aem_sub *s, const struct aem_source_ops *ops,
		       const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	const void *data;
	u32 took;
	int ret;

	ret = __aem_sqe_payload(r, sqe, true, &data, &took, reason);
	if (ret)
		return ret;
	ret = io_answer(r, sqe, ops->io(r, s, sqe, data, sqe->len), reason, answered);
	if (ret)
		__aem_slot_untake(r, took);
	else
		__aem_slot_give_back(r, took);
	return ret;
}

void aem_core_pending_init(struct aem_pending *p, const struct aem_sqe *sqe)
{
	memset(p, 0, sizeof(*p));
	p->user_data = sqe->user_data;
	p->prio = sqe->prio;
	p->flags = sqe->flags;
	p->opcode = sqe->opcode;
}

void aem_core_complete(struct aem_ctx *r, const struct aem_pending *p, s32 res)
{
	struct aem_sqe sqe = {
		.user_data = p->user_data,
		.prio = p->prio,
	};

	if (res >= 0 && (p->flags & AEM_SQE_F_SILENT))
		return;
	__aem_sqe_result(r, &sqe, res, 0);
}
