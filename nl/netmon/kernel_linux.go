package netmon

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernel is what the monitor needs from rtnetlink. rtnl is the real one;
// tests inject failures (ENOBUFS, closed channels, failing subscriptions)
// through fakes.
//
// The subscribe methods behave like vishvananda's: updates go to ch until
// done is closed; a fatal error is passed to onErr, after which ch is
// closed; ch is also closed some time after done. A subscription that
// returned an error never writes to or closes ch.
type kernel interface {
	subscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error
	subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error
	subscribeRoutes(ch chan<- netlink.RouteUpdate, done <-chan struct{}, onErr func(error)) error
	// The dumps may return results together with
	// netlink.ErrDumpInterrupted.
	links() ([]netlink.Link, error)
	addrs() ([]netlink.Addr, error)
	routes() ([]netlink.Route, error)
	close()
}

// rtnl is the kernel through vishvananda/netlink, in one namespace. Every
// socket is created inside that namespace by the library (setns on a
// locked thread that it moves back), never by switching this process.
type rtnl struct {
	ns     netns.NsHandle // our own descriptor, closed by close
	h      *netlink.Handle
	rcvbuf int
	force  bool // SO_RCVBUFFORCE is allowed
}

var _ kernel = (*rtnl)(nil)

func newRTNL(cfg Config) (*rtnl, error) {
	if cfg.ReceiveBufferSize < 0 {
		return nil, fmt.Errorf("netmon: negative ReceiveBufferSize %d", cfg.ReceiveBufferSize)
	}
	var (
		ns  netns.NsHandle
		err error
	)
	if cfg.NetNS == 0 {
		// Pin "our own namespace" now, so later re-subscriptions from any
		// thread land in the same one.
		ns, err = netns.Get()
	} else {
		var fd int
		fd, err = unix.FcntlInt(uintptr(cfg.NetNS), unix.F_DUPFD_CLOEXEC, 0)
		ns = netns.NsHandle(fd)
	}
	if err != nil {
		return nil, fmt.Errorf("netmon: network namespace fd %d: %w", cfg.NetNS, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netmon: opening rtnetlink in network namespace fd %d: %w", cfg.NetNS, err)
	}
	return &rtnl{ns: ns, h: h, rcvbuf: cfg.receiveBufferSize(), force: canForceRcvbuf()}, nil
}

// canForceRcvbuf probes SO_RCVBUFFORCE (CAP_NET_ADMIN) on a scratch
// socket: vishvananda gives up on the subscription if it fails, so the
// monitor must know beforehand whether to ask for it.
func canForceRcvbuf() bool {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4096) == nil
}

func (k *rtnl) subscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		Namespace: &k.ns, ErrorCallback: onErr,
		ReceiveBufferSize: k.rcvbuf, ReceiveBufferForceSize: k.force,
	})
}

func (k *rtnl) subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
		Namespace: &k.ns, ErrorCallback: onErr,
		ReceiveBufferSize: k.rcvbuf, ReceiveBufferForceSize: k.force,
	})
}

func (k *rtnl) subscribeRoutes(ch chan<- netlink.RouteUpdate, done <-chan struct{}, onErr func(error)) error {
	return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
		Namespace: &k.ns, ErrorCallback: onErr,
		ReceiveBufferSize: k.rcvbuf, ReceiveBufferForceSize: k.force,
	})
}

func (k *rtnl) links() ([]netlink.Link, error) { return k.h.LinkList() }

func (k *rtnl) addrs() ([]netlink.Addr, error) { return k.h.AddrList(nil, netlink.FAMILY_ALL) }

func (k *rtnl) routes() ([]netlink.Route, error) {
	var routes []netlink.Route
	// RouteList keeps only the main table; RT_FILTER_TABLE with
	// RT_TABLE_UNSPEC keeps them all. The iterator (unlike
	// RouteListFiltered) returns what it got along with ErrDumpInterrupted.
	err := k.h.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE,
		func(r netlink.Route) bool {
			routes = append(routes, r)
			return true
		})
	return routes, err
}

// setTimeout bounds each dump request.
func (k *rtnl) setTimeout(d time.Duration) error { return k.h.SetSocketTimeout(d) }

func (k *rtnl) close() {
	k.h.Close()
	k.ns.Close()
}

// maxDumpAttempts bounds retries of a dump the kernel flagged as
// interrupted (NLM_F_DUMP_INTR: the table changed while it was read).
const maxDumpAttempts = 5

// dumpState reads links, addresses and routes into a new State, retrying
// interrupted dumps.
func dumpState(k kernel) (*State, error) {
	return retryInterrupted(func() (*State, error) { return dumpOnce(k) })
}

// retryInterrupted calls dump again while it fails with
// netlink.ErrDumpInterrupted, at most maxDumpAttempts times in all.
func retryInterrupted[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range maxDumpAttempts {
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("%w (%d attempts)", err, maxDumpAttempts)
}

func dumpOnce(k kernel) (*State, error) {
	s := NewState()
	links, err := k.links()
	if err != nil {
		return nil, fmt.Errorf("dumping links: %w", err)
	}
	for _, l := range links {
		s.Apply(LinkEvent{Op: OpNew, Link: linkFromNetlink(l)})
	}
	addrs, err := k.addrs()
	if err != nil {
		return nil, fmt.Errorf("dumping addresses: %w", err)
	}
	for _, na := range addrs {
		a, err := addrFromNetlink(na)
		if err != nil {
			return nil, fmt.Errorf("dumping addresses: %w", err)
		}
		s.Apply(AddrEvent{Op: OpNew, Addr: a})
	}
	routes, err := dumpRoutes(k)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		s.Apply(RouteEvent{Op: OpNew, Route: r})
	}
	return s, nil
}

func dumpRoutes(k kernel) ([]Route, error) {
	nrs, err := k.routes()
	if err != nil {
		return nil, fmt.Errorf("dumping routes: %w", err)
	}
	var routes []Route
	for _, nr := range nrs {
		rs, err := routesFromNetlink(nr)
		if err != nil {
			return nil, fmt.Errorf("dumping routes: %w", err)
		}
		routes = append(routes, rs...)
	}
	return routes, nil
}
