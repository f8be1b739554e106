/* SPDX-License-Identifier: MIT */
/*
 * Benchmarks of the kernel backend, run inside the vmtest VM:
 *   vmbench [seconds]
 * Each figure is measured in this run, beside its own baseline, because the
 * VM (TCG) is far slower than the host and only ratios carry over:
 *   gen       generator -> one consumer, 32-byte inline events, batched reaping
 *   post      POST SQEs to our own channel in batches of 256, reaped in batches
 *   call      AEM_IOC_CALL round trips (caller process -> handler -> writeback)
 *   futex     futex ping-pong between two threads: the wake-up floor for "call"
 * Output: one "name value unit" line per figure.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include "vmt.h"

static double secs = 1.0;

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

		for (; head != tail; head++, n++)
			*seq_sum += cqes[head & (r->p.cq_entries - 1)].data[0];
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
	printf("gen %.0f events/s\n", (double)events / (t - t0));
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
	printf("post %.0f events/s\n", (double)events / (t - t0));
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
	pid = fork();
	if (pid == 0) {
		struct aem_call_args a = { 0 };
		uint64_t req = 7, resp = 0, n = 0;
		int fd = vr_open();
		double t0 = now_s(), t;

		a.addr = AEM_ADDR(callee.p.ring_id, 2);
		a.req = (uintptr_t)&req;
		a.req_len = 8;
		a.resp = (uintptr_t)&resp;
		a.resp_cap = 8;
		a.timeout_ms = 5000;
		do {
			if (ioctl(fd, AEM_IOC_CALL, &a) < 0)
				_exit(2);
			n++;
			t = now_s();
		} while (t - t0 < secs);
		rate = (double)n / (t - t0);
		t_assert(write(pfd[1], &rate, sizeof(rate)) == sizeof(rate), "write");
		_exit(0);
	}
	t_assert(read(pfd[0], &rate, sizeof(rate)) == sizeof(rate), "caller failed");
	waitpid(pid, &status, 0);
	stop_handler = 1;
	pthread_join(th, NULL);
	printf("call %.1f us/round-trip\n", 1e6 / rate);
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
	printf("futex %.1f us/round-trip\n", (t - t0) * 1e6 / (double)n);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		secs = atof(argv[1]);
	bench_gen();
	bench_post();
	bench_call();
	bench_futex();
	return 0;
}
