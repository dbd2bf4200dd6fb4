package netmon

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// kernel is what the monitor needs from rtnetlink, as raw messages: rtnl
// is the real one; tests inject notifications and failures through fakes.
type kernel interface {
	// subscribe opens a socket for the link, address and route
	// notifications of the namespace.
	subscribe() (subscription, error)
	// dump requests a dump (RTM_GETLINK, RTM_GETADDR or RTM_GETROUTE)
	// and calls fn with each message of the reply, on a socket of its
	// own. It fails with errDumpInterrupted when the kernel flagged the
	// reply inconsistent, after fn saw all of it.
	dump(typ uint16, fn func(syscall.NetlinkMessage)) error
	close()
}

// subscription is one notification socket, read by one goroutine.
type subscription interface {
	// receive waits for the next datagram of notifications and returns
	// its messages, valid until the next receive.
	receive() ([]syscall.NetlinkMessage, error)
	// pending reports whether a datagram is waiting; an error means
	// notifications were lost.
	pending() (bool, error)
	// wake makes receive fail, now and from then on. Any goroutine may
	// call it.
	wake()
	close()
}

// notificationGroups are what a subscription joins: one socket for all of
// them keeps the kernel's order across kinds.
var notificationGroups = []uint32{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR,
	unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE,
}

// rtnl is the kernel of one namespace. Every socket is created inside it
// (on a thread of its own, by mdlayher's Dial), never by switching this
// process.
type rtnl struct {
	nsFD     int   // our own descriptor, closed by close
	dumps    *conn // nil after a dump that did not end: redialed when needed
	rcvbuf   int
	deadline time.Time // of the dump socket, for Snapshot
}

var _ kernel = (*rtnl)(nil)

func newRTNL(cfg Config) (*rtnl, error) {
	if cfg.ReceiveBufferSize < 0 {
		return nil, fmt.Errorf("netmon: negative ReceiveBufferSize %d", cfg.ReceiveBufferSize)
	}
	ns, err := pinNetNS(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("netmon: network namespace fd %d: %w", cfg.NetNS, err)
	}
	dumps, err := dial(ns)
	if err != nil {
		unix.Close(ns)
		return nil, fmt.Errorf("netmon: opening rtnetlink in network namespace fd %d: %w", cfg.NetNS, err)
	}
	return &rtnl{nsFD: ns, dumps: dumps, rcvbuf: cfg.receiveBufferSize()}, nil
}

// pinNetNS returns a descriptor of our own for the namespace fd, or for
// the calling thread's when fd is 0: later sockets, created from any
// thread, land in that one.
func pinNetNS(fd int) (int, error) {
	if fd != 0 {
		return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

func (k *rtnl) subscribe() (subscription, error) {
	c, err := dial(k.nsFD)
	if err != nil {
		return nil, fmt.Errorf("opening a notification socket: %w", err)
	}
	// Before joining: a burst must not overrun the default buffer.
	if err := c.setReceiveBuffer(k.rcvbuf); err != nil {
		c.close()
		return nil, fmt.Errorf("setting the receive buffer to %d bytes: %w", k.rcvbuf, err)
	}
	for _, g := range notificationGroups {
		if err := c.nl.JoinGroup(g); err != nil {
			c.close()
			return nil, fmt.Errorf("joining rtnetlink group %d: %w", g, err)
		}
	}
	return c, nil
}

func (k *rtnl) dump(typ uint16, fn func(syscall.NetlinkMessage)) error {
	if k.dumps == nil {
		c, err := dial(k.nsFD)
		if err != nil {
			return fmt.Errorf("opening a dump socket: %w", err)
		}
		if !k.deadline.IsZero() {
			c.nl.SetDeadline(k.deadline)
		}
		k.dumps = c
	}
	ended, err := k.dumps.dump(typ, fn)
	if !ended {
		k.dumps.close()
		k.dumps = nil
	}
	return err
}

// setDeadline bounds the dumps (Snapshot): aLongTimeAgo makes them fail.
func (k *rtnl) setDeadline(t time.Time) {
	k.deadline = t
	if k.dumps != nil {
		k.dumps.nl.SetDeadline(t)
	}
}

func (k *rtnl) close() {
	if k.dumps != nil {
		k.dumps.close()
	}
	unix.Close(k.nsFD)
}

// maxDumpAttempts bounds retries of a dump the kernel flagged as
// interrupted (NLM_F_DUMP_INTR: the table changed while it was read) or
// whose datagram did not fit (the buffer has grown since).
const maxDumpAttempts = 5

// fullDump lists the dumps that make a State, in the order they are read.
var fullDump = []struct {
	typ  uint16
	what string
}{
	{unix.RTM_GETLINK, "links"},
	{unix.RTM_GETADDR, "addresses"},
	{unix.RTM_GETROUTE, "routes"},
}

// dumpState reads links, addresses and routes into a new State, retrying
// interrupted dumps.
func dumpState(k kernel, log *slog.Logger) (*State, error) {
	return retryInterrupted(func() (*State, error) {
		s := NewState()
		for _, d := range fullDump {
			if err := dumpEvents(k, d.typ, log, func(ev Event) { s.Apply(ev) }); err != nil {
				return nil, fmt.Errorf("dumping %s: %w", d.what, err)
			}
		}
		return s, nil
	})
}

// dumpRoutes reads the routes, retrying interrupted dumps.
func dumpRoutes(k kernel, log *slog.Logger) ([]Route, error) {
	return retryInterrupted(func() ([]Route, error) {
		var routes []Route
		err := dumpEvents(k, unix.RTM_GETROUTE, log, func(ev Event) {
			if re, ok := ev.(RouteEvent); ok {
				routes = append(routes, re.Route)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("dumping routes: %w", err)
		}
		return routes, nil
	})
}

// dumpEvents decodes a dump with the notifications' decoders and passes
// the events to fn. A malformed entry is logged and skipped, as a
// malformed notification is.
func dumpEvents(k kernel, typ uint16, log *slog.Logger, fn func(Event)) error {
	return k.dump(typ, func(m syscall.NetlinkMessage) {
		evs, _, err := decodeMessage(m.Header.Type, m.Header.Flags, m.Data)
		if err != nil {
			log.Warn("netmon: ignoring a malformed dump entry", "err", err)
			return
		}
		for _, ev := range evs {
			fn(ev)
		}
	})
}

// retryInterrupted calls dump again while it fails with
// errDumpInterrupted or errTruncated, at most maxDumpAttempts times in all.
func retryInterrupted[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range maxDumpAttempts {
		if v, err = dump(); !errors.Is(err, errDumpInterrupted) && !errors.Is(err, errTruncated) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("%w (%d attempts)", err, maxDumpAttempts)
}
