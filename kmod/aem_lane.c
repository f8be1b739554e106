// SPDX-License-Identifier: GPL-2.0
/*
 * Remote producer lanes (docs/PROTOCOL.md, "Producer lanes"): a lane whose
 * producer is another process.  The module only allocates the lane's pages,
 * hands them to both sides (the producer's lane fd, the consumer ring's
 * AEM_OFF_LANE mapping), tells the consumer through notes on its result
 * ring, and sets flags in the lane's ctl when a side goes.  It never reads
 * the lane: the producer may write any of it.
 *
 * Lifetime: a lane is held by its producer's fd and by the consumer's table
 * slot; mappings hold their own page references (vm_insert_pages), so a
 * mapping outlives both.  The slot is given back once the consumer has
 * mapped the lane and the producer is gone (or at once, if the producer
 * went before the mapping: the mapping then takes the slot's place), or
 * when the consumer ring closes.
 *
 * Locking: aem_lanes_mutex guards every table and every lane's cons; it is
 * taken before a ring's completion lock (the notes) and never inside it.
 * A lane's room_wq lock is taken inside aem_lanes_mutex (wake-ups) or alone
 * (the producer's AEM_IOC_LANE_WAIT sleeps without the mutex), never
 * around anything else.
 *
 * Room: a producer whose lane is full sleeps in AEM_IOC_LANE_WAIT until
 * the consumer's AEM_IOC_LANE_ROOM sets room (a pending signal, consumed
 * by the wait that returns 0), or the consumer ring closes (cons_gone).
 * A signal that came before the wait makes it return at once: no wake-up
 * is lost between the producer's look at head and its ioctl.
 */
#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include "compat_kernel.h"
#include "aem_kmod.h"
#include "aem_lane.h"

struct aem_lane {
	struct kref		ref;		/* the producer's fd, the consumer's slot */
	struct page		**pages;
	unsigned long		nr_pages;
	struct aem_lane_ctl	*ctl;		/* vmap of pages: only flags are written through it */
	struct aem_lanes	*cons;		/* the consumer's table while the lane sits in it */
	struct aem_lane_note	note;		/* slot, gen, entries, rec_size, sub_id, prio */
	u64			tag;		/* the subscription's user_data: the notes' */
	u32			kick_end;	/* one past the result index of its last kick (0: none): one unread kick at a time */
	bool			mapped;		/* the consumer mapped it */
	bool			closed;		/* the producer is gone */
	bool			cons_gone;	/* the consumer ring closed (set once, before the wake-up) */
	atomic_t		room;		/* the consumer signalled room since the last wait returned 0 */
	wait_queue_head_t	room_wq;	/* the producer in AEM_IOC_LANE_WAIT */
	struct user_struct	*user;		/* the producer's user, charged for the pages */
	unsigned long		charged;	/* pages on user->locked_vm (0: CAP_IPC_LOCK) */
};

struct aem_lanes {
	struct aem_ctx		*ring;
	u32			nr;		/* aem_params.remote_lanes */
	u32			gen;		/* last generation given out */
	bool			gone;		/* the ring closes: no attach, no note */
	struct aem_lane		*slot[AEM_MAX_LANES];
};

static DEFINE_MUTEX(aem_lanes_mutex);

static void aem_lane_free(struct kref *ref)
{
	struct aem_lane *l = container_of(ref, struct aem_lane, ref);
	unsigned long i;

	if (l->ctl)
		vunmap(l->ctl);
	for (i = 0; i < l->nr_pages; i++)
		if (l->pages[i])
			put_page(l->pages[i]);
	kvfree(l->pages);
	if (l->user) {
		if (l->charged)
			atomic_long_sub(l->charged, &l->user->locked_vm);
		free_uid(l->user);
	}
	kfree(l);
}

static void aem_lane_put(struct aem_lane *l)
{
	kref_put(&l->ref, aem_lane_free);
}

/* Pages charged to the current (producer's) user as the rings' pages are: RLIMIT_MEMLOCK. */
static struct aem_lane *aem_lane_alloc(unsigned long nr_pages)
{
	struct aem_lane *l;
	unsigned long i;

	l = kzalloc(sizeof(*l), GFP_KERNEL_ACCOUNT);
	if (!l)
		return NULL;
	kref_init(&l->ref);
	atomic_set(&l->room, 0);
	init_waitqueue_head(&l->room_wq);
	l->user = get_uid(current_user());
	if (!capable(CAP_IPC_LOCK)) {
		unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;

		if (atomic_long_add_return(nr_pages, &l->user->locked_vm) > limit) {
			atomic_long_sub(nr_pages, &l->user->locked_vm);
			goto err;
		}
		l->charged = nr_pages;
	}
	l->pages = kvcalloc(nr_pages, sizeof(*l->pages), GFP_KERNEL_ACCOUNT);
	if (!l->pages)
		goto err;
	l->nr_pages = nr_pages;
	for (i = 0; i < nr_pages; i++) {
		/* Zeroed: both sides start from an empty lane. */
		l->pages[i] = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_NOWARN | __GFP_NORETRY);
		if (!l->pages[i] || fatal_signal_pending(current))
			goto err;
	}
	l->ctl = vmap(l->pages, nr_pages, VM_MAP, PAGE_KERNEL);
	if (!l->ctl)
		goto err;
	return l;
err:
	aem_lane_put(l);
	return NULL;
}

/* A flag into a ctl word the producer may be writing too. */
static void aem_lane_flag(__u32 *word, u32 flag)
{
	atomic_or(flag, (atomic_t *)word);
}

/* Under aem_lanes_mutex: take @l out of its consumer's table. */
static void aem_lane_unslot(struct aem_lane *l)
{
	l->cons->slot[l->note.slot] = NULL;
	l->cons = NULL;
	aem_lane_put(l);
}

/* Under aem_lanes_mutex, @l in a live table: wake its consumer, bounded (see below). */
static bool aem_lane_kick_locked(struct aem_lane *l)
{
	struct aem_lane_note n = l->note;

	n.kind = AEM_LANE_NOTE_KICK;
	return aem_core_lane_note(l->cons->ring, &n, l->tag, true, &l->kick_end);
}

int aem_lanes_create(struct aem_lanes **out, struct aem_ctx *ring, u32 nr)
{
	struct aem_lanes *lt;

	*out = NULL;
	if (!nr)
		return 0;
	lt = kzalloc(sizeof(*lt), GFP_KERNEL_ACCOUNT);
	if (!lt)
		return -ENOMEM;
	lt->ring = ring;
	lt->nr = nr;
	*out = lt;
	return 0;
}

void aem_lanes_close(struct aem_lanes *lt)
{
	u32 i;

	if (!lt)
		return;
	mutex_lock(&aem_lanes_mutex);
	lt->gone = true;
	for (i = 0; i < lt->nr; i++) {
		struct aem_lane *l = lt->slot[i];

		if (!l)
			continue;
		/* Producers see it on their next look and stop waiting for room. */
		aem_lane_flag(&l->ctl->cons_flags, AEM_LANE_C_GONE);
		/* One waiting in AEM_IOC_LANE_WAIT gets -EPIPE now. */
		WRITE_ONCE(l->cons_gone, true);
		wake_up_interruptible_all(&l->room_wq);
		aem_lane_unslot(l);
	}
	mutex_unlock(&aem_lanes_mutex);
}

void aem_lanes_free(struct aem_lanes *lt)
{
	kfree(lt);
}

/* ---------------------------------------------------------------------- */
/* The producer's lane fd                                                 */

static int aem_lane_release(struct inode *inode, struct file *file)
{
	struct aem_lane *l = file->private_data;

	mutex_lock(&aem_lanes_mutex);
	l->closed = true;
	if (l->cons) {
		/* A producer that died never said so: the records up to its tail still count. */
		aem_lane_flag(&l->ctl->prod_flags, AEM_LANE_P_CLOSED);
		aem_lane_kick_locked(l);
		/* Unmapped, the slot stays until the consumer maps it (and drains). */
		if (l->mapped)
			aem_lane_unslot(l);
	}
	mutex_unlock(&aem_lanes_mutex);
	aem_lane_put(l);
	return 0;
}

/* The producer's wait: consumes a pending room signal, or notices the consumer gone. */
static bool aem_lane_room_ready(struct aem_lane *l)
{
	return READ_ONCE(l->cons_gone) || atomic_xchg(&l->room, 0);
}

/*
 * AEM_IOC_LANE_WAIT: sleep until the consumer signals room (AEM_IOC_LANE_ROOM)
 * since the last wait returned 0, @ms pass (-ETIMEDOUT), the consumer ring
 * closes (-EPIPE) or a signal comes (-EINTR).  A pending signal returns 0 at
 * once.  Nothing in the lane is read: the producer re-checks head itself.
 */
static long aem_lane_wait_room(struct aem_lane *l, unsigned long ms)
{
	long left;

	if (!ms || ms > AEM_LANE_WAIT_MAX_MS)
		return -EINVAL;
	left = wait_event_interruptible_timeout(l->room_wq, aem_lane_room_ready(l),
						msecs_to_jiffies(ms));
	/* Gone wins over a pending signal: posting is futile either way. */
	if (READ_ONCE(l->cons_gone))
		return -EPIPE;
	if (left > 0)
		return 0;
	return left ? -EINTR : -ETIMEDOUT;
}

static long aem_lane_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct aem_lane *l = file->private_data;
	long ret = 0;

	if (cmd == AEM_IOC_LANE_WAIT)
		return aem_lane_wait_room(l, arg);
	if (cmd != AEM_IOC_LANE_KICK)
		return -ENOTTY;
	if (arg)
		return -EINVAL;
	mutex_lock(&aem_lanes_mutex);
	if (l->cons)
		aem_lane_kick_locked(l);
	else
		ret = -EPIPE;	/* the consumer ring is gone */
	mutex_unlock(&aem_lanes_mutex);
	return ret;
}

static vm_fault_t aem_lane_vm_fault(struct vm_fault *vmf)
{
	/* Every page was inserted at mmap time; anything else is outside. */
	return VM_FAULT_SIGBUS;
}

static const struct vm_operations_struct aem_lane_vm_ops = {
	.fault = aem_lane_vm_fault,
};

/* Both sides' mappings: shared, read-write, never executable, never grown. */
static int aem_lane_map(struct aem_lane *l, struct vm_area_struct *vma)
{
	unsigned long size = vma->vm_end - vma->vm_start;
	unsigned long num = size >> PAGE_SHIFT;
	int ret;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (size > l->nr_pages << PAGE_SHIFT)
		return -EINVAL;
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	aem_kvm_flags_clear(vma, VM_MAYEXEC);
	aem_kvm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &aem_lane_vm_ops;
	ret = vm_insert_pages(vma, vma->vm_start, l->pages, &num);
	if (ret)
		return ret;
	return num ? -EFAULT : 0;
}

static int aem_lane_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (vma->vm_pgoff)
		return -EINVAL;
	return aem_lane_map(file->private_data, vma);
}

static const struct file_operations aem_lane_fops = {
	.owner		= THIS_MODULE,
	.release	= aem_lane_release,
	.unlocked_ioctl	= aem_lane_ioctl,
	.compat_ioctl	= aem_lane_ioctl,
	.mmap		= aem_lane_mmap,
	.llseek		= noop_llseek,
};

/* ---------------------------------------------------------------------- */
/* AEM_IOC_LANE_OPEN                                                      */

long aem_ioc_lane_open(void __user *arg)
{
	struct aem_lane_open o;
	struct aem_lane_note note = { .kind = AEM_LANE_NOTE_ATTACH };
	struct aem_lanes *lt;
	struct aem_lane *l = NULL;
	struct aem_ctx *ring;
	struct aem_cred cred;
	struct file *file;
	void *host;
	u64 size, tag;
	u32 i;
	int fd, ret;

	if (copy_from_user(&o, arg, sizeof(o)))
		return -EFAULT;
	if (o.flags || o.fd || o.map_size || o.resv[0] || o.resv[1])
		return -EINVAL;
	if (o.entries < 2 || o.entries > AEM_LANE_MAX_ENTRIES || !is_power_of_2(o.entries))
		return -EINVAL;
	if (!o.rec_size || o.rec_size > AEM_LANE_MAX_RECORD)
		return -EINVAL;
	size = sizeof(struct aem_lane_ctl) + (u64)o.entries * AEM_LANE_REC_STRIDE(o.rec_size);

	aem_host_cred_get(&cred);
	ret = aem_core_lane_target(o.addr, &cred, &ring, &host, &note.sub_id, &note.prio, &tag);
	aem_host_cred_put(&cred);
	if (ret)
		return ret;
	/* The ring is held: its file's release waits in the ring's teardown. */
	lt = aem_host_lanes(host);
	ret = -ENOSPC;
	if (!lt)
		goto out_ring;
	/* No room is -ENOSPC before anything is charged; looked at again below. */
	mutex_lock(&aem_lanes_mutex);
	for (i = 0; i < lt->nr && lt->slot[i]; i++)
		;
	ret = lt->gone ? -ENOENT : i == lt->nr ? -ENOSPC : 0;
	mutex_unlock(&aem_lanes_mutex);
	if (ret)
		goto out_ring;
	ret = -ENOMEM;
	l = aem_lane_alloc(PAGE_ALIGN(size) >> PAGE_SHIFT);
	if (!l)
		goto out_ring;
	note.entries = o.entries;
	note.rec_size = o.rec_size;
	l->ctl->entries = o.entries;
	l->ctl->rec_size = o.rec_size;
	l->ctl->prio = note.prio;
	l->ctl->sub_id = note.sub_id;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		ret = fd;
		goto out_lane;
	}
	o.fd = fd;
	o.map_size = PAGE_ALIGN(size);
	ret = -EFAULT;
	if (copy_to_user(arg, &o, sizeof(o)))
		goto out_fd;

	mutex_lock(&aem_lanes_mutex);
	ret = -ENOENT;
	if (lt->gone)
		goto out_unlock;
	for (i = 0; i < lt->nr && lt->slot[i]; i++)
		;
	ret = -ENOSPC;
	if (i == lt->nr)
		goto out_unlock;
	file = anon_inode_getfile("[aem-lane]", &aem_lane_fops, l, O_RDWR | O_CLOEXEC);
	if (IS_ERR(file)) {
		ret = PTR_ERR(file);
		goto out_unlock;
	}
	/* A new generation per attach: a stale AEM_OFF_LANE never maps a reused slot. */
	lt->gen = lt->gen >= AEM_LANE_GEN_MAX ? 1 : lt->gen + 1;
	note.slot = i;
	note.gen = lt->gen;
	l->note = note;
	l->tag = tag;
	kref_get(&l->ref);	/* the slot's; the file took the creator's */
	l->cons = lt;
	lt->slot[i] = l;
	aem_core_lane_note(ring, &note, tag, false, NULL);	/* never dropped: the consumer must learn of it */
	mutex_unlock(&aem_lanes_mutex);
	fd_install(fd, file);
	aem_core_ring_put(ring);
	return 0;

out_unlock:
	mutex_unlock(&aem_lanes_mutex);
out_fd:
	put_unused_fd(fd);
out_lane:
	aem_lane_put(l);
out_ring:
	aem_core_ring_put(ring);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* AEM_IOC_LANE_ROOM: the consumer handed back room to a waiting producer  */

long aem_lanes_room(struct aem_lanes *lt, unsigned long slot)
{
	struct aem_lane *l;

	if (slot >= AEM_MAX_LANES)
		return -EINVAL;
	if (!lt)
		return -ENOENT;
	mutex_lock(&aem_lanes_mutex);
	l = slot < lt->nr ? lt->slot[slot] : NULL;
	if (l) {
		/* Pending until a wait takes it: set before the wake-up looks. */
		atomic_set(&l->room, 1);
		wake_up_interruptible(&l->room_wq);
	}
	mutex_unlock(&aem_lanes_mutex);
	return l ? 0 : -ENOENT;
}

/* ---------------------------------------------------------------------- */
/* The consumer's mapping: the ring fd at AEM_OFF_LANE(slot, gen)          */

bool aem_lanes_is_offset(u64 off)
{
	return (off & 0xc0ffffffULL) == AEM_OFF_LANES;
}

int aem_lanes_mmap(struct aem_lanes *lt, struct vm_area_struct *vma, u64 off)
{
	u32 slot = (off >> 24) & 0x3f, gen = off >> 32;
	struct aem_lane *l;
	int ret;

	if (!lt)
		return -EINVAL;
	mutex_lock(&aem_lanes_mutex);
	l = slot < lt->nr ? lt->slot[slot] : NULL;
	ret = -ENOENT;
	if (!l || l->note.gen != gen)
		goto out;
	ret = aem_lane_map(l, vma);
	if (ret)
		goto out;
	l->mapped = true;
	/* Its producer went before the mapping: the mapping now holds the pages. */
	if (l->closed)
		aem_lane_unslot(l);
out:
	mutex_unlock(&aem_lanes_mutex);
	return ret;
}
