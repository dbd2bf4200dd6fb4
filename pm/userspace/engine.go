package userspace

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Client is the userspace path manager's command set as the engine uses
// it; *mptcp.Client satisfies it.
type Client interface {
	Announce(tok mptcp.Token, e mptcp.Endpoint) error
	Remove(tok mptcp.Token, id mptcp.ID) error
	CreateSubflow(tok mptcp.Token, local mptcp.Endpoint, remote netip.AddrPort) error
	DestroySubflow(tok mptcp.Token, local, remote netip.AddrPort) error
	SetSubflowBackup(tok mptcp.Token, local, remote netip.AddrPort, backup bool) error
}

// Events is the mptcp_pm event stream; *mptcp.EventListener satisfies it.
type Events interface {
	Receive() ([]mptcp.Event, error)
	Close() error
}

// Lister lists the kernel's MPTCP connections; *mptcpdiag.Client
// satisfies it.
type Lister interface {
	Connections() ([]mptcpdiag.Connection, error)
}

var (
	_ Client = (*mptcp.Client)(nil)
	_ Events = (*mptcp.EventListener)(nil)
	_ Lister = (*mptcpdiag.Client)(nil)
)

// Config is what an engine needs.
type Config struct {
	Client Client
	Events Events
	// Lister rebuilds the table when events were lost, and fills it when
	// Run starts. Without one, lost events leave the table stale until
	// the connections it holds close.
	Lister Lister
	Plugin string         // the name of a registered plugin
	Policy *policy.Policy // until the first SetNetwork
	Log    *slog.Logger   // nil: discard
}

// Engine runs one plugin over the userspace path manager of one network
// namespace. Its methods are safe for concurrent use; the plugin's
// callbacks run one at a time.
type Engine struct {
	client Client
	events Events
	lister Lister
	log    *slog.Logger
	plugin pm.Plugin
	name   string

	mu     sync.Mutex // guards everything below and serializes callbacks
	table  table
	ids    *ids
	policy *policy.Policy
	links  []pm.Link
	addrs  []pm.LocalAddr     // usable, with ids
	ifidx  map[netip.Addr]int // every address of the network: its link
	stale  bool               // events were lost: the table needs a resync
	stats  Stats
}

// Stats are the engine's counters.
type Stats struct {
	Connections   int    // in the table now
	Events        uint64 // events handled
	Resyncs       uint64 // table rebuilds from the kernel's list
	EventsLost    uint64 // times the kernel reported lost events
	CommandErrors uint64 // commands the kernel refused
}

// New makes an engine and its plugin.
func New(cfg Config) (*Engine, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("userspace: Config.Client is nil")
	case cfg.Events == nil:
		return nil, errors.New("userspace: Config.Events is nil")
	case cfg.Policy == nil:
		return nil, errors.New("userspace: Config.Policy is nil")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		client: cfg.Client,
		events: cfg.Events,
		lister: cfg.Lister,
		log:    log,
		name:   cfg.Plugin,
		table:  newTable(),
		ids:    newIDs(),
		policy: cfg.Policy,
		ifidx:  make(map[netip.Addr]int),
	}
	p, err := pm.NewPlugin(cfg.Plugin, pm.Env{Log: log, Commands: commands{e}, State: state{e}})
	if err != nil {
		return nil, fmt.Errorf("userspace: %w", err)
	}
	e.plugin = p
	return e, nil
}

// Plugin returns the name of the engine's plugin.
func (e *Engine) Plugin() string { return e.name }

// Run handles events until ctx is done, then closes the event source and
// returns nil. With a Lister it first takes in the connections already
// open, so call SetNetwork before Run for the plugin to see the usable
// addresses then. Lost events make it log, then rebuild the table from
// the Lister. An error that ends the event stream is returned.
func (e *Engine) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = e.events.Close() })
	defer stop()
	if e.lister != nil {
		e.mu.Lock()
		e.stale = true // a failed listing is retried with the first events
		e.resyncLocked()
		e.mu.Unlock()
	}
	for {
		evs, err := e.events.Receive()
		if ctx.Err() != nil {
			return nil
		}
		lost := errors.Is(err, mptcp.ErrEventsLost) || errors.Is(err, mptcp.ErrMalformedEvent)
		if err != nil && !lost {
			return fmt.Errorf("userspace: receive events: %w", err)
		}
		e.mu.Lock()
		for i := range evs {
			e.handle(&evs[i])
		}
		if lost {
			e.stats.EventsLost++
			e.log.Warn("mptcp events lost, rebuilding the connection table", "err", err)
			e.stale = true
			e.mu.Unlock()
			if err := e.drain(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("userspace: receive events: %w", err)
			}
			e.mu.Lock()
		}
		if e.stale {
			e.resyncLocked()
		}
		e.mu.Unlock()
	}
}

// Draining after lost events: the kernel drops every event for a socket
// that overran until its queue is empty, and says so only once
// (netlink_overrun, netlink_rcv_wake). A listing taken before the queue
// is empty would miss connections whose CREATED is dropped after it, so
// the queue is read empty first: until no event came for drainQuiet, or
// for drainMax at most under a steady stream.
const (
	drainQuiet = time.Millisecond
	drainMax   = 100 * time.Millisecond
)

// deadliner is an event source whose Receive can give up;
// *mptcp.EventListener is one.
type deadliner interface {
	SetReadDeadline(time.Time) error
}

// drain reads and handles the queued events until the socket is empty.
// A source without deadlines is not drained.
func (e *Engine) drain() error {
	d, ok := e.events.(deadliner)
	if !ok {
		return nil
	}
	defer d.SetReadDeadline(time.Time{})
	for start := time.Now(); time.Since(start) < drainMax; {
		if err := d.SetReadDeadline(time.Now().Add(drainQuiet)); err != nil {
			return nil // the source cannot: go on without draining
		}
		evs, err := e.events.Receive()
		e.mu.Lock()
		for i := range evs {
			e.handle(&evs[i])
		}
		e.mu.Unlock()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		case err != nil && !errors.Is(err, mptcp.ErrEventsLost) && !errors.Is(err, mptcp.ErrMalformedEvent):
			return err
		}
	}
	return nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Connections = len(e.table.m)
	return s
}

// SetNetwork gives the engine the namespace's network and the policy,
// typically after every change netmon reports and every policy reload.
// It works out which local addresses are usable (pm.Desired, so per
// interface rules apply), gives each its id, and tells the plugin what
// changed since the previous call.
func (e *Engine) SetNetwork(n pm.Network, p *policy.Policy) {
	addrs := usableAddrs(n, p)
	ifidx := make(map[netip.Addr]int, len(n.Addrs))
	for _, a := range n.Addrs {
		ifidx[a.Addr()] = a.LinkIndex
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	keep := make(map[netip.Addr]bool, len(addrs))
	for i := range addrs {
		keep[addrs[i].Addr] = true
	}
	for _, a := range e.addrs {
		if !keep[a.Addr] {
			e.ids.release(a.Addr)
		}
	}
	usable := addrs[:0]
	for _, a := range addrs {
		id, ok := e.ids.acquire(a.Addr)
		if !ok {
			e.log.Warn("no local address id left, address not used", "addr", a.Addr, "link", a.Link)
			continue
		}
		a.ID = id
		usable = append(usable, a)
	}

	ch := diffNetwork(e.links, n.Links, e.addrs, usable)
	e.links, e.addrs, e.ifidx, e.policy = slices.Clone(n.Links), usable, ifidx, p
	ch.notify(e.plugin)
}

// ifindexOf returns the link holding local address a, 0 when unknown.
func (e *Engine) ifindexOf(a netip.Addr) int { return e.ifidx[a.Unmap()] }

// handle applies one event to the table and tells the plugin. e.mu is
// held.
func (e *Engine) handle(ev *mptcp.Event) {
	e.stats.Events++
	switch ev.Type {
	case mptcp.EventCreated, mptcp.EventEstablished:
		e.opened(ev)
		return
	case mptcp.EventListenerCreated:
		e.plugin.ListenerCreated(netip.AddrPortFrom(ev.Saddr, ev.Sport))
		return
	case mptcp.EventListenerClosed:
		e.plugin.ListenerClosed(netip.AddrPortFrom(ev.Saddr, ev.Sport))
		return
	}
	c := e.table.get(ev.Token)
	if c == nil {
		e.log.Debug("event for an unknown connection", "event", ev.Type, "token", ev.Token)
		return
	}
	switch ev.Type {
	case mptcp.EventClosed:
		e.plugin.ConnectionClosed(c)
		e.table.remove(c.token)
	case mptcp.EventAnnounced:
		c.announcedByPeer(ev)
	case mptcp.EventRemoved:
		c.removedByPeer(ev.RemoteID)
	case mptcp.EventSubEstablished:
		c.subflowUp(eventSubflow(ev))
	case mptcp.EventSubClosed:
		c.subflowDown(eventSubflow(ev))
	case mptcp.EventSubPriority:
		s := eventSubflow(ev)
		if i := c.findSubflow(s.Local, s.Remote); i >= 0 {
			c.subflows[i].Backup = s.Backup
			e.plugin.SubflowPriority(c, c.view(i))
		}
	default:
		e.log.Debug("event ignored", "event", ev.Type, "token", ev.Token)
	}
}

// opened handles CREATED and ESTABLISHED. Either may come first for a
// connection the engine has not seen, and either may repeat what a
// resync already learnt.
func (e *Engine) opened(ev *mptcp.Event) {
	local, remote := netip.AddrPortFrom(ev.Saddr, ev.Sport), netip.AddrPortFrom(ev.Daddr, ev.Dport)
	c := e.table.get(ev.Token)
	if c != nil && (!sameAddrPort(c.local, local) || !sameAddrPort(c.remote, remote)) {
		// The token is a new connection's: the old one's CLOSED was lost.
		e.plugin.ConnectionClosed(c)
		e.table.remove(c.token)
		c = nil
	}
	if c == nil {
		c = &conn{
			e:          e,
			token:      ev.Token,
			local:      local,
			remote:     remote,
			serverSide: ev.ServerSide || ev.Flags&mptcp.MPTCP_PM_EV_FLAG_SERVER_SIDE != 0,
			subflows: []pm.Subflow{{
				Local: local, Remote: remote, LocalID: ev.LocalID, RemoteID: ev.RemoteID, IfIndex: ev.IfIndex,
			}},
		}
		e.table.put(c)
		e.plugin.NewConnection(c)
	}
	if ev.Type == mptcp.EventEstablished && (!c.established || c.guessed) {
		c.established, c.guessed = true, false
		e.plugin.ConnectionEstablished(c)
	}
}

// eventSubflow is the subflow a SUB_* event describes.
func eventSubflow(ev *mptcp.Event) pm.Subflow {
	return pm.Subflow{
		Local:    netip.AddrPortFrom(ev.Saddr, ev.Sport),
		Remote:   netip.AddrPortFrom(ev.Daddr, ev.Dport),
		LocalID:  ev.LocalID,
		RemoteID: ev.RemoteID,
		IfIndex:  ev.IfIndex,
		Backup:   ev.Backup,
	}
}

// view is subflow i as plugins see it.
func (c *conn) view(i int) pm.Subflow {
	s := c.subflows[i]
	if s.IfIndex == 0 {
		s.IfIndex = c.e.ifindexOf(s.Local.Addr())
	}
	return s
}

func (c *conn) announcedByPeer(ev *mptcp.Event) {
	port := ev.Dport
	if port == 0 {
		port = c.remote.Port()
	}
	a := pm.PeerAddr{ID: ev.RemoteID, Addr: netip.AddrPortFrom(ev.Daddr, port)}
	i := slices.IndexFunc(c.peers, func(p pm.PeerAddr) bool { return p.ID == a.ID })
	switch {
	case i < 0:
		c.peers = append(c.peers, a)
	case c.peers[i] == a:
		return // already known (a resync raced the event)
	default:
		c.peers[i] = a
	}
	c.e.plugin.AddressAnnounced(c, a)
}

func (c *conn) removedByPeer(id mptcp.ID) {
	a := pm.PeerAddr{ID: id}
	if i := slices.IndexFunc(c.peers, func(p pm.PeerAddr) bool { return p.ID == id }); i >= 0 {
		a = c.peers[i]
		c.peers = slices.Delete(c.peers, i, i+1)
	}
	c.e.plugin.AddressRemoved(c, a)
}

// subflowUp records an established subflow: a new one, or one that
// CreateSubflow asked for. A subflow already known (a resync raced the
// event) is not reported twice.
func (c *conn) subflowUp(s pm.Subflow) {
	if i := c.findSubflow(s.Local, s.Remote); i >= 0 {
		c.subflows[i] = s
		return
	}
	i := c.findPending(s.Local, s.Remote)
	if i >= 0 {
		c.subflows[i] = s
	} else {
		i = len(c.subflows)
		c.subflows = append(c.subflows, s)
	}
	c.e.plugin.SubflowEstablished(c, c.view(i))
}

// subflowDown forgets a subflow that closed, or a pending one whose join
// failed.
func (c *conn) subflowDown(s pm.Subflow) {
	i := c.findSubflow(s.Local, s.Remote)
	if i < 0 {
		i = c.findPending(s.Local, s.Remote)
	}
	if i < 0 {
		return
	}
	v := c.view(i)
	v.Local, v.Pending = s.Local, false
	c.subflows = slices.Delete(c.subflows, i, i+1)
	c.e.plugin.SubflowClosed(c, v)
}

// state is the pm.State plugins read.
type state struct{ e *Engine }

var _ pm.State = state{}

func (s state) Connections() iter.Seq[pm.Connection] {
	return func(yield func(pm.Connection) bool) {
		for _, c := range s.e.table.m {
			if !yield(c) {
				return
			}
		}
	}
}

func (s state) Connection(tok mptcp.Token) (pm.Connection, bool) {
	c := s.e.table.get(tok)
	if c == nil {
		return nil, false
	}
	return c, true
}

func (s state) LocalAddrs() iter.Seq[pm.LocalAddr] { return slices.Values(s.e.addrs) }
func (s state) Policy() *policy.Policy             { return s.e.policy }
