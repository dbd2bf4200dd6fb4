package netmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// eventBuffer is the capacity of Events. A consumer that falls
	// further behind stalls the monitor; the kernel then drops
	// notifications and the monitor resynchronizes.
	eventBuffer = 256
	// updateBuffer is the capacity of each vishvananda channel.
	updateBuffer = 128

	minBackoff = 10 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Monitor watches the links, addresses and routes of one network
// namespace. See the package documentation for the event stream.
type Monitor struct {
	k       kernel
	log     *slog.Logger
	events  chan Event
	cancel  context.CancelFunc
	stopped chan struct{}

	// Only the run goroutine touches these after Start.
	state    *State // what the consumer has been told
	sweepDue bool   // routes may have vanished silently: re-read them when idle
}

// Start subscribes to the namespace's notifications, dumps its current
// state and returns; the dump and everything after arrive on Events. It
// fails if the namespace cannot be watched at all; later failures lead to
// ResyncNeeded and retries, not to a stop. The monitor runs until Close or
// until ctx ends.
func Start(ctx context.Context, cfg Config) (*Monitor, error) {
	k, err := newRTNL(cfg)
	if err != nil {
		return nil, err
	}
	return start(ctx, cfg, k)
}

// start runs a monitor over k, which it owns from here on, failed or not.
func start(ctx context.Context, cfg Config, k kernel) (*Monitor, error) {
	m := &Monitor{
		k:       k,
		log:     cfg.logger(),
		events:  make(chan Event, eventBuffer),
		stopped: make(chan struct{}),
		state:   NewState(),
	}
	sess, fresh, err := m.open()
	if err != nil {
		k.close()
		return nil, fmt.Errorf("netmon: %w", err)
	}
	ctx, m.cancel = context.WithCancel(ctx)
	go m.run(ctx, sess, fresh)
	return m, nil
}

// Events delivers the event stream. It is closed after the monitor stops
// (Close, or the context of Start ended). Read it promptly: a monitor
// blocked on it lets the kernel drop notifications, which costs a resync.
func (m *Monitor) Events() <-chan Event { return m.events }

// Close stops the monitor and waits until its goroutines and sockets are
// gone. It may be called more than once and does not need Events to be
// drained.
func (m *Monitor) Close() error {
	m.cancel()
	<-m.stopped
	return nil
}

// Snapshot dumps the namespace's links, addresses and routes once, with
// the same conversions and filters as the monitor. A deadline of ctx
// bounds each netlink request.
func Snapshot(ctx context.Context, cfg Config) (*State, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k, err := newRTNL(cfg)
	if err != nil {
		return nil, err
	}
	defer k.close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := k.setTimeout(time.Until(deadline)); err != nil {
			return nil, fmt.Errorf("netmon: setting netlink timeout: %w", err)
		}
	}
	s, err := dumpState(k)
	if err != nil {
		return nil, fmt.Errorf("netmon: %w", err)
	}
	s.Apply(Synced{})
	return s, nil
}

func (m *Monitor) run(ctx context.Context, sess *session, fresh *State) {
	defer close(m.stopped)
	defer close(m.events)
	defer m.k.close()
	for {
		lost := m.serve(ctx, sess, fresh)
		sess.stop()
		if lost == nil {
			return
		}
		m.log.Warn("netmon: notifications lost, resynchronizing", "reason", lost)
		ev := ResyncNeeded{Reason: lost}
		m.state.Apply(ev)
		if m.emit(ctx, ev) != nil {
			return
		}
		if sess, fresh = m.reopen(ctx); sess == nil {
			return
		}
	}
}

// serve sends what brings the consumer from m.state to fresh, then
// follows the notifications of sess. It returns why notifications were
// lost, or nil when ctx ended.
func (m *Monitor) serve(ctx context.Context, sess *session, fresh *State) error {
	for _, ev := range resyncEvents(m.state, fresh) {
		m.state.Apply(ev)
		if m.emit(ctx, ev) != nil {
			return nil
		}
	}
	m.sweepDue = false
	err := m.pump(ctx, sess)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (m *Monitor) pump(ctx context.Context, s *session) error {
	for {
		if m.sweepDue && len(s.links)+len(s.addrs)+len(s.routes) == 0 {
			if err := m.sweep(ctx); err != nil {
				return err
			}
			continue
		}
		var err error
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-s.links:
			if !ok {
				return s.lost("link")
			}
			err = m.handleLink(ctx, u)
		case u, ok := <-s.addrs:
			if !ok {
				return s.lost("address")
			}
			err = m.handleAddr(ctx, u)
		case u, ok := <-s.routes:
			if !ok {
				return s.lost("route")
			}
			err = m.handleRoute(ctx, u)
		}
		if err != nil {
			return err
		}
	}
}

func (m *Monitor) handleLink(ctx context.Context, u netlink.LinkUpdate) error {
	ev, ok := linkEventFromUpdate(u)
	if !ok {
		return nil
	}
	index := ev.Link.Index
	old, known := m.state.Link(index)
	switch {
	case ev.Op == OpDel && known:
		// The kernel drops these with the link (IPv4 routes without a
		// notification); say so before the link goes. Routes elsewhere
		// may have used its IPv4 addresses as source: sweep.
		for _, r := range m.state.LinkRoutes(index) {
			if _, err := m.emitChange(ctx, RouteEvent{Op: OpDel, Route: r}); err != nil {
				return err
			}
		}
		for _, a := range m.state.LinkAddrs(index) {
			if _, err := m.emitChange(ctx, AddrEvent{Op: OpDel, Addr: a}); err != nil {
				return err
			}
		}
		m.sweepDue = true
	case ev.Op == OpNew && known && old.Up && !ev.Link.Up:
		// IPv4 routes through a link that goes down vanish silently.
		m.sweepDue = true
	}
	_, err := m.emitChange(ctx, ev)
	return err
}

func (m *Monitor) handleAddr(ctx context.Context, u netlink.AddrUpdate) error {
	ev, err := addrEventFromUpdate(u)
	if err != nil {
		m.log.Warn("netmon: ignoring address notification", "err", err)
		return nil
	}
	changed, err := m.emitChange(ctx, ev)
	if changed && ev.Op == OpDel && ev.Addr.Prefix.Addr().Is4() {
		// Routes with this source, or all IPv4 routes of the link when it
		// was its last address, vanish silently.
		m.sweepDue = true
	}
	return err
}

func (m *Monitor) handleRoute(ctx context.Context, u netlink.RouteUpdate) error {
	evs, replace, err := routeEventsFromUpdate(u)
	if err != nil {
		m.log.Warn("netmon: ignoring route notification", "err", err)
		return nil
	}
	for _, ev := range evs {
		if _, err := m.emitChange(ctx, ev); err != nil {
			return err
		}
	}
	if replace {
		// The notification does not say which route was replaced.
		m.sweepDue = true
	}
	return nil
}

// sweep re-reads the routes and reports the difference. A failed dump is
// treated like lost notifications.
func (m *Monitor) sweep(ctx context.Context) error {
	m.sweepDue = false
	routes, err := retryInterrupted(func() ([]Route, error) { return dumpRoutes(m.k) })
	if err != nil {
		return fmt.Errorf("re-reading routes: %w", err)
	}
	for _, ev := range routeSweepEvents(m.state, routes) {
		if _, err := m.emitChange(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// emitChange applies ev to the consumer's view and sends it if it changed
// anything: this drops duplicates and deletions of unknown objects.
func (m *Monitor) emitChange(ctx context.Context, ev Event) (changed bool, err error) {
	if !m.state.Apply(ev) {
		return false, nil
	}
	return true, m.emit(ctx, ev)
}

func (m *Monitor) emit(ctx context.Context, ev Event) error {
	select {
	case m.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reopen subscribes and dumps again, with backoff, until it works or ctx
// ends (nil session).
func (m *Monitor) reopen(ctx context.Context) (*session, *State) {
	backoff := minBackoff
	for ctx.Err() == nil {
		sess, fresh, err := m.open()
		if err == nil {
			return sess, fresh
		}
		m.log.Error("netmon: re-subscribing failed, will retry", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil, nil
}

// open subscribes first and dumps second, so that nothing that happens in
// between is missed: notifications queued during the dump are applied
// after it, which converges since each carries the object's full state.
// (vishvananda's ListExisting would put the dump on the subscription
// socket, but its reader discards NLMSG_DONE, so the end of the dump, our
// Synced, could not be told; a netlink.Handle dump ends clearly and
// reports NLM_F_DUMP_INTR.)
func (m *Monitor) open() (*session, *State, error) {
	s := &session{log: m.log, done: make(chan struct{}), errs: make(map[string]error)}
	if err := s.subscribe(m.k); err != nil {
		s.stop()
		return nil, nil, err
	}
	fresh, err := dumpState(m.k)
	if err != nil {
		s.stop()
		return nil, nil, err
	}
	return s, fresh, nil
}

// session is one set of link, address and route subscriptions.
type session struct {
	log  *slog.Logger
	done chan struct{}
	// nil until subscribed; closed by the subscription's reader.
	links  chan netlink.LinkUpdate
	addrs  chan netlink.AddrUpdate
	routes chan netlink.RouteUpdate

	stopping atomic.Bool
	mu       sync.Mutex
	errs     map[string]error // last asynchronous error per kind
}

func (s *session) subscribe(k kernel) error {
	links := make(chan netlink.LinkUpdate, updateBuffer)
	if err := k.subscribeLinks(links, s.done, s.onError("link")); err != nil {
		return fmt.Errorf("subscribing to link notifications: %w", err)
	}
	s.links = links
	addrs := make(chan netlink.AddrUpdate, updateBuffer)
	if err := k.subscribeAddrs(addrs, s.done, s.onError("address")); err != nil {
		return fmt.Errorf("subscribing to address notifications: %w", err)
	}
	s.addrs = addrs
	routes := make(chan netlink.RouteUpdate, updateBuffer)
	if err := k.subscribeRoutes(routes, s.done, s.onError("route")); err != nil {
		return fmt.Errorf("subscribing to route notifications: %w", err)
	}
	s.routes = routes
	return nil
}

// onError records the errors vishvananda reports from its reader; the
// fatal one (a failed receive) is followed by the channel closing, and
// becomes the ResyncNeeded reason.
func (s *session) onError(kind string) func(error) {
	return func(err error) {
		if s.stopping.Load() {
			return // the socket was closed on purpose
		}
		s.mu.Lock()
		s.errs[kind] = err
		s.mu.Unlock()
		s.log.Debug("netmon: subscription error", "kind", kind, "err", err)
	}
}

// lost explains why the kind's channel closed.
func (s *session) lost(kind string) error {
	s.mu.Lock()
	err := s.errs[kind]
	s.mu.Unlock()
	switch {
	case err == nil:
		return fmt.Errorf("%s notifications: channel closed unexpectedly", kind)
	// vishvananda flattens the errno into text ("Receive failed: %v").
	case errors.Is(err, unix.ENOBUFS) || strings.Contains(err.Error(), unix.ENOBUFS.Error()):
		return fmt.Errorf("%s notifications overran the socket receive buffer: %w", kind, unix.ENOBUFS)
	default:
		return fmt.Errorf("%s notifications: %w", kind, err)
	}
}

// stop ends the subscriptions and waits for their readers, which block on
// a full channel until someone drains it.
func (s *session) stop() {
	s.stopping.Store(true)
	close(s.done)
	drain(s.links)
	drain(s.addrs)
	drain(s.routes)
}

func drain[T any](ch <-chan T) {
	if ch == nil {
		return
	}
	for range ch {
	}
}
