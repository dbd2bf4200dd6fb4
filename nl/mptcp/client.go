package mptcp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// Config selects where the client operates.
type Config struct {
	// NetNS is an open file descriptor of a network namespace
	// (e.g. /run/netns/NAME); 0 means the caller's namespace.
	NetNS int
}

// Client talks to the mptcp_pm family on one netlink socket. It is safe for
// concurrent use; requests are serialized.
type Client struct {
	mu     sync.Mutex // serializes requests and guards closed
	conn   *genetlink.Conn
	family genetlink.Family
	closed bool
}

// NewClient wraps an existing generic netlink connection (tests pass one
// from genltest or mptcptest) and resolves the mptcp_pm family on it. The
// Client owns conn from then on: Close closes it. On error conn is left
// open.
func NewClient(conn *genetlink.Conn) (*Client, error) {
	f, err := resolveFamily(conn)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, family: f}, nil
}

// Dial opens a client. A missing family returns an error that Is
// ErrNotSupported and says why (no MPTCP in the kernel, ...).
// net.mptcp.enabled=0 is no error: endpoints and limits stay configurable
// while new sockets simply do not use MPTCP.
func Dial(cfg *Config) (*Client, error) {
	conn, err := dial(cfg)
	if err != nil {
		return nil, err
	}
	c, err := NewClient(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// receiveBufferSize is the size of the pooled receive buffers: the
// largest datagram netlink sends to a reader (net/netlink/af_netlink.c
// caps max_recvmsg_len at 32 KiB; events and replies are smaller).
const receiveBufferSize = 32 << 10

// dial opens a generic netlink socket in cfg's namespace with extended
// acks, so that kernel errors carry their explanation.
func dial(cfg *Config) (*genetlink.Conn, error) {
	var ns int
	if cfg != nil {
		ns = cfg.NetNS
	}
	// Strict turns on ExtendedAcknowledge and GetStrictCheck. A pooled
	// receive buffer spares each receive a MSG_PEEK call and a fresh
	// allocation; the kernel never sends a datagram larger than it
	// (it sizes dump batches after the reader's buffer, up to 32 KiB).
	conn, err := genetlink.Dial(&netlink.Config{NetNS: ns, Strict: true, MessageBufferSize: receiveBufferSize})
	if err != nil {
		return nil, wrapError("dial generic netlink", err)
	}
	return conn, nil
}

// resolveFamily looks up mptcp_pm and explains its absence.
func resolveFamily(conn *genetlink.Conn) (genetlink.Family, error) {
	f, err := conn.GetFamily(MPTCP_PM_NAME)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return genetlink.Family{}, fmt.Errorf("mptcp: generic netlink family %q not found: %s: %w",
			MPTCP_PM_NAME, missingFamilyReason(), ErrNotSupported)
	case err != nil:
		return genetlink.Family{}, wrapError("resolve family "+MPTCP_PM_NAME, err)
	}
	return f, nil
}

// missingFamilyReason tells a kernel without MPTCP from one whose MPTCP
// lacks the path-manager netlink API (Linux < 5.7).
func missingFamilyReason() string {
	if _, err := os.Stat(sysctlEnabled); err != nil {
		return "kernel built without MPTCP (CONFIG_MPTCP)"
	}
	return "kernel has MPTCP but no path-manager netlink API (needs Linux 5.7 or later)"
}

// Close releases the socket. Further calls return an error that Is
// net.ErrClosed; closing twice is not an error.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return wrapError("close", c.conn.Close())
}

// Endpoints dumps the endpoint table (GET_ADDR dump), in id order. An entry
// that does not decode fails the whole call rather than being left out.
func (c *Client) Endpoints() ([]Endpoint, error) {
	return c.endpoints("list endpoints", nil)
}

// Endpoint returns one endpoint by id (GET_ADDR do); a missing id Is
// os.ErrNotExist.
func (c *Client) Endpoint(id ID) (Endpoint, error) {
	const op = "get endpoint"
	msgs, err := c.execute(op, MPTCP_PM_CMD_GET_ADDR, netlink.Request, func(ae *netlink.AttributeEncoder) {
		ae.Nested(MPTCP_PM_ATTR_ADDR, addrNest{id: id, sendID: true}.encode)
	})
	if err != nil {
		return Endpoint{}, err
	}
	eps, err := parseEndpoints(msgs)
	if err != nil {
		return Endpoint{}, fmt.Errorf("mptcp: %s: %w", op, err)
	}
	if len(eps) != 1 {
		return Endpoint{}, fmt.Errorf("mptcp: %s: got %d endpoints, want 1", op, len(eps))
	}
	return eps[0], nil
}

// AddEndpoint adds e (ADD_ADDR). e.ID 0 lets the kernel choose; e.Addr is
// required; Port, Flags and IfIndex are sent when non-zero.
func (c *Client) AddEndpoint(e Endpoint) error {
	const op = "add endpoint"
	if err := requireAddr(op, "endpoint", e.Addr); err != nil {
		return err
	}
	return c.do(op, MPTCP_PM_CMD_ADD_ADDR, func(ae *netlink.AttributeEncoder) {
		ae.Nested(MPTCP_PM_ATTR_ADDR, endpointNest(e).encode)
	})
}

// DeleteEndpoint deletes by id (DEL_ADDR). addr may be invalid (zero); id 0
// with an address deletes the implicit/id-0 entry for that address (it
// closes the initial subflows using that address).
func (c *Client) DeleteEndpoint(id ID, addr netip.Addr) error {
	const op = "delete endpoint"
	if id == 0 {
		// The kernel silently does nothing for id 0 without an address.
		if err := requireAddr(op, "id 0", addr); err != nil {
			return err
		}
	}
	return c.do(op, MPTCP_PM_CMD_DEL_ADDR, func(ae *netlink.AttributeEncoder) {
		ae.Nested(MPTCP_PM_ATTR_ADDR, addrNest{addr: addr, id: id, sendID: true}.encode)
	})
}

// FlushEndpoints deletes every endpoint (FLUSH_ADDRS).
func (c *Client) FlushEndpoints() error {
	return c.do("flush endpoints", MPTCP_PM_CMD_FLUSH_ADDRS, nil)
}

// changeableFlags are the flags SET_FLAGS acts on; the kernel ignores the
// others (changing them takes a delete and an add).
const changeableFlags = FlagBackup | FlagFullmesh

// SetEndpointFlags changes the backup and fullmesh flags of one endpoint
// (SET_FLAGS). Like the kernel, it names the endpoint by e.Addr (and
// e.Port) when an address is given, else by e.ID; the id is sent too when
// non-zero, as `ip mptcp endpoint change id ID ADDRESS` does. Other bits of
// e.Flags are ignored, so an Endpoint read from Endpoints can be passed
// back with its flags edited.
func (c *Client) SetEndpointFlags(e Endpoint) error {
	const op = "set endpoint flags"
	if e.ID == 0 {
		if err := requireAddr(op, "endpoint (id 0)", e.Addr); err != nil {
			return err
		}
	}
	n := addrNest{addr: e.Addr, id: e.ID, port: e.Port, flags: e.Flags & changeableFlags}
	return c.do(op, MPTCP_PM_CMD_SET_FLAGS, func(ae *netlink.AttributeEncoder) {
		ae.Nested(MPTCP_PM_ATTR_ADDR, n.encode)
	})
}

// Limits reads the limits (GET_LIMITS); both fields are set.
func (c *Client) Limits() (Limits, error) {
	const op = "get limits"
	msgs, err := c.execute(op, MPTCP_PM_CMD_GET_LIMITS, netlink.Request, nil)
	if err != nil {
		return Limits{}, err
	}
	l, err := parseLimits(msgs)
	if err != nil {
		return Limits{}, fmt.Errorf("mptcp: %s: %w", op, err)
	}
	return l, nil
}

// SetLimits sets the non-nil fields (SET_LIMITS). The kernel accepts at most
// 8 for each (EINVAL otherwise).
func (c *Client) SetLimits(l Limits) error {
	return c.do("set limits", MPTCP_PM_CMD_SET_LIMITS, func(ae *netlink.AttributeEncoder) {
		if l.AddAddrAccepted != nil {
			ae.Uint32(MPTCP_PM_ATTR_RCV_ADD_ADDRS, *l.AddAddrAccepted)
		}
		if l.Subflows != nil {
			ae.Uint32(MPTCP_PM_ATTR_SUBFLOWS, *l.Subflows)
		}
	})
}

// Announce announces local address e (ID != 0, FlagSignal) on connection
// token (userspace PM, ANNOUNCE).
func (c *Client) Announce(token Token, e Endpoint) error {
	const op = "announce"
	if err := requireAddr(op, "local", e.Addr); err != nil {
		return err
	}
	return c.do(op, MPTCP_PM_CMD_ANNOUNCE, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(MPTCP_PM_ATTR_TOKEN, uint32(token))
		ae.Nested(MPTCP_PM_ATTR_ADDR, endpointNest(e).encode)
	})
}

// Remove tells the peer of connection token that local address id is gone
// (userspace PM, REMOVE). id 0 names the initial subflow's address.
func (c *Client) Remove(token Token, id ID) error {
	return c.do("remove", MPTCP_PM_CMD_REMOVE, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(MPTCP_PM_ATTR_TOKEN, uint32(token))
		ae.Uint8(MPTCP_PM_ATTR_LOC_ID, uint8(id))
	})
}

// CreateSubflow opens a subflow from local (address, ID, optional port and
// IfIndex) to remote on connection token (SUBFLOW_CREATE).
func (c *Client) CreateSubflow(token Token, local Endpoint, remote netip.AddrPort) error {
	const op = "create subflow"
	if err := requireAddr(op, "local", local.Addr); err != nil {
		return err
	}
	if err := requireAddr(op, "remote", remote.Addr()); err != nil {
		return err
	}
	return c.do(op, MPTCP_PM_CMD_SUBFLOW_CREATE, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(MPTCP_PM_ATTR_TOKEN, uint32(token))
		ae.Nested(MPTCP_PM_ATTR_ADDR, endpointNest(local).encode)
		ae.Nested(MPTCP_PM_ATTR_ADDR_REMOTE, addrPortNest(remote).encode)
	})
}

// DestroySubflow closes the subflow local->remote (both ports required) on
// connection token (SUBFLOW_DESTROY). No such subflow Is os.ErrNotExist
// (ESRCH).
func (c *Client) DestroySubflow(token Token, local, remote netip.AddrPort) error {
	const op = "destroy subflow"
	if err := requireAddrPorts(op, local, remote); err != nil {
		return err
	}
	return c.do(op, MPTCP_PM_CMD_SUBFLOW_DESTROY, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(MPTCP_PM_ATTR_TOKEN, uint32(token))
		ae.Nested(MPTCP_PM_ATTR_ADDR, addrPortNest(local).encode)
		ae.Nested(MPTCP_PM_ATTR_ADDR_REMOTE, addrPortNest(remote).encode)
	})
}

// SetSubflowBackup flips the backup flag of one subflow of connection token
// (SET_FLAGS with token and both addresses); zero ports match any port.
func (c *Client) SetSubflowBackup(token Token, local, remote netip.AddrPort, backup bool) error {
	const op = "set subflow backup"
	if err := requireAddr(op, "local", local.Addr()); err != nil {
		return err
	}
	if err := requireAddr(op, "remote", remote.Addr()); err != nil {
		return err
	}
	n := addrPortNest(local)
	if backup {
		n.flags = FlagBackup
	}
	return c.do(op, MPTCP_PM_CMD_SET_FLAGS, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(MPTCP_PM_ATTR_TOKEN, uint32(token))
		ae.Nested(MPTCP_PM_ATTR_ADDR, n.encode)
		ae.Nested(MPTCP_PM_ATTR_ADDR_REMOTE, addrPortNest(remote).encode)
	})
}

// requireAddrPorts checks that both sides name an address and a port.
func requireAddrPorts(op string, local, remote netip.AddrPort) error {
	if !local.IsValid() || local.Port() == 0 || !remote.IsValid() || remote.Port() == 0 {
		return fmt.Errorf("mptcp: %s: need local and remote address with port, got %v -> %v", op, local, remote)
	}
	return nil
}

// ConnectionEndpoints dumps the local addresses the userspace PM has
// announced or used on connection token (GET_ADDR dump with TOKEN).
func (c *Client) ConnectionEndpoints(token Token) ([]Endpoint, error) {
	return c.endpoints("list connection endpoints", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(MPTCP_PM_ATTR_TOKEN, uint32(token))
	})
}

// endpoints runs a GET_ADDR dump.
func (c *Client) endpoints(op string, encode func(*netlink.AttributeEncoder)) ([]Endpoint, error) {
	msgs, err := c.execute(op, MPTCP_PM_CMD_GET_ADDR, netlink.Request|netlink.Dump, encode)
	if err != nil {
		return nil, err
	}
	eps, err := parseEndpoints(msgs)
	if err != nil {
		return nil, fmt.Errorf("mptcp: %s: %w", op, err)
	}
	return eps, nil
}

// do runs a command whose only answer is an acknowledgement.
func (c *Client) do(op string, cmd uint8, encode func(*netlink.AttributeEncoder)) error {
	_, err := c.execute(op, cmd, netlink.Request|netlink.Acknowledge, encode)
	return err
}

// execute sends one mptcp_pm request built by encode (nil: no attributes)
// and returns the kernel's replies. op names the operation in errors.
func (c *Client) execute(op string, cmd uint8, flags netlink.HeaderFlags, encode func(*netlink.AttributeEncoder)) ([]genetlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	if encode != nil {
		encode(ae)
	}
	data, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("mptcp: %s: encoding request: %v", op, err)
	}
	req := genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: MPTCP_PM_VER},
		Data:   data,
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, closedError(op)
	}
	msgs, err := c.conn.Execute(req, c.family.ID, flags)
	if err != nil {
		return nil, wrapError(op, err)
	}
	return msgs, nil
}
