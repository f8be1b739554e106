/* SPDX-License-Identifier: GPL-2.0 */
/* Remote producer lanes: the module's side (aem_lane.c). */
#ifndef AEM_LANE_H
#define AEM_LANE_H

#include <linux/mm_types.h>

#include "core/aem_core.h"

struct aem_lanes;

/* A consumer ring's table of @nr remote lanes (*out NULL for 0: it takes none). */
int aem_lanes_create(struct aem_lanes **out, struct aem_ctx *ring, u32 nr);
/* The ring closes: lanes get AEM_LANE_C_GONE, no attach or note after. Before the ring's teardown. */
void aem_lanes_close(struct aem_lanes *lt);
/* After the ring's teardown (no lookup holds the ring any more). */
void aem_lanes_free(struct aem_lanes *lt);

/* The table of the ring whose host is @host, NULL if it takes no lanes (aem_main.c). */
struct aem_lanes *aem_host_lanes(void *host);

long aem_ioc_lane_open(void __user *arg);
/* AEM_IOC_LANE_ROOM on the consumer ring's fd: wake the producer of the lane in @slot. */
long aem_lanes_room(struct aem_lanes *lt, unsigned long slot);
bool aem_lanes_is_offset(u64 off);
int aem_lanes_mmap(struct aem_lanes *lt, struct vm_area_struct *vma, u64 off);

#endif /* AEM_LANE_H */
