/* SPDX-License-Identifier: MIT */
/*
 * Calls on a lane (aem_lane_call, aem_lane_reply): a producer thread's
 * calls, plain posts between them, are answered by a reader thread byte
 * for byte and in order, some abandoned as they race with the reply; an
 * error reply is the caller's -errno; an abandoned call's reply, or one
 * to a call already answered, is -ENOENT and never lands in a later call;
 * a call line scribbled on is never read past (-EAGAIN or -EIO) and
 * abandon frees it; bad lengths and errnos are -EINVAL, a post during a
 * call -EBUSY; records with unknown flags stay malformed.  No ring is
 * needed: the kernel side never reads a lane.
 */
#include <pthread.h>
#include "aem_test.h"

#define ENTRIES		8
#define REC		AEM_LANE_MAX_RECORD
#define CALLS		10000
#define DEADLINE_NS	(20000 * T_MS)

static uint64_t deadline;

static void t_in_time(const char *what)
{
	if (t_now_ns() > deadline)
		t_fail("%s: not done in 20 s", what);
}

static void *lane_mem(unsigned entries, unsigned rec_size, size_t *size)
{
	/* Exactly the lane's bytes: ASan sees a read past the call line. */
	size_t n = aem_lane_size(entries, rec_size);
	void *mem = aligned_alloc(64, (n + 63) & ~(size_t)63);

	t_assert(mem, "aligned_alloc");
	*size = n;
	return mem;
}

/* Call @k's request (1..REC bytes) and the reader's answer to it. */
static unsigned req_of(uint64_t k, uint8_t *req)
{
	unsigned len = 1 + (unsigned)(k % REC), i;

	for (i = 0; i < len; i++)
		req[i] = (uint8_t)(k * 131 + i * 7);
	return len;
}

static unsigned answer(const uint8_t *req, unsigned len, uint8_t *resp)
{
	unsigned i;

	for (i = 0; i < len; i++)
		resp[i] = (uint8_t)~req[len - 1 - i];
	return len;
}

/* Every seventh call is abandoned as soon as it is posted: it races the reply. */
static int abandoned(uint64_t k)
{
	return k % 7 == 3;
}

static struct aem_lane tcons, tprod;

static void *producer(void *arg)
{
	uint64_t k, seq = 0;

	(void)arg;
	for (k = 0; k < CALLS; k++) {
		uint8_t req[REC], resp[REC], want[REC];
		unsigned len = req_of(k, req), p;
		int ret;

		for (p = 0; p < k % 3; p++, seq++) {
			while ((ret = aem_lane_post(&tprod, &seq, sizeof(seq))) == -EAGAIN) {
				t_in_time("post");
				sched_yield();
			}
			t_assert(ret == 0 || ret == 1, "post %" PRIu64 ": %d", seq, ret);
		}
		while ((ret = aem_lane_call(&tprod, req, len)) == -EAGAIN) {
			t_in_time("call");
			sched_yield();
		}
		t_assert(ret == 0 || ret == 1, "call %" PRIu64 ": %d", k, ret);
		if (abandoned(k)) {
			while ((ret = aem_lane_call_abandon(&tprod)) == -EAGAIN) {
				t_in_time("abandon");
				sched_yield();
			}
			t_eq(ret, 0);
			continue;
		}
		memset(resp, 0, sizeof(resp));
		while ((ret = aem_lane_call_poll(&tprod, resp, sizeof(resp))) == -EAGAIN) {
			t_in_time("poll");
			sched_yield();
		}
		t_eq(ret, answer(req, len, want));
		if (memcmp(resp, want, len))
			t_fail("call %" PRIu64 ": the reply is not its own", k);
	}
	aem_lane_close(&tprod);
	return NULL;
}

/* (a) */
static void threads(void)
{
	uint64_t calls = 0, seq = 0, replied = 0, stale = 0;
	struct aem_cqe cqes[ENTRIES];
	size_t size;
	void *mem = lane_mem(ENTRIES, REC, &size);
	pthread_t thr;
	unsigned n, i;

	t_eq(aem_lane_init(&tcons, mem, size, ENTRIES, REC, 2, 77), 0);
	t_eq(aem_lane_attach(&tprod, mem, size), 0);
	t_eq(pthread_create(&thr, NULL, producer, NULL), 0);
	for (;;) {
		t_in_time("reader");
		n = aem_lane_peek(&tcons, cqes, ENTRIES, 5);
		for (i = 0; i < n; i++) {
			const struct aem_cqe *c = &cqes[i];
			uint8_t req[REC], resp[REC];
			unsigned len;
			int ret;

			t_eq(c->user_data, 5);
			t_eq(c->prio, 2);
			if (!(c->flags & AEM_CQE_F_CALL)) {
				uint64_t v;

				t_eq(c->flags, 0);
				t_eq(c->id, 77);
				t_eq(c->res, sizeof(v));
				memcpy(&v, c->data, sizeof(v));
				if (v != seq)
					t_fail("post %" PRIu64 " where %" PRIu64 " was due", v, seq);
				seq++;
				continue;
			}
			t_eq(c->flags, AEM_CQE_F_CALL);
			len = req_of(calls, req);
			t_eq(c->res, len);
			if (memcmp(c->data, req, len))
				t_fail("call %" PRIu64 ": not its request", calls);
			ret = aem_lane_reply(&tcons, c->id, resp, answer(req, len, resp), 0);
			if (abandoned(calls)) {
				t_assert(ret == 0 || ret == -ENOENT, "reply %d", ret);
				stale += ret == -ENOENT;
			} else {
				t_eq(ret, 0);
			}
			replied += ret == 0;
			/* Once is all: the same token again finds no call waiting. */
			t_eq(aem_lane_reply(&tcons, c->id, resp, len, 0), -ENOENT);
			calls++;
		}
		aem_lane_advance(&tcons, n);
		if (!n) {
			if (aem_lane_drained(&tcons))
				break;
			sched_yield();
		}
	}
	t_eq(pthread_join(thr, NULL), 0);
	t_eq(calls, CALLS);
	t_eq(seq, (CALLS / 3) * 3);	/* k % 3 posts before call k */
	t_eq(tcons.malformed, 0);
	t_eq(aem_lane_pos(&tcons, tcons.head, 0), seq + calls);
	t_eq(aem_lane_pos(&tprod, tprod.tail, 0), seq + calls);
	printf("threads: %" PRIu64 " calls, %" PRIu64 " posts, %" PRIu64 " abandoned calls answered too late\n",
	       calls, seq, stale);
	free(mem);
}

/* The one record waiting must be a call of @len bytes; its token. */
static uint64_t peek_call(struct aem_lane *cons, unsigned len)
{
	struct aem_cqe c;

	t_eq(aem_lane_peek(cons, &c, 1, 0), 1);
	t_eq(c.flags, AEM_CQE_F_CALL);
	t_eq(c.res, len);
	t_eq(c.id, aem_lane_pos(cons, cons->head, 0));
	aem_lane_advance(cons, 1);
	return c.id;
}

int main(void)
{
	struct aem_lane cons, prod;
	struct aem_lane_rec *rec;
	uint8_t req[REC + 1], out[REC];
	struct aem_cqe cqes[4];
	uint64_t seed = t_seed(), tok, old, v = 9;
	unsigned i;
	size_t size;
	void *mem = lane_mem(ENTRIES, REC, &size);
	uint8_t *small;

	deadline = t_now_ns() + DEADLINE_NS;
	memset(req, 0xab, sizeof(req));
	t_eq(aem_lane_init(&cons, mem, size, ENTRIES, REC, 1, 42), 0);
	t_eq(aem_lane_attach(&prod, mem, size), 0);

	/* (e) No call, bad lengths and errnos, a post during a call. */
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EINVAL);
	t_eq(aem_lane_call_abandon(&prod), 0);
	t_eq(aem_lane_call(&prod, req, REC + 1), -EINVAL);
	t_eq(aem_lane_call(&prod, req, 3), 0);
	t_eq(prod.kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_WAITING, 0));
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), -EBUSY);
	t_eq(aem_lane_call(&prod, req, 3), -EBUSY);
	t_eq(aem_lane_peek(&cons, cqes, 4, 11), 1);	/* nothing after the call */
	t_eq(cqes[0].flags, AEM_CQE_F_CALL);
	t_eq(cqes[0].id, 0);
	t_eq(cqes[0].user_data, 11);
	t_eq(cqes[0].res, 3);
	t_eq(cqes[0].source, AEM_SRC_MSG);
	t_eq(cqes[0].prio, 1);
	t_assert(!memcmp(cqes[0].data, req, 3), "the request");
	aem_lane_advance(&cons, 1);
	t_eq(aem_lane_reply(&cons, 0, req, REC + 1, 0), -EINVAL);
	t_eq(aem_lane_reply(&cons, 0, NULL, 0, 4096), -EINVAL);
	t_eq(aem_lane_reply(&cons, 0, NULL, 0, -EIO), -EINVAL);
	t_eq(prod.kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_WAITING, 0));	/* nothing written */
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EAGAIN);
	t_eq(aem_lane_reply(&cons, 0, "hello", 5, 0), 0);
	t_eq(prod.kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_DONE, 0));
	memset(out, 0, sizeof(out));
	t_eq(aem_lane_call_poll(&prod, out, 2), 5);	/* cut to 2 bytes: the length says so */
	t_assert(!memcmp(out, "he\0", 3), "a reply cut to its cap");
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EINVAL);	/* answered: no call in flight */
	t_eq(aem_lane_reply(&cons, 0, "again", 5, 0), -ENOENT);

	/* (b) An error reply; an empty one; posts deliver as before. */
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), 0);
	t_eq(aem_lane_peek(&cons, cqes, 4, 11), 1);
	t_eq(cqes[0].flags, 0);
	t_eq(cqes[0].id, 42);
	t_eq(cqes[0].res, sizeof(v));
	aem_lane_advance(&cons, 1);
	t_eq(aem_lane_call(&prod, req, 1), 0);
	tok = peek_call(&cons, 1);
	t_eq(tok, 2);
	t_eq(aem_lane_reply(&cons, tok, NULL, 0, ENOSPC), 0);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -ENOSPC);
	t_eq(aem_lane_call(&prod, req, 1), 0);
	t_eq(aem_lane_reply(&cons, peek_call(&cons, 1), NULL, 0, 0), 0);
	t_eq(aem_lane_call_poll(&prod, NULL, 0), 0);

	/* (c) Abandoned before the reader answers: its reply is -ENOENT, the lane goes on. */
	t_eq(aem_lane_call(&prod, req, 4), 0);
	t_eq(aem_lane_call_abandon(&prod), 0);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EINVAL);
	old = peek_call(&cons, 4);
	t_eq(aem_lane_reply(&cons, old, "late", 4, 0), -ENOENT);
	t_eq(aem_lane_call(&prod, req, 6), 0);
	tok = peek_call(&cons, 6);
	t_eq(aem_lane_reply(&cons, old, "stale!", 6, 0), -ENOENT);	/* never into the later call */
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EAGAIN);
	t_eq(aem_lane_reply(&cons, tok, "fresh!", 6, 0), 0);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), 6);
	t_assert(!memcmp(out, "fresh!", 6), "the later call's own reply");
	/* A call abandoned after the reader took its record, before it replied. */
	t_eq(aem_lane_call(&prod, req, 2), 0);
	old = peek_call(&cons, 2);
	t_eq(aem_lane_call_abandon(&prod), 0);
	t_eq(aem_lane_call(&prod, req, 3), 0);
	tok = peek_call(&cons, 3);
	t_eq(aem_lane_reply(&cons, old, "xx", 2, 0), -ENOENT);
	t_eq(aem_lane_reply(&cons, tok - 2, "yy", 2, 0), -ENOENT);	/* an earlier call, answered */
	t_eq(aem_lane_reply(&cons, tok + 1, "zz", 2, 0), -ENOENT);	/* no such call yet */
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EAGAIN);
	t_eq(aem_lane_reply(&cons, tok, "abc", 3, 0), 0);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), 3);
	t_assert(!memcmp(out, "abc", 3), "the reply");
	/* Abandoned while the reader copies (CLAIMED): wait for DONE, the answer dropped. */
	t_eq(aem_lane_call(&prod, req, 1), 0);
	tok = peek_call(&cons, 1);
	aem_write_once(prod.kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_CLAIMED, tok));
	t_eq(aem_lane_call_abandon(&prod), -EAGAIN);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), -EBUSY);
	aem_write_once(prod.kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_DONE, tok));
	t_eq(aem_lane_call_abandon(&prod), 0);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EINVAL);
	/* A consumer ring gone: the call ends (-EPIPE), and so does a claimed one's abandon. */
	t_eq(aem_lane_call(&prod, req, 1), 0);
	tok = peek_call(&cons, 1);
	aem_write_once(prod.kctl->cons_flags, AEM_LANE_C_GONE);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EPIPE);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), -EINVAL);
	t_eq(aem_lane_call(&prod, req, 1), -EPIPE);
	aem_write_once(prod.kctl->cons_flags, 0);
	t_eq(aem_lane_call(&prod, req, 1), 0);
	tok = peek_call(&cons, 1);
	aem_write_once(prod.kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_CLAIMED, tok));
	aem_write_once(prod.kctl->cons_flags, AEM_LANE_C_GONE);
	t_eq(aem_lane_call_abandon(&prod), 0);
	aem_write_once(prod.kctl->cons_flags, 0);
	t_eq(aem_lane_pos(&cons, cons.head, 0), aem_lane_pos(&prod, prod.tail, 0));

	/* (f) Flags other than zero and AEM_LANE_REC_CALL: malformed, counted, skipped. */
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), 0);
	t_eq(aem_lane_call(&prod, req, 5), 0);
	rec = (struct aem_lane_rec *)(prod.krecs + (size_t)((prod.tail - 2) & prod.mask) * prod.stride);
	rec->flags = 2;
	t_eq(aem_lane_peek(&cons, cqes, 4, 0), 1);	/* the post refused, the call delivered */
	t_eq(cons.malformed, 1);
	t_eq(cqes[0].flags, AEM_CQE_F_CALL);
	t_eq(cqes[0].id, aem_lane_call_pos(&prod));	/* positions count the refused record too */
	aem_lane_advance(&cons, 1);
	t_eq(aem_lane_reply(&cons, cqes[0].id, "ok", 2, 0), 0);
	t_eq(aem_lane_call_poll(&prod, out, sizeof(out)), 2);
	t_eq(aem_lane_call(&prod, req, 5), 0);
	rec = (struct aem_lane_rec *)(prod.krecs + (size_t)((prod.tail - 1) & prod.mask) * prod.stride);
	rec->flags = AEM_LANE_REC_CALL | 2;
	t_eq(aem_lane_peek(&cons, cqes, 4, 0), 0);
	t_eq(cons.malformed, 2);
	t_eq(aem_lane_call_abandon(&prod), 0);
	t_eq(aem_lane_pos(&cons, cons.head, 0), aem_lane_pos(&prod, prod.tail, 0));

	/*
	 * (d) A call line scribbled on while a call waits, on a lane of
	 * exactly its bytes: never read past, -EAGAIN or -EIO, abandon frees it.
	 */
	free(mem);
	mem = lane_mem(2, 8, &size);
	t_eq(aem_lane_init(&cons, mem, size, 2, 8, 0, 1), 0);
	t_eq(aem_lane_attach(&prod, mem, size), 0);
	small = malloc(4);	/* the caller's buffer, exactly its cap */
	t_assert(small, "malloc");
	for (i = 0; i < 2000; i++) {
		uint64_t r = t_rand(&seed), word;
		int32_t res = (int32_t)t_rand(&seed);
		int ret;

		t_eq(aem_lane_call(&prod, req, 1 + i % 8), 0);
		tok = peek_call(&cons, 1 + i % 8);
		switch (i % 4) {
		case 0:	/* garbage in both */
			word = r;
			break;
		case 1:	/* DONE with a result out of range */
			word = AEM_LANE_CALL(AEM_LANE_CALL_DONE, tok);
			res = (int32_t)(r & 1 ? (int64_t)AEM_LANE_MAX_RECORD + 1 + (int64_t)(r >> 34) : -4096 - (int64_t)(r >> 34));
			break;
		case 2:	/* the state kept, another position */
			word = AEM_LANE_CALL(r & 3, tok + 1 + (r >> 40));
			break;
		default:	/* WAITING kept, garbage in the result: the reply still lands */
			word = AEM_LANE_CALL(AEM_LANE_CALL_WAITING, tok);
			break;
		}
		aem_write_once(prod.kctl->call, word);
		aem_write_once(prod.kctl->call_res, res);
		memset(prod.kctl->reply, 0xee, sizeof(prod.kctl->reply));
		ret = aem_lane_call_poll(&prod, small, 4);
		if (word == AEM_LANE_CALL(AEM_LANE_CALL_DONE, tok)) {
			t_eq(ret, -EIO);
			t_eq(aem_lane_call_abandon(&prod), 0);	/* over already */
			t_eq(aem_lane_reply(&cons, tok, "x", 1, 0), -ENOENT);
		} else if (i % 4 == 3) {
			t_eq(ret, -EAGAIN);
			t_eq(aem_lane_reply(&cons, tok, "abcdefgh", 8, 0), 0);
			t_eq(aem_lane_call_poll(&prod, small, 4), 8);
			t_assert(!memcmp(small, "abcd", 4), "the reply");
		} else {
			t_eq(ret, -EAGAIN);
			t_eq(aem_lane_call_abandon(&prod), 0);
			t_eq(aem_lane_call_poll(&prod, small, 4), -EINVAL);
			t_assert(word == AEM_LANE_CALL(AEM_LANE_CALL_WAITING, tok) ||
				 aem_lane_reply(&cons, tok, "x", 1, 0) == -ENOENT, "a reply to garbage");
		}
		t_in_time("scribbles");
	}
	/* The lane still works. */
	t_eq(aem_lane_call(&prod, req, 8), 0);
	tok = peek_call(&cons, 8);
	t_eq(aem_lane_reply(&cons, tok, "12345678", 8, 0), 0);
	t_eq(aem_lane_call_poll(&prod, small, 4), 8);
	t_assert(!memcmp(small, "1234", 4), "the reply");
	t_eq(cons.malformed, 0);
	free(small);
	free(mem);

	/* (a) Two threads. */
	threads();
	return t_exit();
}
