package aemnet

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/aem-dev/aem/goaem/abi"
)

// peerAddr is the peer address a CONNECT event carries.
func peerAddr(se *abi.SockEvent) net.Addr {
	switch se.Family {
	case syscall.AF_INET:
		ip := netip.AddrFrom4([4]byte(se.Addr[:4]))
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, se.Port))
	case syscall.AF_INET6:
		ip := netip.AddrFrom16(se.Addr)
		if se.ScopeID != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(se.ScopeID), 10))
		}
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, se.Port))
	default:
		return &net.UnixAddr{Net: "unix"}
	}
}

// errno is the error of a -errno result.
func errno(res int32) error { return syscall.Errno(-res) }

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
