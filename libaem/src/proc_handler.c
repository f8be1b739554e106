// SPDX-License-Identifier: MIT
/*
 * Process handlers: an event's handler runs in a child process that sees
 * the event's payload slot in place, through the MAP_SHARED payload region
 * it inherited from fork(); the parent writes back what the child left.
 *
 * Every child talks to the parent over its own SOCK_SEQPACKET socketpair:
 * a request names the bytes (an offset into the payload region, or into a
 * small shared scratch area for inline events), the reply carries the
 * handler's result.  A child that dies closes its end, so a crash is an
 * end-of-file, and a child past its deadline is killed.  Per event, a new
 * child (fork, run, _exit); with AEM_PROC_POOL, max_procs children forked
 * once serve request after request, and one that dies is replaced at the
 * next start.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libaem.h"
#include "aem_int.h"

#define PROC_DEFAULT_MAX	4
#define PROC_DEFAULT_TIMEOUT_MS	10000
#define PROC_OPTS_FLAGS_ALL	(AEM_PROC_POOL | AEM_PROC_WRITEBACK_ALWAYS)
#define PROC_SQE_RETRIES	100

/* Parent -> child: where the event's bytes are.  Nothing else crosses. */
struct proc_req {
	uint64_t	off;		/* into the payload region, or the scratch area */
	uint32_t	len;
	uint32_t	cap;
	uint32_t	scratch;	/* 1: off is into the scratch area (inline event) */
};

/* Child -> parent: the handler's result. */
struct proc_rep {
	int32_t		res;
};

struct proc_job {
	uint64_t	user_data;
	uint64_t	token;
	uint32_t	flags;		/* the CQE's */
	uint32_t	slot;
	uint64_t	deadline_ns;
};

struct proc_worker {
	pid_t		pid;		/* 0: no child */
	int		sock;		/* parent's end; -1 without a child */
	bool		busy;
	struct proc_job	job;
};

struct aem_proc {
	struct aem_ring		*ring;
	aem_proc_fn		fn;
	void			*arg;
	struct aem_proc_opts	o;
	uint8_t			*scratch;	/* MAP_SHARED: AEM_CQE_INLINE bytes per worker */
	size_t			scratch_len;
	unsigned		running;
	struct proc_worker	w[];
};

static uint64_t proc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint8_t *req_bytes(struct aem_proc *ph, const struct proc_req *rq)
{
	return rq->scratch ? ph->scratch + rq->off : ph->ring->payload + rq->off;
}

/* In the child: run the handler on one request and answer. */
static void child_serve_one(struct aem_proc *ph, int sock, const struct proc_req *rq)
{
	struct proc_rep rep;
	int res = ph->fn(req_bytes(ph, rq), rq->len, rq->cap, ph->arg);

	if (res > (int)rq->cap)
		res = -EOVERFLOW;
	rep.res = res;
	if (write(sock, &rep, sizeof(rep)) != sizeof(rep))
		_exit(1);
}

/*
 * In the child, right after fork: keep only this worker's socket.  The
 * child leaves with _exit(): the parent's atexit handlers and stdio
 * buffers are the parent's.
 */
static void child_main(struct aem_proc *ph, int sock, const struct proc_req *first)
{
	struct proc_req rq;
	unsigned i;

	for (i = 0; i < ph->o.max_procs; i++)
		if (ph->w[i].sock >= 0)
			close(ph->w[i].sock);
	signal(SIGPIPE, SIG_DFL);
	if (first) {
		child_serve_one(ph, sock, first);
		_exit(0);
	}
	for (;;) {
		ssize_t n = read(sock, &rq, sizeof(rq));

		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(rq))
			_exit(0);	/* the parent closed our socket: done */
		if (rq.len > rq.cap || rq.off + rq.cap > (rq.scratch ? ph->scratch_len :
				       (size_t)ph->ring->slot_size * (ph->ring->slot_count + ph->ring->send_slots)))
			_exit(2);
		child_serve_one(ph, sock, &rq);
	}
}

/* Fork a child for worker @w; with @first it serves that request and exits. */
static int worker_spawn(struct aem_proc *ph, struct proc_worker *w, const struct proc_req *first)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(sv[0]);
		close(sv[1]);
		return err;
	}
	if (pid == 0) {
		close(sv[0]);
		child_main(ph, sv[1], first);
		_exit(0);
	}
	close(sv[1]);
	w->pid = pid;
	w->sock = sv[0];
	return 0;
}

/* Close worker @w's socket and collect its child; *status gets the wait status. */
static void worker_end(struct proc_worker *w, bool kill_it, int *status)
{
	int st = 0;

	if (w->sock >= 0)
		close(w->sock);
	w->sock = -1;
	if (w->pid > 0) {
		if (kill_it)
			kill(w->pid, SIGKILL);
		while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	w->pid = 0;
	if (status)
		*status = st;
}

int aem_proc_create(struct aem_ring *ring, aem_proc_fn fn, void *arg,
		    const struct aem_proc_opts *opts, struct aem_proc **out)
{
	struct aem_proc_opts o = { 0 };
	struct aem_proc *ph;
	unsigned i;
	int ret;

	if (!ring || !fn || !out || !ring->payload)
		return -EINVAL;
	if (opts)
		o = *opts;
	if ((o.flags & ~PROC_OPTS_FLAGS_ALL) || o.resv)
		return -EINVAL;
	if (!o.max_procs)
		o.max_procs = PROC_DEFAULT_MAX;
	if (!o.timeout_ms)
		o.timeout_ms = PROC_DEFAULT_TIMEOUT_MS;
	if (o.max_procs > AEM_PROC_MAX_PROCS)
		return -EINVAL;
	ph = calloc(1, sizeof(*ph) + o.max_procs * sizeof(ph->w[0]));
	if (!ph)
		return -ENOMEM;
	ph->ring = ring;
	ph->fn = fn;
	ph->arg = arg;
	ph->o = o;
	for (i = 0; i < o.max_procs; i++)
		ph->w[i].sock = -1;
	ph->scratch_len = (size_t)o.max_procs * AEM_CQE_INLINE;
	ph->scratch = mmap(NULL, ph->scratch_len, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ph->scratch == MAP_FAILED) {
		ret = -errno;
		free(ph);
		return ret;
	}
	if (o.flags & AEM_PROC_POOL) {
		for (i = 0; i < o.max_procs; i++) {
			ret = worker_spawn(ph, &ph->w[i], NULL);
			if (ret) {
				aem_proc_destroy(ph);
				return ret;
			}
		}
	}
	*out = ph;
	return 0;
}

void aem_proc_destroy(struct aem_proc *ph)
{
	unsigned i;

	if (!ph)
		return;
	for (i = 0; i < ph->o.max_procs; i++) {
		struct proc_worker *w = &ph->w[i];

		/* A busy child is killed: its event is the caller's to give up. */
		if (w->busy && (w->job.flags & AEM_CQE_F_SLOT))
			aem_release_slot(ph->ring, w->job.slot);
		worker_end(w, w->busy, NULL);
	}
	aem_release_commit(ph->ring);
	munmap(ph->scratch, ph->scratch_len);
	free(ph);
}

unsigned aem_proc_running(const struct aem_proc *ph)
{
	return ph ? ph->running : 0;
}

int aem_proc_start(struct aem_proc *ph, const struct aem_cqe *cqe)
{
	struct proc_worker *w = NULL;
	struct proc_req rq = { 0 };
	unsigned i, len, tries;
	void *data;
	int ret;

	if (!ph || !cqe || (cqe->flags & AEM_CQE_F_RESULT) || cqe->res < 0)
		return -EINVAL;
	for (i = 0; i < ph->o.max_procs && !w; i++)
		if (!ph->w[i].busy)
			w = &ph->w[i];
	if (!w)
		return -EBUSY;
	data = aem_cqe_payload(ph->ring, cqe, &len);
	if (!data)
		return -EINVAL;
	i = (unsigned)(w - ph->w);
	rq.len = len;
	if (cqe->flags & AEM_CQE_F_SLOT) {
		rq.off = (uint64_t)AEM_SLOT_INDEX(cqe->slot) * ph->ring->slot_size;
		rq.cap = ph->ring->slot_size;
	} else {
		/* An inline payload lives in the read-only CQE: the child gets a shared copy. */
		rq.scratch = 1;
		rq.off = (uint64_t)i * AEM_CQE_INLINE;
		rq.cap = AEM_CQE_INLINE;
		memcpy(ph->scratch + rq.off, data, len);
	}
	if (ph->o.flags & AEM_PROC_POOL) {
		/* A child that died since its last answer is replaced. */
		for (tries = 0;; tries++) {
			if (!w->pid) {
				ret = worker_spawn(ph, w, NULL);
				if (ret)
					return ret;
			}
			if (send(w->sock, &rq, sizeof(rq), MSG_NOSIGNAL) == sizeof(rq))
				break;
			worker_end(w, true, NULL);
			if (tries)
				return -EPIPE;
		}
	} else {
		ret = worker_spawn(ph, w, &rq);
		if (ret)
			return ret;
	}
	w->busy = true;
	w->job = (struct proc_job){
		.user_data	= cqe->user_data,
		.token		= cqe->id,
		.flags		= cqe->flags,
		.slot		= cqe->slot,
		.deadline_ns	= proc_now_ns() + (uint64_t)ph->o.timeout_ms * 1000000ULL,
	};
	ph->running++;
	return 0;
}

/* An SQE, submitting to make room when the ring is full. */
static struct aem_sqe *proc_sqe(struct aem_ring *ring)
{
	struct aem_sqe *sqe;
	int i;

	for (i = 0; i < PROC_SQE_RETRIES; i++) {
		sqe = aem_get_sqe(ring);
		if (sqe)
			return sqe;
		if (aem_submit(ring) <= 0)
			usleep(100);
	}
	return NULL;
}

/* Hand the event of @w back to the ring: its result written back, or its slot released. */
static int finish_event(struct aem_proc *ph, struct proc_worker *w, int res)
{
	struct proc_job *j = &w->job;
	bool slot = j->flags & AEM_CQE_F_SLOT;
	struct aem_sqe *sqe;

	if (res >= 0 && ((j->flags & AEM_CQE_F_CALL) || (ph->o.flags & AEM_PROC_WRITEBACK_ALWAYS))) {
		sqe = proc_sqe(ph->ring);
		if (!sqe) {
			res = -EBUSY;
		} else if (slot) {
			aem_prep_writeback_slot(sqe, j->token, j->slot, (unsigned)res);
		} else {
			unsigned n = (unsigned)res < AEM_SQE_INLINE ? (unsigned)res : AEM_SQE_INLINE;

			aem_prep_writeback(sqe, j->token, ph->scratch + (size_t)(w - ph->w) * AEM_CQE_INLINE, n);
		}
		if (sqe) {
			sqe->flags |= AEM_SQE_F_SILENT;
			aem_sqe_set_data(sqe, j->user_data);
			return res;
		}
	}
	/* A call whose handler failed: its caller gets the errno at once. */
	if (res < 0 && (j->flags & AEM_CQE_F_CALL)) {
		struct aem_cqe ev = { .id = j->token, .flags = j->flags, .slot = j->slot };

		sqe = proc_sqe(ph->ring);
		if (sqe) {
			aem_prep_writeback_error(sqe, &ev, -res <= AEM_CALL_ERRNO_MAX ? -res : EIO);
			sqe->flags |= AEM_SQE_F_SILENT;
			aem_sqe_set_data(sqe, j->user_data);
			return res;
		}
	}
	if (slot)
		while (aem_release_slot(ph->ring, j->slot) == -EAGAIN) {
			aem_release_commit(ph->ring);
			aem_submit(ph->ring);
		}
	return res;
}

static void done_fill(struct aem_proc *ph, struct proc_worker *w, int res, int status,
		      struct aem_proc_done *d)
{
	d->user_data = w->job.user_data;
	d->token = w->job.token;
	d->status = status;
	d->res = finish_event(ph, w, res);
	w->busy = false;
	ph->running--;
}

/* Collect worker @w's answer after poll() saw its socket ready. */
static void collect(struct aem_proc *ph, struct proc_worker *w, struct aem_proc_done *d)
{
	struct proc_rep rep;
	ssize_t n;
	int status = 0, res;

	do
		n = recv(w->sock, &rep, sizeof(rep), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n == sizeof(rep)) {
		res = rep.res;
		if (!(ph->o.flags & AEM_PROC_POOL))
			worker_end(w, false, NULL);	/* it exits right after answering */
	} else {
		/* End of file: the child died (crash, exit) before answering. */
		worker_end(w, true, &status);
		res = -ECHILD;
	}
	done_fill(ph, w, res, status, d);
}

int aem_proc_reap(struct aem_proc *ph, struct aem_proc_done *done, unsigned max, int timeout_ms)
{
	struct pollfd pfd[AEM_PROC_MAX_PROCS];
	unsigned idx[AEM_PROC_MAX_PROCS];
	uint64_t end = timeout_ms > 0 ? proc_now_ns() + (uint64_t)timeout_ms * 1000000ULL : 0;
	unsigned got = 0, i, n;

	if (!ph || (!done && max))
		return -EINVAL;
	while (got < max && ph->running) {
		uint64_t now = proc_now_ns(), first = UINT64_MAX;
		int wait_ms, r;

		/* Past their deadline: killed, and reported as timed out. */
		for (i = 0; i < ph->o.max_procs && got < max; i++) {
			struct proc_worker *w = &ph->w[i];

			if (w->busy && w->job.deadline_ns <= now) {
				int status;

				worker_end(w, true, &status);
				done_fill(ph, w, -ETIMEDOUT, status, &done[got++]);
			}
		}
		for (i = n = 0; i < ph->o.max_procs; i++) {
			if (!ph->w[i].busy)
				continue;
			if (ph->w[i].job.deadline_ns < first)
				first = ph->w[i].job.deadline_ns;
			pfd[n] = (struct pollfd){ .fd = ph->w[i].sock, .events = POLLIN };
			idx[n++] = i;
		}
		if (!n || got == max)
			break;
		if (got && timeout_ms != 0)
			timeout_ms = 0;	/* something to return: only take what is ready */
		if (timeout_ms > 0 && end < first)
			first = end;
		if (timeout_ms == 0)
			wait_ms = 0;
		else
			wait_ms = first <= now ? 0 : (int)((first - now + 999999) / 1000000);
		r = poll(pfd, n, wait_ms);
		if (r < 0 && errno != EINTR)
			return got ? (int)got : -errno;
		for (i = 0; r > 0 && i < n && got < max; i++)
			if (pfd[i].revents)
				collect(ph, &ph->w[idx[i]], &done[got++]);
		if (timeout_ms == 0 && r <= 0)
			break;
		if (timeout_ms > 0 && proc_now_ns() >= end && !got)
			break;
	}
	aem_release_commit(ph->ring);
	if (got) {
		int ret = aem_submit(ph->ring);

		if (ret < 0)
			return ret;
	}
	return (int)got;
}

int aem_payload_fd(struct aem_ring *ring, uint64_t *offset)
{
	int fd;

	if (!ring || !offset)
		return -EINVAL;
	fd = __aem_ring_get(&ring->calls);
	if (fd)
		return fd;
	switch (ring->backend) {
	case AEM_BACKEND_KERNEL:
		fd = fcntl(ring->fd, F_DUPFD_CLOEXEC, 0);
		*offset = AEM_OFF_PAYLOAD;
		fd = fd < 0 ? -errno : fd;
		break;
	case AEM_BACKEND_EMBEDDED:
		fd = __aem_emb_payload_fd(ring->priv, offset);
		break;
	default:
		fd = -EINVAL;
	}
	__aem_ring_put(&ring->calls);
	return fd;
}
