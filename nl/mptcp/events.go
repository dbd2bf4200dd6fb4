package mptcp

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// EventListener receives mptcp_pm_events on a socket of its own. Receive
// and Close may be called from different goroutines.
type EventListener struct {
	conn   *genetlink.Conn
	family genetlink.Family
	closed atomic.Bool
}

// ListenEvents joins the mptcp_pm_events group (needs CAP_NET_ADMIN) on a
// new socket in cfg's namespace.
func ListenEvents(cfg *Config) (*EventListener, error) {
	conn, err := dial(cfg)
	if err != nil {
		return nil, err
	}
	l, err := NewEventListener(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return l, nil
}

// NewEventListener wraps an existing connection and joins the events group.
// The listener owns conn from then on; on error conn is left open.
func NewEventListener(conn *genetlink.Conn) (*EventListener, error) {
	f, err := resolveFamily(conn)
	if err != nil {
		return nil, err
	}
	var group uint32
	for _, g := range f.Groups {
		if g.Name == MPTCP_PM_EV_GRP_NAME {
			group = g.ID
		}
	}
	if group == 0 {
		return nil, fmt.Errorf("mptcp: family %q has no multicast group %q: %w",
			MPTCP_PM_NAME, MPTCP_PM_EV_GRP_NAME, ErrNotSupported)
	}
	if err := joinGroup(conn, group); err != nil {
		return nil, err
	}
	return &EventListener{conn: conn, family: f}, nil
}

// joinGroup joins group. The in-memory sockets of nltest/genltest cannot
// join groups and refuse with an error that carries no errno; they deliver
// whatever their function returns anyway, so that is not a failure. A real
// socket always fails with an errno (EPERM without CAP_NET_ADMIN).
func joinGroup(conn *genetlink.Conn, group uint32) error {
	err := conn.JoinGroup(group)
	var errno syscall.Errno
	var oe *netlink.OpError
	if err != nil && errors.As(err, &oe) && !errors.As(err, &errno) {
		return nil
	}
	return wrapError("join group "+MPTCP_PM_EV_GRP_NAME, err)
}

// Receive blocks for the next batch of events. Lost events (ENOBUFS) return
// an error that Is ErrEventsLost; the listener stays usable afterwards.
// Messages of other families are skipped, so a batch without error is never
// empty. Messages that do not decode make the error Is ErrMalformedEvent,
// returned together with the batch's other events.
// After Close, including a Close that interrupts a blocked Receive, the
// error Is net.ErrClosed.
func (l *EventListener) Receive() ([]Event, error) {
	const op = "receive events"
	for {
		if l.closed.Load() {
			return nil, closedError(op)
		}
		gmsgs, nmsgs, err := l.conn.Receive()
		if err != nil {
			if l.closed.Load() {
				return nil, closedError(op)
			}
			return nil, wrapError(op, err)
		}
		evs, err := parseEvents(l.ours(gmsgs, nmsgs))
		if err != nil {
			return evs, fmt.Errorf("mptcp: %s: %w: %w", op, ErrMalformedEvent, err)
		}
		if len(evs) > 0 {
			return evs, nil
		}
	}
}

// ours keeps the messages addressed to the mptcp_pm family, as iproute2's
// monitor does. Type 0 is kept too: the kernel never sends it, but genltest
// delivers every message with it, and fakes built on genltest must work.
func (l *EventListener) ours(gmsgs []genetlink.Message, nmsgs []netlink.Message) []genetlink.Message {
	var out []genetlink.Message
	for i, gm := range gmsgs {
		if i >= len(nmsgs) {
			break
		}
		if t := nmsgs[i].Header.Type; t == netlink.HeaderType(l.family.ID) || t == 0 {
			out = append(out, gm)
		}
	}
	return out
}

// SetReadBuffer sets the socket's receive buffer (SO_RCVBUF; the kernel
// doubles the value and enforces a minimum). A bigger buffer rides out
// event bursts; a tiny one lets tests provoke ErrEventsLost.
func (l *EventListener) SetReadBuffer(bytes int) error {
	const op = "set read buffer"
	if l.closed.Load() {
		return closedError(op)
	}
	// Like iproute2's -rcvbuf: SO_RCVBUFFORCE (CAP_NET_ADMIN) may pass
	// net.core.rmem_max; without the capability SO_RCVBUF is capped there.
	if raw, err := l.conn.SyscallConn(); err == nil {
		var forceErr error
		if err := raw.Control(func(fd uintptr) {
			forceErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
		}); err == nil && forceErr == nil {
			return nil
		}
	}
	return wrapError(op, l.conn.SetReadBuffer(bytes))
}

// SetReadDeadline makes Receive give up at t with an error that Is
// os.ErrDeadlineExceeded; the zero time waits for ever again.
func (l *EventListener) SetReadDeadline(t time.Time) error {
	const op = "set read deadline"
	if l.closed.Load() {
		return closedError(op)
	}
	return wrapError(op, l.conn.SetReadDeadline(t))
}

// Close unblocks Receive and releases the socket. Closing twice is not an
// error.
func (l *EventListener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	// netlink.Conn.Close takes no lock and closes the descriptor through the
	// runtime poller, which wakes a recvmsg blocked in Receive.
	return wrapError("close event listener", l.conn.Close())
}
