// SPDX-License-Identifier: MIT
/*
 * AEM_SRC_PROC on the embedded backend: process fork, exec and exit from
 * the netlink process connector (NETLINK_CONNECTOR, CN_IDX_PROC), the
 * user-space twin of kmod/aem_proc.c.  What a subscriber sees is the
 * module's, within what user space can observe:
 *
 *  - struct aem_proc_args: -EINVAL for an empty or unknown mask or a
 *    non-zero reserved field, -ESRCH for a pid filter naming no process;
 *  - privilege, the module's rule: every process (pid 0) takes
 *    CAP_NET_ADMIN, a filter on a process whose real uid is not our
 *    effective uid too; else -EPERM.  Kernels before 6.6 let only
 *    CAP_NET_ADMIN join the connector at all, so there even a process's
 *    own children take it (the bind fails: -EPERM).  The connector serves
 *    only the initial pid and user namespaces and ignores a listener
 *    elsewhere: subscribe finds out (no acknowledgement of its LISTEN
 *    within PROC_ACK_MS) and fails with -EOPNOTSUPP, and every later
 *    subscribe at once;
 *  - a fork of a new thread is not a new process: not reported.  A
 *    process's exit is reported when its thread-group leader exits (the
 *    module waits for the last thread; they differ only for a leader that
 *    leaves before its other threads);
 *  - pid filter: the process and its descendants.  The module walks the
 *    ancestors at each event; here each subscription keeps the set: the
 *    process and its descendants read from /proc at subscribe, then a fork
 *    whose parent is in the set adds the child, an exit takes the pid out.
 *    (So a descendant reparented after its parent died still counts here,
 *    and the 64-deep bound applies only to the /proc scan.);
 *  - struct aem_proc_event in a slot: pid and ppid (tgids; fork and exit
 *    from the connector, exec's ppid from /proc), exit_code (the wait
 *    status) from the connector; comm from /proc/<pid>/stat and, for exec,
 *    filename from readlink(/proc/<pid>/exe) (the resolved path, where the
 *    module has the name given to execve), both read when the event is
 *    handled: best effort, empty when the process is already gone;
 *  - only events from the subscription on (the connector's timestamp is
 *    CLOCK_MONOTONIC), and none before its SUBSCRIBE result: events that
 *    arrive between subscribe and start wait in the watch.
 *
 * Events lost to a full socket buffer (ENOBUFS: a fork storm outran the
 * reader) cannot be told apart per subscription: the reader warns.  Losses
 * that can be are counted in the subscription's dropped (aem_core_lost):
 * an event past the PROC_PENDING held before the subscription started, and
 * a descendant the pid set has no room for (out of memory, with the
 * PROC_SPARE pids beside it taken): one per such process, whose later
 * events are not delivered.
 *
 * One reader thread, started by the first subscription and joined by
 * __aem_proc_source_stop() when the last embedded ring goes.  It posts
 * only under proc_mu, walking the watch list; unsubscribe unlinks under
 * proc_mu, so after it returns nothing touches the subscription.
 * Locks: ring submit_lock -> proc_mu -> ring cq_lock (aem_core_post).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <linux/capability.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>

#include "emb_sources.h"

#define PROC_MAX_DEPTH	64		/* descendants found by the /proc scan, as the module's walk */
#define PROC_ACK_MS	1000		/* the connector answers LISTEN at once where it listens at all */
#define PROC_RCVBUF	(4 << 20)	/* room for a fork storm while the reader is busy */
#define PROC_PENDING	32		/* events held between subscribe and start */
#define PROC_SPARE	8		/* pids kept beside the set while it cannot grow */
#define PROC_BUF	16384

struct proc_watch {
	struct proc_watch	*next;
	struct aem_ctx		*r;
	struct aem_sub		*s;
	u64			id;
	u64			since_ns;	/* events before the subscription are not its business */
	u32			events;		/* AEM_PROC_* */
	s32			filter;		/* 0: every process */
	s32			*pids;		/* with a filter: the process and its descendants, sorted */
	u32			nr_pids, cap_pids;
	s32			spare[PROC_SPARE];	/* more of them, while pids cannot grow */
	u32			nr_spare;
	bool			started;	/* the SUBSCRIBE result is out */
	u32			nr_pending;
	u32			lost;		/* events lost before start: counted dropped then */
	struct aem_proc_event	pending[PROC_PENDING];
};

/* All below under proc_mu, except what the thread reads before it starts. */
static pthread_mutex_t proc_mu = PTHREAD_MUTEX_INITIALIZER;
static struct proc_watch *proc_watches;
static int proc_nl = -1, proc_stopfd = -1;
static pthread_t proc_thr;
static bool proc_running;
static int proc_deaf;		/* -EOPNOTSUPP once the connector ignored us */
static u32 proc_cookie;

/* ---------------------------------------------------------------------- */
/* Pid sets                                                               */

/* Index of @pid in w->pids, or where it would go. */
static u32 pid_pos(const struct proc_watch *w, s32 pid)
{
	u32 lo = 0, hi = w->nr_pids;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (w->pids[mid] < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool pid_has(const struct proc_watch *w, s32 pid)
{
	u32 i = pid_pos(w, pid);

	if (i < w->nr_pids && w->pids[i] == pid)
		return true;
	for (i = 0; i < w->nr_spare; i++)
		if (w->spare[i] == pid)
			return true;
	return false;
}

static int pid_add(struct proc_watch *w, s32 pid)
{
	u32 i = pid_pos(w, pid), cap;
	s32 *p;

	if (pid_has(w, pid))
		return 0;
	if (w->nr_pids == w->cap_pids) {
		cap = w->cap_pids ? w->cap_pids * 2 : 16;
		p = aem_realloc(w->pids, (size_t)cap * sizeof(*p));
		if (!p) {
			/* The set cannot grow now: a few more wait beside it. */
			if (w->nr_spare == PROC_SPARE)
				return -ENOMEM;
			w->spare[w->nr_spare++] = pid;
			return 0;
		}
		w->pids = p;
		w->cap_pids = cap;
	}
	memmove(&w->pids[i + 1], &w->pids[i], (size_t)(w->nr_pids - i) * sizeof(*w->pids));
	w->pids[i] = pid;
	w->nr_pids++;
	return 0;
}

static void pid_del(struct proc_watch *w, s32 pid)
{
	u32 i;

	for (i = 0; i < w->nr_spare; i++) {
		if (w->spare[i] == pid) {
			w->spare[i] = w->spare[--w->nr_spare];
			return;
		}
	}
	i = pid_pos(w, pid);
	if (i >= w->nr_pids || w->pids[i] != pid)
		return;
	memmove(&w->pids[i], &w->pids[i + 1], (size_t)(w->nr_pids - i - 1) * sizeof(*w->pids));
	w->nr_pids--;
}

/* ---------------------------------------------------------------------- */
/* /proc                                                                  */

/* Parent and name of @pid from /proc/<pid>/stat (either may be NULL). */
static int proc_stat(s32 pid, s32 *ppid, char comm[16])
{
	char path[32], buf[512], *l, *rp;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
	l = strchr(buf, '(');
	rp = strrchr(buf, ')');
	if (!l || !rp || rp < l)
		return -EIO;
	if (comm) {
		size_t len = (size_t)(rp - l - 1);

		if (len > 15)
			len = 15;
		memset(comm, 0, 16);
		memcpy(comm, l + 1, len);
	}
	if (ppid && sscanf(rp + 1, " %*c %d", ppid) != 1)
		return -EIO;
	return 0;
}

/*
 * Fill w->pids with the filter process and its descendants as /proc shows
 * them now.  Under proc_mu, so that events the reader handles afterwards
 * build on this picture.
 */
static int proc_scan(struct proc_watch *w)
{
	struct pp { s32 pid, ppid; } *all = NULL, *t;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	bool grew = true;
	int depth, ret;
	DIR *d;

	ret = pid_add(w, w->filter);
	if (ret)
		return ret;
	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		s32 ppid;

		if (*end || pid <= 0 || pid > INT32_MAX || proc_stat((s32)pid, &ppid, NULL))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			t = aem_realloc(all, cap * sizeof(*all));
			if (!t) {
				ret = -ENOMEM;
				goto out;
			}
			all = t;
		}
		all[n].pid = (s32)pid;
		all[n].ppid = ppid;
		n++;
	}
	for (depth = 0; depth < PROC_MAX_DEPTH && grew; depth++) {
		grew = false;
		for (i = 0; i < n; i++) {
			if (pid_has(w, all[i].ppid) && !pid_has(w, all[i].pid)) {
				ret = pid_add(w, all[i].pid);
				if (ret)
					goto out;
				grew = true;
			}
		}
	}
out:
	closedir(d);
	free(all);
	return ret;
}

static bool proc_net_admin(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &h, d) < 0)
		return false;
	return d[CAP_TO_INDEX(CAP_NET_ADMIN)].effective & CAP_TO_MASK(CAP_NET_ADMIN);
}

/* Real uid of @pid (the module's task_uid()), from /proc/<pid>/status. */
static int proc_uid(s32 pid, uid_t *uid)
{
	char path[32], line[128];
	unsigned long v;
	int ret = -ESRCH;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "re");
	if (!f)
		return -ESRCH;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Uid: %lu", &v) == 1) {
			*uid = (uid_t)v;
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* The payload, from the connector's facts and, best effort, /proc. */
static void proc_fill(struct aem_proc_event *ev, u32 what, s32 pid, s32 ppid, s32 code)
{
	char path[32];
	ssize_t n;

	memset(ev, 0, sizeof(*ev));
	ev->what = what;
	ev->pid = pid;
	ev->ppid = ppid;
	ev->exit_code = code;
	proc_stat(pid, what == AEM_PROC_EXEC ? &ev->ppid : NULL, ev->comm);
	if (what == AEM_PROC_EXEC) {
		snprintf(path, sizeof(path), "/proc/%d/exe", pid);
		n = readlink(path, ev->filename, sizeof(ev->filename) - 1);
		ev->filename[n > 0 ? n : 0] = '\0';
	}
}

/* ---------------------------------------------------------------------- */
/* Events                                                                 */

/* @n events of @w are lost: counted dropped (produced and dropped), at once or at start. */
static void proc_lost(struct proc_watch *w, u32 n)
{
	if (w->started)
		aem_core_lost(w->r, w->s, n);
	else
		w->lost += n;
}

static void proc_deliver(struct proc_watch *w, const struct aem_proc_event *ev)
{
	if (w->started)
		aem_core_post(w->r, w->s, ev, sizeof(*ev), 0, w->id);
	else if (w->nr_pending < PROC_PENDING)
		w->pending[w->nr_pending++] = *ev;
	else
		proc_lost(w, 1);
}

static void proc_handle(const struct proc_event *pe)
{
	struct aem_proc_event ev;
	struct proc_watch *w;
	bool filled = false, in;
	s32 pid, ppid = 0, code = 0;
	u32 what;

	switch (pe->what) {
	case PROC_EVENT_FORK:
		/* A new thread is not a new process. */
		if (pe->event_data.fork.child_pid != pe->event_data.fork.child_tgid)
			return;
		what = AEM_PROC_FORK;
		pid = pe->event_data.fork.child_tgid;
		ppid = pe->event_data.fork.parent_tgid;
		break;
	case PROC_EVENT_EXEC:
		what = AEM_PROC_EXEC;
		pid = pe->event_data.exec.process_tgid;
		break;
	case PROC_EVENT_EXIT:
		/* The process, once: when its leader goes. */
		if (pe->event_data.exit.process_pid != pe->event_data.exit.process_tgid)
			return;
		what = AEM_PROC_EXIT;
		pid = pe->event_data.exit.process_tgid;
		ppid = pe->event_data.exit.parent_tgid;
		code = (s32)pe->event_data.exit.exit_code;
		break;
	default:
		return;
	}

	pthread_mutex_lock(&proc_mu);
	for (w = proc_watches; w; w = w->next) {
		if (!w->filter) {
			in = true;
		} else if (what == AEM_PROC_FORK) {
			/* Tracking a child goes on whatever the mask: its own children count too. */
			in = pid_has(w, ppid);
			if (in && pid_add(w, pid)) {
				/* Its later events cannot be told ours: one counted loss. */
				aem_warn("proc source: out of memory tracking pid %d; its events are lost",
					 pid);
				proc_lost(w, 1);
			}
		} else {
			in = pid_has(w, pid);
		}
		if (in && (w->events & what) && pe->timestamp_ns >= w->since_ns) {
			if (!filled) {
				proc_fill(&ev, what, pid, ppid, code);
				filled = true;
			}
			proc_deliver(w, &ev);
		}
		if (in && w->filter && what == AEM_PROC_EXIT)
			pid_del(w, pid);	/* the number may be reused by a stranger */
	}
	pthread_mutex_unlock(&proc_mu);
}

/* Every connector message in @buf; anything malformed is skipped. */
static void proc_parse(const char *buf, size_t len)
{
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
	int left = (int)len;

	for (; NLMSG_OK(nlh, left); nlh = NLMSG_NEXT(nlh, left)) {
		struct cn_msg cn;
		struct proc_event pe;
		size_t plen = NLMSG_PAYLOAD(nlh, 0);

		if (nlh->nlmsg_type == NLMSG_ERROR || nlh->nlmsg_type == NLMSG_NOOP ||
		    plen < sizeof(cn))
			continue;
		memcpy(&cn, NLMSG_DATA(nlh), sizeof(cn));
		if (cn.id.idx != CN_IDX_PROC || cn.id.val != CN_VAL_PROC ||
		    cn.len < offsetof(struct proc_event, event_data) || cn.len > plen - sizeof(cn))
			continue;
		/* Unaligned in the buffer (36 bytes of headers) and maybe shorter than ours. */
		memset(&pe, 0, sizeof(pe));
		memcpy(&pe, (const char *)NLMSG_DATA(nlh) + sizeof(cn),
		       cn.len < sizeof(pe) ? cn.len : sizeof(pe));
		proc_handle(&pe);
	}
}

/* One datagram from the kernel into @buf: bytes, 0 for one not from the kernel, -errno. */
static ssize_t proc_recv(int nl, char *buf, size_t cap, int flags)
{
	struct sockaddr_nl sa;
	socklen_t sl = sizeof(sa);
	ssize_t n;

	n = recvfrom(nl, buf, cap, flags, (struct sockaddr *)&sa, &sl);
	if (n < 0)
		return -errno;
	/* Only the kernel speaks for the connector: a forged sender is ignored. */
	if (sl < sizeof(sa) || sa.nl_family != AF_NETLINK || sa.nl_pid != 0)
		return 0;
	return n;
}

static void *proc_main(void *arg)
{
	static char buf[PROC_BUF] __attribute__((aligned(8)));
	struct pollfd pf[2] = {
		{ .fd = proc_nl, .events = POLLIN },
		{ .fd = proc_stopfd, .events = POLLIN },
	};
	ssize_t n;

	(void)arg;
	for (;;) {
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			aem_warn("proc source: poll: %s; process events stop", strerror(errno));
			return NULL;
		}
		if (pf[1].revents)
			return NULL;
		for (;;) {
			n = proc_recv(proc_nl, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == -EAGAIN || n == -EINTR)
				break;
			if (n == -ENOBUFS) {
				aem_warn("proc source: receive buffer overflowed; process events lost");
				continue;
			}
			if (n < 0) {
				aem_warn("proc source: recv: %s; process events stop", strerror((int)-n));
				return NULL;
			}
			proc_parse(buf, (size_t)n);
		}
	}
}

/* ---------------------------------------------------------------------- */
/* The connector socket                                                   */

static int proc_send_op(int nl, u32 op, u32 cookie)
{
	char buf[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(u32))] __attribute__((aligned(8)));
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	struct cn_msg *cn = NLMSG_DATA(nlh);

	memset(buf, 0, sizeof(buf));
	nlh->nlmsg_len = NLMSG_LENGTH(sizeof(*cn) + sizeof(op));
	nlh->nlmsg_type = NLMSG_DONE;
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->ack = cookie;
	cn->len = sizeof(op);
	memcpy(cn->data, &op, sizeof(op));
	if (send(nl, buf, nlh->nlmsg_len, 0) < 0)
		return -errno;
	return 0;
}

/*
 * The connector answers LISTEN with an acknowledgement carrying an errno
 * (EPERM without CAP_NET_ADMIN): what == PROC_EVENT_NONE and ack = our
 * cookie + 1.  The kernel rewrites seq and cpu of everything it sends, so
 * the cookie is what tells our answer from another listener's.  No answer
 * means it ignored us (another namespace).
 */
static int proc_wait_ack(int nl, u32 cookie)
{
	static char buf[PROC_BUF] __attribute__((aligned(8)));
	u64 deadline = aem_now_ns() + PROC_ACK_MS * 1000000ULL;
	struct pollfd pf = { .fd = nl, .events = POLLIN };

	for (;;) {
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)buf;
		u64 now = aem_now_ns();
		ssize_t n;
		int left;

		if (now >= deadline)
			return -EOPNOTSUPP;
		if (poll(&pf, 1, (int)((deadline - now) / 1000000ULL) + 1) < 0 && errno != EINTR)
			return -errno;
		n = proc_recv(nl, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == -EAGAIN || n == -EINTR || n == -ENOBUFS || n == 0)
			continue;
		if (n < 0)
			return (int)n;
		for (left = (int)n; NLMSG_OK(nlh, left); nlh = NLMSG_NEXT(nlh, left)) {
			struct cn_msg cn;
			struct proc_event pe;

			if (NLMSG_PAYLOAD(nlh, 0) < sizeof(cn) + offsetof(struct proc_event, event_data) + sizeof(u32))
				continue;
			memcpy(&cn, NLMSG_DATA(nlh), sizeof(cn));
			memset(&pe, 0, sizeof(pe));
			memcpy(&pe, (const char *)NLMSG_DATA(nlh) + sizeof(cn),
			       offsetof(struct proc_event, event_data) + sizeof(u32));
			if (cn.id.idx == CN_IDX_PROC && cn.id.val == CN_VAL_PROC &&
			    pe.what == PROC_EVENT_NONE && cn.ack == cookie + 1)
				return -(int)pe.event_data.ack.err;
		}
	}
}

/* Under proc_mu.  Signals stay blocked in the reader, so the application's handlers never run on it. */
static int proc_start_locked(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
	int nl, stopfd = -1, rcvbuf = PROC_RCVBUF, ret;
	bool listening = false;
	sigset_t all, old;
	u32 cookie;

	if (proc_running)
		return 0;
	if (proc_deaf)
		return proc_deaf;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
	if (nl < 0)
		return errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT ? -EOPNOTSUPP : -errno;
	/* Forcing the size past rmem_max takes CAP_NET_ADMIN, which the connector needs anyway. */
	if (setsockopt(nl, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		setsockopt(nl, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	/* Joining the multicast group is where an unprivileged caller gets EPERM. */
	if (bind(nl, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		goto err;
	}
	/* Unlikely to be another process's: pid in the high bits. */
	cookie = (u32)getpid() << 12 ^ ++proc_cookie;
	ret = proc_send_op(nl, PROC_CN_MCAST_LISTEN, cookie);
	if (ret)
		goto err;
	listening = true;
	ret = proc_wait_ack(nl, cookie);
	if (ret == -EOPNOTSUPP) {
		aem_warn("proc source: the process connector does not answer (not in the initial namespaces?)");
		proc_deaf = ret;
	}
	if (ret)
		goto err;
	stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stopfd < 0) {
		ret = -errno;
		goto err;
	}
	proc_nl = nl;
	proc_stopfd = stopfd;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&proc_thr, NULL, proc_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		goto err;
	proc_running = true;
	return 0;
err:
	/* The kernel counts listeners globally: give back what we took. */
	if (listening)
		proc_send_op(nl, PROC_CN_MCAST_IGNORE, 0);
	if (stopfd >= 0)
		close(stopfd);
	close(nl);
	proc_nl = proc_stopfd = -1;
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Source ops                                                             */

static int proc_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	const struct aem_proc_args *a = &sqe->proc;
	struct proc_watch *w;
	int ret;

	if (!a->events || (a->events & ~AEM_PROC_ALL) || a->resv[0] || a->resv[1] || a->resv[2])
		return -EINVAL;
	if (!a->pid) {
		/* Every process on the system: as privileged as the module asks. */
		if (!proc_net_admin())
			return -EPERM;
	} else {
		uid_t uid;

		if (a->pid > INT32_MAX || proc_uid((s32)a->pid, &uid))
			return -ESRCH;
		/* Someone else's processes take the same privilege. */
		if (uid != geteuid() && !proc_net_admin())
			return -EPERM;
	}
	w = aem_zalloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->r = r;
	w->s = s;
	w->id = aem_sub_id(r, s);
	w->events = a->events;
	w->filter = (s32)a->pid;
	w->since_ns = aem_now_ns();

	pthread_mutex_lock(&proc_mu);
	ret = proc_start_locked();
	if (ret)
		goto err;
	if (w->filter) {
		ret = proc_scan(w);
		if (ret)
			goto err;
		/* Gone between the check and the scan: as if it had been gone before. */
		ret = -ESRCH;
		if (kill(w->filter, 0) < 0 && errno == ESRCH)
			goto err;
	}
	w->next = proc_watches;
	proc_watches = w;
	pthread_mutex_unlock(&proc_mu);
	s->priv[0] = (u64)(uintptr_t)w;
	return 0;
err:
	pthread_mutex_unlock(&proc_mu);
	free(w->pids);
	free(w);
	return ret;
}

/* The SUBSCRIBE result is out: what came meanwhile goes first, in order. */
static void proc_start(struct aem_ctx *r, struct aem_sub *s)
{
	struct proc_watch *w = (struct proc_watch *)(uintptr_t)s->priv[0];
	u32 i;

	if (!w)
		return;
	pthread_mutex_lock(&proc_mu);
	for (i = 0; i < w->nr_pending; i++)
		aem_core_post(r, s, &w->pending[i], sizeof(w->pending[i]), 0, w->id);
	w->nr_pending = 0;
	w->started = true;
	if (w->lost)
		aem_core_lost(r, s, w->lost);
	w->lost = 0;
	pthread_mutex_unlock(&proc_mu);
}

static void proc_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct proc_watch *w = (struct proc_watch *)(uintptr_t)s->priv[0], **pp;

	(void)r;
	if (!w)
		return;
	pthread_mutex_lock(&proc_mu);
	for (pp = &proc_watches; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	pthread_mutex_unlock(&proc_mu);
	s->priv[0] = 0;
	free(w->pids);
	free(w);
}

const struct aem_source_ops __aem_proc_source_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_PROC,
	.name		= "proc",
	.subscribe	= proc_subscribe,
	.unsubscribe	= proc_unsubscribe,
	.start		= proc_start,
};

void __aem_proc_source_stop(void)
{
	u64 one = 1;
	ssize_t n;

	pthread_mutex_lock(&proc_mu);
	if (!proc_running) {
		pthread_mutex_unlock(&proc_mu);
		return;
	}
	pthread_mutex_unlock(&proc_mu);
	/* Not under proc_mu: the reader takes it to post. */
	n = write(proc_stopfd, &one, sizeof(one));
	(void)n;	/* EAGAIN: already signalled */
	pthread_join(proc_thr, NULL);

	pthread_mutex_lock(&proc_mu);
	proc_send_op(proc_nl, PROC_CN_MCAST_IGNORE, 0);
	close(proc_nl);
	close(proc_stopfd);
	proc_nl = proc_stopfd = -1;
	proc_running = false;
	pthread_mutex_unlock(&proc_mu);
}
