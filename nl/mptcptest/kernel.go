package mptcptest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Kernel is one network namespace's MPTCP path-manager state behind a fake
// mptcp_pm family. Create it with NewKernel; it is safe for concurrent use.
type Kernel struct {
	mu sync.Mutex

	// The in-kernel PM, struct pm_nl_pernet.
	list             []*entry // local_addr_list
	idUsed           [maxAddrID + 1]bool
	nextID           int
	subflowsMax      uint32
	addAddrAcceptMax uint32

	localAddrs  map[netip.Addr]bool // nil: every address is local
	userspacePM bool
	conns       map[mptcp.Token]*connection
	nextPort    uint16

	sockets map[*socket]bool
	nextPID uint32
	hidden  bool

	failNext   map[uint8][]syscall.Errno
	failAlways map[uint8]syscall.Errno
	ops        []Op
}

// NewKernel returns the state of a fresh network namespace: no endpoints,
// limits subflows 2 and add_addr_accepted 0, the in-kernel path manager,
// every address local.
func NewKernel() *Kernel {
	return &Kernel{
		nextID:      1,
		subflowsMax: 2,
		conns:       make(map[mptcp.Token]*connection),
		sockets:     make(map[*socket]bool),
		failNext:    make(map[uint8][]syscall.Errno),
		failAlways:  make(map[uint8]syscall.Errno),
	}
}

// Conn opens a generic netlink connection to the fake, configured like
// netlink.Config{Strict: true} (extended acks on). Most tests want Dial or
// ListenEvents; Conn is for code that builds its own client.
func (k *Kernel) Conn() *genetlink.Conn {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nextPID++
	s := newSocket(k, 0x7f000000+k.nextPID)
	k.sockets[s] = true
	return genetlink.NewConn(netlink.NewConn(s, s.pid))
}

// forget drops a closed socket.
func (k *Kernel) forget(s *socket) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.sockets, s)
}

// Dial returns the real mptcp client connected to the fake.
func (k *Kernel) Dial() (*mptcp.Client, error) {
	conn := k.Conn()
	c, err := mptcp.NewClient(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// ListenEvents returns the real event listener joined to the fake's
// mptcp_pm_events group.
func (k *Kernel) ListenEvents() (*mptcp.EventListener, error) {
	conn := k.Conn()
	l, err := mptcp.NewEventListener(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return l, nil
}

// Inject delivers events to every listener, as the kernel would send them.
// An event with no attribute marked (Event.Set) is sent with the
// attributes Complete marks; otherwise exactly the marked ones are sent.
// Injected events also update the fake's connections: CREATED registers
// one (handled by the path manager SetPathManager chose), ESTABLISHED
// marks it fully established (needed to create subflows), CLOSED forgets
// it, SUB_ESTABLISHED, SUB_CLOSED and SUB_PRIORITY update its subflows.
func (k *Kernel) Inject(evs ...mptcp.Event) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ev := range evs {
		if !hasAnyAttr(&ev) {
			ev = Complete(ev)
		}
		k.trackEvent(&ev)
		k.emit(ev)
	}
}

// LoseEvents makes every listener's next Receive fail with ENOBUFS (the
// client's ErrEventsLost), as when the kernel drops an event for a full
// socket buffer; events queued before and after are still delivered.
// Listeners also overrun by themselves, as real ones do, when they fall
// more than their receive buffer behind (256 events by default; see
// EventListener.SetReadBuffer).
func (k *Kernel) LoseEvents() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for s := range k.sockets {
		s.loseEvents(groupEvents)
	}
}

// Endpoints returns the endpoint table in the kernel's dump order (by id).
func (k *Kernel) Endpoints() []mptcp.Endpoint {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []mptcp.Endpoint
	for _, e := range k.sortedEntries() {
		out = append(out, e.endpoint())
	}
	return out
}

// Limits returns the limits, both fields set.
func (k *Kernel) Limits() mptcp.Limits {
	k.mu.Lock()
	defer k.mu.Unlock()
	sub, rcv := k.subflowsMax, k.addAddrAcceptMax
	return mptcp.Limits{Subflows: &sub, AddAddrAccepted: &rcv}
}

// AddImplicitEndpoint adds the endpoint the kernel creates by itself when
// a connection uses a local address that has none (flag implicit, no
// port): it returns the existing endpoint's id when the address has one,
// and fails with ERANGE when the table is full.
func (k *Kernel) AddImplicitEndpoint(addr netip.Addr) (mptcp.ID, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id, errno := k.appendEntry(&entry{addr: addr, flags: mptcp.FlagImplicit}, true, false)
	if errno != 0 {
		return 0, fmt.Errorf("mptcptest: implicit endpoint %v: %w", addr, errno)
	}
	return id, nil
}

// SetLocalAddrs declares the addresses configured in the namespace. A
// signal endpoint with a port binds a listening socket, and a userspace-PM
// subflow binds its local address: both fail with EADDRNOTAVAIL for an
// address not in the list, as in a namespace whose loopback is up. Until
// SetLocalAddrs is called every address counts as local; calling it with
// no address makes none local. The unspecified addresses are always local.
func (k *Kernel) SetLocalAddrs(addrs ...netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.localAddrs = make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		k.localAddrs[a.Unmap()] = true
	}
}

// SetPathManager sets the path manager for connections registered from
// now on by injected events, as the net.mptcp.path_manager sysctl does:
// "kernel" (the default) or "userspace".
func (k *Kernel) SetPathManager(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch name {
	case "kernel":
		k.userspacePM = false
	case "userspace":
		k.userspacePM = true
	default:
		return fmt.Errorf("mptcptest: unknown path manager %q (want kernel or userspace)", name)
	}
	return nil
}

// AddConnection registers a fully established connection with its
// initial subflow, silently (Inject CREATED and ESTABLISHED events to
// announce one to listeners). An existing connection with the token is
// replaced.
func (k *Kernel) AddConnection(c Connection) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.conns[c.Token] = newConnection(c, true)
}

// Subflows returns the subflows of connection token, the initial one
// first; nil for an unknown token.
func (k *Kernel) Subflows(token mptcp.Token) []Subflow {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c := k.conns[token]; c != nil {
		return slices.Clone(c.subflows)
	}
	return nil
}

// ConnectionEndpoints returns the local addresses the userspace PM
// announced or used on connection token, in the kernel's order.
func (k *Kernel) ConnectionEndpoints(token mptcp.Token) []mptcp.Endpoint {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := k.conns[token]
	if c == nil {
		return nil
	}
	var out []mptcp.Endpoint
	for _, e := range c.dumpEntries() {
		out = append(out, e.endpoint())
	}
	return out
}

// HideFamily makes the fake behave like a kernel without MPTCP: the
// mptcp_pm family is unknown (ENOENT), so clients fail with
// mptcp.ErrNotSupported.
func (k *Kernel) HideFamily() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hidden = true
}

// FailNext makes the next request with command cmd (MPTCP_PM_CMD_*) fail
// with errno and change nothing. Calls queue up: two calls fail the next
// two requests.
func (k *Kernel) FailNext(cmd uint8, errno syscall.Errno) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failNext[cmd] = append(k.failNext[cmd], errno)
}

// SetFailure makes every request with command cmd fail with errno (after
// those queued by FailNext) until SetFailure(cmd, 0).
func (k *Kernel) SetFailure(cmd uint8, errno syscall.Errno) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if errno == 0 {
		delete(k.failAlways, cmd)
		return
	}
	k.failAlways[cmd] = errno
}

// Op is one mutating request the fake received (every command but
// GET_ADDR and GET_LIMITS), successful or not, as far as it decodes.
type Op struct {
	Cmd      uint8          // MPTCP_PM_CMD_*
	Endpoint mptcp.Endpoint // the ADDR nest: id, address, port, flags, ifindex
	Remote   netip.AddrPort // the ADDR_REMOTE nest
	Token    mptcp.Token
	LocalID  mptcp.ID     // REMOVE's LOC_ID
	Limits   mptcp.Limits // SET_LIMITS: the attributes sent
	Errno    syscall.Errno
}

// String formats the op for test failure messages, e.g.
// "ADD_ADDR 10.0.0.1 id 0 subflow: ok" or "DEL_ADDR id 3: EINVAL".
func (o Op) String() string {
	c, ok := commands[o.Cmd]
	name := c.name
	if !ok {
		name = fmt.Sprintf("CMD(%d)", o.Cmd)
	}
	parts := []string{name}
	if o.Token != 0 {
		parts = append(parts, "token "+o.Token.String())
	}
	e := o.Endpoint
	if e.Addr.IsValid() {
		parts = append(parts, e.Addr.String())
	}
	if e.Port != 0 {
		parts = append(parts, fmt.Sprintf("port %d", e.Port))
	}
	if e != (mptcp.Endpoint{}) {
		parts = append(parts, fmt.Sprintf("id %d", e.ID))
	}
	if e.Flags != 0 {
		parts = append(parts, e.Flags.String())
	}
	if e.IfIndex != 0 {
		parts = append(parts, fmt.Sprintf("ifindex %d", e.IfIndex))
	}
	if o.Remote.IsValid() {
		parts = append(parts, "remote "+o.Remote.String())
	}
	if o.Cmd == mptcp.MPTCP_PM_CMD_REMOVE {
		parts = append(parts, fmt.Sprintf("id %d", o.LocalID))
	}
	if o.Limits.Subflows != nil {
		parts = append(parts, fmt.Sprintf("subflows %d", *o.Limits.Subflows))
	}
	if o.Limits.AddAddrAccepted != nil {
		parts = append(parts, fmt.Sprintf("add_addr_accepted %d", *o.Limits.AddAddrAccepted))
	}
	result := "ok"
	if o.Errno != 0 {
		result = errnoName(o.Errno)
	}
	return strings.Join(parts, " ") + ": " + result
}

// Ops returns the mutating requests received since the start or the last
// ResetOps, oldest first. A reconciler test asserts "no churn" with it.
func (k *Kernel) Ops() []Op {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.ops)
}

// ResetOps forgets the recorded requests, typically after a test's setup.
func (k *Kernel) ResetOps() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ops = nil
}
