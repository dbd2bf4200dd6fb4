package intercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// From linux/netfilter_ipv6/ip6_tables.h (SO_ORIGINAL_DST, its IPv4 twin
// from linux/netfilter_ipv4.h, is in x/sys/unix).
const ip6tSOOriginalDst = 80

// sizeofSockaddrInet6 is the larger of the two answers (struct sockaddr_in6).
const sizeofSockaddrInet6 = unix.SizeofSockaddrInet6

// OriginalDst is where the client of c meant to connect before REDIRECT
// changed it: conntrack's original destination. A connection that was not
// redirected gives its own local address. An IPv4 client of a dual-stack
// listener (::ffff:a.b.c.d) is asked for through the IPv4 option, as
// conntrack tracks it as IPv4; its answer is a plain IPv4 address.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	local, _ := c.LocalAddr().(*net.TCPAddr)
	if local == nil {
		return netip.AddrPort{}, fmt.Errorf("intercept: original destination: connection has no local address")
	}
	level, opt, name := unix.SOL_IPV6, ip6tSOOriginalDst, "IP6T_SO_ORIGINAL_DST"
	if local.AddrPort().Addr().Unmap().Is4() {
		level, opt, name = unix.SOL_IP, unix.SO_ORIGINAL_DST, "SO_ORIGINAL_DST"
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("intercept: original destination of %s: %w", c.RemoteAddr(), err)
	}
	var b [sizeofSockaddrInet6]byte
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = getsockopt(fd, level, opt, b[:]) }); err != nil {
		return netip.AddrPort{}, fmt.Errorf("intercept: original destination of %s: %w", c.RemoteAddr(), err)
	}
	if serr != nil {
		hint := ""
		if mp, _ := c.MultipathTCP(); mp && errors.Is(serr, unix.EOPNOTSUPP) {
			// conntrack sees subflows, the MPTCP socket does not.
			hint = " (an MPTCP connection: accept redirected ones with plain TCP)"
		}
		return netip.AddrPort{}, fmt.Errorf("intercept: original destination of %s: getsockopt %s: %w%s", c.RemoteAddr(), name, serr, hint)
	}
	ap, err := parseSockaddr(b[:])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("intercept: original destination of %s: %s: %w", c.RemoteAddr(), name, err)
	}
	return ap, nil
}

// getsockopt fills b; x/sys/unix has no call for a sockaddr answer.
func getsockopt(fd uintptr, level, opt int, b []byte) error {
	n := uint32(len(b))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// parseSockaddr reads a struct sockaddr_in or sockaddr_in6 as the kernel
// writes it: family in host order, port and address in network order. The
// kernel does not shorten the length for sockaddr_in, so the family decides.
// An IPv6 scope id is dropped: redirected destinations are routed, never
// link-local.
func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, fmt.Errorf("%d bytes, too short for a sockaddr", len(b))
	}
	switch fam := binary.NativeEndian.Uint16(b); fam {
	case unix.AF_INET:
		if len(b) < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, fmt.Errorf("%d bytes, too short for sockaddr_in", len(b))
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:])), nil
	case unix.AF_INET6:
		if len(b) < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, fmt.Errorf("%d bytes, too short for sockaddr_in6", len(b))
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), binary.BigEndian.Uint16(b[2:])), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("address family %d, want AF_INET or AF_INET6", fam)
	}
}
