// Package goaem is the Go interface to AEM, the asynchronous event
// mechanism: events move from the kernel side (the aem module, or libaem's
// embedded backend running the same ring core in this process) to Go
// through shared, mapped rings, and data goes back the same way.
//
// # Rings
//
// Open sets up a Ring: a submission ring (requests to the kernel side), one
// completion ring per priority class (events; class 0 is the most urgent),
// a result ring (the answers to this ring's requests) and payload slots. libaem is compiled into the package
// through cgo, so building needs only a C compiler; without cgo, Open
// returns ErrNoCgo. WithBackend picks the kernel module or the embedded
// backend (default: AEM_BACKEND=kernel|embedded, else the module when
// /dev/aem exists). Without the module, asking for it fails with
// ErrNoDevice.
//
// # Events
//
// Subscribe starts a Source feeding the ring: a Timer, a Generator, a Msg
// channel (the target of Post and Call), process lifecycle (Proc) or
// socket readiness (FD). Each event arrives as an Event in a batch the
// caller owns:
//
//   - Poll reads what is ready and never blocks;
//   - Wait blocks until at least min events are ready, through Go's
//     netpoller on the ring's pollable fd, holding no OS thread while idle;
//     ctx cancellation and deadlines end it, and so does Close (ErrClosed)
//     (WithKernelWait: it sleeps in the kernel side instead, on its thread,
//     after polling the rings for a bounded time);
//   - Run reads batches and runs each subscription's handler in its mode.
//
// All three drain class 0 first. Reading costs no allocation and no cgo
// call: the rings are read directly through sync/atomic views of the mapped
// memory, the producer index loaded and the consumer index stored once per
// batch per class; a batch makes one cgo call only when it has submissions
// to hand over or a backlog to flush. (A cgo reader that copied each batch
// out in one call measured slower and is gone, with the HotPath option.)
//
// An Event's Payload is the data itself, not a copy: inline bytes of the
// completion entry, or a slot of shared memory that the handler may change
// in place. Every event is released (Release), or written back
// (Writeback), which hands the data back to its source: the reply of a
// Call, a timer's new interval. Inside Run, writebacks and releases of a
// batch reach the kernel side together.
//
// # Handler modes
//
//   - ModeInline runs the handler in Run's goroutine: for short handlers.
//   - ModeSpawn runs each event's handler in its own goroutine, at most
//     MaxInFlight at once; at the bound Run stops reading (back-pressure:
//     the kernel side backlogs and counts, goaem drops nothing).
//   - ModeClone runs a new process per event (Cloner): the payload on its
//     stdin, its stdout written back; a command that fails, hangs past its
//     timeout or writes too much is killed and reported.
//
// # Process handlers
//
// A ProcessHandler runs the program's own code in other processes: a
// ProcessHandlerFunc registered by name (RegisterProcessHandler, from an
// init function) runs in a process re-executed from the program, which
// main turns into a handler process by calling ServeProcessHandler first
// thing. The child maps the ring's payload region shared and changes the
// event's slot in place; the parent writes the result back (a call's
// reply). Its Handle is a ModeSpawn handler; at most MaxProcs run at
// once, each within Timeout (killed past it); a crash or exit is the
// event's error (ErrProcessDied, ErrProcessTimeout) and leaves the ring
// whole. With Pool, the processes start once and serve event after event.
//
//	func init() {
//		goaem.RegisterProcessHandler("reverse", func(d []byte) (int, error) {
//			slices.Reverse(d)
//			return len(d), nil
//		})
//	}
//
//	func main() {
//		goaem.ServeProcessHandler() // a handler process serves here and exits
//		ring, _ := goaem.Open()
//		ph, _ := ring.NewProcessHandler(goaem.ProcessOptions{Handler: "reverse", MaxProcs: 4, Pool: true})
//		defer ph.Close()
//		ring.Subscribe(goaem.Msg{Channel: 1}, goaem.SubOptions{Mode: goaem.ModeSpawn, Handler: ph.Handle, MaxInFlight: 4})
//		...
//	}
//
// # Messages and calls
//
// Post sends bytes to a Msg subscription at an Addr (ring id and channel),
// on this ring or another; Call does the same and waits for the handler's
// writeback. The reply comes on the caller's result ring, apart from the
// events, so nobody needs to be reading the caller's events. CallInto
// copies the reply into the caller's buffer; CallWith adds options, among
// them busy-polling: the caller spins on its result ring for a bounded
// time before it parks (WithCallSpin sets a ring's default), which pays
// when the handler side polls in a loop too, and Block, which delivers the
// request and sleeps for the reply in one crossing into the kernel side
// (its thread sleeps; only the deadline ends it early). A call whose context expires
// or is cancelled returns an error matching context.DeadlineExceeded or
// context.Canceled.
//
// # Batches and many producers
//
// A Batch queues posts, subscribes, unsubscribes and calls and Submit
// hands them over together: the entries are copied into the submission
// ring under its lock once and the kernel side is entered once (one cgo
// call; one ioctl on the module) per submission ring's worth, where Post,
// Subscribe, Unsubscribe and Call take the lock and enter once each. A
// full submission ring is submitted and the rest follows; a post the target
// cannot take is waited for as Post waits, bounded by Submit's ctx; each
// entry has its own result (Err, Subscription, Reply), so a post refused
// for want of a subscriber is reported to its entry, not to AsyncErrors.
// Queueing and submitting allocate nothing in steady state (Reset keeps
// the memory), save the Subscriptions subscribes make (from slabs) and,
// for Subscribe, the conversion of its source to a Source: SubscribeTimer
// queues a timer without it.
//
// Fan-in: each producer has a ring of its own (OpenProducer, or its own
// process's ring) and posts into the consumer's Addr through a Batch (or
// PostBatch), so producers share no submission lock and meet only on the
// target's completion lock, once per event for the moment of its posting;
// order holds per producer (a Submit's entries go in in order, and a
// producer submits one batch after the other). Batches of several
// goroutines on one shared ring work too, and meet on its submission lock
// once per batch instead of once per event. On 2 loaded cores the two
// measured the same (docs/BENCHMARKS.md); rings of their own are the path
// because they also hold where cores are many: a producer preempted in
// its submission stalls no other, each enters the kernel side on its own
// (in parallel on the module), and the same code serves producers in other
// processes.
//
// # Producer lanes
//
// Fan-in within a process goes faster through lanes: a ring opened with
// WithLanes(n) takes up to n producers, each with a Lane of its own
// (OpenLane on a Msg subscription), a single-producer ring of records of
// up to 32 bytes in memory the producer and the reader share. Post,
// TryPost and PostBatch write records and publish them with one store;
// Poll, Wait and Run read them, after the class's completion ring, as
// inline events of the subscription (Payload, Release; no writeback), in
// each lane's order. No cgo call, system call or lock per record, no
// allocation: a producer kicks the reader only when it sleeps, once per
// sleep. A full lane makes Post and PostBatch wait (bounded by their ctx
// and Close) and TryPost return ErrLaneFull (EAGAIN); a lossy lane drops
// and counts instead (Dropped). The reader trusts nothing in a lane:
// records with bad lengths or flags are refused and counted (Malformed).
// The layout is kmod/uapi/aem.h's and libaem's aem_lane_* helpers speak
// it (docs/PROTOCOL.md, "Producer lanes"). On the kernel backend a
// producer in another process (or any ring's) opens a lane with
// OpenLaneTo(addr) into a ring opened WithRemoteLanes(n): the module maps
// the lane into both, and the records go the same way; only opening,
// closing and kicking a sleeping reader go through the module.
//
// A lane also carries calls, the busy caller's path: Lane.Call writes the
// request as a call record and spins until the handler's Writeback, Reply
// or ReplyError answers it in the lane (docs/PROTOCOL.md, "Calls on a
// lane"), with no system call or kernel-side step on either side, across
// processes too on a remote lane. One call at a time per lane; a caller
// that would rather sleep uses Ring.Call.
//
// # Socket I/O
//
// A Sock subscription carries a listening socket's connections through the
// ring (docs/PROTOCOL.md section 10): the kernel side accepts, receives
// and sends, and the program never calls accept, read or write. Every
// connection's events come to the listener's subscription: Event.Conn
// names the connection, Event.SockEvent tells connect, end-of-stream,
// close and limit from received bytes. Writeback of a data event sends on
// its connection (from the slot the bytes arrived in); Ring.SockSend sends
// other bytes; Ring.SockShutdown half-closes or closes. Sends are fire and
// forget, their failures counted in AsyncErrors; WithSockSent reports every
// send's result (bytes sent, or the errno) per connection, in order,
// without allocating. WithSockConns bounds the connections a ring holds;
// past it the listener hears abi.SockEvLimit and waits.
//
// # Boost
//
// WithBoost raises the OS threads that run urgent (class 0) handlers to
// nice BoostNice while urgent events are pending and gives them their
// nice value back after: Run's goroutine is locked to its thread from a
// batch with class 0 events until class 0 is drained, and a ModeSpawn or
// ModeClone handler of a class 0 event runs on a thread boosted for as
// long as it runs. goaem does it itself, on both backends (the module's
// AEM_SETUP_BOOST boosts a task waiting in its enter ioctl, which goaem
// never does; the embedded backend refuses that flag). Without
// CAP_SYS_NICE, Open with WithBoost fails with an error matching
// syscall.EPERM. Poll and Wait callers run their handlers themselves, so
// only Run's handlers are boosted.
//
// # Submission without system calls
//
// WithSQPoll gives a ring a submission poller on the kernel side (a
// kernel thread on the module, a thread of the process on the embedded
// backend): Post, PostBatch, Batch.Submit and the writebacks then store
// the submission ring's tail and make no system call while the poller is
// busy; after its idle time it sleeps and the next submission wakes it
// (Enters counts the entries). It spends a CPU while it polls: worth it
// where a core is free for it.
//
// Each message event names its sender: Event.Sender returns the posting or
// calling process's pid and effective uid, as the process that opened the
// receiving ring sees them (pid 0 when the sender is outside its pid
// namespace), and the sending ring's id. The kernel side writes them into
// read-only memory beside the CQE, so a handler can decide by them whom to
// answer; they are copied with the event, and reading them allocates
// nothing.
//
// # Versions and source implementations
//
// goaem speaks AEM ABI version abi.APIVersion (4) and states it at Open; a
// backend that does not serve it, or lacks a feature goaem reads (among
// them abi.FeatSender), makes Open fail with an error naming both sides'
// versions that matches syscall.ENOTSUP. Programs built against older
// headers keep their own rings' formats beside it on one module.
// Ring.Probe and ProbeBackend list the versions served and every loaded
// implementation of each source (ProbeSource.Impl, APIVersions): several
// implementations of one source may be loaded at once, and
// SubOptions.Impl picks one per subscription (0: the newest).
//
// Only rings and callers of the owner's user may post and call into a
// ring; Grant lets another uid in (AnyUser: everyone) and Revoke takes it
// back. A refused post or call matches syscall.EACCES.
//
// # Back-pressure
//
// No producer-facing call loses an event silently. Post, PostContext and
// PostBatch wait while the target ring is full and its backlog at its
// bound (the kernel side leaves the post in the submission ring, see
// docs/PROTOCOL.md), TryPost and TryPostBatch return ErrWouldBlock then,
// and only PostLossy lets the target drop, counting each drop in the
// target's Stats and the poster's AsyncErrors. Call and CallInto are told
// at once (ENOSPC) when the target cannot take the call; a Writeback that
// answers a call reaches the caller's result ring, which never drops.
//
// # Allocations
//
// Moving events allocates nothing: Poll, Wait (also when it sleeps), Run
// with inline handlers, Post, PostBatch, a reused Batch of posts and calls,
// Writeback and CallInto; the tests assert it.
// Call allocates its reply, ModeSpawn a goroutine per event.
//
// # Counting
//
// Subscription.Stats reports produced, delivered, backlog and dropped; for
// every subscription produced == delivered + backlog + dropped. Once a
// subscription has ended (unsubscribed, or ended by its source) the kernel
// side forgets it; Stats then returns the final counts it sent as it did
// (with the unsubscribe's answer, or in the end result goaem asks for), also
// after Close. Unsubscribe of an ended subscription does nothing and
// returns nil, however often it is called.
//
// # Concurrency
//
// Every method is safe for concurrent use. Events are read by one
// goroutine at a time: Wait and Run wait for a reader that is already
// there, and Poll, which never blocks, returns ErrConcurrentRead. A Run
// that stops leaves the events it had not dispatched in the rings for the
// next reader. Subscribe, Call and the other requests read their answers
// from the result ring themselves and never touch the events. An Event
// belongs to the goroutine that read it. Close may run while other
// goroutines call the ring: it wakes the blocked ones, waits for those
// inside, and every call that begins after it returns ErrClosed. A panic
// in an inline handler goes on to Run's caller; the rest of its batch stays
// in the rings (see Run).
//
// # Errors
//
// Compare errors with errors.Is. Validation on the Go side gives errors
// that match syscall.EINVAL (as the kernel side's refusal of the same input
// would) and say what was wrong; the kernel side's refusals are
// syscall.Errno values wrapped with the operation; ErrClosed matches
// os.ErrClosed and ErrNoDevice os.ErrNotExist.
package goaem
