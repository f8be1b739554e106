// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The submission poller's side of the protocol (AEM_SETUP_SQPOLL).  The
 * host runs one thread per ring that calls these in a loop: consume what
 * the SQ holds, and after the ring's idle time without work announce the
 * sleep in the SQ flags and sleep until an enter wakes it.
 *
 * The sleep is a Dekker pair with the user's submit helper: the poller
 * sets AEM_SQ_F_NEED_WAKEUP, issues a full barrier, then re-reads the SQ
 * tail; the user stores the tail (release), issues a full barrier, then
 * reads the flag and enters with AEM_ENTER_SQ_WAKEUP only if it is set.
 * Either the poller sees the new tail or the user sees the flag.
 *
 * On a ring with a poller only the poller consumes SQEs, so only it
 * writes the SQ flags (submission's refusals included): a plain
 * read-modify-write of the word is enough.  The poller keeps its own
 * state; what user space scribbles there is never read back.
 */
#include "aem_core_int.h"

bool aem_core_sqpoll(struct aem_ctx *r)
{
	return r->sq_idle_ms != 0;
}

u32 aem_core_sq_idle_ms(struct aem_ctx *r)
{
	return r->sq_idle_ms;
}

u32 aem_core_sq_pending(struct aem_ctx *r)
{
	/* Pairs with the user's store-release of the tail (aem_sq_flush). */
	u32 n = aem_load_acquire(r->sq_ktail) - aem_read_once(r->sq_head);

	/* Backwards: nothing to do; ahead: submission refuses it once per round. */
	if ((s32)n < 0)
		return 0;
	return n > r->sq_entries ? r->sq_entries : n;
}

int aem_core_sqpoll_round(struct aem_ctx *r)
{
	u32 n = aem_core_sq_pending(r);

	return n ? aem_core_submit(r, n) : 0;
}

bool aem_core_sqpoll_sleep_begin(struct aem_ctx *r)
{
	aem_write_once(*r->sq_kflags, aem_read_once(*r->sq_kflags) | AEM_SQ_F_NEED_WAKEUP);
	aem_smp_mb();	/* the flag, then the tail: pairs with the submit helper's barrier */
	if (!aem_core_sq_pending(r))
		return true;
	aem_core_sqpoll_sleep_end(r);
	return false;
}

void aem_core_sqpoll_sleep_end(struct aem_ctx *r)
{
	aem_write_once(*r->sq_kflags, aem_read_once(*r->sq_kflags) & ~AEM_SQ_F_NEED_WAKEUP);
}
