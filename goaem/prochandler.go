package goaem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem/goaem/abi"
)

// Errors of process handlers, matched with errors.Is.
var (
	// ErrProcessTimeout: the handler process outlived ProcessOptions.Timeout and was killed.
	ErrProcessTimeout = errors.New("goaem: process handler timed out")
	// ErrProcessDied: the handler process crashed or exited before answering.
	ErrProcessDied = errors.New("goaem: process handler died")
)

// ProcessHandlerFunc is a handler that runs in a handler process (see
// RegisterProcessHandler). data is the event's payload in memory shared
// with the ring: len(data) is the event's length, cap(data) the room the
// handler may fill. It changes data in place and returns the length the
// parent writes back (for a call: the reply's), or an error, which the
// parent reports as the event's.
type ProcessHandlerFunc func(data []byte) (n int, err error)

// The child's side of the handshake, environment and descriptors.
const (
	procEnvName    = "GOAEM_PROCESS_HANDLER" // the registered name; its presence makes a process a handler process
	procEnvMap     = "GOAEM_PROCESS_MAP"     // payload offset:payload size:scratch size
	procFDCtl      = 3                       // SOCK_SEQPACKET to the parent
	procFDPayload  = 4                       // maps the ring's PAYLOAD region
	procFDScratch  = 5                       // maps the handler's scratch area (inline events)
	procHello      = "goaem-process-handler/1"
	procReqSize    = 24
	procRepMax     = 1024
	procExitBadUse = 3 // the child could not start serving
)

var procRegistry struct {
	sync.Mutex
	m map[string]ProcessHandlerFunc
}

// RegisterProcessHandler makes fn runnable in a handler process under
// name. Call it from an init function (or before main calls
// ServeProcessHandler): a handler process is the program itself,
// started again, and finds fn by name. It panics on an empty name, a nil
// fn or a name registered twice.
func RegisterProcessHandler(name string, fn ProcessHandlerFunc) {
	if name == "" || fn == nil {
		panic("goaem: RegisterProcessHandler: empty name or nil handler")
	}
	procRegistry.Lock()
	defer procRegistry.Unlock()
	if _, dup := procRegistry.m[name]; dup {
		panic(fmt.Sprintf("goaem: RegisterProcessHandler: %q registered twice", name))
	}
	if procRegistry.m == nil {
		procRegistry.m = make(map[string]ProcessHandlerFunc)
	}
	procRegistry.m[name] = fn
}

func lookupProcessHandler(name string) ProcessHandlerFunc {
	procRegistry.Lock()
	defer procRegistry.Unlock()
	return procRegistry.m[name]
}

// ServeProcessHandler turns a handler process into what it is for: when
// this process was started by a ProcessHandler, it serves events with the
// registered handler and exits without returning; otherwise it returns at
// once. Call it first thing in main (in tests: in TestMain), before the
// program does anything a handler process must not do twice: a handler
// process runs the program's init functions, then this.
func ServeProcessHandler() {
	name, ok := os.LookupEnv(procEnvName)
	if !ok {
		return
	}
	os.Exit(serveProcess(name))
}

// serveProcess is a handler process's life: map the regions, say hello,
// answer requests until the parent closes the socket. It returns the exit
// status.
func serveProcess(name string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "goaem: process handler %q: "+format+"\n", append([]any{name}, a...)...)
		return procExitBadUse
	}
	fn := lookupProcessHandler(name)
	if fn == nil {
		return fail("not registered in this program (RegisterProcessHandler)")
	}
	var off, size, scratchSize int64
	if f := strings.Split(os.Getenv(procEnvMap), ":"); len(f) == 3 {
		off, _ = strconv.ParseInt(f[0], 10, 64)
		size, _ = strconv.ParseInt(f[1], 10, 64)
		scratchSize, _ = strconv.ParseInt(f[2], 10, 64)
	}
	// Not inherited by what the handler may start in turn.
	os.Unsetenv(procEnvName)
	os.Unsetenv(procEnvMap)
	if size <= 0 || scratchSize <= 0 {
		return fail("bad %s %q", procEnvMap, os.Getenv(procEnvMap))
	}
	payload, err := unix.Mmap(procFDPayload, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("map the payload region: %v", err)
	}
	scratch, err := unix.Mmap(procFDScratch, 0, int(scratchSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("map the scratch area: %v", err)
	}
	unix.Close(procFDPayload) // the mappings keep the pages
	unix.Close(procFDScratch)
	if _, err := unix.Write(procFDCtl, []byte(procHello)); err != nil {
		return fail("hello: %v", err)
	}
	var req [procReqSize]byte
	rep := make([]byte, 0, procRepMax)
	for {
		n, err := unix.Read(procFDCtl, req[:])
		if err == unix.EINTR {
			continue
		}
		if n == 0 || err != nil {
			return 0 // the parent closed the socket
		}
		if n != procReqSize {
			return fail("request of %d bytes", n)
		}
		r := decodeProcReq(req[:])
		region := payload
		if r.scratch {
			region = scratch
		}
		if r.len > r.cap || r.off+uint64(r.cap) > uint64(len(region)) {
			return fail("request %+v outside its region (%d bytes)", r, len(region))
		}
		res, herr := fn(region[r.off : r.off+uint64(r.len) : r.off+uint64(r.cap)])
		if herr == nil && (res < 0 || res > int(r.cap)) {
			herr = fmt.Errorf("returned length %d outside 0..%d", res, r.cap)
		}
		rep = encodeProcRep(rep[:0], res, herr)
		if _, err := unix.Write(procFDCtl, rep); err != nil {
			return 0
		}
	}
}

// procReq names the event's bytes; nothing else crosses the socket.
type procReq struct {
	off      uint64 // into the payload region, or the scratch area
	len, cap uint32
	scratch  bool // an inline event, copied to the scratch area
}

func (r procReq) encode(b []byte) {
	binary.LittleEndian.PutUint64(b[0:], r.off)
	binary.LittleEndian.PutUint32(b[8:], r.len)
	binary.LittleEndian.PutUint32(b[12:], r.cap)
	var s uint32
	if r.scratch {
		s = 1
	}
	binary.LittleEndian.PutUint32(b[16:], s)
	binary.LittleEndian.PutUint32(b[20:], 0)
}

func decodeProcReq(b []byte) procReq {
	return procReq{
		off:     binary.LittleEndian.Uint64(b[0:]),
		len:     binary.LittleEndian.Uint32(b[8:]),
		cap:     binary.LittleEndian.Uint32(b[12:]),
		scratch: binary.LittleEndian.Uint32(b[16:]) != 0,
	}
}

// A reply: the length as a little-endian int32, -1 with the error's text after it.
func encodeProcRep(b []byte, n int, err error) []byte {
	if err != nil {
		msg := err.Error()
		if len(msg) > procRepMax-4 {
			msg = msg[:procRepMax-4]
		}
		return append(binary.LittleEndian.AppendUint32(b, ^uint32(0)), msg...)
	}
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}

// ProcessOptions configure a ProcessHandler.
type ProcessOptions struct {
	// Handler is the name given to RegisterProcessHandler.
	Handler string
	// MaxProcs bounds the handler processes running at once (and is the
	// pool's size). 0: 4.
	MaxProcs int
	// Timeout bounds the handler's work on one event, from the request to
	// the answer; past it the process is killed. 0: 10s.
	Timeout time.Duration
	// StartTimeout bounds starting a process, until it is ready to serve
	// (a program's start may take long on a loaded or emulated machine).
	// 0: 10s.
	StartTimeout time.Duration
	// Pool keeps MaxProcs processes, started by NewProcessHandler, each
	// serving event after event; one that dies is replaced at its next
	// event. Without Pool every event gets a new process.
	Pool bool
	// WritebackAlways writes the handler's result back for events that
	// are not calls too (a call's is always written back: its reply).
	WritebackAlways bool
}

// ProcessHandler runs a registered ProcessHandlerFunc in handler
// processes: new processes made from the running program
// (/proc/self/exe, with a marker in the environment that
// ServeProcessHandler recognises). Each child maps the ring's payload
// region shared, so an event's slot is changed in place, never copied;
// an inline event (32 bytes at most, in the read-only CQE) is copied to a
// small shared scratch area. A control socket per child carries only the
// offset and length of the bytes and the handler's answer.
//
// Handle is a Handler: use it with ModeSpawn, MaxInFlight at MaxProcs.
// A process that crashes, exits or outlives Timeout is reported as the
// event's error (ErrProcessDied, ErrProcessTimeout); the ring is
// untouched and the event's slot goes back to it. Under Run, the caller
// of a call whose handler failed gets an error reply (EIO) at once.
type ProcessHandler struct {
	r          *Ring
	opts       ProcessOptions
	payload    *os.File // the ring's payload region, handed to every child
	payloadOff uint64
	scratchF   *os.File // abi.CQEInline bytes per process, for inline events
	scratch    []byte
	free       chan int // indices of idle processes: the bound
	closing    chan struct{}
	closeOnce  sync.Once
	procs      []*handlerProc // Pool: index -> live process; nil until (re)started
}

// handlerProc is one child process and the parent's end of its socket.
type handlerProc struct {
	cmd     *exec.Cmd
	conn    *net.UnixConn
	exited  chan struct{} // closed once cmd.Wait returned
	waitErr error
}

// NewProcessHandler prepares handler processes for events of r: with
// opts.Pool it starts them now.
func (r *Ring) NewProcessHandler(opts ProcessOptions) (*ProcessHandler, error) {
	if lookupProcessHandler(opts.Handler) == nil {
		return nil, fmt.Errorf("goaem: process handler %q is not registered (RegisterProcessHandler)", opts.Handler)
	}
	if opts.MaxProcs < 0 || opts.Timeout < 0 || opts.StartTimeout < 0 {
		return nil, fmt.Errorf("goaem: process handler %q: MaxProcs %d, Timeout %v and StartTimeout %v must be >= 0",
			opts.Handler, opts.MaxProcs, opts.Timeout, opts.StartTimeout)
	}
	if opts.MaxProcs == 0 {
		opts.MaxProcs = 4
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	p := &ProcessHandler{
		r:       r,
		opts:    opts,
		free:    make(chan int, opts.MaxProcs),
		closing: make(chan struct{}),
		procs:   make([]*handlerProc, opts.MaxProcs),
	}
	var err error
	if p.payload, p.payloadOff, err = r.payloadFile(); err != nil {
		return nil, fmt.Errorf("goaem: process handler %q: %w", opts.Handler, err)
	}
	if err = p.mapScratch(); err != nil {
		p.payload.Close()
		return nil, fmt.Errorf("goaem: process handler %q: scratch area: %w", opts.Handler, err)
	}
	for i := range opts.MaxProcs {
		p.free <- i
	}
	if opts.Pool {
		for i := range p.procs {
			if p.procs[i], err = p.start(); err != nil {
				p.Close()
				return nil, err
			}
		}
	}
	return p, nil
}

func (p *ProcessHandler) mapScratch() error {
	fd, err := unix.MemfdCreate("goaem-process-scratch", unix.MFD_CLOEXEC)
	if err != nil {
		return err
	}
	p.scratchF = os.NewFile(uintptr(fd), "goaem-process-scratch")
	size := (p.opts.MaxProcs*abi.CQEInline + os.Getpagesize() - 1) &^ (os.Getpagesize() - 1)
	if err = p.scratchF.Truncate(int64(size)); err == nil {
		p.scratch, err = unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}
	if err != nil {
		p.scratchF.Close()
	}
	return err
}

// start runs a new handler process and waits for its hello.
func (p *ProcessHandler) start() (*handlerProc, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, p.errorf("socketpair: %w", err)
	}
	parentF := os.NewFile(uintptr(fds[0]), "goaem-process-ctl")
	childF := os.NewFile(uintptr(fds[1]), "goaem-process-ctl")
	defer childF.Close()
	fc, err := net.FileConn(parentF)
	parentF.Close()
	if err != nil {
		return nil, p.errorf("control socket: %w", err)
	}
	conn := fc.(*net.UnixConn)
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{os.Args[0]}
	cmd.Env = append(os.Environ(), procEnvName+"="+p.opts.Handler,
		fmt.Sprintf("%s=%d:%d:%d", procEnvMap, p.payloadOff, len(p.r.pay.bytes), len(p.scratch)))
	cmd.ExtraFiles = []*os.File{childF, p.payload, p.scratchF} // fds 3, 4, 5
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, p.errorf("start: %w", err)
	}
	hp := &handlerProc{cmd: cmd, conn: conn, exited: make(chan struct{})}
	go func() {
		hp.waitErr = cmd.Wait()
		close(hp.exited)
	}()
	var hello [len(procHello)]byte
	conn.SetReadDeadline(time.Now().Add(p.opts.StartTimeout))
	n, err := conn.Read(hello[:])
	if err != nil || string(hello[:n]) != procHello {
		return nil, hp.fail(p, err, p.opts.StartTimeout, "before its hello (does main call goaem.ServeProcessHandler first?)")
	}
	return hp, nil
}

func (p *ProcessHandler) errorf(format string, a ...any) error {
	return fmt.Errorf("goaem: process handler %q: "+format, append([]any{p.opts.Handler}, a...)...)
}

// fail ends hp after a failed exchange and says why: timed out (killed)
// or died (its exit status).
func (hp *handlerProc) fail(p *ProcessHandler, err error, limit time.Duration, when string) error {
	timedOut := errors.Is(err, os.ErrDeadlineExceeded)
	hp.kill()
	if timedOut {
		return p.errorf("%w after %v %s: killed", ErrProcessTimeout, limit, when)
	}
	status := "exit status 0"
	if hp.waitErr != nil {
		status = hp.waitErr.Error()
	}
	return p.errorf("%w %s: %s", ErrProcessDied, when, status)
}

// ended reports whether the process is gone (killed or exited).
func (hp *handlerProc) ended() bool {
	select {
	case <-hp.exited:
		return true
	default:
		return false
	}
}

// gone reports whether the process has ended or is ending: a killed
// process closes its end of the socket before it is reaped, so this sees
// a death the waiter has not reported yet.
func (hp *handlerProc) gone() bool {
	if hp.ended() {
		return true
	}
	rc, err := hp.conn.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = (err == nil && n == 0) || errors.Is(err, unix.ECONNRESET)
		return true
	})
	return closed
}

// kill ends the process and waits until it is reaped.
func (hp *handlerProc) kill() {
	hp.conn.Close()
	hp.cmd.Process.Signal(syscall.SIGKILL)
	<-hp.exited
}

// stop closes the socket, which ends the process's loop, and waits for
// its exit; one that lingers is killed at deadline.
func (hp *handlerProc) stop(deadline time.Time) {
	hp.conn.Close()
	select {
	case <-hp.exited:
	case <-time.After(time.Until(deadline)):
		hp.kill()
	}
}

// Handle runs ev's handler in a handler process and, when it succeeds,
// writes the result back for a call (or always, with WritebackAlways).
// It waits while MaxProcs handlers run. The event is released by Run
// afterwards; outside Run, release it yourself.
func (p *ProcessHandler) Handle(ev *Event) error {
	var i int
	select {
	case i = <-p.free:
	case <-p.closing:
		return ErrClosed
	}
	defer func() { p.free <- i }()

	var req procReq
	var data []byte
	if ev.cqe.Flags&abi.CQEFSlot != 0 {
		data = p.r.pay.slot(ev.cqe.Slot, uint32(max(ev.cqe.Res, 0)))
		if data == nil {
			return p.errorf("event names slot %d (%d bytes) outside the ring", ev.cqe.Slot, ev.cqe.Res)
		}
		req = procReq{off: uint64(abi.SlotIndex(ev.cqe.Slot)) * uint64(p.r.pay.slotSize), len: uint32(len(data)), cap: p.r.pay.slotSize}
	} else {
		off := i * abi.CQEInline
		n := copy(p.scratch[off:off+abi.CQEInline], ev.Payload())
		data = p.scratch[off : off+n : off+abi.CQEInline]
		req = procReq{off: uint64(off), len: uint32(n), cap: abi.CQEInline, scratch: true}
	}

	hp := p.procs[i]
	if hp != nil && hp.gone() {
		hp.kill() // died between events (killed from outside): replaced, not blamed on this one
		hp = nil
	}
	if hp == nil {
		var err error
		if hp, err = p.start(); err != nil {
			return err
		}
		if p.opts.Pool {
			p.procs[i] = hp
		}
	}
	n, err := p.exchange(hp, req, time.Now().Add(p.opts.Timeout))
	if err != nil && p.opts.Pool && hp.ended() {
		p.procs[i] = nil // replaced at the next event
	}
	if !p.opts.Pool {
		hp.stop(time.Now().Add(p.opts.Timeout))
	}
	if err != nil {
		return err
	}
	if ev.IsCall() || p.opts.WritebackAlways {
		return ev.Writeback(data[:n])
	}
	return nil
}

// exchange sends one request and reads its answer: the length the handler
// returned, or its error.
func (p *ProcessHandler) exchange(hp *handlerProc, req procReq, deadline time.Time) (int, error) {
	var b [procReqSize]byte
	var rep [procRepMax]byte
	req.encode(b[:])
	hp.conn.SetDeadline(deadline)
	if _, err := hp.conn.Write(b[:]); err != nil {
		return 0, hp.fail(p, err, p.opts.Timeout, "before the request")
	}
	n, err := hp.conn.Read(rep[:])
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err != nil {
		return 0, hp.fail(p, err, p.opts.Timeout, "before answering")
	}
	if n < 4 {
		return 0, hp.fail(p, io.ErrUnexpectedEOF, p.opts.Timeout, "with a short answer")
	}
	res := int32(binary.LittleEndian.Uint32(rep[:4]))
	if res < 0 {
		return 0, p.errorf("%s", rep[4:n])
	}
	if uint32(res) > req.cap {
		return 0, p.errorf("answered %d bytes into %d", res, req.cap)
	}
	return int(res), nil
}

// Close stops the handler processes, after the events they are handling
// (each bounded by Timeout). Handle then returns ErrClosed.
func (p *ProcessHandler) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		for range p.opts.MaxProcs {
			<-p.free
		}
		deadline := time.Now().Add(p.opts.Timeout)
		for i, hp := range p.procs {
			if hp != nil {
				hp.stop(deadline)
				p.procs[i] = nil
			}
		}
		unix.Munmap(p.scratch)
		p.scratchF.Close()
		p.payload.Close()
	})
	return nil
}
