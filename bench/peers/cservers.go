//go:build cgo

package peers

/*
#include <stdlib.h>
#include "bp_srv.h"
*/
import "C"

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
	"unsafe"
)

// cServer is a server peer whose loop is in C (bp_epoll.c,
// bp_uring_srv.c), on a thread of its own.
type cServer struct {
	Unsupported
	name string
	loop C.int
}

func newCServer(name string) (Transport, error) {
	switch name {
	case NameEpoll:
		return &cServer{name: name, loop: C.BP_SRV_EPOLL}, nil
	case NameURingNet:
		return &cServer{name: name, loop: C.BP_SRV_URING}, nil
	}
	return nil, fmt.Errorf("unknown C server %q", name)
}

func (p *cServer) Name() string { return p.name }

func (p *cServer) Serve(sp ServerParams) (Server, error) {
	mode := C.int(C.BP_SRV_ECHO)
	var resp []byte
	switch sp.Kind {
	case ServeEcho:
	case ServeHTTP:
		mode, resp = C.BP_SRV_HTTP, HTTPResponse(sp.Body)
	default:
		return nil, fmt.Errorf("%s: kind %q: want %s or %s", p.name, sp.Kind, ServeEcho, ServeHTTP)
	}
	conns := max(sp.Conns, 1) + 64
	var cresp unsafe.Pointer
	if len(resp) > 0 {
		cresp = C.CBytes(resp)
		defer C.free(cresp)
	}
	var srv *C.struct_bp_srv
	var port C.int
	ret := C.bp_srv_start(p.loop, mode, cresp, C.uint32_t(len(resp)), C.uint32_t(conns), &srv, &port)
	if ret < 0 {
		return nil, fmt.Errorf("%s: start: %w", p.name, syscall.Errno(-ret))
	}
	return &cSrv{name: p.name, srv: srv, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))}, nil
}

type cSrv struct {
	name string
	srv  *C.struct_bp_srv
	addr string
}

func (s *cSrv) Addr() string  { return s.addr }
func (s *cSrv) Notes() string { return "" }

func (s *cSrv) Close() error {
	if s.srv == nil {
		return nil
	}
	ret := C.bp_srv_stop(s.srv)
	s.srv = nil
	if ret < 0 {
		return fmt.Errorf("%s: server loop: %w", s.name, syscall.Errno(-ret))
	}
	return nil
}
