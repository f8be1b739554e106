/* SPDX-License-Identifier: MIT */
/*
 * Holds a ring open while vmtest unloads and reloads a source module:
 *   reload_holder MODULE READY_FILE GO_FILE [GONE_FILE PROBED_FILE]
 * Subscribes to the module's source, sees it produce, creates READY_FILE,
 * (with GONE_FILE: waits for it, the module being removed, checks that
 * AEM_IOC_PROBE no longer lists the source, creates PROBED_FILE), then
 * waits for GO_FILE (the module has been removed and loaded again), then
 * checks that the unload ended the subscription with a final event, that
 * the ring survived, and that a new subscription to the reloaded module
 * produces again.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "aem_test.h"

static int sv[2] = { -1, -1 };

static uint8_t source_of(const char *mod)
{
	if (!strcmp(mod, "aem_timer"))
		return AEM_SRC_TIMER;
	if (!strcmp(mod, "aem_gen"))
		return AEM_SRC_GEN;
	if (!strcmp(mod, "aem_proc"))
		return AEM_SRC_PROC;
	if (!strcmp(mod, "aem_fd"))
		return AEM_SRC_FD;
	return AEM_SRC_NONE;
}

static void fill(struct aem_sqe *sqe, uint8_t src)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = src;
	switch (src) {
	case AEM_SRC_TIMER:
		sqe->timer.first_ns = 2 * T_MS;
		sqe->timer.interval_ns = 5 * T_MS;
		break;
	case AEM_SRC_GEN:
		sqe->gen.rate = 200;
		sqe->gen.burst = 1;
		sqe->gen.payload_len = 16;
		break;
	case AEM_SRC_PROC:
		sqe->proc.events = AEM_PROC_ALL;
		sqe->proc.pid = (uint32_t)getpid();
		break;
	case AEM_SRC_FD:
		sqe->fd.fd = sv[0];
		sqe->fd.events = AEM_FD_READABLE | AEM_FD_HANGUP;
		break;
	}
}

/* Make the source produce: timers and generators do it by themselves. */
static void poke(uint8_t src)
{
	if (src == AEM_SRC_PROC) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
	} else if (src == AEM_SRC_FD) {
		t_assert(write(sv[1], "x", 1) == 1, "socket write");
	}
}

struct want {
	uint64_t sub;
	bool final;
};

static bool is_event_of(const struct aem_cqe *c, void *arg)
{
	struct want *w = arg;

	if (c->flags & AEM_CQE_F_RESULT)
		return false;
	if (w->final)
		return (c->flags & AEM_CQE_F_FINAL) != 0;
	return true;
}

static uint64_t subscribe(struct vring *r, uint8_t src, uint64_t tag)
{
	struct aem_sqe *sqe = vr_sqe(r);
	struct aem_cqe c;
	int32_t res;

	fill(sqe, src);
	sqe->user_data = tag;
	res = vr_result(r, tag, &c);
	t_assert(res == 0, "subscribe to source %u: %s", src, strerror(-res));
	return c.id;
}

/* The probe's entry for @src, copied to @out; false if the source is not loaded. */
static bool probe_source(struct vring *r, uint8_t src, struct aem_probe_source *out)
{
	struct aem_probe p;
	uint32_t i;

	t_assert(ioctl(r->fd, AEM_IOC_PROBE, &p) == 0, "AEM_IOC_PROBE: %s", strerror(errno));
	t_assert(p.nr_sources <= AEM_PROBE_SOURCES, "%u sources", p.nr_sources);
	for (i = 0; i < p.nr_sources; i++) {
		if (p.sources[i].source == src) {
			*out = p.sources[i];
			return true;
		}
	}
	return false;
}

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY, 0644);

	t_assert(fd >= 0, "create %s", path);
	close(fd);
}

static void wait_file(const char *path)
{
	struct stat st;
	int i;

	for (i = 0; i < 1200 && stat(path, &st) != 0; i++)
		usleep(50000);
	t_assert(i < 1200, "%s never appeared", path);
}

int main(int argc, char **argv)
{
	struct aem_cqe c;
	struct want w = { 0 };
	struct aem_probe_source ps;
	struct vring r;
	uint8_t src;
	int i;

	if (argc != 4 && argc != 6)
		t_fail("usage: reload_holder MODULE READY_FILE GO_FILE [GONE_FILE PROBED_FILE]");
	src = source_of(argv[1]);
	if (src == AEM_SRC_NONE)
		t_skip("no source known for module %s", argv[1]);
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");

	vr_setup_or_die(&r, NULL);
	w.sub = subscribe(&r, src, 0x501);
	poke(src);
	t_assert(vr_wait_cqe(&r, &c, 5000, is_event_of, &w), "no event from %s before the reload", argv[1]);

	t_assert(probe_source(&r, src, &ps), "probe lacks %s before the unload", argv[1]);
	t_assert(!(ps.flags & AEM_PROBE_SRC_CLOSING), "%s closing before the unload", argv[1]);
	t_assert(ps.version >= 1 && ps.name[0], "probe entry of %s: version %u", argv[1], ps.version);

	touch(argv[2]);
	if (argc == 6) {
		wait_file(argv[4]);
		t_assert(!probe_source(&r, src, &ps), "probe lists %s after rmmod", argv[1]);
		touch(argv[5]);
	}
	wait_file(argv[3]);
	t_assert(probe_source(&r, src, &ps), "probe lacks %s after the reload", argv[1]);
	t_assert(!(ps.flags & AEM_PROBE_SRC_CLOSING), "%s closing after the reload", argv[1]);

	/* The unload ended the subscription with a final event. */
	w.final = true;
	t_assert(vr_wait_cqe(&r, &c, 5000, is_event_of, &w), "no final event after unloading %s", argv[1]);
	t_eq(c.user_data, 0x501);
	vr_nop_ok(&r);

	/* The reloaded module serves a new subscription. */
	w.final = false;
	subscribe(&r, src, 0x502);
	for (i = 0; i < 3; i++) {
		poke(src);
		t_assert(vr_wait_cqe(&r, &c, 5000, is_event_of, &w), "no event after reloading %s", argv[1]);
		if (c.user_data == 0x502)
			break;
	}
	t_eq(c.user_data, 0x502);
	vr_close(&r);
	return T_EXIT_PASS;
}
