/* SPDX-License-Identifier: MIT */
/*
 * Who may post and call into a ring, and each user's share of the
 * machine-wide tables (docs/PROTOCOL.md, "Who may post and call";
 * docs/KERNEL_MODULE.md, threat model).  Runs as root; rings are set up
 * under other effective uids (the owner is whoever set the ring up), and
 * ring-less callers and floods run in children that drop to those uids.
 *
 *  - another user's post, CALL SQE and blocking call are refused with
 *    -EACCES (counted, the target untouched) until the owner grants that
 *    uid or everyone; a revoke closes the ring again; the owner's user
 *    needs no grant;
 *  - a user at its limit of pending calls gets ENOSPC / EBUSY while
 *    another user's calls still go through;
 *  - a user at its limit of rings gets EMFILE, another user does not;
 *  - a granted user's flood does not make the owner's own timer lose
 *    events: delivered + backlog + dropped == produced, dropped == 0.
 */
#include "aem_test.h"
#include <grp.h>
#include <sys/stat.h>

#define OWNER		1001
#define OTHER		1002
#define THIRD		1003
#define CHANNEL		9
#define PARAMS		"/sys/module/aem/parameters/"

static unsigned saved_rings, saved_calls;	/* the limits as the test found them */

static void as_euid(uid_t uid)
{
	t_assert(setresuid((uid_t)-1, uid, (uid_t)-1) == 0, "seteuid %u: %s", uid, strerror(errno));
}

/* A ring whose owner is @uid: set up under that effective uid. */
static void setup_as(struct vring *r, uid_t uid, const struct aem_params *p)
{
	int ret;

	as_euid(uid);
	ret = vr_setup(r, p);
	as_euid(0);
	if (ret)
		t_fail("setup as uid %u: %s", uid, strerror(-ret));
}

static void drop_to(uid_t uid)
{
	t_assert(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
	t_assert(setresgid(uid, uid, uid) == 0 && setresuid(uid, uid, uid) == 0,
		 "drop to %u: %s", uid, strerror(errno));
}

static uint64_t sub_msg(struct vring *r, unsigned channel)
{
	struct aem_sqe *sqe = vr_sqe(r);
	struct aem_cqe c;

	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_MSG;
	sqe->user_data = 0x5b;
	sqe->msg.channel = channel;
	t_eq(vr_result(r, 0x5b, &c), 0);
	return c.id;
}

static struct aem_sub_stats sub_stats(struct vring *r, uint64_t id)
{
	struct aem_sub_stats st = { .id = id };

	t_assert(ioctl(r->fd, AEM_IOC_SUB_STATS, &st) == 0, "SUB_STATS: %s", strerror(errno));
	t_assert(st.delivered + st.backlog + st.dropped == st.produced,
		 "unbalanced: %llu + %llu + %llu != %llu", (unsigned long long)st.delivered,
		 (unsigned long long)st.backlog, (unsigned long long)st.dropped,
		 (unsigned long long)st.produced);
	return st;
}

static int grant(struct vring *r, uint32_t uid, uint32_t flags)
{
	struct aem_grant g = { .uid = uid, .flags = flags };

	return ioctl(r->fd, AEM_IOC_GRANT, &g) < 0 ? -errno : 0;
}

/* POST (silent) of one inline message from @from; the result when refused, else 0. */
static int32_t post(struct vring *from, uint32_t to, uint64_t ud)
{
	struct aem_sqe *sqe = vr_sqe(from);

	sqe->opcode = AEM_OP_POST;
	sqe->target = AEM_ADDR(to, CHANNEL);
	sqe->user_data = ud;
	sqe->len = 4;
	memcpy(sqe->data, "post", 4);
	return vr_result(from, ud, NULL);
}

/* An asynchronous CALL from @from; *token gets the event's token at the target. */
static void call_submit(struct vring *from, uint32_t to, uint64_t ud)
{
	struct aem_sqe *sqe = vr_sqe(from);

	sqe->opcode = AEM_OP_CALL;
	sqe->target = AEM_ADDR(to, CHANNEL);
	sqe->user_data = ud;
	sqe->arg = 20000;
	sqe->len = 4;
	memcpy(sqe->data, "call", 4);
	t_eq(vr_enter(from, 1, 0, 0), 1);
}

static bool is_call(const struct aem_cqe *c, void *arg)
{
	(void)arg;
	return c->flags & AEM_CQE_F_CALL;
}

/* The target takes its next call event and answers "ok": the caller's result is 2 (bytes). */
#define REPLY_LEN	2

static void answer_call(struct vring *target)
{
	struct aem_sqe *sqe;
	struct aem_cqe c;

	t_assert(vr_wait_cqe(target, &c, 5000, is_call, NULL), "no call arrived");
	sqe = vr_sqe(target);
	sqe->opcode = AEM_OP_WRITEBACK;
	sqe->target = c.id;
	sqe->user_data = 0xa5;
	sqe->len = 2;
	memcpy(sqe->data, "ok", 2);
	t_eq(vr_result(target, 0xa5, NULL), 0);
}

/* A blocking call to @to as (real) uid @uid in a child: its result, 0 or -errno. */
static pid_t blocking_call_start(uid_t uid, uint32_t to, int *res_fd)
{
	int p[2];
	pid_t pid;

	t_assert(pipe(p) == 0, "pipe");
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0) {
		struct aem_call_args a = { 0 };
		char resp[8];
		int fd, res;

		close(p[0]);
		drop_to(uid);
		fd = vr_open();
		a.addr = AEM_ADDR(to, CHANNEL);
		a.req = (uintptr_t)"req";
		a.req_len = 3;
		a.resp = (uintptr_t)resp;
		a.resp_cap = sizeof(resp);
		a.timeout_ms = 10000;
		res = fd < 0 ? fd : ioctl(fd, AEM_IOC_CALL, &a) < 0 ? -errno : 0;
		if (write(p[1], &res, sizeof(res)) != sizeof(res))
			_exit(2);
		_exit(0);
	}
	close(p[1]);
	*res_fd = p[0];
	return pid;
}

static int blocking_call_end(pid_t pid, int res_fd)
{
	int res = 1, status;

	t_assert(read(res_fd, &res, sizeof(res)) == sizeof(res), "caller died");
	close(res_fd);
	t_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "caller: status 0x%x", status);
	return res;
}

/* A blocking call that the target must not see: it comes back at once. */
static int blocking_call_refused(uid_t uid, uint32_t to)
{
	int fd;
	pid_t pid = blocking_call_start(uid, to, &fd);

	return blocking_call_end(pid, fd);
}

/* A blocking call the target answers. */
static int blocking_call_answered(uid_t uid, struct vring *target)
{
	int fd;
	pid_t pid = blocking_call_start(uid, target->p.ring_id, &fd);

	answer_call(target);
	return blocking_call_end(pid, fd);
}

static void grants(void)
{
	struct vring owner, same, other, third, rootr;
	struct aem_ring_stats st;
	struct aem_grant bad = { .uid = OTHER, .resv = 1 };
	uint64_t sub;
	uint32_t to;
	int nofd;

	setup_as(&owner, OWNER, NULL);
	setup_as(&same, OWNER, NULL);
	setup_as(&other, OTHER, NULL);
	setup_as(&third, THIRD, NULL);
	vr_setup_or_die(&rootr, NULL);
	sub = sub_msg(&owner, CHANNEL);
	to = owner.p.ring_id;
	t_assert(owner.p.features & AEM_FEAT_GRANT, "features %#x", owner.p.features);

	/* Not the owner's user: refused, counted, the target untouched. */
	t_eq(post(&other, to, 1), -EACCES);
	call_submit(&other, to, 2);
	t_eq(vr_result(&other, 2, NULL), -EACCES);
	vr_stats(&other, &st);
	t_eq(st.refused[AEM_REFUSE_ID], 2);
	t_eq(blocking_call_refused(OTHER, to), -EACCES);
	t_eq(post(&rootr, to, 3), -EACCES);	/* root's ring too: no bypass */
	t_eq(sub_stats(&owner, sub).produced, 0);

	/* The owner's user needs no grant: another ring, a ring-less caller. */
	t_eq(post(&same, to, 4), 0);
	t_eq(blocking_call_answered(OWNER, &owner), 0);
	t_eq(sub_stats(&owner, sub).produced, 2);

	/* Bad grants change nothing. */
	t_assert(ioctl(owner.fd, AEM_IOC_GRANT, &bad) < 0 && errno == EINVAL, "resv: %s", strerror(errno));
	t_eq(grant(&owner, (uint32_t)-1, 0), -EINVAL);
	t_eq(grant(&owner, OTHER, 1U << 9), -EINVAL);
	t_eq(grant(&owner, OTHER, AEM_GRANT_REVOKE), -ENOENT);
	nofd = vr_open();
	{
		struct aem_grant g = { .uid = OTHER };

		t_assert(ioctl(nofd, AEM_IOC_GRANT, &g) < 0 && errno == EBADFD, "no ring: %s", strerror(errno));
	}
	close(nofd);
	t_eq(post(&other, to, 5), -EACCES);

	/* A grant to OTHER: its post, CALL SQE and blocking call go through. */
	t_eq(grant(&owner, OTHER, 0), 0);
	t_eq(post(&other, to, 6), 0);
	call_submit(&other, to, 7);
	answer_call(&owner);
	t_eq(vr_result(&other, 7, NULL), REPLY_LEN);
	t_eq(blocking_call_answered(OTHER, &owner), 0);
	t_eq(post(&third, to, 8), -EACCES);

	/* Everyone, then no one but the owner's user again. */
	t_eq(grant(&owner, 0, AEM_GRANT_ANY), 0);
	t_eq(post(&third, to, 9), 0);
	t_eq(post(&rootr, to, 10), 0);
	t_eq(grant(&owner, 0, AEM_GRANT_ANY | AEM_GRANT_REVOKE), 0);
	t_eq(post(&third, to, 11), -EACCES);
	t_eq(grant(&owner, OTHER, AEM_GRANT_REVOKE), 0);
	t_eq(post(&other, to, 12), -EACCES);
	t_eq(blocking_call_refused(OTHER, to), -EACCES);
	t_eq(post(&same, to, 13), 0);
	t_eq(sub_stats(&owner, sub).produced, 8);

	vr_close(&rootr);
	vr_close(&third);
	vr_close(&other);
	vr_close(&same);
	vr_close(&owner);
}

static unsigned read_param(const char *name)
{
	char path[128], buf[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), PARAMS "%s", name);
	f = fopen(path, "r");
	t_assert(f, "%s: %s", path, strerror(errno));
	t_assert(fgets(buf, sizeof(buf), f), "read %s", path);
	fclose(f);
	return (unsigned)strtoul(buf, NULL, 10);
}

static void write_param(const char *name, unsigned v)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), PARAMS "%s", name);
	f = fopen(path, "w");
	t_assert(f, "%s: %s", path, strerror(errno));
	fprintf(f, "%u\n", v);
	t_assert(fclose(f) == 0, "write %s", path);
}

/* A user at its limit of pending calls: refused; another user's calls are not. */
static void call_limit(void)
{
	struct vring target, x1, x2, y;
	struct aem_ring_stats st;
	unsigned i;

	write_param("user_max_calls", 8);
	setup_as(&target, OWNER, NULL);
	sub_msg(&target, CHANNEL);
	t_eq(grant(&target, 0, AEM_GRANT_ANY), 0);
	setup_as(&x1, OTHER, NULL);
	setup_as(&x2, OTHER, NULL);
	setup_as(&y, THIRD, NULL);

	/* OTHER's calls are never answered: they hold its share. */
	for (i = 0; i < 8; i++)
		call_submit(i < 4 ? &x1 : &x2, target.p.ring_id, 100 + i);
	call_submit(&x1, target.p.ring_id, 200);
	t_eq(vr_result(&x1, 200, NULL), -ENOSPC);
	call_submit(&x2, target.p.ring_id, 201);
	t_eq(vr_result(&x2, 201, NULL), -ENOSPC);
	vr_stats(&x2, &st);
	t_eq(st.refused[AEM_REFUSE_NOMEM], 1);
	t_eq(blocking_call_refused(OTHER, target.p.ring_id), -EBUSY);

	/* THIRD is not affected: an asynchronous and a blocking call are answered. */
	call_submit(&y, target.p.ring_id, 300);
	/* The target sees OTHER's 8 calls first; answer them all, then THIRD's. */
	for (i = 0; i < 9; i++)
		answer_call(&target);
	t_eq(vr_result(&y, 300, NULL), REPLY_LEN);
	for (i = 0; i < 8; i++)
		t_eq(vr_result(i < 4 ? &x1 : &x2, 100 + i, NULL), REPLY_LEN);
	t_eq(blocking_call_answered(THIRD, &target), 0);
	/* Answered calls gave OTHER its share back. */
	call_submit(&x1, target.p.ring_id, 400);
	answer_call(&target);
	t_eq(vr_result(&x1, 400, NULL), REPLY_LEN);

	vr_close(&y);
	vr_close(&x2);
	vr_close(&x1);
	vr_close(&target);
	write_param("user_max_calls", saved_calls);
}

/* A user at its limit of rings: EMFILE; another user can still set one up. */
static void ring_limit(void)
{
	struct vring r[4], y;
	unsigned i;
	int ret;

	write_param("user_max_rings", 3);
	for (i = 0; i < 3; i++)
		setup_as(&r[i], OTHER, NULL);
	as_euid(OTHER);
	ret = vr_setup(&r[3], NULL);
	as_euid(0);
	t_eq(ret, -EMFILE);
	setup_as(&y, THIRD, NULL);
	vr_close(&r[0]);
	setup_as(&r[0], OTHER, NULL);	/* a closed ring gives its place back */
	for (i = 0; i < 3; i++)
		vr_close(&r[i]);
	vr_close(&y);
	write_param("user_max_rings", saved_rings);
}

#define FLOOD_MS	1500

/* As OTHER: post to @to for FLOOD_MS; writes back posted and FULL refusals. */
static void flooder(uint32_t to, int out)
{
	struct aem_params p = { .sq_entries = 64, .cq_entries = 64, .nr_classes = 1 };
	uint64_t end, res[2] = { 0, 0 };
	struct aem_ring_stats st;
	struct aem_sqe *sqe;
	struct vring r;
	int n;

	drop_to(OTHER);
	vr_setup_or_die(&r, &p);
	end = t_now_ns() + FLOOD_MS * T_MS;
	while (t_now_ns() < end) {
		while ((sqe = vr_sqe(&r))) {
			sqe->opcode = AEM_OP_POST;
			sqe->flags = AEM_SQE_F_SILENT;
			sqe->target = AEM_ADDR(to, CHANNEL);
			sqe->len = 8;
		}
		n = vr_enter(&r, p.sq_entries, 0, 0);
		t_assert(n >= 0, "enter: %s", strerror(-n));
		res[0] += (unsigned)n;
		if (n == 0)
			usleep(50);
	}
	vr_stats(&r, &st);
	res[1] = st.refused[AEM_REFUSE_FULL];
	t_eq(st.refused[AEM_REFUSE_ID] + st.refused[AEM_REFUSE_NOMEM], 0);
	t_assert(write(out, res, sizeof(res)) == sizeof(res), "write");
	_exit(0);
}

static void flood_vs_timer(void)
{
	struct aem_params p = { .sq_entries = 64, .cq_entries = 64, .nr_classes = 1,
				.backlog_limit = 256 };
	struct aem_sub_stats ts, ms;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct vring v;
	uint64_t timer, msg, res[2], end;
	int pipefd[2], status;
	pid_t pid;

	setup_as(&v, OWNER, &p);
	msg = sub_msg(&v, CHANNEL);
	sqe = vr_sqe(&v);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_TIMER;
	sqe->user_data = 0x7173;
	sqe->timer.first_ns = T_MS;
	sqe->timer.interval_ns = T_MS;
	t_eq(vr_result(&v, 0x7173, &c), 0);
	timer = c.id;
	t_eq(grant(&v, OTHER, 0), 0);

	t_assert(pipe(pipefd) == 0, "pipe");
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0) {
		close(pipefd[0]);
		flooder(v.p.ring_id, pipefd[1]);
	}
	close(pipefd[1]);
	/* A slow consumer: the flood fills the ring between looks. */
	end = t_now_ns() + (FLOOD_MS + 200) * T_MS;
	while (t_now_ns() < end) {
		usleep(5000);
		while (vr_reap_any(&v, &c))
			;
	}
	t_assert(read(pipefd[0], res, sizeof(res)) == sizeof(res), "flooder died");
	t_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "flooder: status 0x%x", status);
	while (vr_reap_any(&v, &c))
		;
	vr_enter(&v, 0, 0, 0);	/* flush the backlog */
	ts = sub_stats(&v, timer);
	ms = sub_stats(&v, msg);
	printf("flood: %llu posted, %llu refused full; timer produced %llu delivered %llu backlog %llu dropped %llu\n",
	       (unsigned long long)res[0], (unsigned long long)res[1],
	       (unsigned long long)ts.produced, (unsigned long long)ts.delivered,
	       (unsigned long long)ts.backlog, (unsigned long long)ts.dropped);
	t_assert(res[1] > 0, "the flood never found the target full: it tested nothing");
	t_assert(ts.produced > 0, "the timer never fired");
	t_eq(ts.dropped, 0);
	t_eq(ms.produced, res[0]);
	t_eq(ms.dropped, 0);
	vr_close(&v);
}

/* Whatever happens, the next test finds the device and the limits as they were. */
static mode_t dev_mode;
static pid_t main_pid;

static void restore(void)
{
	if (getpid() != main_pid)
		return;
	as_euid(0);
	chmod(AEM_DEVICE_PATH, dev_mode);
	write_param("user_max_rings", saved_rings);
	write_param("user_max_calls", saved_calls);
}

int main(void)
{
	struct stat st;
	int fd = vr_open();

	if (fd < 0)
		t_fail("open: %s", strerror(-fd));
	close(fd);
	if (geteuid() != 0)
		t_skip("needs root to act as several users");
	t_assert(stat(AEM_DEVICE_PATH, &st) == 0, "stat: %s", strerror(errno));
	dev_mode = st.st_mode & 07777;
	saved_rings = read_param("user_max_rings");
	saved_calls = read_param("user_max_calls");
	t_eq(saved_rings, 1024);
	t_eq(saved_calls, 4096);
	main_pid = getpid();
	atexit(restore);
	t_assert(chmod(AEM_DEVICE_PATH, 0666) == 0, "chmod: %s", strerror(errno));
	grants();
	call_limit();
	ring_limit();
	flood_vs_timer();
	return t_exit();
}
