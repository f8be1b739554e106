/* SPDX-License-Identifier: MIT */
/*
 * Event sources that exist only in the embedded backend's host: the
 * user-space twins of the module's aem_fd.ko (src_fd.c, an epoll thread), aem_sock.ko (src_sock.c, another)
 * and aem_proc.ko (src_proc.c, the netlink process connector).  embedded.c
 * registers the ops with the core at host init and stops the threads when
 * the last embedded ring is gone.  Included only next to the ring core's
 * headers (aem_core.h), never with libaem.h.
 */
#ifndef LIBAEM_EMB_SOURCES_H
#define LIBAEM_EMB_SOURCES_H

#include "../../kmod/core/aem_core.h"

extern const struct aem_source_ops __aem_fd_source_ops;
extern const struct aem_source_ops __aem_proc_source_ops;
extern const struct aem_source_ops __aem_sock_source_ops;

/*
 * Join the source's thread and close its descriptors; the next
 * subscription starts them again.  Called with no subscription of the
 * source left (every ring torn down), from one thread at a time.
 */
void __aem_fd_source_stop(void);
void __aem_proc_source_stop(void);
void __aem_sock_source_stop(void);

#endif /* LIBAEM_EMB_SOURCES_H */
