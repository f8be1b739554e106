package goaem

import (
	"fmt"
	"os"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// Backend selects which kernel side serves a ring.
type Backend int

const (
	// BackendAuto uses the kernel module when /dev/aem exists and the
	// embedded backend otherwise (AEM_BACKEND=kernel|embedded overrides).
	BackendAuto Backend = iota
	// BackendKernel requires /dev/aem; Open fails without the module.
	BackendKernel
	// BackendEmbedded runs the ring core inside this process.
	BackendEmbedded
)

func (b Backend) String() string {
	switch b {
	case BackendAuto:
		return "auto"
	case BackendKernel:
		return "kernel"
	case BackendEmbedded:
		return "embedded"
	}
	return fmt.Sprintf("Backend(%d)", int(b))
}

// ParseBackend reads a backend's name as String writes it: "auto",
// "kernel" or "embedded" (for command-line flags).
func ParseBackend(name string) (Backend, error) {
	for _, b := range []Backend{BackendAuto, BackendKernel, BackendEmbedded} {
		if name == b.String() {
			return b, nil
		}
	}
	return 0, invalid("goaem: backend %q: want auto, kernel or embedded", name)
}

// chooseBackend resolves BackendAuto in libaem's order (AEM_BACKEND, then
// whether the device exists), so that Open asks libaem for one backend and
// its errors can name the backend and why it was chosen.
func (c *config) chooseBackend() (b Backend, why string, err error) {
	if c.backend != BackendAuto {
		return c.backend, "by WithBackend", nil
	}
	switch env := os.Getenv("AEM_BACKEND"); env {
	case "kernel":
		return BackendKernel, "by AEM_BACKEND=kernel", nil
	case "embedded":
		return BackendEmbedded, "by AEM_BACKEND=embedded", nil
	case "":
	default:
		return 0, "", invalid("goaem: open: AEM_BACKEND=%q: want kernel, embedded, or unset for the module when %s exists",
			env, abi.DevicePath)
	}
	if _, err := os.Stat(abi.DevicePath); err == nil {
		return BackendKernel, "because " + abi.DevicePath + " exists", nil
	}
	return BackendEmbedded, "because " + abi.DevicePath + " does not exist", nil
}

// Option configures Open.
type Option func(*config)

type config struct {
	params      abi.Params
	backend     Backend
	maxInFlight int
	runBatch    int
	opTimeout   time.Duration
	callSpin    time.Duration
	boost       bool
	kernelWait  bool
	kernelSpin  time.Duration // WithKernelWait
	sqIdle      time.Duration // WithSQPoll
	errHandler  func(ev *Event, err error)
	sockSent    func(conn uint64, n int, err error)
	lanes       int // WithLanes
	remoteLanes int // WithRemoteLanes
}

func defaultConfig() config {
	return config{
		maxInFlight: 64,
		runBatch:    256,
		opTimeout:   10 * time.Second,
	}
}

// WithBackend picks the backend; the default is BackendAuto.
func WithBackend(b Backend) Option { return func(c *config) { c.backend = b } }

// WithRemoteLanes lets producers in other processes attach up to n lanes
// to this ring's Msg subscriptions (Ring.OpenLaneTo; aem_params.remote_lanes),
// at most abi.MaxLanes; the default 0 takes none. The reader maps each lane
// the module attaches and delivers its records as WithLanes' lanes are.
// Only the kernel backend has them: elsewhere Open fails with an error
// matching syscall.EOPNOTSUPP.
func WithRemoteLanes(n int) Option {
	return func(c *config) { c.remoteLanes, c.params.RemoteLanes = n, uint32(max(n, 0)) }
}

// WithLanes gives the ring room for n producer lanes (Ring.OpenLane), at
// most abi.MaxLanes; the default 0 has none.
func WithLanes(n int) Option { return func(c *config) { c.lanes = n } }

// WithSQEntries sets the submission ring size (rounded up to a power of two).
func WithSQEntries(n uint32) Option { return func(c *config) { c.params.SQEntries = n } }

// WithCQEntries sets the size of each class's completion ring.
func WithCQEntries(n uint32) Option { return func(c *config) { c.params.CQEntries = n } }

// WithClasses sets the number of priority classes, 1..4; class 0 is the most urgent.
func WithClasses(n int) Option { return func(c *config) { c.params.NrClasses = uint32(n) } }

// WithSlotSize sets the bytes of one payload slot (a power of two, 64..65536).
func WithSlotSize(n uint32) Option { return func(c *config) { c.params.SlotSize = n } }

// WithSlots sets the number of delivery slots (payloads larger than 32 bytes).
func WithSlots(n uint32) Option { return func(c *config) { c.params.SlotCount = n } }

// WithSendSlots sets the number of send slots used for post and call
// payloads larger than 32 bytes.
func WithSendSlots(n uint32) Option { return func(c *config) { c.params.SendSlots = n } }

// WithSockConns bounds the socket connections the ring holds at once,
// over all its Sock listeners (aem_params.sock_conns): 1..abi.MaxSockConns,
// 0 for abi.DefaultSockConns; more is an error from Open. Past the bound a
// listener stops accepting and its subscription hears one
// abi.SockEvLimit event (Res -EMFILE) while connections wait; it accepts
// again when a connection of the ring ends. Ring.SockConns reports the
// bound in force.
func WithSockConns(n uint32) Option { return func(c *config) { c.params.SockConns = n } }

// WithSQPoll gives the ring a submission poller on the kernel side
// (AEM_SETUP_SQPOLL): a thread that consumes the submission ring as it
// fills, so a busy poster, writeback or batch costs no system call; after
// idle without work the poller sleeps and the next submission wakes it
// with one entry (Enters counts them). idle 0 takes abi.DefaultSQIdleMS;
// it is rounded up to milliseconds, at most abi.MaxSQIdleMS. The poller
// costs a CPU while it looks for work, which a machine with few cores
// feels. On the module it cannot subscribe sources that need the
// subscriber's own fd table or namespaces (Fd, Sock, Proc): those are
// refused with EOPNOTSUPP. Posts are taken in order by the poller, which
// holds one at a full target until it fits: Post and PostBatch return once
// their events are queued, and back-pressure is the submission ring
// filling up (TryPost then answers ErrWouldBlock).
func WithSQPoll(idle time.Duration) Option {
	return func(c *config) {
		c.params.Flags |= abi.SetupSQPoll
		c.sqIdle = idle
	}
}

// WithSockSent reports the result of every send on a Sock connection (the
// sends of Ring.SockSend and the writebacks of a Sock data event): conn,
// and n bytes sent with err nil once the socket has taken them all, or err
// (a syscall.Errno: EPIPE, ECONNRESET, ECANCELED for an aborted
// connection, or a refusal such as ENOBUFS) when it has not. Results of
// one connection come in the order of its sends. Without it, sends are
// fire and forget: a failure is only counted in AsyncErrors (it still is
// with it).
//
// f runs on the goroutine that reads the ring's results at that moment:
// the one that submitted the send (a send the socket takes at once is
// answered during its submission), or the event reader (Poll, Wait, Run).
// One call at a time, in result order; f may send, shut down and write
// back, and should not block. Reporting allocates nothing.
func WithSockSent(f func(conn uint64, n int, err error)) Option {
	return func(c *config) { c.sockSent = f }
}

// WithBacklogLimit bounds the overflow backlog, in events.
func WithBacklogLimit(n uint32) Option { return func(c *config) { c.params.BacklogLimit = n } }

// WithKernelWait makes the event reader (Wait, Run) sleep in the kernel
// side rather than in Go's netpoller (libaem's aem_wait: a futex on the
// embedded backend, the enter ioctl on the module), holding its OS thread
// while it sleeps: an event then wakes that thread directly, as a futex
// ping-pong does, without the netpoller's hop. Before each sleep the
// reader polls the rings for up to spin (atomic loads, no crossing; 0:
// it sleeps at once): an event within it costs neither the sleep nor the
// wake-up, as a blocking caller's reply within the kernel side's own spin
// does, at the price of a core while it lasts. For a reader that answers
// calls (with CallOptions.Block on the callers' side). The end of ctx and
// Close wake the sleeper (a NOP submitted to the ring, whose result wakes
// it), and it looks again at least every 100 ms, in case another goroutine
// took that result first; backends without a blocking wait ignore the
// option.
func WithKernelWait(spin time.Duration) Option {
	return func(c *config) { c.kernelWait, c.kernelSpin = true, spin }
}

// WithBoost raises the OS threads that run urgent (class 0) handlers to
// nice BoostNice while urgent events are pending, and restores them after:
// Run's thread from a read that finds class 0 events until a batch ends
// with class 0 drained, and the thread of each ModeSpawn or ModeClone handler of
// a class 0 event while it runs (see boost.go). goaem applies it itself,
// on either backend. It needs CAP_SYS_NICE (or an RLIMIT_NICE that allows
// nice BoostNice): without it Open fails with an error matching
// syscall.EPERM (or EACCES) rather than run unboosted.
func WithBoost() Option { return func(c *config) { c.boost = true } }

// WithMaxInFlight bounds the handlers that Run keeps running at once for
// subscriptions in ModeSpawn or ModeClone that set no bound of their own.
// When the bound is reached Run stops reading the rings until a handler
// finishes: back-pressure, never a dropped event. Default 64.
func WithMaxInFlight(n int) Option { return func(c *config) { c.maxInFlight = n } }

// WithRunBatch sets how many events Run reads from the rings at a time.
// Default 256.
func WithRunBatch(n int) Option { return func(c *config) { c.runBatch = n } }

// WithOpTimeout bounds how long Subscribe, Unsubscribe and the other
// control operations wait for the kernel side's answer. Default 10s.
func WithOpTimeout(d time.Duration) Option { return func(c *config) { c.opTimeout = d } }

// WithCallSpin makes calls from this ring busy-poll for their reply for up
// to d before they park (CallOptions.Spin overrides it per call). Default
// 0: a call parks at once. For handlers that answer in microseconds on a
// server that polls in a loop; a spinning caller keeps a core busy.
func WithCallSpin(d time.Duration) Option { return func(c *config) { c.callSpin = d } }

// WithErrorHandler receives the errors of handlers run by Run (ModeSpawn
// and ModeClone handlers report from their own goroutines, so f must be
// safe for concurrent use). Without it, Run returns the first handler
// error.
func WithErrorHandler(f func(ev *Event, err error)) Option {
	return func(c *config) { c.errHandler = f }
}

func (c *config) validate() error {
	switch {
	case c.backend < BackendAuto || c.backend > BackendEmbedded:
		return invalid("goaem: unknown backend %d", int(c.backend))
	case c.maxInFlight < 1:
		return invalid("goaem: max in flight %d must be >= 1", c.maxInFlight)
	case c.runBatch < 1:
		return invalid("goaem: run batch %d must be >= 1", c.runBatch)
	case c.opTimeout <= 0:
		return invalid("goaem: op timeout %v must be > 0", c.opTimeout)
	case c.kernelSpin < 0:
		return invalid("goaem: kernel wait spin %v must be >= 0", c.kernelSpin)
	case c.callSpin < 0:
		return invalid("goaem: call spin %v must be >= 0", c.callSpin)
	case c.sqIdle < 0 || c.sqIdle > abi.MaxSQIdleMS*time.Millisecond:
		return invalid("goaem: submission poller idle %v outside 0..%v", c.sqIdle, abi.MaxSQIdleMS*time.Millisecond)
	case c.lanes < 0 || c.lanes > abi.MaxLanes:
		return invalid("goaem: %d lanes outside 0..%d", c.lanes, abi.MaxLanes)
	case c.remoteLanes < 0 || c.remoteLanes > abi.MaxLanes:
		return invalid("goaem: %d remote lanes outside 0..%d", c.remoteLanes, abi.MaxLanes)
	}
	if c.params.Flags&abi.SetupSQPoll != 0 {
		c.params.SQIdleMS = uint32((c.sqIdle + time.Millisecond - 1) / time.Millisecond)
	}
	return nil
}
