package ctl

import (
	"context"
	"errors"
	"net/netip"

	vnl "github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// PathManager is the part of *mptcp.Client that mptcpctl uses; tests
// substitute a fake.
type PathManager interface {
	Endpoints() ([]mptcp.Endpoint, error)
	Endpoint(id mptcp.ID) (mptcp.Endpoint, error)
	AddEndpoint(e mptcp.Endpoint) error
	DeleteEndpoint(id mptcp.ID, addr netip.Addr) error
	FlushEndpoints() error
	SetEndpointFlags(e mptcp.Endpoint) error
	Limits() (mptcp.Limits, error)
	SetLimits(l mptcp.Limits) error

	// The userspace path manager's commands on one connection.
	Announce(token mptcp.Token, e mptcp.Endpoint) error
	Remove(token mptcp.Token, id mptcp.ID) error
	CreateSubflow(token mptcp.Token, local mptcp.Endpoint, remote netip.AddrPort) error
	DestroySubflow(token mptcp.Token, local, remote netip.AddrPort) error
	SetSubflowBackup(token mptcp.Token, local, remote netip.AddrPort, backup bool) error
	ConnectionEndpoints(token mptcp.Token) ([]mptcp.Endpoint, error)

	Close() error
}

// EventSource is the part of *mptcp.EventListener that monitor uses.
type EventSource interface {
	Receive() ([]mptcp.Event, error)
	Close() error
}

var (
	_ PathManager = (*mptcp.Client)(nil)
	_ EventSource = (*mptcp.EventListener)(nil)
)

// Backend is everything mptcpctl needs from one network namespace.
type Backend interface {
	LinkIndexer
	LinkNamer
	OutputLinker
	// PathManager opens the mptcp_pm client.
	PathManager() (PathManager, error)
	// ListenEvents subscribes to the mptcp_pm events.
	ListenEvents() (EventSource, error)
	// NetworkState reads the links, addresses and routes once (policy
	// explain); ctx bounds the netlink requests.
	NetworkState(ctx context.Context) (*netmon.State, error)
	// Connections dumps the MPTCP connections and their subflows.
	Connections() ([]mptcpdiag.Connection, error)
	Close() error
}

// OpenBackend opens the real backend for the namespace named netnsName
// ("" for mptcpctl's own), as `ip -n NAME` does.
func OpenBackend(netnsName string) (Backend, error) {
	h, err := netns.Open(netnsName)
	if err != nil {
		return nil, err
	}
	return &kernelBackend{ns: h, names: map[int]string{}}, nil
}

// kernelBackend talks to the kernel in one namespace. Link names are
// resolved with rtnetlink inside that namespace (net.InterfaceByIndex would
// look in mptcpctl's own) and cached, as ip's ll_map does.
type kernelBackend struct {
	ns    *netns.Handle
	link  *vnl.Handle // opened on first use
	names map[int]string
}

func (b *kernelBackend) cfg() *mptcp.Config { return &mptcp.Config{NetNS: b.ns.FD()} }

func (b *kernelBackend) PathManager() (PathManager, error) {
	c, err := mptcp.Dial(b.cfg())
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (b *kernelBackend) ListenEvents() (EventSource, error) {
	l, err := mptcp.ListenEvents(b.cfg())
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (b *kernelBackend) Connections() ([]mptcpdiag.Connection, error) {
	c, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: b.ns.FD()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Connections()
}

func (b *kernelBackend) NetworkState(ctx context.Context) (*netmon.State, error) {
	return netmon.Snapshot(ctx, netmon.Config{NetNS: b.ns.FD()})
}

// linkHandle opens the rtnetlink handle in the namespace. A failure leaves
// names unresolved, which ip also tolerates (it prints "if%u").
func (b *kernelBackend) linkHandle() *vnl.Handle {
	if b.link != nil {
		return b.link
	}
	var (
		h   *vnl.Handle
		err error
	)
	// Only rtnetlink: by default a handle opens a socket per netlink
	// protocol, which costs each mptcpctl call ~0.7 ms.
	if fd := b.ns.FD(); fd != 0 {
		h, err = vnl.NewHandleAt(vnetns.NsHandle(fd), unix.NETLINK_ROUTE)
	} else {
		h, err = vnl.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil
	}
	b.link = h
	return h
}

func (b *kernelBackend) LinkIndex(name string) int {
	h := b.linkHandle()
	if h == nil {
		return 0
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return 0
	}
	idx := l.Attrs().Index
	b.names[idx] = l.Attrs().Name
	return idx
}

func (b *kernelBackend) LinkName(index int) (string, bool) {
	if name, ok := b.names[index]; ok {
		return name, name != ""
	}
	h := b.linkHandle()
	if h == nil {
		return "", false
	}
	l, err := h.LinkByIndex(index)
	if err != nil {
		var nf vnl.LinkNotFoundError
		if errors.As(err, &nf) {
			b.names[index] = "" // remember the miss
		}
		return "", false
	}
	b.names[index] = l.Attrs().Name
	return l.Attrs().Name, true
}

func (b *kernelBackend) OutputLink(src, dst netip.Addr) int {
	h := b.linkHandle()
	if h == nil {
		return 0
	}
	routes, err := h.RouteGetWithOptions(dst.AsSlice(), &vnl.RouteGetOptions{SrcAddr: src.AsSlice()})
	if err != nil || len(routes) == 0 {
		return 0
	}
	return routes[0].LinkIndex
}

// LinkNames lists the namespace's links, for shell completion.
func (b *kernelBackend) LinkNames() []string {
	h := b.linkHandle()
	if h == nil {
		return nil
	}
	links, err := h.LinkList()
	if err != nil && len(links) == 0 {
		return nil
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

func (b *kernelBackend) Close() error {
	if b.link != nil {
		b.link.Close()
	}
	return b.ns.Close()
}
