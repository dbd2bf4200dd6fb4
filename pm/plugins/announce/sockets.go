package announce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Sockets opens real MPTCP listeners in the calling thread's network
// namespace.
//
// The kernel hands a join to its connection before the listener's accept
// queue (subflow_syn_recv_sock sets drop_req), so a listener that never
// accepts serves joins all the same. New connections that land on it are
// accepted and closed at once, so that their clients see a close instead
// of a connection that hangs.
type Sockets struct{}

var _ Listeners = Sockets{}

// Listen opens an MPTCP listener on addr. It fails rather than listen
// with plain TCP when the socket is not MPTCP (Go falls back to TCP
// silently): a TCP listener would answer joins without MP_JOIN, and the
// joining side would reset them.
func (Sockets) Listen(addr netip.AddrPort) (io.Closer, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	network := "tcp6"
	if addr.Addr().Is4() {
		network = "tcp4"
	}
	l, err := lc.Listen(context.Background(), network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("announce: listen on %v: %w", addr, err)
	}
	if err := checkMPTCP(l.(*net.TCPListener)); err != nil {
		l.Close()
		return nil, fmt.Errorf("announce: listen on %v: %w", addr, err)
	}
	go refuse(l)
	return l, nil
}

// errNotMPTCP is the error of a listener that fell back to TCP.
var errNotMPTCP = errors.New("socket is TCP, not MPTCP (net.mptcp.enabled=0?)")

func checkMPTCP(l *net.TCPListener) error {
	rc, err := l.SyscallConn()
	if err != nil {
		return err
	}
	var proto int
	cerr := rc.Control(func(fd uintptr) {
		proto, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	})
	switch {
	case cerr != nil:
		return cerr
	case err != nil:
		return fmt.Errorf("SO_PROTOCOL: %w", err)
	case proto != unix.IPPROTO_MPTCP:
		return errNotMPTCP
	}
	return nil
}

// refuse accepts connections and closes them until accepting fails,
// which closing l makes it do.
func refuse(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}
