package mptcpdiag

// Config selects where the client operates.
type Config struct {
	// NetNS is an open file descriptor of a network namespace
	// (e.g. /run/netns/NAME); 0 means the caller's namespace.
	NetNS int
}

// Client lists MPTCP connections over one sock_diag socket. It is safe for
// concurrent use; requests are serialized.
type Client struct {
	c *client
}

// Dial opens a client.
func Dial(cfg *Config) (*Client, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{c: c}, nil
}

// Close releases the socket. Further calls return an error that Is
// net.ErrClosed; closing twice is not an error.
func (c *Client) Close() error { return c.c.Close() }

// Connections dumps the MPTCP sockets of the namespace, in every state and
// both address families, with their subflows (see Connection.Subflows):
// connections ordered by address, listeners last. The subflows come from
// a second dump: while one opens or closes, a connection's Subflows and
// its Info's counts may disagree. A kernel without mptcp_diag gives an
// error that Is mptcp.ErrNotSupported.
func (c *Client) Connections() ([]Connection, error) { return c.c.connections(true, AllStates) }

// ConnectionsIn is Connections without the listeners, and with only the
// subflows whose TCP state is in subflows; the kernel does the filtering.
// It is the one for callers that list often: finding listeners walks the
// kernel's whole listening hash, which costs about 1 ms on a host with
// much memory however few there are, while this costs about 0.1 ms with
// no connections and 0.3 ms with some (nl/README.md).
func (c *Client) ConnectionsIn(subflows States) ([]Connection, error) {
	return c.c.connections(false, subflows)
}

// Destroy aborts the TCP socket s names (SOCK_DESTROY, what `ss -K`
// does): the kernel sends a reset and frees it. It is nil when the socket
// is already gone. The kernel needs CONFIG_INET_DIAG_DESTROY, without
// which the error Is mptcp.ErrNotSupported, and the caller CAP_NET_ADMIN.
func (c *Client) Destroy(s Subflow) error { return c.c.destroy(s) }
