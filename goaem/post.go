package goaem

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// ErrWouldBlock is TryPost's (and TryPostBatch's) answer when the target
// cannot take the event now: its ring is full and its backlog at its
// bound. It matches syscall.EAGAIN with errors.Is.
var ErrWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string        { return "goaem: post would block: the target ring is full" }
func (wouldBlock) Is(target error) bool { return target == syscall.EAGAIN }

// How a post treats a target that cannot take the event now.
type postMode uint8

const (
	postWait  postMode = iota // wait until it can (Post, PostContext, PostBatch)
	postTry                   // return ErrWouldBlock (TryPost, TryPostBatch)
	postLossy                 // let the target drop it and count it (PostLossy)
)

// Post sends data as an event to the Msg subscription at addr, in class
// class of the receiving ring, and returns once the kernel side has taken
// it: delivered, or queued in the target's backlog. A target whose ring is
// full and whose backlog is at its bound does not drop the event: Post
// waits until its consumer makes room (back-pressure, as a channel send),
// or until the ring closes (ErrClosed). PostContext bounds the wait,
// TryPost does not wait, PostLossy lets the target drop. A post to an
// address with no subscriber is refused asynchronously and counted in
// AsyncErrors. Post allocates nothing. As with a channel send, a handler
// that posts to the ring it is itself draining would wait for itself: it
// should use TryPost (or PostLossy) there.
func (r *Ring) Post(addr Addr, data []byte, class int) error {
	return r.PostContext(context.Background(), addr, data, class)
}

// PostContext is Post with its wait bounded by ctx: an expired or
// cancelled ctx gives an error matching context.DeadlineExceeded or
// context.Canceled, and the event was not taken.
func (r *Ring) PostContext(ctx context.Context, addr Addr, data []byte, class int) error {
	one := [1][]byte{data}
	_, err := r.post(ctx, addr, one[:], class, postWait)
	return err
}

// TryPost is Post without the wait: when the target cannot take the event
// now it returns an error matching ErrWouldBlock (and syscall.EAGAIN), and
// the event was not taken.
func (r *Ring) TryPost(addr Addr, data []byte, class int) error {
	one := [1][]byte{data}
	_, err := r.post(context.Background(), addr, one[:], class, postTry)
	return err
}

// PostLossy is Post for events that may be lost: past the target's
// backlog bound the target drops the event and counts it (Stats.Dropped of
// the subscription and the ring), and PostLossy returns nil at once; the
// drop is also counted in AsyncErrors (ENOSPC).
func (r *Ring) PostLossy(addr Addr, data []byte, class int) error {
	one := [1][]byte{data}
	_, err := r.post(context.Background(), addr, one[:], class, postLossy)
	return err
}

// PostBatch posts msgs in order to the Msg subscription at addr, with as
// few entries into the kernel side as the submission ring allows (one for
// a batch that fits in it): the batch costs one lock round and one system
// call where Post costs one each per event. It waits as Post does, bounded
// by ctx, and returns how many events were taken; on an error, msgs[n:]
// were not. It allocates nothing.
func (r *Ring) PostBatch(ctx context.Context, addr Addr, msgs [][]byte, class int) (int, error) {
	return r.post(ctx, addr, msgs, class, postWait)
}

// TryPostBatch is PostBatch without the wait: it posts the longest prefix
// of msgs the target takes now and returns its length, with an error
// matching ErrWouldBlock when that is not all of them.
func (r *Ring) TryPostBatch(addr Addr, msgs [][]byte, class int) (int, error) {
	return r.post(context.Background(), addr, msgs, class, postTry)
}

func (r *Ring) post(ctx context.Context, addr Addr, msgs [][]byte, class int, mode postMode) (int, error) {
	if class < 0 || class >= abi.MaxClasses {
		return 0, invalid("goaem: post: class %d outside 0..%d", class, abi.MaxClasses-1)
	}
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	defer r.life.release()
	var flags uint8
	if mode == postLossy {
		flags = abi.SQEFLossy
	}
	done := 0
	for wait := 0; done < len(msgs); {
		n, full, err := r.postSome(addr, msgs[done:], class, flags)
		done += n
		switch {
		case err != nil:
			return done, fmt.Errorf("goaem: post to %v: %w", addr, err)
		case n > 0 || !full:
			wait = 0
			continue
		case mode == postTry:
			return done, ErrWouldBlock
		}
		if err := ctx.Err(); err != nil {
			return done, fmt.Errorf("goaem: post to %v: %w", addr, err)
		}
		if r.isClosed() {
			return done, ErrClosed
		}
		postBackoff(wait)
		wait++
	}
	return done, nil
}

// postBackoff waits for a consumer to make room. The consumer may be in
// another process and reads without telling the kernel side, so there is
// nothing to sleep on: yield a few times (a consumer on another core makes
// room within microseconds), then sleep 1µs doubling to 1ms. A poster
// blocked for long costs ~1000 wake-ups a second, and notices a deadline,
// a cancel or Close within 1ms.
func postBackoff(wait int) {
	const yields, maxShift = 8, 10
	if wait < yields {
		runtime.Gosched()
		return
	}
	shift := wait - yields
	if shift > maxShift {
		shift = maxShift
	}
	time.Sleep(time.Microsecond << shift)
}

// postSome queues msgs as POST SQEs, as many as the submission ring (and,
// for payloads beyond the SQE, the send slots) hold, submits them in one
// entry and returns how many the kernel side took. The kernel side stops
// the submission at a POST whose target is full (docs/PROTOCOL.md,
// "Back-pressure"): full reports it, and the entries it left are taken
// back out of the ring, so the SQ holds no POST once sqMu is released.
func (r *Ring) postSome(addr Addr, msgs [][]byte, class int, flags uint8) (n int, full bool, err error) {
	sq := &r.sq
	r.sqMu.Lock()
	// A full ring, or send slots filled by queued sends (SockSendLater),
	// which this submission's payloads would overwrite: submit first.
	if sq.tail-atomic.LoadUint32(sq.khead) >= sq.entries || r.pay.unsubmitted != 0 {
		if err = r.submitLocked(); err != nil {
			r.sqMu.Unlock()
			return 0, false, err
		}
	}
	start := sq.tail
	var slots uint32
	var perr error
	for _, m := range msgs {
		if sq.tail-atomic.LoadUint32(sq.khead) >= sq.entries {
			break
		}
		if len(m) > abi.SQEInline {
			// Send slots rotate: no more in one submission than there are.
			if slots == r.pay.sendSlots && slots > 0 {
				break
			}
			slots++
		}
		sqe := &sq.sqes[sq.tail&sq.mask]
		*sqe = abi.SQE{Opcode: abi.OpPost, Target: uint64(addr), Prio: uint8(class)}
		if perr = r.pay.fill(sqe, m); perr != nil {
			break
		}
		sqe.Flags |= flags
		silentLocked(sqe)
		sq.tail++
	}
	queued := sq.tail - start
	if queued == 0 {
		r.sqMu.Unlock()
		return 0, perr == nil, perr
	}
	err = r.submitLocked()
	taken := atomic.LoadUint32(sq.khead) - start
	if int32(taken) < 0 {
		taken = 0 // the kernel side stopped before our entries (its own backlog bound)
	}
	if sq.polled && err == nil {
		taken = queued // the poller takes them in order, waiting at a full target
	}
	if taken < queued {
		full = err == nil
		sq.tail = start + taken
		// Republish the shortened tail: nothing consumes SQEs between
		// enters, which sqMu serialises.
		if rerr := r.submitLocked(); err == nil {
			err = rerr
		}
	}
	n = int(taken)
	r.sqMu.Unlock()
	r.routeReady()
	if err == nil && !full {
		err = perr
	}
	return n, full, err
}
