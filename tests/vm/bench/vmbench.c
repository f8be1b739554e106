/* SPDX-License-Identifier: MIT */
/*
 * Benchmarks of the kernel backend, run inside the vmtest VM:
 *   vmbench [seconds]
 * Each figure is measured in this run, beside its own baseline, because the
 * VM (TCG) is far slower than the host and only ratios carry over:
 *   gen       generator -> one consumer, 32-byte inline events, batched reaping
 *   post      POST SQEs to our own channel in batches of 256, reaped in batches
 *   call      AEM_IOC_CALL round trips (caller process -> handler -> writeback);
 *             call_detail: how many took over 50 ms, and the worst
 *   futex     futex ping-pong between two threads
 *   futex_proc futex ping-pong between two processes over a shared word: the
 *             wake-up floor for "call", whose caller is another process
 *   uring_nop io_uring NOPs, submitted and reaped in batches of 256: the
 *             cheapest completion the same kernel delivers through a ring
 *   uring_msg io_uring MSG_RING, one ring sending batches of 256 to another
 *             (sender's CQEs skipped), the receiver reaping its mapped CQ
 * Output: one "name value unit" line per figure, then "ratio" lines: AEM's
 * figure over each peer's from this same run.
 * VMBENCH_PIN=1 puts the process on CPU 0 from the call benchmark on (its
 * handler thread and caller too, and the futex peers after it): the cost of
 * wake-ups that cross vCPUs, against none.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>

#include <sys/syscall.h>
#include <liburing.h>
#include "aem_test.h"
#include <sched.h>

static double secs = 1.0;

/* Figures of this run, for the ratio lines; 0 when a benchmark was skipped. */
static double gen_rate, post_rate, call_us, futex_us, futex_proc_us, nop_rate, msg_rate;

static double now_s(void)
{
	return (double)t_now_ns() / 1e9;
}

/* Reap every CQE of every class in one pass; returns how many. */
static unsigned reap_all(struct vring *r, uint64_t *seq_sum)
{
	unsigned n = 0, c;

	for (c = 0; c < r->p.nr_classes; c++) {
		const struct aem_ring_offsets *o = &r->p.cq_off[c];
		uint32_t head = *vr_u32(r, o->head);
		uint32_t tail = __atomic_load_n(vr_u32(r, o->tail), __ATOMIC_ACQUIRE);
		const struct aem_cqe *cqes = (const struct aem_cqe *)
			((char *)r->region[AEM_REGION_CQES] + o->array);

		for (; head != tail; head++, n++) {
			uint64_t seq;

			memcpy(&seq, cqes[head & (r->p.cq_entries - 1)].data, sizeof(seq));
			*seq_sum += seq;
		}
		__atomic_store_n(vr_u32(r, o->head), head, __ATOMIC_RELEASE);
	}
	return n;
}

static void bench_gen(void)
{
	struct aem_params p = { .cq_entries = 1U << 16, .nr_classes = 1 };
	uint64_t events = 0, sum = 0;
	struct aem_sqe *sqe;
	struct vring r;
	double t0, t;

	vr_setup_or_die(&r, &p);
	sqe = vr_sqe(&r);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_GEN;
	sqe->gen.burst = 4096;
	sqe->gen.payload_len = 32;
	sqe->user_data = 1;
	if (vr_result(&r, 1, NULL) < 0) {
		printf("gen skipped (no aem_gen)\n");
		vr_close(&r);
		return;
	}
	t0 = now_s();
	do {
		unsigned n = reap_all(&r, &sum);

		events += n;
		if (!n)
			vr_enter(&r, 0, 1, 100 * (int64_t)T_MS);
		t = now_s();
	} while (t - t0 < secs);
	gen_rate = (double)events / (t - t0);
	/* Every event read: seq 0, 1, 2 ... with none lost or read twice. */
	t_assert(sum == events * (events - 1) / 2, "gen: sequence sum");
	printf("gen %.0f events/s (%llu events, sequence checked)\n", gen_rate,
	       (unsigned long long)events);
	vr_close(&r);
}

static void bench_post(void)
{
	struct aem_params p = { .sq_entries = 4096, .cq_entries = 1U << 14, .nr_classes = 1 };
	uint64_t events = 0, sum = 0;
	struct aem_sqe *sqe;
	struct vring r;
	double t0, t;
	int i;

	vr_setup_or_die(&r, &p);
	sqe = vr_sqe(&r);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_MSG;
	sqe->msg.channel = 1;
	sqe->user_data = 1;
	t_eq(vr_result(&r, 1, NULL), 0);
	t0 = now_s();
	do {
		for (i = 0; i < 256; i++) {
			sqe = vr_sqe(&r);
			sqe->opcode = AEM_OP_POST;
			sqe->flags = AEM_SQE_F_SILENT;
			sqe->target = AEM_ADDR(r.p.ring_id, 1);
			sqe->len = 32;
		}
		t_assert(vr_enter(&r, 256, 0, 0) == 256, "post batch");
		events += reap_all(&r, &sum);
		t = now_s();
	} while (t - t0 < secs);
	events += reap_all(&r, &sum);
	post_rate = (double)events / (t - t0);
	printf("post %.0f events/s\n", post_rate);
	vr_close(&r);
}

static struct vring callee;
static volatile int stop_handler;

static void *handler(void *arg)
{
	struct aem_cqe c;

	(void)arg;
	while (!stop_handler) {
		if (!vr_wait_cqe(&callee, &c, 100, NULL, NULL))
			continue;
		if (!(c.flags & AEM_CQE_F_CALL))
			continue;
		struct aem_sqe *sqe = vr_sqe(&callee);

		sqe->opcode = AEM_OP_WRITEBACK;
		sqe->flags = AEM_SQE_F_SILENT;
		sqe->target = c.id;
		sqe->len = 8;
		vr_enter(&callee, 1, 0, 0);
	}
	return NULL;
}

static void bench_call(void)
{
	struct aem_sqe *sqe;
	pthread_t th;
	pid_t pid;
	int pfd[2], status;
	double rate = 0;

	vr_setup_or_die(&callee, NULL);
	sqe = vr_sqe(&callee);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_MSG;
	sqe->msg.channel = 2;
	sqe->user_data = 1;
	t_eq(vr_result(&callee, 1, NULL), 0);
	t_assert(pipe(pfd) == 0, "pipe");
	pthread_create(&th, NULL, handler, NULL);
	if (getenv("VMBENCH_PIN")) {	/* the handler and the caller (forked below) on CPU 0 */
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(0, &set);
		t_assert(sched_setaffinity(0, sizeof(set), &set) == 0, "sched_setaffinity");
		t_assert(pthread_setaffinity_np(th, sizeof(set), &set) == 0, "pthread_setaffinity_np");
	}
	pid = fork();
	if (pid == 0) {
		struct aem_call_args a = { 0 };
		uint64_t req = 7, resp = 0, n = 0, slow = 0;
		int fd = vr_open();
		double t0 = now_s(), t, prev, worst = 0;

		a.addr = AEM_ADDR(callee.p.ring_id, 2);
		a.req = (uintptr_t)&req;
		a.req_len = 8;
		a.resp = (uintptr_t)&resp;
		a.resp_cap = 8;
		a.timeout_ms = 5000;
		prev = t0;
		do {
			if (ioctl(fd, AEM_IOC_CALL, &a) < 0) {
				fprintf(stderr, "call %llu: %s\n", (unsigned long long)n, strerror(errno));
				_exit(2);
			}
			n++;
			t = now_s();
			/* A mean in milliseconds could be a few lost wake-ups (the
			 * handler waits 100 ms at most) or slowness everywhere: count. */
			if (t - prev > 0.05)
				slow++;
			if (t - prev > worst)
				worst = t - prev;
			prev = t;
		} while (t - t0 < secs);
		rate = (double)n / (t - t0);
		printf("call_detail %llu round trips, %llu over 50 ms, worst %.1f ms\n",
		       (unsigned long long)n, (unsigned long long)slow, worst * 1e3);
		fflush(stdout);
		t_assert(write(pfd[1], &rate, sizeof(rate)) == sizeof(rate), "write");
		_exit(0);
	}
	close(pfd[1]);	/* a caller that dies makes the read below return 0 */
	t_assert(read(pfd[0], &rate, sizeof(rate)) == sizeof(rate), "caller failed");
	waitpid(pid, &status, 0);
	stop_handler = 1;
	pthread_join(th, NULL);
	call_us = 1e6 / rate;
	printf("call %.1f us/round-trip\n", call_us);
	vr_close(&callee);
}

static uint32_t fword;
static volatile int futex_stop;

static void *futex_pong(void *arg)
{
	(void)arg;
	for (;;) {
		while (__atomic_load_n(&fword, __ATOMIC_ACQUIRE) != 1)
			syscall(SYS_futex, &fword, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		if (futex_stop)
			return NULL;
		__atomic_store_n(&fword, 0, __ATOMIC_RELEASE);
		syscall(SYS_futex, &fword, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
}

static void bench_futex(void)
{
	uint64_t n = 0;
	pthread_t th;
	double t0 = now_s(), t;

	pthread_create(&th, NULL, futex_pong, NULL);
	do {
		__atomic_store_n(&fword, 1, __ATOMIC_RELEASE);
		syscall(SYS_futex, &fword, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		while (__atomic_load_n(&fword, __ATOMIC_ACQUIRE) != 0)
			syscall(SYS_futex, &fword, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
		n++;
		t = now_s();
	} while (t - t0 < secs);
	futex_stop = 1;
	__atomic_store_n(&fword, 1, __ATOMIC_RELEASE);
	syscall(SYS_futex, &fword, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_join(th, NULL);
	futex_us = (t - t0) * 1e6 / (double)n;
	printf("futex %.1f us/round-trip\n", futex_us);
}

/*
 * The same ping-pong between two processes over a shared word: the floor
 * for "call", whose caller is another process (each round trip switches
 * address spaces twice, which threads do not).
 */
static void bench_futex_proc(void)
{
	uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t n = 0;
	double t0, t;
	pid_t pid;

	t_assert(w != MAP_FAILED, "mmap");
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0) {
		for (;;) {
			uint32_t v;

			while ((v = __atomic_load_n(w, __ATOMIC_ACQUIRE)) == 0)
				syscall(SYS_futex, w, FUTEX_WAIT, 0, NULL, NULL, 0);
			if (v == 2)
				_exit(0);
			__atomic_store_n(w, 0, __ATOMIC_RELEASE);
			syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
		}
	}
	t0 = now_s();
	do {
		__atomic_store_n(w, 1, __ATOMIC_RELEASE);
		syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
		while (__atomic_load_n(w, __ATOMIC_ACQUIRE) != 0)
			syscall(SYS_futex, w, FUTEX_WAIT, 1, NULL, NULL, 0);
		n++;
		t = now_s();
	} while (t - t0 < secs);
	__atomic_store_n(w, 2, __ATOMIC_RELEASE);
	syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
	waitpid(pid, NULL, 0);
	munmap(w, 4096);
	futex_proc_us = (t - t0) * 1e6 / (double)n;
	printf("futex_proc %.1f us/round-trip\n", futex_proc_us);
}

#define URING_BATCH 256

/* Count and consume every CQE of @ring; a negative res is a failed op. */
static unsigned uring_reap(struct io_uring *ring, unsigned *errors)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(ring, head, cqe) {
		if (cqe->res < 0)
			(*errors)++;
		n++;
	}
	io_uring_cq_advance(ring, n);
	return n;
}

static void bench_uring_nop(void)
{
	struct io_uring ring;
	uint64_t events = 0;
	unsigned errors = 0;
	double t0, t;
	int i, ret;

	ret = io_uring_queue_init(URING_BATCH, &ring, 0);
	if (ret < 0) {
		printf("uring_nop skipped (io_uring_queue_init: %d)\n", ret);
		return;
	}
	t0 = now_s();
	do {
		for (i = 0; i < URING_BATCH; i++)
			io_uring_prep_nop(io_uring_get_sqe(&ring));
		ret = io_uring_submit_and_wait(&ring, URING_BATCH);
		t_assert(ret == URING_BATCH, "nop submit");
		events += uring_reap(&ring, &errors);
		t = now_s();
	} while (t - t0 < secs);
	t_assert(errors == 0, "nop errors");
	nop_rate = (double)events / (t - t0);
	printf("uring_nop %.0f events/s\n", nop_rate);
	io_uring_queue_exit(&ring);
}

static void bench_uring_msg(void)
{
	struct io_uring_params rp = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 4096 };
	struct io_uring tx, rx;
	uint64_t events = 0, want = 0;
	unsigned errors = 0;
	double t0, t;
	int i, ret;

	ret = io_uring_queue_init(URING_BATCH, &tx, 0);
	if (ret < 0) {
		printf("uring_msg skipped (io_uring_queue_init: %d)\n", ret);
		return;
	}
	ret = io_uring_queue_init_params(URING_BATCH, &rx, &rp);
	if (ret < 0) {
		printf("uring_msg skipped (receiver ring: %d)\n", ret);
		goto err_tx;
	}
	t0 = now_s();
	do {
		for (i = 0; i < URING_BATCH; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&tx);

			io_uring_prep_msg_ring(sqe, rx.ring_fd, 32, want + i, 0);
			sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		}
		ret = io_uring_submit(&tx);
		t_assert(ret == URING_BATCH, "msg_ring submit");
		want += URING_BATCH;
		/* MSG_RING completes inline; a failed send shows on tx's CQ. */
		uring_reap(&tx, &errors);
		if (errors) {
			printf("uring_msg skipped (MSG_RING failed)\n");
			goto err_rx;
		}
		while (events < want) {
			unsigned n = uring_reap(&rx, &errors);

			if (!n && io_uring_wait_cqe_nr(&rx, &(struct io_uring_cqe *){ 0 }, 1) < 0)
				break;
			events += n;
		}
		t = now_s();
	} while (t - t0 < secs);
	msg_rate = (double)events / (t - t0);
	printf("uring_msg %.0f events/s\n", msg_rate);
err_rx:
	io_uring_queue_exit(&rx);
err_tx:
	io_uring_queue_exit(&tx);
}

static void ratio(const char *what, double aem, double peer, const char *reading)
{
	if (aem > 0 && peer > 0)
		printf("ratio %s %.2f (%s)\n", what, aem / peer, reading);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		secs = atof(argv[1]);
	bench_gen();
	bench_post();
	bench_call();
	bench_futex();
	bench_futex_proc();
	bench_uring_nop();
	bench_uring_msg();
	ratio("gen/uring_nop", gen_rate, nop_rate, "events/s, above 1: AEM faster");
	ratio("gen/uring_msg", gen_rate, msg_rate, "events/s, above 1: AEM faster");
	ratio("post/uring_msg", post_rate, msg_rate, "events/s, above 1: AEM faster");
	ratio("call/futex", call_us, futex_us, "us per round trip, above 1: AEM slower");
	ratio("call/futex_proc", call_us, futex_proc_us, "us per round trip, above 1: AEM slower");
	return 0;
}
