// SPDX-License-Identifier: MIT
/*
 * Remote producer lanes (AEM_FEAT_LANES): the producer's lane fd and both
 * sides' mappings.  The records themselves go through the inline
 * aem_lane_* helpers of libaem.h, as for a lane in the process's own
 * memory; this file only opens, maps, kicks and closes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libaem.h"
#include "aem_int.h"

int aem_lane_open_remote(struct aem_ring *ring, uint64_t addr, unsigned entries,
			 unsigned rec_size, struct aem_lane_remote *r)
{
	struct aem_lane_open o = { .addr = addr, .entries = entries, .rec_size = rec_size };
	void *mem;
	int ret;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	/* One process's memory: the embedded backend has no other process to map it for. */
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		return -EOPNOTSUPP;
	if (ioctl(ring->fd, AEM_IOC_LANE_OPEN, &o) < 0)
		return errno == ENOTTY ? -EOPNOTSUPP : -errno;
	mem = mmap(NULL, o.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, o.fd, 0);
	if (mem == MAP_FAILED) {
		ret = -errno;
		goto err;
	}
	ret = aem_lane_attach(&r->lane, mem, o.map_size);
	if (ret) {
		munmap(mem, o.map_size);
		goto err;
	}
	r->fd = o.fd;
	r->mem = mem;
	r->map_size = o.map_size;
	return 0;
err:
	close(o.fd);
	return ret;
}

int aem_lane_kick(struct aem_lane_remote *r)
{
	return ioctl(r->fd, AEM_IOC_LANE_KICK, 0) < 0 ? -errno : 0;
}

int aem_lane_wait_room(struct aem_lane_remote *r, unsigned timeout_ms)
{
	return ioctl(r->fd, AEM_IOC_LANE_WAIT, (unsigned long)timeout_ms) < 0 ? -errno : 0;
}

int aem_lane_room(struct aem_ring *ring, unsigned slot)
{
	/* The embedded backend's lanes are all in this process: nobody to wake through it. */
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		return -EOPNOTSUPP;
	return ioctl(ring->fd, AEM_IOC_LANE_ROOM, (unsigned long)slot) < 0 ? -errno : 0;
}

void aem_lane_close_remote(struct aem_lane_remote *r)
{
	if (r->mem) {
		aem_lane_close(&r->lane);
		munmap(r->mem, r->map_size);
	}
	/* The kernel kicks the consumer so that it drains and detaches. */
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

int aem_lane_note(const struct aem_cqe *cqe, struct aem_lane_note *n)
{
	if ((cqe->flags & (AEM_CQE_F_RESULT | AEM_CQE_F_LANE)) != (AEM_CQE_F_RESULT | AEM_CQE_F_LANE) ||
	    cqe->res != (int32_t)sizeof(*n))
		return -EINVAL;
	memcpy(n, cqe->data, sizeof(*n));
	return 0;
}

int aem_lane_map_remote(struct aem_ring *ring, const struct aem_lane_note *n,
			struct aem_lane *l)
{
	size_t size;
	void *mem;

	if (n->kind != AEM_LANE_NOTE_ATTACH || !n->entries || (n->entries & (n->entries - 1)) ||
	    n->entries > AEM_LANE_MAX_ENTRIES || !n->rec_size || n->rec_size > AEM_LANE_MAX_RECORD)
		return -EINVAL;
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		return -EOPNOTSUPP;
	size = aem_lane_size(n->entries, n->rec_size);
	size = (size + (size_t)sysconf(_SC_PAGESIZE) - 1) & ~((size_t)sysconf(_SC_PAGESIZE) - 1);
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ring->fd,
		   (off_t)AEM_OFF_LANE(n->slot, n->gen));
	if (mem == MAP_FAILED)
		return -errno;
	/* The geometry is the kernel's (the note), never the lane's ctl. */
	memset(l, 0, sizeof(*l));
	l->kctl = (struct aem_lane_ctl *)mem;
	l->krecs = (unsigned char *)mem + sizeof(struct aem_lane_ctl);
	l->mask = n->entries - 1;
	l->entries = n->entries;
	l->stride = AEM_LANE_REC_STRIDE(n->rec_size);
	l->rec_size = n->rec_size;
	l->prio = n->prio;
	l->sub_id = n->sub_id;
	return 0;
}

void aem_lane_unmap_remote(struct aem_lane *l)
{
	size_t size = aem_lane_size(l->entries, l->rec_size);

	size = (size + (size_t)sysconf(_SC_PAGESIZE) - 1) & ~((size_t)sysconf(_SC_PAGESIZE) - 1);
	if (l->kctl)
		munmap(l->kctl, size);
	memset(l, 0, sizeof(*l));
}

int aem_lane_drained(struct aem_lane *l)
{
	/* The flag first: a tail read after it is the producer's last (its close is a store-release after the tail). */
	if (!(aem_load_acquire(&l->kctl->prod_flags) & AEM_LANE_P_CLOSED))
		return 0;
	return aem_load_acquire(&l->kctl->tail) == l->head;
}
