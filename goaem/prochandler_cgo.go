//go:build cgo

package goaem

/*
#include <stdint.h>
#include "libaem.h"
*/
import "C"

import (
	"fmt"
	"os"
	"syscall"
)

// payloadFile is a new descriptor through which another process maps the
// ring's PAYLOAD region, and the region's offset in it (aem_payload_fd).
func (r *Ring) payloadFile() (*os.File, uint64, error) {
	be, ok := r.be.(*cBackend)
	if !ok {
		return nil, 0, fmt.Errorf("the %s backend cannot share its payload region", r.be.name())
	}
	if !r.life.acquire() {
		return nil, 0, ErrClosed
	}
	defer r.life.release()
	var off C.uint64_t
	fd := C.aem_payload_fd(be.ring, &off)
	if fd < 0 {
		return nil, 0, fmt.Errorf("payload region fd: %w", syscall.Errno(-fd))
	}
	return os.NewFile(uintptr(fd), "aem-payload"), uint64(off), nil
}
