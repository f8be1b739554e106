// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Calls: the asynchronous CALL SQE, the blocking aem_core_call() and the
 * pending-call table that routes a writeback to its caller; the request
 * travels as a message (msg.c).
 *
 * A call token is index | generation << 32 | AEM_ID_KIND_CALL << 56 into
 * the pending-call table.  An entry is freed (generation bumped) the
 * moment it is answered, times out or its ring goes: a late or forged
 * writeback finds a different generation and gets -ENOENT, never another
 * caller's buffer.
 *
 * The table is machine-wide, so every pending call is charged to a ring's
 * quota (aem_params.call_quota): the calling ring's for CALL SQEs and for
 * blocking calls through a ring's fd, one shared pool for blocking calls
 * through an fd without a ring.  A ring that never answers its own calls
 * uses up its quota, not the table, and a call lives at most
 * AEM_CALL_MAX_TIMEOUT_MS.  Each pending call also counts against its
 * user's share (aem_core_user_max_calls), so many rings of one user cannot
 * fill the table either.
 *
 * Lock rounds of one call: the target is found and the user charged in one
 * round of ring_lock, and the target stays held through the delivery (no
 * second lookup); the entry is taken in one round of calls_lock; the
 * request is posted in one round of the target's cq_lock.  The writeback
 * finds the entry in one round of calls_lock and, for an asynchronous
 * call, posts the reply into the caller's result ring under that same
 * lock: a pending asynchronous call's entry stands for its live caller
 * ring (a ring's teardown frees its entries under calls_lock before the
 * ring goes), so the caller is looked up only to be woken, when it sleeps.
 * The expiry driver is kicked only when the first asynchronous call starts
 * pending (it ticks while any is pending), and a blocking caller whose
 * handler is running spins briefly before it sleeps.
 */
#include "aem_core_int.h"

/* ---------------------------------------------------------------------- */
/* Pending calls                                                          */

enum { CALL_FREE, CALL_ASYNC, CALL_BLOCK };

/* The blocked caller's side, on its stack; written under calls_lock. */
struct aem_call_wait {
	struct aem_completion	done;
	bool			finished;
	int			result;
	void			*resp;
	u32			resp_cap;
	u32			resp_len;
};

struct aem_call {
	u32			gen;
	u32			next_free;
	u8			state;
	u8			prio;		/* async: class of the result in the caller */
	u32			caller_id;	/* async: ring that gets the result */
	u32			target_id;	/* ring whose handler must answer */
	u64			user_data;	/* async: the CALL SQE's */
	u64			deadline_ns;	/* async */
	struct aem_call_wait	*w;		/* blocking */
	struct aem_ctx		*charged;	/* whose quota it counts against; NULL: calls_ringless */
	struct aem_user		*user;		/* whose share of the table it counts against */
};

static aem_spinlock_t calls_lock;
static aem_mutex_t calls_mutex;		/* first allocation of the table */
static bool calls_lock_ready;
static struct aem_call *calls;
static u32 calls_free = AEM_NIL;
static u32 calls_hwm;			/* entries ever used: scans stop here */
static u32 calls_async;			/* async calls pending (expiry driver) */
static u32 calls_ringless;		/* blocking calls through an fd without a ring */

static int calls_init(void)
{
	struct aem_call *tab;
	unsigned long f;
	u32 i;

	if (aem_load_acquire(&calls))
		return 0;
	aem_mutex_lock(&calls_mutex);
	if (!calls) {
		tab = aem_kvzalloc(AEM_MAX_CALLS * sizeof(*tab));
		if (!tab) {
			aem_mutex_unlock(&calls_mutex);
			return -ENOMEM;
		}
		for (i = 0; i < AEM_MAX_CALLS; i++) {
			tab[i].gen = 1;
			tab[i].next_free = i + 1 < AEM_MAX_CALLS ? i + 1 : AEM_NIL;
		}
		aem_spin_lock_irqsave(&calls_lock, f);
		calls_free = 0;
		aem_store_release(&calls, tab);
		aem_spin_unlock_irqrestore(&calls_lock, f);
	}
	aem_mutex_unlock(&calls_mutex);
	return 0;
}

static u64 call_token(u32 idx)
{
	return __aem_make_id(idx, calls[idx].gen, AEM_ID_KIND_CALL);
}

/*
 * Under calls_lock: a free entry charged to @charged's quota and to @user
 * (charged already); NULL when the quota or the table is used up.
 */
static struct aem_call *call_alloc_locked(struct aem_ctx *charged, struct aem_user *user, u32 *idx)
{
	u32 *pending = charged ? &charged->calls_pending : &calls_ringless;
	u32 quota = charged ? charged->call_quota : AEM_DEFAULT_CALL_QUOTA;
	struct aem_call *c;

	if (calls_free == AEM_NIL || *pending >= quota)
		return NULL;
	*idx = calls_free;
	c = &calls[*idx];
	calls_free = c->next_free;
	if (*idx + 1 > calls_hwm)
		calls_hwm = *idx + 1;
	c->charged = charged;
	c->user = user;
	(*pending)++;
	return c;
}

static void call_free_locked(u32 idx)
{
	struct aem_call *c = &calls[idx];
	u32 gen = (c->gen + 1) & 0xffffff;

	if (c->state == CALL_ASYNC)
		calls_async--;
	if (c->charged)
		c->charged->calls_pending--;
	else
		calls_ringless--;
	c->charged = NULL;
	__aem_user_call_uncharge(c->user);
	c->user = NULL;
	c->state = CALL_FREE;
	c->gen = gen ? gen : 1;
	c->w = NULL;
	c->next_free = calls_free;
	calls_free = idx;
}

/* Under calls_lock; @token must have been validated. */
static struct aem_call *call_find_locked(u64 token, u32 *idx)
{
	struct aem_call *c;

	if (!calls || AEM_ID_KIND(token) != AEM_ID_KIND_CALL)
		return NULL;
	*idx = AEM_ID_INDEX(token);
	if (*idx >= AEM_MAX_CALLS)
		return NULL;
	c = &calls[*idx];
	if (c->state == CALL_FREE || c->gen != AEM_ID_GEN(token))
		return NULL;
	return c;
}

/*
 * A result CQE for an async call (reply or error) into the result ring of
 * @r, the caller, which the caller of this keeps alive; true when a waiter
 * of @r must be woken (call_wake), with *@urgent its class's.
 */
static bool call_result_post(struct aem_ctx *r, u64 user_data, u8 prio, u64 token, s32 res,
			     const void *data, u32 len, bool *urgent)
{
	struct aem_posted out = { .wake = false };
	struct aem_post p;
	unsigned long f;

	memset(&p, 0, sizeof(p));
	p.user_data = user_data;
	p.id = token;
	p.res = res;
	p.flags = AEM_CQE_F_RESULT;
	p.source = AEM_SRC_MSG;
	p.cls = prio < r->nr_classes ? prio : 0;
	p.len = res < 0 ? 0 : len;
	p.n = 1;
	p.mode = AEM_POST_HOLD;
	p.data = data;
	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_post_locked(r, NULL, &p, &out);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	*urgent = p.cls == 0;
	return out.wake && __aem_wake_wanted(r);
}

/* Wake the sleeper of ring @caller_id, if the ring is still there. */
static void call_wake(u32 caller_id, bool urgent)
{
	struct aem_ctx *r = __aem_ring_get(caller_id);

	if (r) {
		aem_host_wake(r, r->host, urgent);
		__aem_ring_put(r);
	}
}

/* call_result_post() into ring @caller_id, looked up here (its entry is gone). */
static void call_result(u32 caller_id, u64 user_data, u8 prio, u64 token, s32 res,
			const void *data, u32 len)
{
	struct aem_ctx *r = __aem_ring_get(caller_id);
	bool urgent;

	if (!r)
		return;
	if (call_result_post(r, user_data, prio, token, res, data, len, &urgent))
		aem_host_wake(r, r->host, urgent);
	__aem_ring_put(r);
}

/* The reply, or the error that replaces it, is this SQE's result (*answered). */
int __aem_op_call(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	u32 took, idx, timeout_ms = sqe->arg ? sqe->arg : AEM_CALL_DEFAULT_TIMEOUT_MS;
	struct aem_user *user;
	struct aem_ctx *t;
	struct aem_call *c;
	const void *data;
	unsigned long f;
	bool first = false;
	u64 token;
	int ret;

	NEED(timeout_ms <= AEM_CALL_MAX_TIMEOUT_MS);
	ret = __aem_sqe_payload(r, sqe, false, &data, &took, reason);
	if (ret)
		return ret;
	ret = calls_init();
	if (ret) {
		*reason = AEM_REFUSE_NOMEM;
		return ret;
	}
	ret = __aem_ring_get_for_call(AEM_ADDR_RING(sqe->target), &r->owner, 0, r, NULL, &t, &user);
	if (ret == -ENOENT || ret == -EACCES) {
		*reason = AEM_REFUSE_ID;
		return ret;
	}
	if (ret) {
		*reason = AEM_REFUSE_NOMEM;
		return -ENOSPC;
	}
	aem_spin_lock_irqsave(&calls_lock, f);
	c = call_alloc_locked(r, user, &idx);
	if (c) {
		c->state = CALL_ASYNC;
		c->prio = sqe->prio;
		c->caller_id = r->id;
		c->target_id = t->id;
		c->user_data = sqe->user_data;
		c->deadline_ns = aem_now_ns() + (u64)timeout_ms * 1000000ULL;
		first = calls_async++ == 0;
		token = call_token(idx);
	}
	aem_spin_unlock_irqrestore(&calls_lock, f);
	if (!c) {
		__aem_ring_put(t);
		__aem_user_call_uncharge(user);
		*reason = AEM_REFUSE_NOMEM;
		return -ENOSPC;
	}
	/* A call the target cannot take is refused to its caller (-ENOSPC), never lost. */
	ret = __aem_msg_deliver_to(r, t, sqe->target, sqe->prio, data, sqe->len, token, true,
				   &r->owner);
	__aem_ring_put(t);
	/*
	 * The expiry driver ticks while any async call is pending (it reads
	 * calls_async after its kick word): only the first one kicks it.
	 */
	if (first)
		aem_host_timer_kick();
	if (ret) {
		bool swept;

		aem_spin_lock_irqsave(&calls_lock, f);
		/*
		 * The handler cannot have answered: the event never reached it.
		 * The expiry sweep can have, if the deadline passed while we
		 * delivered: its -ETIMEDOUT is then this SQE's one result, and
		 * refusing as well would answer the SQE twice.
		 */
		swept = calls[idx].gen != AEM_ID_GEN(token) || calls[idx].state != CALL_ASYNC;
		if (!swept)
			call_free_locked(idx);
		aem_spin_unlock_irqrestore(&calls_lock, f);
		if (swept) {
			*answered = true;
			return 0;
		}
		*reason = ret == -ENOENT || ret == -EACCES ? AEM_REFUSE_ID : AEM_REFUSE_NOMEM;
		return ret;
	}
	*answered = true;
	return 0;
}

int __aem_writeback_call(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason)
{
	struct aem_call_wait *w;
	struct aem_call *c;
	u32 took, idx, caller_id = 0;
	const void *data;
	unsigned long f;
	bool wake = false, urgent = false;
	s32 res;
	int ret;

	/* An error reply: arg = errno, no data. */
	NEED(sqe->arg <= AEM_CALL_ERRNO_MAX && (!sqe->arg || !sqe->len));
	res = -(s32)sqe->arg;
	ret = __aem_sqe_payload(r, sqe, true, &data, &took, reason);
	if (ret)
		return ret;
	ret = -ENOENT;
	aem_spin_lock_irqsave(&calls_lock, f);
	c = call_find_locked(sqe->target, &idx);
	/* A token of a call into another ring is foreign: only the callee answers. */
	if (c && c->target_id == r->id) {
		ret = 0;
		if (c->state == CALL_BLOCK) {
			w = c->w;
			if (sqe->len && w->resp_cap)
				memcpy(w->resp, data, sqe->len < w->resp_cap ? sqe->len : w->resp_cap);
			w->resp_len = sqe->len;
			w->result = res;
			w->finished = true;
			call_free_locked(idx);
			aem_complete(&w->done);
		} else {
			/*
			 * Straight into the caller's result ring: the entry
			 * stands for the live caller (c->charged, for an async
			 * call), whose teardown waits for calls_lock.  The
			 * handler's slot stays core-held until the reply is
			 * copied out of it.
			 */
			caller_id = c->caller_id;
			wake = call_result_post(c->charged, c->user_data, c->prio, sqe->target,
						res, data, sqe->len, &urgent);
			call_free_locked(idx);
		}
	}
	aem_spin_unlock_irqrestore(&calls_lock, f);
	if (wake)
		call_wake(caller_id, urgent);
	if (ret) {
		__aem_slot_untake(r, took);
		*reason = AEM_REFUSE_ID;
		return ret;
	}
	__aem_slot_give_back(r, took);
	return 0;
}

#define AEM_CALL_BATCH	32

struct call_out {
	u32	caller_id;
	u8	prio;
	u64	user_data;
	u64	token;
};

/* Collect-then-post: results are posted without calls_lock held. */
static void calls_sweep(u64 now_ns, struct aem_ctx *gone, s32 res)
{
	struct call_out out[AEM_CALL_BATCH];
	unsigned long f;
	u32 i, n, pos = 0;

	if (!aem_load_acquire(&calls))
		return;
	do {
		n = 0;
		aem_spin_lock_irqsave(&calls_lock, f);
		for (; pos < calls_hwm && n < AEM_CALL_BATCH; pos++) {
			struct aem_call *c = &calls[pos];

			if (c->state == CALL_FREE)
				continue;
			if (gone) {
				if (c->target_id != gone->id) {
					if (c->state == CALL_ASYNC && c->caller_id == gone->id) {
						call_free_locked(pos);	/* nobody to answer to */
					} else if (c->charged == gone) {
						/* A blocking call outlives its fd's ring: the pool pays. */
						gone->calls_pending--;
						calls_ringless++;
						c->charged = NULL;
					}
					continue;
				}
				if (c->state == CALL_BLOCK) {
					c->w->result = -ECONNRESET;
					c->w->finished = true;
					aem_complete(&c->w->done);
					call_free_locked(pos);
					continue;
				}
			} else if (c->state != CALL_ASYNC || c->deadline_ns > now_ns) {
				continue;
			}
			out[n].caller_id = c->caller_id;
			out[n].prio = c->prio;
			out[n].user_data = c->user_data;
			out[n].token = call_token(pos);
			n++;
			call_free_locked(pos);
		}
		aem_spin_unlock_irqrestore(&calls_lock, f);
		for (i = 0; i < n; i++)
			call_result(out[i].caller_id, out[i].user_data, out[i].prio, out[i].token,
				    res, NULL, 0);
	} while (n == AEM_CALL_BATCH);
}

void __aem_calls_ring_gone(struct aem_ctx *r)
{
	calls_sweep(0, r, -ECONNRESET);
}

void aem_core_expire_calls(u64 now_ns)
{
	if (aem_core_calls_pending())
		calls_sweep(now_ns, NULL, -ETIMEDOUT);
}

bool aem_core_calls_pending(void)
{
	return aem_read_once(calls_async) != 0;
}

/* A blocking call through @caller's fd refused: counted in its ring. */
static void call_refused(struct aem_ctx *caller, u32 reason)
{
	unsigned long f;

	aem_spin_lock_irqsave(&caller->cq_lock, f);
	caller->refused[reason]++;
	aem_spin_unlock_irqrestore(&caller->cq_lock, f);
}

/*
 * How long a blocking caller spins for the reply before it sleeps, when
 * nobody sleeps in the handler's ring (its handler is running, or polls):
 * a reply within it costs neither a sleep nor a wake-up.
 */
#define AEM_CALL_SPIN_NS	10000ULL

static bool call_target_running(struct aem_ctx *t)
{
	return !aem_atomic_read(&t->waiters) && !aem_atomic_read(&t->poll_armed);
}

static void call_spin(struct aem_call_wait *w)
{
	u64 end = aem_now_ns() + AEM_CALL_SPIN_NS;
	u32 i;

	for (i = 1; !aem_completion_done(&w->done); i++) {
		if (!(i & 63) && aem_now_ns() >= end)
			break;
		aem_cpu_relax();
	}
}

int aem_core_call(struct aem_ctx *caller, struct aem_call_args *a, const void *req, void *resp)
{
	u32 timeout_ms = a->timeout_ms ? a->timeout_ms : AEM_CALL_DEFAULT_TIMEOUT_MS;
	struct aem_cred me = { 0 };
	struct aem_call_wait w;
	struct aem_user *user;
	struct aem_ctx *t;
	struct aem_call *c;
	unsigned long f;
	u64 token;
	u32 idx, i;
	int ret;

	for (i = 0; i < sizeof(a->resv0); i++)
		if (a->resv0[i])
			return -EINVAL;
	if (a->resv[0] || a->resv[1] || a->prio >= AEM_MAX_CLASSES ||
	    timeout_ms > AEM_CALL_MAX_TIMEOUT_MS)
		return -EINVAL;
	ret = calls_init();
	if (ret)
		return ret;
	/* The sender is the caller's ring's owner, or the caller itself without a ring. */
	if (!caller)
		aem_host_cred_get(&me);
	ret = __aem_ring_get_for_call(AEM_ADDR_RING(a->addr), caller ? &caller->owner : &me,
				      a->req_len, caller, &me, &t, &user);
	if (ret) {
		if (caller && ret == -EACCES)
			call_refused(caller, AEM_REFUSE_ID);
		else if (caller && (ret == -EBUSY || ret == -ENOMEM))
			call_refused(caller, AEM_REFUSE_NOMEM);
		goto out_cred;
	}
	memset(&w, 0, sizeof(w));
	aem_completion_init(&w.done);
	w.resp = resp;
	w.resp_cap = a->resp_cap;
	aem_spin_lock_irqsave(&calls_lock, f);
	c = call_alloc_locked(caller, user, &idx);
	if (c) {
		c->state = CALL_BLOCK;
		c->target_id = t->id;
		c->w = &w;
		token = call_token(idx);
	}
	aem_spin_unlock_irqrestore(&calls_lock, f);
	if (!c) {
		__aem_ring_put(t);
		__aem_user_call_uncharge(user);
		if (caller)
			call_refused(caller, AEM_REFUSE_NOMEM);
		ret = -EBUSY;
		goto out_cred;
	}

	ret = __aem_msg_deliver_to(caller, t, a->addr, a->prio, req, a->req_len, token, true,
				   caller ? &caller->owner : &me);
	if (!ret && call_target_running(t))
		call_spin(&w);
	__aem_ring_put(t);
	if (!ret)
		ret = aem_wait_completion_timeout(&w.done, timeout_ms);
	aem_spin_lock_irqsave(&calls_lock, f);
	if (w.finished) {
		ret = w.result;
	} else if (calls[idx].gen == AEM_ID_GEN(token) && calls[idx].state == CALL_BLOCK) {
		/* Timed out, interrupted or never delivered: a late writeback finds nothing. */
		call_free_locked(idx);
	}
	aem_spin_unlock_irqrestore(&calls_lock, f);
	a->resp_len = w.resp_len;
out_cred:
	if (!caller)
		aem_host_cred_put(&me);
	return ret;
}

void __aem_calls_exit(void)
{
	aem_kvfree(calls);
	calls = NULL;
	calls_free = AEM_NIL;
	calls_hwm = 0;
	calls_async = 0;
	calls_ringless = 0;
}

void __aem_calls_init(void)
{
	if (!calls_lock_ready) {
		aem_spin_init(&calls_lock);
		aem_mutex_init(&calls_mutex);
		calls_lock_ready = true;
	}
}
