/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_FD: no event of a subscription is posted after its UNSUBSCRIBE
 * result, while another thread keeps the socket changing (the source's
 * thread or wake-up races unsubscribe).  Results and events travel in
 * rings of their own: when the result is read, the events posted before it
 * are all below the class ring's tail, so none may come past that mark.  Subscriptions come and go on the
 * same socket, each with its own tag; one left live at the end is ended
 * by teardown.  Skips (77) without an fd source.
 */
#include <pthread.h>
#include <sys/socket.h>
#include "aem_test.h"

#define ROUNDS		2000
#define WRITES_MAX	1000000	/* the writer stops by itself even if main dies */

static int sv[2];
static int stop;

static void *writer(void *arg)
{
	unsigned i;

	(void)arg;
	for (i = 0; i < WRITES_MAX && !__atomic_load_n(&stop, __ATOMIC_ACQUIRE); i++) {
		send(sv[1], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);	/* full: the reader drains */
		usleep(20);
	}
	return NULL;
}

static bool dead[ROUNDS + 1];		/* tag i unsubscribed (its result seen) */
static uint64_t dead_mark[ROUNDS + 1];	/* events read, plus those ready, when it died */
static uint64_t events;

/* One CQE: an event must not belong to a dead subscription; results are returned. */
static bool look(struct aem_ring *r, struct aem_cqe *c, unsigned ms)
{
	char buf[4096];

	while (recv(sv[0], buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	if (!t_next(r, c, ms))
		return false;
	if (c->flags & AEM_CQE_F_RESULT)
		return true;
	t_eq(c->source, AEM_SRC_FD);
	t_assert(c->user_data >= 1 && c->user_data <= ROUNDS, "event tag %#llx",
		 (unsigned long long)c->user_data);
	t_assert(!dead[c->user_data] || events < dead_mark[c->user_data],
		 "event of subscription %llu posted after its unsubscribe result",
		 (unsigned long long)c->user_data);
	if (c->flags & AEM_CQE_F_SLOT)
		t_release(r, c->slot);
	events++;
	return true;
}

/* The result of @user_data; events on the way are checked. */
static struct aem_cqe result(struct aem_ring *r, uint64_t user_data)
{
	struct aem_cqe c;
	unsigned n;

	for (n = 0; n < 100000; n++) {
		t_assert(look(r, &c, 5000), "no result for %#llx", (unsigned long long)user_data);
		if (!(c.flags & AEM_CQE_F_RESULT))
			continue;
		t_eq(c.user_data, user_data);
		return c;
	}
	t_fail("no result for %#llx among 100000 CQEs", (unsigned long long)user_data);
}

int main(void)
{
	struct aem_params p = t_params(64, 4096, 1);
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	pthread_t thr;
	uint64_t id;
	unsigned i;

	t_setup(&r, &p);
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
	sqe = t_sqe(&r);
	aem_prep_subscribe_fd(sqe, sv[0], AEM_FD_READABLE, 0, ROUNDS);
	t_submit(&r);
	c = result(&r, ROUNDS);
	if (c.res == -EOPNOTSUPP)
		t_skip("no fd source on the %s backend (-EOPNOTSUPP)", aem_backend_name(&r));
	t_assert(c.res >= 0, "subscribe fd: %s", strerror(-c.res));
	/* Tag ROUNDS stays live throughout: teardown ends it. */

	t_assert(pthread_create(&thr, NULL, writer, NULL) == 0, "pthread_create");
	for (i = 1; i < ROUNDS; i++) {
		sqe = t_sqe(&r);
		aem_prep_subscribe_fd(sqe, sv[0], AEM_FD_READABLE | AEM_FD_HANGUP, 0, i);
		t_submit(&r);
		c = result(&r, i);
		t_assert(c.res >= 0, "subscribe fd round %u: %s", i, strerror(-c.res));
		id = c.id;
		/* A few events' worth of time on odd rounds; none on even ones. */
		if (i & 1)
			look(&r, &c, 1);
		sqe = t_sqe(&r);
		aem_prep_unsubscribe(sqe, id);
		sqe->user_data = 0x10000 + i;
		t_submit(&r);
		c = result(&r, 0x10000 + i);
		t_eq(c.res, 0);
		/* The result's tail was acquired: every earlier event is below this tail. */
		dead_mark[i] = events + aem_cq_ready(&r, 0);
		dead[i] = true;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	pthread_join(thr, NULL);
	while (look(&r, &c, 100))
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "stray result %#llx",
			 (unsigned long long)c.user_data);
	printf("%llu events over %u subscriptions\n", (unsigned long long)events, ROUNDS);
	t_assert(events > 0, "the live subscription saw no event");
	aem_teardown(&r);
	close(sv[0]);
	close(sv[1]);
	return T_EXIT_PASS;
}
