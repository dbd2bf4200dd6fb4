package integration

// Real-kernel tests of the mptcp_pm client (nl/mptcp). Each test works in a
// fresh network namespace (internal/nstest) and compares with iproute2,
// the oracle for what the kernel holds.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// nlEventTimeout bounds every wait for a kernel event.
const nlEventTimeout = 10 * time.Second

var nlAddrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// nlDialNS opens a client inside ns.
func nlDialNS(t *testing.T, ns *nstest.NS) *mptcp.Client {
	t.Helper()
	c, err := mptcp.Dial(&mptcp.Config{NetNS: ns.Handle().FD()})
	if err != nil {
		t.Fatalf("Dial in %s: %v", ns, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// nlIfNames maps ifindex to name inside ns (`ip -o link`: "1: lo: <...").
func nlIfNames(t *testing.T, ns *nstest.NS) map[int]string {
	t.Helper()
	names := map[int]string{}
	for _, line := range strings.Split(ns.MustRun("ip", "-o", "link", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		idx, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
		if err != nil {
			t.Fatalf("cannot parse ip link line %q", line)
		}
		names[idx] = strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
	}
	return names
}

// nlFormatEndpoints prints eps as `ip mptcp endpoint show` (6.1) does.
func nlFormatEndpoints(eps []mptcp.Endpoint, names map[int]string) string {
	var b strings.Builder
	for _, e := range eps {
		fmt.Fprintf(&b, "%s ", e.Addr)
		if e.Port != 0 {
			fmt.Fprintf(&b, "port %d ", e.Port)
		}
		fmt.Fprintf(&b, "id %d ", e.ID)
		for _, n := range e.Flags.Names() {
			b.WriteString(n + " ")
		}
		if name := names[e.IfIndex]; e.IfIndex != 0 && name != "" {
			fmt.Fprintf(&b, "dev %s ", name)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// nlCheckEndpoints compares the client's dump, and a get of each id, with
// iproute2's view of the table.
func nlCheckEndpoints(t *testing.T, ns *nstest.NS, c *mptcp.Client) []mptcp.Endpoint {
	t.Helper()
	eps, err := c.Endpoints()
	if err != nil {
		t.Fatalf("Endpoints: %v", err)
	}
	want := ns.MustRun("ip", "mptcp", "endpoint", "show")
	if diff := cmp.Diff(want, nlFormatEndpoints(eps, nlIfNames(t, ns))); diff != "" {
		t.Errorf("endpoints differ from ip mptcp endpoint show (-ip +client):\n%s", diff)
	}
	for _, e := range eps {
		got, err := c.Endpoint(e.ID)
		if err != nil {
			t.Errorf("Endpoint(%d): %v", e.ID, err)
			continue
		}
		if diff := cmp.Diff(e, got, nlAddrCmp); diff != "" {
			t.Errorf("Endpoint(%d) differs from the dump (-dump +get):\n%s", e.ID, diff)
		}
	}
	return eps
}

// nlCheckLimits compares Limits with `ip mptcp limits show`.
func nlCheckLimits(t *testing.T, ns *nstest.NS, c *mptcp.Client, subflows, addAddr uint32) {
	t.Helper()
	l, err := c.Limits()
	if err != nil {
		t.Fatalf("Limits: %v", err)
	}
	if *l.Subflows != subflows || *l.AddAddrAccepted != addAddr {
		t.Errorf("Limits = subflows %d add_addr_accepted %d, want %d %d", *l.Subflows, *l.AddAddrAccepted, subflows, addAddr)
	}
	want := ns.MustRun("ip", "mptcp", "limits", "show")
	if got := fmt.Sprintf("add_addr_accepted %d subflows %d \n", *l.AddAddrAccepted, *l.Subflows); got != want {
		t.Errorf("limits: client %q, ip %q", got, want)
	}
}

func nlU32p(v uint32) *uint32 { return &v }

func TestNLClientEndpoints(t *testing.T) {
	ns := nstest.New(t)
	// The signal endpoint with a port makes the kernel listen on it.
	ns.MustRun("ip", "addr", "add", "10.1.2.1/32", "dev", "lo")
	c := nlDialNS(t, ns)

	if eps := nlCheckEndpoints(t, ns, c); len(eps) != 0 {
		t.Fatalf("fresh namespace has endpoints: %v", eps)
	}
	nlCheckLimits(t, ns, c, 2, 0) // the kernel's defaults

	lo := 1
	for _, e := range []mptcp.Endpoint{
		{ID: 1, Addr: netip.MustParseAddr("10.1.2.2"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup, IfIndex: lo},
		{Addr: netip.MustParseAddr("10.1.2.1"), Port: 6000, Flags: mptcp.FlagSignal},
		{ID: 7, Addr: netip.MustParseAddr("2001:db8::5"), Flags: mptcp.FlagSubflow | mptcp.FlagFullmesh},
	} {
		if err := c.AddEndpoint(e); err != nil {
			t.Fatalf("AddEndpoint(%+v): %v", e, err)
		}
	}
	eps := nlCheckEndpoints(t, ns, c)
	want := []mptcp.Endpoint{
		{ID: 1, Addr: netip.MustParseAddr("10.1.2.2"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup, IfIndex: lo},
		{ID: 2, Addr: netip.MustParseAddr("10.1.2.1"), Port: 6000, Flags: mptcp.FlagSignal},
		{ID: 7, Addr: netip.MustParseAddr("2001:db8::5"), Flags: mptcp.FlagSubflow | mptcp.FlagFullmesh},
	}
	if diff := cmp.Diff(want, eps, nlAddrCmp); diff != "" {
		t.Errorf("unexpected endpoints (-want +got):\n%s", diff)
	}

	// By id: clear backup (subflow is not changeable and is passed through).
	if err := c.SetEndpointFlags(mptcp.Endpoint{ID: 1, Flags: mptcp.FlagSubflow}); err != nil {
		t.Fatalf("SetEndpointFlags by id: %v", err)
	}
	// By address and port: set backup on the signal endpoint.
	if err := c.SetEndpointFlags(mptcp.Endpoint{Addr: netip.MustParseAddr("10.1.2.1"), Port: 6000, Flags: mptcp.FlagBackup}); err != nil {
		t.Fatalf("SetEndpointFlags by address: %v", err)
	}
	// By address: drop fullmesh.
	if err := c.SetEndpointFlags(mptcp.Endpoint{Addr: netip.MustParseAddr("2001:db8::5")}); err != nil {
		t.Fatalf("SetEndpointFlags IPv6 by address: %v", err)
	}
	eps = nlCheckEndpoints(t, ns, c)
	want[0].Flags = mptcp.FlagSubflow
	want[1].Flags = mptcp.FlagSignal | mptcp.FlagBackup
	want[2].Flags = mptcp.FlagSubflow
	if diff := cmp.Diff(want, eps, nlAddrCmp); diff != "" {
		t.Errorf("after SetEndpointFlags (-want +got):\n%s", diff)
	}

	if err := c.SetLimits(mptcp.Limits{Subflows: nlU32p(4), AddAddrAccepted: nlU32p(3)}); err != nil {
		t.Fatalf("SetLimits: %v", err)
	}
	nlCheckLimits(t, ns, c, 4, 3)
	if err := c.SetLimits(mptcp.Limits{Subflows: nlU32p(8)}); err != nil {
		t.Fatalf("SetLimits subflows only: %v", err)
	}
	nlCheckLimits(t, ns, c, 8, 3)

	if err := c.DeleteEndpoint(2, netip.Addr{}); err != nil {
		t.Fatalf("DeleteEndpoint(2): %v", err)
	}
	eps = nlCheckEndpoints(t, ns, c)
	if diff := cmp.Diff([]mptcp.Endpoint{want[0], want[2]}, eps, nlAddrCmp); diff != "" {
		t.Errorf("after DeleteEndpoint (-want +got):\n%s", diff)
	}

	if err := c.FlushEndpoints(); err != nil {
		t.Fatalf("FlushEndpoints: %v", err)
	}
	if eps := nlCheckEndpoints(t, ns, c); len(eps) != 0 {
		t.Errorf("endpoints after flush: %v", eps)
	}
}

func TestNLClientKernelErrors(t *testing.T) {
	ns := nstest.New(t)
	c := nlDialNS(t, ns)

	for i := 1; i <= 8; i++ {
		e := mptcp.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), Flags: mptcp.FlagSubflow}
		if err := c.AddEndpoint(e); err != nil {
			t.Fatalf("AddEndpoint #%d: %v", i, err)
		}
		if i > 1 {
			continue
		}
		// The kernel checks for duplicates only while the table has room.
		var me *mptcp.Error
		err := c.AddEndpoint(e)
		if !errors.Is(err, os.ErrExist) || !errors.As(err, &me) || !strings.Contains(me.Message, "duplicate") || me.Op != "add endpoint" {
			t.Errorf("duplicate: err = %#v, want *Error that Is os.ErrExist with the kernel's message", err)
		}
	}

	var me *mptcp.Error
	err := c.AddEndpoint(mptcp.Endpoint{Addr: netip.MustParseAddr("10.9.0.9"), Flags: mptcp.FlagSubflow})
	if !errors.Is(err, syscall.ERANGE) {
		t.Errorf("9th endpoint: err = %v, want ERANGE", err)
	}

	if err := c.DeleteEndpoint(8, netip.Addr{}); err != nil {
		t.Fatalf("DeleteEndpoint(8): %v", err)
	}
	err = c.AddEndpoint(mptcp.Endpoint{ID: 3, Addr: netip.MustParseAddr("10.9.0.9"), Flags: mptcp.FlagSubflow})
	if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("id in use: err = %v, want EBUSY", err)
	}

	if _, err := c.Endpoint(200); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("get missing id: err = %v, want os.ErrNotExist", err)
	}
	if err := c.DeleteEndpoint(200, netip.Addr{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("delete missing id: err = %v, want os.ErrNotExist", err)
	}
	if err := c.SetEndpointFlags(mptcp.Endpoint{ID: 200, Flags: mptcp.FlagBackup}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("set flags of missing id: err = %v, want os.ErrNotExist", err)
	}

	err = c.SetLimits(mptcp.Limits{Subflows: nlU32p(9)})
	if !errors.Is(err, syscall.EINVAL) || errors.Is(err, os.ErrNotExist) || !errors.As(err, &me) || me.Message != "limit greater than maximum (8)" {
		t.Errorf("limit 9: err = %v, want EINVAL with the kernel's message", err)
	}

	err = c.AddEndpoint(mptcp.Endpoint{Addr: netip.MustParseAddr("10.9.1.1"), Flags: mptcp.FlagImplicit})
	if !errors.Is(err, syscall.EINVAL) {
		t.Errorf("implicit endpoint: err = %v, want EINVAL", err)
	}

	err = c.Announce(0x1234, mptcp.Endpoint{ID: 5, Addr: netip.MustParseAddr("10.9.0.5"), Flags: mptcp.FlagSignal})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("announce on unknown token: err = %v, want os.ErrNotExist", err)
	}
	if _, err := c.ConnectionEndpoints(0x1234); err == nil {
		t.Errorf("connection endpoints of unknown token: no error")
	}
}

// With MPTCP disabled for new sockets the path manager stays configurable,
// and CheckEnabled says what is off, for that namespace only.
func TestNLClientDisabledNamespace(t *testing.T) {
	ns := nstest.New(t)
	cfg := &mptcp.Config{NetNS: ns.Handle().FD()}
	if err := mptcp.CheckEnabled(cfg); err != nil {
		t.Fatalf("CheckEnabled in a fresh namespace: %v", err)
	}
	ns.MustRun("sysctl", "-q", "-w", "net.mptcp.enabled=0")
	err := mptcp.CheckEnabled(cfg)
	if !errors.Is(err, mptcp.ErrNotSupported) || !strings.Contains(err.Error(), "net.mptcp.enabled=0") {
		t.Errorf("CheckEnabled with net.mptcp.enabled=0: %v, want ErrNotSupported naming the sysctl", err)
	}
	// The caller's own namespace is untouched by the sysctl above.
	if err := mptcp.CheckEnabled(nil); err != nil && strings.Contains(err.Error(), "enabled=0") {
		t.Errorf("CheckEnabled(nil) sees the test namespace's sysctl: %v", err)
	}
	c := nlDialNS(t, ns)
	if err := c.AddEndpoint(mptcp.Endpoint{Addr: netip.MustParseAddr("10.3.0.1"), Flags: mptcp.FlagSubflow}); err != nil {
		t.Fatalf("AddEndpoint with net.mptcp.enabled=0: %v", err)
	}
	if eps := nlCheckEndpoints(t, ns, c); len(eps) != 1 {
		t.Errorf("got %d endpoints, want 1", len(eps))
	}
}

// nlMptcpServer listens for MPTCP inside ns on 127.0.0.1 and echoes one
// read back on each connection before closing it.
func nlMptcpServer(t *testing.T, ns *netns.Handle) net.Listener {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() (err error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatalf("listen in namespace: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(nlEventTimeout))
				b := make([]byte, 64)
				if n, err := c.Read(b); err == nil {
					_, _ = c.Write(b[:n])
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln
}

// nlMptcpRoundTrip opens one MPTCP connection to ln inside ns, exchanges a
// message, closes it and returns the client's local address.
func nlMptcpRoundTrip(t *testing.T, ns *netns.Handle, ln net.Listener) netip.AddrPort {
	t.Helper()
	var conn net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: nlEventTimeout}
		d.SetMultipathTCP(true)
		conn, err = d.Dial("tcp4", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatalf("dial in namespace: %v", err)
	}
	defer conn.Close()
	if mp, err := conn.(*net.TCPConn).MultipathTCP(); !mp || err != nil {
		t.Fatalf("connection is not MPTCP (%v, %v)", mp, err)
	}
	_ = conn.SetDeadline(time.Now().Add(nlEventTimeout))
	msg := []byte("hello mptcp")
	if _, err := conn.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := io.ReadFull(conn, make([]byte, len(msg))); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	return conn.LocalAddr().(*net.TCPAddr).AddrPort()
}

// nlReceived is one result of EventListener.Receive.
type nlReceived struct {
	ev  mptcp.Event
	err error
}

// nlListen starts a listener in ns whose events (and errors other than the
// final net.ErrClosed) arrive on the returned channel until cleanup.
func nlListen(t *testing.T, ns *netns.Handle, readBuffer int) (*mptcp.EventListener, <-chan nlReceived) {
	t.Helper()
	l, err := mptcp.ListenEvents(&mptcp.Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatalf("ListenEvents: %v", err)
	}
	if readBuffer > 0 {
		if err := l.SetReadBuffer(readBuffer); err != nil {
			t.Fatalf("SetReadBuffer: %v", err)
		}
	}
	ch := make(chan nlReceived, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, err := l.Receive()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				ch <- nlReceived{err: err}
				continue
			}
			for _, ev := range evs {
				ch <- nlReceived{ev: ev}
			}
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return l, ch
}

// nlWaitEvent returns the first event matching match; lost events are
// reported to lost (if not nil), other errors fail the test.
func nlWaitEvent(t *testing.T, ch <-chan nlReceived, what string, lost func(), match func(mptcp.Event) bool) mptcp.Event {
	t.Helper()
	timeout := time.After(nlEventTimeout)
	for {
		select {
		case r := <-ch:
			switch {
			case r.err == nil && match(r.ev):
				return r.ev
			case r.err == nil:
			case errors.Is(r.err, mptcp.ErrEventsLost) && lost != nil:
				lost()
			default:
				t.Fatalf("waiting for %s: %v", what, r.err)
			}
		case <-timeout:
			t.Fatalf("no %s within %v", what, nlEventTimeout)
		}
	}
}

// nlConnectionEvents waits for CREATED, ESTABLISHED and CLOSED of the client
// side of the connection from local, and checks their attributes.
func nlConnectionEvents(t *testing.T, ch <-chan nlReceived, local netip.AddrPort, server net.Addr, lost func()) {
	t.Helper()
	dport := uint16(server.(*net.TCPAddr).Port)
	created := nlWaitEvent(t, ch, "CREATED of "+local.String(), lost, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventCreated && e.Sport == local.Port() && e.Dport == dport
	})
	wantCreated := mptcp.Event{
		Type: mptcp.EventCreated, Token: created.Token, Family: unix.AF_INET,
		Saddr: local.Addr(), Daddr: netip.MustParseAddr("127.0.0.1"), Sport: local.Port(), Dport: dport,
	}
	for _, a := range []mptcp.EventAttr{mptcp.AttrToken, mptcp.AttrFamily, mptcp.AttrSaddr4, mptcp.AttrDaddr4,
		mptcp.AttrSport, mptcp.AttrDport, mptcp.AttrLocalID, mptcp.AttrRemoteID} {
		wantCreated.Set(a)
	}
	if diff := cmp.Diff(wantCreated, created, nlAddrCmp, cmp.AllowUnexported(mptcp.Event{})); diff != "" {
		t.Errorf("unexpected CREATED (-want +got):\n%s", diff)
	}
	nlWaitEvent(t, ch, "ESTABLISHED", lost, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventEstablished && e.Token == created.Token
	})
	nlWaitEvent(t, ch, "CLOSED", lost, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventClosed && e.Token == created.Token
	})
}

func TestNLClientEvents(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle()
	_, ch := nlListen(t, h, 0)
	ln := nlMptcpServer(t, h)

	nlWaitEvent(t, ch, "LISTENER_CREATED", nil, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventListenerCreated && int(e.Sport) == ln.Addr().(*net.TCPAddr).Port
	})
	local := nlMptcpRoundTrip(t, h, ln)
	nlConnectionEvents(t, ch, local, ln.Addr(), nil)
}

func TestNLClientEventsLost(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle()
	l, err := mptcp.ListenEvents(&mptcp.Config{NetNS: h.FD()})
	if err != nil {
		t.Fatalf("ListenEvents: %v", err)
	}
	defer l.Close()
	// The kernel raises this to its minimum (a few KB): room for about one
	// event, while each connection below sends several.
	if err := l.SetReadBuffer(1); err != nil {
		t.Fatalf("SetReadBuffer: %v", err)
	}
	ln := nlMptcpServer(t, h)
	for range 20 {
		nlMptcpRoundTrip(t, h, ln)
	}

	// The overrun is reported once the queued events are read; a
	// watchdog bounds the wait.
	watchdog := time.AfterFunc(nlEventTimeout, func() { _ = l.Close() })
	defer watchdog.Stop()
	var lostErr error
	for i := 0; i < 100 && lostErr == nil; i++ {
		_, err := l.Receive()
		switch {
		case errors.Is(err, mptcp.ErrEventsLost):
			lostErr = err
		case err != nil:
			t.Fatalf("Receive: %v, want ErrEventsLost", err)
		}
	}
	if lostErr == nil {
		t.Fatal("no ErrEventsLost after overrunning the socket")
	}
	var me *mptcp.Error
	if !errors.As(lostErr, &me) || me.Errno != syscall.ENOBUFS {
		t.Errorf("lost events error %v, want *Error with ENOBUFS", lostErr)
	}
	watchdog.Stop()

	// The same listener keeps working. Events keep being dropped until the
	// backlog of the burst is read (the socket stays "congested" until its
	// queue empties), so connect until one connection's CREATED arrives,
	// then follow that connection's whole life.
	if err := l.SetReadBuffer(1 << 20); err != nil {
		t.Fatalf("SetReadBuffer: %v", err)
	}
	ch := make(chan nlReceived, 1024)
	go func() {
		for {
			evs, err := l.Receive()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			for _, ev := range evs {
				ch <- nlReceived{ev: ev}
			}
			if err != nil {
				ch <- nlReceived{err: err}
			}
		}
	}()
	for attempt := 1; ; attempt++ {
		local := nlMptcpRoundTrip(t, h, ln)
		if nlSeenCreated(t, ch, local, time.Second) {
			nlWaitEvent(t, ch, "ESTABLISHED after the overrun", func() {}, func(e mptcp.Event) bool {
				return e.Type == mptcp.EventEstablished && e.Sport == local.Port()
			})
			break
		}
		if attempt == 5 {
			t.Fatal("no events for new connections after ErrEventsLost")
		}
	}
}

// nlSeenCreated reports whether the CREATED event of the client connection
// from local arrives within d; lost-event reports are skipped.
func nlSeenCreated(t *testing.T, ch <-chan nlReceived, local netip.AddrPort, d time.Duration) bool {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case r := <-ch:
			if r.err != nil && !errors.Is(r.err, mptcp.ErrEventsLost) {
				t.Fatalf("Receive: %v", r.err)
			}
			if r.err == nil && r.ev.Type == mptcp.EventCreated && r.ev.Sport == local.Port() {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// TestNLClientUserspacePM drives one connection with the userspace path
// manager commands and checks each against the kernel's events.
func TestNLClientUserspacePM(t *testing.T) {
	ns := nstest.New(t)
	ns.MustRun("sysctl", "-q", "-w", "net.mptcp.path_manager=userspace")
	ns.MustRun("ip", "addr", "add", "10.5.0.1/32", "dev", "lo")
	ns.MustRun("ip", "addr", "add", "10.5.0.2/32", "dev", "lo")
	h := ns.Handle()
	c := nlDialNS(t, ns)
	_, ch := nlListen(t, h, 0) // also makes the kernel accept joins

	var ln net.Listener
	if err := h.Do(func() (err error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		ln, err = lc.Listen(context.Background(), "tcp4", "10.5.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(nlEventTimeout))
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	var conn net.Conn
	if err := h.Do(func() (err error) {
		d := net.Dialer{Timeout: nlEventTimeout, LocalAddr: &net.TCPAddr{IP: net.IPv4(10, 5, 0, 1)}}
		d.SetMultipathTCP(true)
		conn, err = d.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatalf("write: %v", err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	server := ln.Addr().(*net.TCPAddr).AddrPort()

	established := nlWaitEvent(t, ch, "client ESTABLISHED", nil, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventEstablished && e.Sport == local.Port() && !e.ServerSide
	})
	token := established.Token

	second := netip.MustParseAddr("10.5.0.2")
	if err := c.CreateSubflow(token, mptcp.Endpoint{ID: 2, Addr: second}, server); err != nil {
		t.Fatalf("CreateSubflow: %v", err)
	}
	sub := nlWaitEvent(t, ch, "SF_ESTABLISHED", nil, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubEstablished && e.Token == token && e.Saddr == second
	})
	if sub.LocalID != 2 || sub.Dport != server.Port() || !sub.Has(mptcp.AttrBackup) {
		t.Errorf("SF_ESTABLISHED = %+v, want local id 2 towards %v with backup attribute", sub, server)
	}
	subLocal := netip.AddrPortFrom(second, sub.Sport)

	eps, err := c.ConnectionEndpoints(token)
	if err != nil {
		t.Fatalf("ConnectionEndpoints: %v", err)
	}
	found := false
	for _, e := range eps {
		found = found || (e.ID == 2 && e.Addr == second)
	}
	if !found {
		t.Errorf("ConnectionEndpoints = %+v, want id 2 %v among them", eps, second)
	}

	if err := c.SetSubflowBackup(token, subLocal, server, true); err != nil {
		t.Errorf("SetSubflowBackup: %v", err)
	}
	if err := c.SetSubflowBackup(token, netip.MustParseAddrPort("10.5.0.9:1"), server, true); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SetSubflowBackup of no subflow: err = %v, want os.ErrNotExist", err)
	}

	if err := c.DestroySubflow(token, subLocal, server); err != nil {
		t.Fatalf("DestroySubflow: %v", err)
	}
	nlWaitEvent(t, ch, "SF_CLOSED", nil, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubClosed && e.Token == token && e.Sport == subLocal.Port()
	})
	if err := c.DestroySubflow(token, subLocal, server); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DestroySubflow again: err = %v, want os.ErrNotExist", err)
	}

	// The destroyed subflow freed its address: announce it under a new id.
	if err := c.Announce(token, mptcp.Endpoint{ID: 3, Addr: second, Flags: mptcp.FlagSignal}); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	nlWaitEvent(t, ch, "ANNOUNCED at the server", nil, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventAnnounced && e.Token != token && e.RemoteID == 3 && e.Daddr == second
	})
	if err := c.Remove(token, 3); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	nlWaitEvent(t, ch, "REMOVED at the server", nil, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventRemoved && e.Token != token && e.RemoteID == 3
	})
}

func TestNLClientCloseUnblocksReceive(t *testing.T) {
	ns := nstest.New(t)
	l, err := mptcp.ListenEvents(&mptcp.Config{NetNS: ns.Handle().FD()})
	if err != nil {
		t.Fatalf("ListenEvents: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.Receive()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Receive returned in an idle namespace: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close: err = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Receive")
	}
}
