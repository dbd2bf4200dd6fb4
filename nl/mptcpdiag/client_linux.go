package mptcpdiag

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// client is the Linux sock_diag client.
type client struct {
	mu     sync.Mutex // serializes requests and guards closed
	conn   *netlink.Conn
	closed bool
}

func newClient(cfg *Config) (*client, error) {
	conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: cfg.NetNS, Strict: true})
	if err != nil {
		return nil, wrapError("dial sock_diag", err)
	}
	return &client{conn: conn}, nil
}

func (c *client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return wrapError("close", c.conn.Close())
}

func (c *client) connections(listeners bool, subflowStates States) ([]Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("mptcpdiag: list connections: %w", net.ErrClosed)
	}
	// Listeners cost a walk of the kernel's whole listening hash, with a
	// lock per bucket (mptcp_diag_dump_listeners): about 1 ms per family
	// on this 24 GiB machine, however few there are. Without them an
	// MPTCP dump walks only the token table, about 45 µs.
	connStates := AllStates
	if !listeners {
		connStates &^= StatesOf(StateListen)
	}
	// Two dumps, not one snapshot: a connection's subflows are those of
	// the second, which may differ from what its mptcp_info counted in
	// the first. Connections first, so that the subflows of a connection
	// opened in between are dropped, never a connection left without
	// the subflows it has.
	var conns []Connection
	for _, f := range families {
		op := "dump MPTCP sockets (" + f.name + ")"
		msgs, err := c.dump(f.af, mptcp.IPPROTO_MPTCP, connStates)
		if errors.Is(err, syscall.ENOENT) {
			// inet_diag has no handler for the protocol.
			return nil, fmt.Errorf("mptcpdiag: %s: kernel without mptcp_diag (CONFIG_INET_MPTCP_DIAG): %w", op, mptcp.ErrNotSupported)
		}
		if err != nil {
			return nil, wrapError(op, err)
		}
		cs, err := parseDump(msgs, parseConnection)
		if err != nil {
			return nil, fmt.Errorf("mptcpdiag: %s: %w", op, err)
		}
		conns = append(conns, cs...)
	}
	var subflows []Subflow
	for _, f := range subflowFamilies(conns) {
		op := "dump TCP sockets (" + f.name + ")"
		// Listening TCP sockets are never a connection's subflows.
		msgs, err := c.dump(f.af, IPPROTO_TCP, subflowStates&^StatesOf(StateListen))
		if err != nil {
			return nil, wrapError(op, err)
		}
		ss, err := parseDump(msgs, parseSubflow)
		if err != nil {
			return nil, fmt.Errorf("mptcpdiag: %s: %w", op, err)
		}
		subflows = append(subflows, ss...)
	}
	return join(conns, subflows), nil
}

// dump sends one SOCK_DIAG_BY_FAMILY dump request and collects the replies.
func (c *client) dump(family uint8, protocol uint32, states States) ([]netlink.Message, error) {
	return c.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: SOCK_DIAG_BY_FAMILY, Flags: netlink.Request | netlink.Dump},
		Data:   encodeRequest(family, protocol, states),
	})
}

func (c *client) destroy(s Subflow) error {
	op := fmt.Sprintf("destroy %v -> %v", s.Local, s.Remote)
	req, err := encodeExact(s)
	if err != nil {
		return fmt.Errorf("mptcpdiag: %s: %w", op, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("mptcpdiag: %s: %w", op, net.ErrClosed)
	}
	_, err = c.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: SOCK_DESTROY, Flags: netlink.Request | netlink.Acknowledge},
		Data:   req,
	})
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil // gone since the dump
	case errors.Is(err, syscall.EOPNOTSUPP):
		return fmt.Errorf("mptcpdiag: %s: kernel without CONFIG_INET_DIAG_DESTROY: %w", op, mptcp.ErrNotSupported)
	}
	return wrapError(op, err)
}

// wrapError keeps the errno (so errors.Is(err, os.ErrPermission) works)
// and the kernel's extended-ack text, and no netlink type.
func wrapError(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("mptcpdiag: %s: %w", op, net.ErrClosed)
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("mptcpdiag: %s: %v", op, err)
	}
	var oe *netlink.OpError
	if errors.As(err, &oe) && oe.Message != "" {
		return fmt.Errorf("mptcpdiag: %s: %w: %s", op, errno, oe.Message)
	}
	return fmt.Errorf("mptcpdiag: %s: %w", op, errno)
}
