/* SPDX-License-Identifier: MIT */
/*
 * Process handlers (aem_proc_*), forked per event and pooled: a child
 * changes a call's request in place in the shared slot and the caller's
 * reply carries the change; a child that crashes, exits or outlives its
 * timeout is reported (-ECHILD, -ETIMEDOUT with its wait status), its
 * caller gets that errno at once, the ring keeps working and every slot comes back; at
 * most max_procs handlers run at once; a pool serves many events with the
 * same children and replaces one that died; an inline event reaches the
 * child through a shared copy.
 */
#include <signal.h>
#include <sys/wait.h>
#include "aem_test.h"

#define CHANNEL		5
#define TAG		0x9c
#define MAX_PROCS	2
#define TIMEOUT_MS	2000	/* a handler's limit: generous, for forks in a loaded TCG guest */

/*
 * Runs in the child.  By the request's first byte: 'r' reverses the rest
 * in place and appends the child's pid (so the test sees which process
 * served it); 'c' crashes; 'e' exits; 's' sleeps past the timeout; 'w'
 * waits 100 ms, then answers as 'r'; 'f' fails with -EPROTO.
 */
static int handler(void *data, unsigned len, unsigned cap, void *arg)
{
	uint8_t *d = data, t;
	unsigned i;
	pid_t pid = getpid();

	(void)arg;
	switch (len ? d[0] : 0) {
	case 'c':
		abort();	/* not SIGSEGV: ASan would catch that and exit 1 */
	case 'e':
		_exit(7);
	case 's':
		sleep(30);
		break;
	case 'f':
		return -EPROTO;
	case 'w':
		usleep(100 * 1000);
		/* fall through */
	case 'r':
		for (i = 1; i < (len + 1) / 2; i++) {
			t = d[i];
			d[i] = d[len - i];
			d[len - i] = t;
		}
		if (len + sizeof(pid) > cap)
			return -ENOSPC;
		memcpy(d + len, &pid, sizeof(pid));
		return (int)(len + sizeof(pid));
	}
	return (int)len;
}

static struct aem_ring server, client;
static uint64_t next_ud = 1;

/* Send a call; the server's next event goes to a child. */
static uint64_t call_start(struct aem_proc *ph, const char *req, unsigned timeout_ms)
{
	struct aem_sqe *sqe = t_sqe(&client);
	uint64_t ud = next_ud++;
	struct aem_cqe c;

	aem_prep_call(sqe, AEM_ADDR(server.ring_id, CHANNEL), req, (unsigned)strlen(req), 0, timeout_ms);
	aem_sqe_set_data(sqe, ud);
	t_submit(&client);
	t_assert(t_next(&server, &c, 5000), "no call event for request %s", req);
	t_assert((c.flags & (AEM_CQE_F_CALL | AEM_CQE_F_SLOT)) == (AEM_CQE_F_CALL | AEM_CQE_F_SLOT),
		 "call event flags %#x", c.flags);
	t_ok(aem_proc_start(ph, &c));
	return ud;
}

/* Reap one finished handler, waiting for it. */
static struct aem_proc_done reap_one(struct aem_proc *ph)
{
	struct aem_proc_done d;
	uint64_t end = t_now_ns() + 10000 * T_MS;

	while (t_now_ns() < end)
		if (t_ok(aem_proc_reap(ph, &d, 1, 100)) == 1)
			return d;
	t_fail("no handler finished within 10 s");
}

/* A call's reply: "r<s>" must come back as "r<reverse s><pid>"; returns the pid. */
static pid_t check_reply_cqe(struct aem_cqe c, const char *req)
{
	unsigned len = (unsigned)strlen(req), got, i;
	uint8_t *d;
	pid_t pid;

	t_assert(c.res >= 0, "call %s: %s", req, strerror(-c.res));
	d = aem_cqe_payload(&client, &c, &got);
	t_eq(got, len + sizeof(pid));
	t_eq(d[0], req[0]);
	for (i = 1; i < len; i++)
		if (d[i] != (uint8_t)req[len - i])
			t_fail("reply byte %u is %c, want %c", i, d[i], req[len - i]);
	memcpy(&pid, d + len, sizeof(pid));
	if (c.flags & AEM_CQE_F_SLOT)
		t_release(&client, c.slot);
	return pid;
}

static pid_t check_reply(uint64_t ud, const char *req)
{
	return check_reply_cqe(t_result(&client, ud, 5000), req);
}

static pid_t roundtrip(struct aem_proc *ph, const char *req)
{
	uint64_t ud = call_start(ph, req, 5000);
	struct aem_proc_done d = reap_one(ph);

	t_eq(d.token != 0, 1);
	t_eq(d.user_data, TAG);
	t_eq(d.res, strlen(req) + sizeof(pid_t));
	return check_reply(ud, req);
}

/* A failing child: reported with @want and the wait status; its caller gets @want too. */
static void failing(struct aem_proc *ph, const char *req, int want, int want_sig, int want_exit)
{
	uint64_t ud = call_start(ph, req, 2 * TIMEOUT_MS);
	struct aem_proc_done d = reap_one(ph);

	t_eq(d.res, want);
	if (want_sig) {
		t_assert(WIFSIGNALED(d.status) && WTERMSIG(d.status) == want_sig,
			 "request %s: wait status %#x, want signal %d", req, d.status, want_sig);
	} else if (want_exit >= 0) {
		t_assert(WIFEXITED(d.status) && WEXITSTATUS(d.status) == want_exit,
			 "request %s: wait status %#x, want exit %d", req, d.status, want_exit);
	}
	t_eq(t_result(&client, ud, 5000).res, want);
}

static void run(unsigned flags)
{
	struct aem_proc_opts o = { .max_procs = MAX_PROCS, .timeout_ms = TIMEOUT_MS, .flags = flags };
	bool pool = flags & AEM_PROC_POOL;
	struct aem_proc_done d[MAX_PROCS];
	pid_t pids[8];
	struct aem_proc *ph;
	struct aem_cqe c, third;
	unsigned i, n;
	uint64_t ud[MAX_PROCS];

	printf("%s\n", pool ? "pool" : "fork per event");
	t_ok(aem_proc_create(&server, handler, NULL, &o, &ph));

	/* In place: reversed by the child, its pid appended. */
	for (i = 0; i < 8; i++)
		pids[i] = roundtrip(ph, i % 2 ? "rstressed" : "rdrawer");
	for (i = 0; i < 8; i++) {
		t_assert(pids[i] != getpid(), "the handler ran in the parent");
		/* One at a time, the pool's first child serves every event. */
		if (pool)
			t_assert(pids[i] == pids[0], "pool: event %u served by pid %d, event 0 by %d",
				 i, pids[i], pids[0]);
		else if (i)
			t_assert(pids[i] != pids[i - 1], "fork: events %u and %u served by one child", i - 1, i);
	}

	/* Bounded: MAX_PROCS at once, then -EBUSY until one is reaped. */
	for (i = 0; i < MAX_PROCS; i++)
		ud[i] = call_start(ph, "wbusy", 5000);
	t_eq(aem_proc_running(ph), MAX_PROCS);
	{
		struct aem_sqe *sqe = t_sqe(&client);

		aem_prep_call(sqe, AEM_ADDR(server.ring_id, CHANNEL), "wlast", 5, 0, 5000);
		aem_sqe_set_data(sqe, 999);
		t_submit(&client);
		t_assert(t_next(&server, &third, 5000), "no third call event");
		t_eq(aem_proc_start(ph, &third), -EBUSY);
	}
	for (n = 0; n < MAX_PROCS;)
		n += (unsigned)t_ok(aem_proc_reap(ph, d + n, MAX_PROCS - n, -1));
	for (i = 0; i < MAX_PROCS; i++) {
		t_assert(t_next(&client, &c, 5000) && (c.flags & AEM_CQE_F_RESULT), "reply %u of %u", i, MAX_PROCS);
		t_assert(c.user_data == ud[0] || c.user_data == ud[1], "reply to %#llx", (unsigned long long)c.user_data);
		check_reply_cqe(c, "wbusy");
	}
	t_ok(aem_proc_start(ph, &third));
	reap_one(ph);
	check_reply(999, "wlast");

	/* Failures: reported, and the ring and the handler keep working. */
	failing(ph, "crash", -ECHILD, SIGABRT, -1);
	roundtrip(ph, "rafter crash");
	failing(ph, "exit", -ECHILD, 0, 7);
	failing(ph, "sleep", -ETIMEDOUT, SIGKILL, -1);
	failing(ph, "fail", -EPROTO, 0, -1);
	pids[0] = roundtrip(ph, "rafter timeout");
	pids[1] = roundtrip(ph, "ragain");
	if (pool)
		t_assert(pids[0] == pids[1], "pool: replacement child %d not reused (then %d)", pids[0], pids[1]);
	else
		t_assert(pids[0] != pids[1], "fork: two events served by child %d", pids[0]);

	/* An inline post: the child gets a shared copy of the CQE's bytes. */
	{
		struct aem_sqe *sqe = t_sqe(&client);

		aem_prep_post(sqe, AEM_ADDR(server.ring_id, CHANNEL), "rinline", 7, 0);
		aem_sqe_set_data(sqe, next_ud);
		t_submit(&client);
		t_eq(t_result(&client, next_ud++, 5000).res, 0);
		t_assert(t_next(&server, &c, 5000), "no post event");
		t_eq(c.flags & (AEM_CQE_F_SLOT | AEM_CQE_F_CALL), 0);
		t_ok(aem_proc_start(ph, &c));
		d[0] = reap_one(ph);
		t_eq(d[0].res, 7 + sizeof(pid_t));
	}

	aem_proc_destroy(ph);
	aem_release_commit(&server);
	t_submit(&server);
	t_eq(t_stats(&server).slots_free, server.slot_count);
}

int main(void)
{
	struct aem_params p = t_params(64, 256, 1);
	struct aem_proc_opts bad = { .flags = 1U << 7 };
	struct aem_proc *ph;

	t_setup(&server, &p);
	t_setup(&client, &p);
	t_sub_msg(&server, CHANNEL, 0, TAG);

	t_eq(aem_proc_create(&server, handler, NULL, &bad, &ph), -EINVAL);
	bad = (struct aem_proc_opts){ .max_procs = AEM_PROC_MAX_PROCS + 1 };
	t_eq(aem_proc_create(&server, handler, NULL, &bad, &ph), -EINVAL);

	run(0);
	run(AEM_PROC_POOL);

	aem_release_commit(&client);
	t_submit(&client);
	t_eq(t_stats(&client).slots_free, client.slot_count);
	aem_teardown(&client);
	aem_teardown(&server);
	return T_EXIT_PASS;
}
