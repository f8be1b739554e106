// SPDX-License-Identifier: MIT
/*
 * aem_setup / aem_teardown: choose the backend, get the regions mapped,
 * build the user-space view from the offsets setup published.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libaem.h"
#include "aem_int.h"

/*
 * Applications allocate struct aem_ring, so its size and layout are
 * libaem.so.1's ABI: calls took padding after backend, nothing moved.
 */
_Static_assert(sizeof(void *) != 8 || (sizeof(struct aem_ring) == 456 &&
	       offsetof(struct aem_ring, region) == 384), "struct aem_ring changed layout");

static const uint64_t kernel_off[AEM_NR_REGIONS] = {
	AEM_OFF_RINGS, AEM_OFF_SQES, AEM_OFF_CQES, AEM_OFF_PAYLOAD,
};

/* The other zero fields take the kernel side's defaults there. */
static void apply_defaults(struct aem_params *p)
{
	if (!p->send_slots)
		p->send_slots = AEM_DEFAULT_SEND_SLOTS;
}

/* Flags, then AEM_BACKEND, then the presence of the device. */
static int choose_backend(const struct aem_params *p, enum aem_backend *b)
{
	unsigned f = p->flags & (AEM_SETUP_EMBEDDED | AEM_SETUP_KERNEL);
	const char *env;

	if (f == (AEM_SETUP_EMBEDDED | AEM_SETUP_KERNEL))
		return -EINVAL;
	if (f) {
		*b = f == AEM_SETUP_KERNEL ? AEM_BACKEND_KERNEL : AEM_BACKEND_EMBEDDED;
		return 0;
	}
	env = getenv("AEM_BACKEND");
	if (env && *env) {
		if (!strcmp(env, "kernel"))
			*b = AEM_BACKEND_KERNEL;
		else if (!strcmp(env, "embedded"))
			*b = AEM_BACKEND_EMBEDDED;
		else
			return -EINVAL;
		return 0;
	}
	*b = access(AEM_DEVICE_PATH, F_OK) == 0 ? AEM_BACKEND_KERNEL : AEM_BACKEND_EMBEDDED;
	return 0;
}

static void unmap_regions(struct aem_ring *ring)
{
	int i;

	for (i = 0; i < AEM_NR_REGIONS; i++) {
		if (ring->region[i])
			munmap(ring->region[i], ring->region_size[i]);
		ring->region[i] = NULL;
	}
}

/* The application's view: every region on its own, CQES read-only. */
static int map_regions(struct aem_ring *ring, const struct aem_params *p, int fd,
		       const uint64_t off[AEM_NR_REGIONS])
{
	int i;

	for (i = 0; i < AEM_NR_REGIONS; i++) {
		int prot = i == AEM_REGION_CQES ? PROT_READ : PROT_READ | PROT_WRITE;
		void *m;

		if (!p->region_size[i])
			continue;
		m = mmap(NULL, p->region_size[i], prot, MAP_SHARED | MAP_POPULATE, fd,
			 (off_t)off[i]);
		if (m == MAP_FAILED) {
			int err = -errno;

			unmap_regions(ring);
			return err;
		}
		ring->region[i] = m;
		ring->region_size[i] = p->region_size[i];
	}
	return 0;
}

/*
 * What this build relies on: the ABI version it was compiled against, and
 * the features its view reads.  A kernel side that answers otherwise is
 * another build: refuse it rather than misread its rings.
 */
#define LIBAEM_NEEDS	(AEM_FEAT_CQE_INLINE | AEM_FEAT_SLOT_RING)

static int check_served(const struct aem_params *p, uint32_t asked)
{
	if (p->api_version != asked || (p->features & LIBAEM_NEEDS) != LIBAEM_NEEDS)
		return -EOPNOTSUPP;
	/* Version 4 is the sender in msg events: a kernel side that serves it says so. */
	if (asked >= 4 && !(p->features & AEM_FEAT_SENDER))
		return -EOPNOTSUPP;
	return 0;
}

static int setup_kernel(struct aem_params *p, struct aem_ring *ring)
{
	uint32_t asked = p->api_version;
	int fd, ret;

	fd = open(AEM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENXIO || errno == ENODEV ? -ENODEV : -errno;
	if (ioctl(fd, AEM_IOC_SETUP, p) < 0) {
		ret = -errno;
		goto err;
	}
	ret = check_served(p, asked);
	if (ret)
		goto err;
	ret = map_regions(ring, p, fd, kernel_off);
	if (ret)
		goto err;
	ring->fd = fd;
	ring->backend = AEM_BACKEND_KERNEL;
	__aem_init_view(ring, p);
	return 0;
err:
	close(fd);
	return ret;
}

static int setup_embedded(struct aem_params *p, struct aem_ring *ring)
{
	uint64_t off[AEM_NR_REGIONS];
	struct __aem_emb *e;
	int memfd, efd, ret;

	ret = __aem_emb_create(p, &e, &memfd, off, &efd);
	if (ret)
		return ret;
	ret = map_regions(ring, p, memfd, off);
	close(memfd);	/* the mappings keep the pages */
	if (ret) {
		__aem_emb_destroy(e);
		return ret;
	}
	ring->fd = efd;
	ring->backend = AEM_BACKEND_EMBEDDED;
	ring->priv = e;
	__aem_init_view(ring, p);
	return 0;
}

int aem_setup(struct aem_params *p, struct aem_ring *ring)
{
	enum aem_backend b;
	int ret;

	if (!p || !ring)
		return -EINVAL;
	memset(ring, 0, sizeof(*ring));
	ring->fd = -1;
	ret = choose_backend(p, &b);
	if (ret)
		return ret;
	/*
	 * This build reads rings of its own version and of the older ones it
	 * knows (they differ in what the CQEs carry, not where rings lie).
	 */
	if (p->api_version && (p->api_version < AEM_API_VERSION_MIN || p->api_version > AEM_API_VERSION))
		return -EOPNOTSUPP;
	if (!p->api_version)
		p->api_version = AEM_API_VERSION;
	apply_defaults(p);
	if (b == AEM_BACKEND_KERNEL)
		return setup_kernel(p, ring);
	return setup_embedded(p, ring);
}

int aem_probe(const struct aem_ring *ring, unsigned setup_flags, struct aem_probe *p)
{
	enum aem_backend b;
	struct aem_params none;
	int fd, ret;

	if (!p)
		return -EINVAL;
	if (ring && ring->backend) {
		b = ring->backend;
	} else {
		memset(&none, 0, sizeof(none));
		none.flags = setup_flags;
		ret = choose_backend(&none, &b);
		if (ret)
			return ret;
	}
	if (b == AEM_BACKEND_EMBEDDED)
		return __aem_emb_probe(p);
	if (ring && ring->backend) {
		ret = __aem_ring_get((unsigned *)&ring->calls);
		if (ret)
			return ret;
		ret = ioctl(ring->fd, AEM_IOC_PROBE, p) < 0 ? -errno : 0;
		__aem_ring_put((unsigned *)&ring->calls);
		return ret;
	}
	fd = open(AEM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENXIO || errno == ENODEV ? -ENODEV : -errno;
	ret = ioctl(fd, AEM_IOC_PROBE, p) < 0 ? -errno : 0;
	close(fd);
	return ret;
}

/*
 * Turn new calls away, wake the embedded backend's waiters, wait for the
 * calls inside to leave (see __aem_ring_get), then unmap and free.
 * ring->calls keeps AEM_RING_DOWN: later calls get -ESHUTDOWN.
 */
void aem_teardown(struct aem_ring *ring)
{
	unsigned v;

	if (!ring || !ring->backend)
		return;
	if (__atomic_fetch_or(&ring->calls, AEM_RING_DOWN, __ATOMIC_ACQ_REL) & AEM_RING_DOWN)
		return;	/* another teardown has it */
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		__aem_emb_shutdown(ring->priv);
	/* acquire: pairs with the release of the last call's __aem_ring_put */
	while ((v = __atomic_load_n(&ring->calls, __ATOMIC_ACQUIRE)) != AEM_RING_DOWN)
		syscall(SYS_futex, &ring->calls, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
	unmap_regions(ring);
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		__aem_emb_destroy(ring->priv);	/* closes the eventfd */
	else if (ring->fd >= 0)
		close(ring->fd);
	/* everything but calls, which late callers may be reading */
	memset(ring, 0, offsetof(struct aem_ring, calls));
	memset(&ring->calls + 1, 0, sizeof(*ring) - offsetof(struct aem_ring, calls) - sizeof(ring->calls));
	ring->fd = -1;
}

const char *aem_backend_name(const struct aem_ring *ring)
{
	if (!ring)
		return "none";
	switch (ring->backend) {
	case AEM_BACKEND_KERNEL:
		return "kernel";
	case AEM_BACKEND_EMBEDDED:
		return "embedded";
	}
	return "none";
}
