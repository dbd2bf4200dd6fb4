// Package mptcpsock reads an MPTCP socket's own state with getsockopt
// (SOL_MPTCP, MPTCP_INFO), for code that holds the socket: a relay, a
// test tool. Dumps of every connection are nl/mptcpdiag's business.
package mptcpsock

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mptcpInfo is MPTCP_INFO from include/uapi/linux/mptcp.h (not in
// x/sys/unix).
const mptcpInfo = 1

// Info is the head of the kernel's struct mptcp_info: the kernel copies
// at most the length asked, and nothing past the token is needed here.
type Info struct {
	Subflows           uint8 // additional subflows, not counting the first
	AddAddrSignal      uint8
	AddAddrAccepted    uint8
	SubflowsMax        uint8
	AddAddrSignalMax   uint8
	AddAddrAcceptedMax uint8
	_                  [2]byte
	Flags              uint32 // MPTCP_INFO_FLAG_*
	Token              uint32 // host order, as the event monitor prints it
}

// mptcpi_flags bits.
const (
	FlagFallback          = 1 << 0 // MPTCP_INFO_FLAG_FALLBACK
	FlagRemoteKeyReceived = 1 << 1 // MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED
)

// ErrNotMPTCP is the error for a connection that is plain TCP, or fell
// back to it.
var ErrNotMPTCP = errors.New("not an MPTCP connection (plain TCP, or fell back to it)")

// Read reads c's MPTCP_INFO.
func Read(c *net.TCPConn) (Info, error) {
	var info Info
	if ok, err := c.MultipathTCP(); err != nil {
		return info, err
	} else if !ok {
		return info, ErrNotMPTCP
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return info, err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(info))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_MPTCP, mptcpInfo,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil {
		return info, err
	}
	switch errno {
	case 0:
		return info, nil
	case unix.EOPNOTSUPP, unix.ENOPROTOOPT:
		return info, ErrNotMPTCP
	}
	return info, fmt.Errorf("getsockopt MPTCP_INFO: %w", errno)
}

// WaitEstablished waits, at most timeout, until an accepted MPTCP
// connection has the peer's key: the handshake's third ACK has arrived.
// A server that writes before that on a connection it accepted with TCP
// Fast Open data (in SYN_RECV) sees its bytes held for about 30 s on
// Linux 6.18 (measured; plain TCP sends them at once). Plain TCP returns
// at once. The wait polls, every millisecond: it lasts one round trip at
// most, once per connection.
func WaitEstablished(c *net.TCPConn, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		info, err := Read(c)
		if errors.Is(err, ErrNotMPTCP) || err == nil && info.Flags&(FlagFallback|FlagRemoteKeyReceived) != 0 {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MPTCP handshake not complete after %v", timeout)
		}
		time.Sleep(time.Millisecond)
	}
}
