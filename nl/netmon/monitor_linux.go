package netmon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// eventBuffer is the capacity of Events. A consumer that falls
	// further behind stalls the monitor; the kernel then drops
	// notifications and the monitor resynchronizes.
	eventBuffer = 256

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
	// goneAddrs are IPv4 addresses deleted since the last look: once the
	// socket is idle, routes that depended on them and are still in state
	// (the kernel reports the ones it removes openly) call for a sweep.
	goneAddrs []Addr
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
	sub, fresh, err := m.open()
	if err != nil {
		k.close()
		return nil, fmt.Errorf("netmon: %w", err)
	}
	ctx, m.cancel = context.WithCancel(ctx)
	go m.run(ctx, sub, fresh)
	return m, nil
}

// Events delivers the event stream. It is closed after the monitor stops
// (Close, or the context of Start ended). Read it promptly: a monitor
// blocked on it lets the kernel drop notifications, which costs a resync.
func (m *Monitor) Events() <-chan Event { return m.events }

// Close stops the monitor and waits until its goroutine and sockets are
// gone. It may be called more than once and does not need Events to be
// drained.
func (m *Monitor) Close() error {
	m.cancel()
	<-m.stopped
	return nil
}

// Snapshot dumps the namespace's links, addresses and routes once, with
// the same decoders and filters as the monitor. A deadline of ctx bounds
// the dumps.
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
		k.setDeadline(deadline)
	}
	s, err := dumpState(k, cfg.logger())
	if err != nil {
		return nil, fmt.Errorf("netmon: %w", err)
	}
	s.Apply(Synced{})
	return s, nil
}

func (m *Monitor) run(ctx context.Context, sub subscription, fresh *State) {
	defer close(m.stopped)
	defer close(m.events)
	defer m.k.close()
	for {
		lost := m.serve(ctx, sub, fresh)
		sub.close()
		if lost == nil {
			return
		}
		m.log.Warn("netmon: notifications lost, resynchronizing", "reason", lost)
		ev := ResyncNeeded{Reason: lost}
		m.state.Apply(ev)
		if m.emit(ctx, ev) != nil {
			return
		}
		if sub, fresh = m.reopen(ctx); sub == nil {
			return
		}
	}
}

// serve sends what brings the consumer from m.state to fresh, then
// follows the notifications of sub. It returns why notifications were
// lost, or nil when ctx ended.
func (m *Monitor) serve(ctx context.Context, sub subscription, fresh *State) error {
	for _, ev := range resyncEvents(m.state, fresh) {
		m.state.Apply(ev)
		if m.emit(ctx, ev) != nil {
			return nil
		}
	}
	m.sweepDue, m.goneAddrs = false, nil
	err := m.pump(ctx, sub)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// pump follows the notifications of sub, in this goroutine: it parks in
// the netpoller until the kernel sends, and nothing stands between the
// socket and Events.
func (m *Monitor) pump(ctx context.Context, sub subscription) error {
	stop := context.AfterFunc(ctx, sub.wake)
	defer stop()
	for {
		if len(m.goneAddrs) > 0 || m.sweepDue {
			busy, err := sub.pending()
			if err != nil {
				return lostNotifications(err)
			}
			if !busy {
				if m.sweepDue || m.orphanedRoutes() {
					if err := m.sweep(ctx); err != nil {
						return err
					}
				}
				m.goneAddrs = m.goneAddrs[:0]
				continue
			}
		}
		msgs, err := sub.receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil // woken
			}
			return lostNotifications(err)
		}
		for _, msg := range msgs {
			if err := m.handle(ctx, msg); err != nil {
				return err
			}
		}
		// Let the consumer act on what was just sent before reading on:
		// on a single P it would otherwise wait until the socket is
		// drained, and the first change is the one it should act on.
		runtime.Gosched()
	}
}

// lostNotifications explains a failed receive, the ResyncNeeded reason.
func lostNotifications(err error) error {
	if errors.Is(err, unix.ENOBUFS) {
		return fmt.Errorf("notifications overran the socket receive buffer: %w", err)
	}
	return fmt.Errorf("receiving notifications: %w", err)
}

func (m *Monitor) handle(ctx context.Context, msg syscall.NetlinkMessage) error {
	evs, replace, err := decodeMessage(msg.Header.Type, msg.Header.Flags, msg.Data)
	if err != nil {
		m.log.Warn("netmon: ignoring a malformed notification", "err", err)
		return nil
	}
	for _, ev := range evs {
		switch ev := ev.(type) {
		case LinkEvent:
			err = m.handleLink(ctx, ev)
		case AddrEvent:
			err = m.handleAddr(ctx, ev)
		default:
			_, err = m.emitChange(ctx, ev)
		}
		if err != nil {
			return err
		}
	}
	if replace {
		// The notification does not say which route was replaced.
		m.sweepDue = true
	}
	return nil
}

func (m *Monitor) handleLink(ctx context.Context, ev LinkEvent) error {
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

func (m *Monitor) handleAddr(ctx context.Context, ev AddrEvent) error {
	changed, err := m.emitChange(ctx, ev)
	if changed && ev.Op == OpDel && ev.Addr.Prefix.Addr().Is4() {
		m.goneAddrs = append(m.goneAddrs, ev.Addr)
	}
	return err
}

// orphanedRoutes reports whether a route in state may have gone with a
// deleted IPv4 address without a notification: the kernel flushes
// routes whose source is the address, and every IPv4 route of a link
// that lost its last IPv4 address, silently. Routes it removes with a
// notification (the address's own prefix route) are already gone from
// state by the time the socket is idle, so a lone address change costs
// no route dump.
func (m *Monitor) orphanedRoutes() bool {
	for _, a := range m.goneAddrs {
		ip := a.Prefix.Addr()
		lastV4 := !slices.ContainsFunc(m.state.LinkAddrs(a.LinkIndex), func(x Addr) bool { return x.Prefix.Addr().Is4() })
		for _, r := range m.state.routes {
			if r.Src == ip || (lastV4 && r.LinkIndex == a.LinkIndex && r.Dst.Addr().Is4()) {
				return true
			}
		}
	}
	return false
}

// sweep re-reads the routes and reports the difference. A failed dump is
// treated like lost notifications.
func (m *Monitor) sweep(ctx context.Context) error {
	m.sweepDue = false
	routes, err := dumpRoutes(m.k, m.log)
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
// ends (nil subscription).
func (m *Monitor) reopen(ctx context.Context) (subscription, *State) {
	backoff := minBackoff
	for ctx.Err() == nil {
		sub, fresh, err := m.open()
		if err == nil {
			return sub, fresh
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
// The dumps use a socket of their own, so that their end (our Synced) is
// clear and their replies never mix with notifications.
func (m *Monitor) open() (subscription, *State, error) {
	sub, err := m.k.subscribe()
	if err != nil {
		return nil, nil, fmt.Errorf("subscribing to notifications: %w", err)
	}
	fresh, err := dumpState(m.k, m.log)
	if err != nil {
		sub.close()
		return nil, nil, err
	}
	return sub, fresh, nil
}
