package netmon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const testTimeout = 5 * time.Second

// feed is one fake subscription: a reader goroutine that behaves like
// vishvananda's (blocking send on ch; onErr then close on failure; close
// after done).
type feed[T any] struct {
	in     chan T
	fail   chan error // nil error: close without calling onErr
	exited chan struct{}
}

func startFeed[T any](ch chan<- T, done <-chan struct{}, onErr func(error)) *feed[T] {
	f := &feed[T]{in: make(chan T), fail: make(chan error), exited: make(chan struct{})}
	go func() {
		defer close(f.exited)
		defer close(ch)
		for {
			select {
			case <-done:
				onErr(errors.New("Receive failed: file already closed"))
				return
			case err := <-f.fail:
				if err != nil {
					onErr(err)
				}
				return
			case u := <-f.in:
				ch <- u
			}
		}
	}()
	return f
}

func (f *feed[T]) send(t *testing.T, u T) {
	t.Helper()
	select {
	case f.in <- u:
	case <-f.exited:
		t.Fatal("subscription already ended")
	case <-time.After(testTimeout):
		t.Fatal("monitor does not read its subscription")
	}
}

func (f *feed[T]) kill(t *testing.T, err error) {
	t.Helper()
	select {
	case f.fail <- err:
	case <-time.After(testTimeout):
		t.Fatal("subscription does not end")
	}
}

// generation is one set of subscriptions (one Start or resync).
type generation struct {
	links  *feed[netlink.LinkUpdate]
	addrs  *feed[netlink.AddrUpdate]
	routes *feed[netlink.RouteUpdate]
}

// fakeKernel serves dumps from its fields and records subscriptions.
type fakeKernel struct {
	mu            sync.Mutex
	nlLinks       []netlink.Link
	nlAddrs       []netlink.Addr
	nlRoutes      []netlink.Route
	subscribeErrs []error // returned by successive subscribe calls (nil: success)
	linkDumpErrs  []error // returned by successive link dumps
	routeDumps    int
	gens          []*generation
	newGen        chan struct{} // signalled when a generation is complete
	closed        bool
}

var _ kernel = (*fakeKernel)(nil)

func newFakeKernel() *fakeKernel { return &fakeKernel{newGen: make(chan struct{}, 100)} }

func (k *fakeKernel) subscribeFailure() error {
	if len(k.subscribeErrs) == 0 {
		return nil
	}
	err := k.subscribeErrs[0]
	k.subscribeErrs = k.subscribeErrs[1:]
	return err
}

func (k *fakeKernel) subscribeLinks(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.subscribeFailure(); err != nil {
		return err
	}
	k.gens = append(k.gens, &generation{links: startFeed(ch, done, onErr)})
	return nil
}

func (k *fakeKernel) subscribeAddrs(ch chan<- netlink.AddrUpdate, done <-chan struct{}, onErr func(error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.subscribeFailure(); err != nil {
		return err
	}
	k.gens[len(k.gens)-1].addrs = startFeed(ch, done, onErr)
	return nil
}

func (k *fakeKernel) subscribeRoutes(ch chan<- netlink.RouteUpdate, done <-chan struct{}, onErr func(error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.subscribeFailure(); err != nil {
		return err
	}
	k.gens[len(k.gens)-1].routes = startFeed(ch, done, onErr)
	k.newGen <- struct{}{}
	return nil
}

func (k *fakeKernel) links() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.linkDumpErrs) > 0 {
		err := k.linkDumpErrs[0]
		k.linkDumpErrs = k.linkDumpErrs[1:]
		return k.nlLinks, err
	}
	return slices.Clone(k.nlLinks), nil
}

func (k *fakeKernel) addrs() ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.nlAddrs), nil
}

func (k *fakeKernel) routes() ([]netlink.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routeDumps++
	return slices.Clone(k.nlRoutes), nil
}

func (k *fakeKernel) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
}

// set replaces what the next dumps return.
func (k *fakeKernel) set(links []netlink.Link, addrs []netlink.Addr, routes []netlink.Route) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nlLinks, k.nlAddrs, k.nlRoutes = links, addrs, routes
}

// gen waits for the i-th complete generation of subscriptions.
func (k *fakeKernel) gen(t *testing.T, i int) *generation {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		k.mu.Lock()
		if len(k.gens) > i && k.gens[i].routes != nil {
			g := k.gens[i]
			k.mu.Unlock()
			return g
		}
		k.mu.Unlock()
		select {
		case <-k.newGen:
		case <-deadline:
			t.Fatalf("no subscription generation %d", i)
		}
	}
}

// checkStopped verifies that every fake reader ended and the kernel was
// closed, as Close promises.
func (k *fakeKernel) checkStopped(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		t.Error("kernel not closed")
	}
	for i, g := range k.gens {
		if !g.exited(testTimeout) {
			t.Errorf("generation %d: a subscription reader is still running", i)
		}
	}
}

// exited waits for the generation's readers (those that started) to end.
func (g *generation) exited(timeout time.Duration) bool {
	chans := []chan struct{}{g.links.exited}
	if g.addrs != nil {
		chans = append(chans, g.addrs.exited)
	}
	if g.routes != nil {
		chans = append(chans, g.routes.exited)
	}
	deadline := time.After(timeout)
	for _, c := range chans {
		select {
		case <-c:
		case <-deadline:
			return false
		}
	}
	return true
}

func nlLink(index int, name string, up bool) netlink.Link {
	flags := uint32(unix.IFF_BROADCAST)
	if up {
		flags |= unix.IFF_UP | unix.IFF_LOWER_UP
	}
	return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: index, Name: name, MTU: 1500, RawFlags: flags,
		HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, byte(index)}, OperState: netlink.OperUp}}
}

func nlAddr(t *testing.T, index int, cidr string) netlink.Addr {
	n := ipnet(t, cidr)
	return netlink.Addr{IPNet: &n, LinkIndex: index, Flags: unix.IFA_F_PERMANENT, PreferedLft: 0xffffffff, ValidLft: 0xffffffff}
}

func nlRoute(index int, gw string) netlink.Route {
	return netlink.Route{Family: unix.AF_INET, LinkIndex: index, Gw: net.ParseIP(gw).To4(), Table: unix.RT_TABLE_MAIN,
		Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_STATIC}
}

func linkUpdate(typ uint16, l netlink.Link) netlink.LinkUpdate {
	return netlink.LinkUpdate{Header: unix.NlMsghdr{Type: typ}, Link: l}
}

func addrUpdate(a netlink.Addr, isNew bool) netlink.AddrUpdate {
	return netlink.AddrUpdate{LinkAddress: *a.IPNet, LinkIndex: a.LinkIndex, Flags: a.Flags, Scope: a.Scope,
		PreferedLft: a.PreferedLft, ValidLft: a.ValidLft, NewAddr: isNew}
}

// convLink, convAddr and convRoute convert fake netlink objects the way
// the monitor does, to state expected events.
func convLink(l netlink.Link) Link { return linkFromNetlink(l) }

func convAddr(t *testing.T, a netlink.Addr) Addr {
	t.Helper()
	c, err := addrFromNetlink(a)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func convRoute(t *testing.T, r netlink.Route) Route {
	t.Helper()
	rs, err := routesFromNetlink(r)
	if err != nil || len(rs) != 1 {
		t.Fatalf("routesFromNetlink = %v, %v", rs, err)
	}
	return rs[0]
}

// expect reads len(want) events and compares them; ResyncNeeded reasons
// are compared by text containment of the wanted reason.
func expect(t *testing.T, m *Monitor, want ...Event) {
	t.Helper()
	got := make([]Event, 0, len(want))
	for range want {
		select {
		case ev, ok := <-m.Events():
			if !ok {
				t.Fatalf("Events closed after %v", got)
			}
			got = append(got, ev)
		case <-time.After(testTimeout):
			t.Fatalf("timed out after %d events %v, want %v", len(got), got, want)
		}
	}
	opt := cmp.Comparer(func(a, b ResyncNeeded) bool {
		return a.Reason == nil || b.Reason == nil ||
			strings.Contains(a.Reason.Error(), b.Reason.Error()) || strings.Contains(b.Reason.Error(), a.Reason.Error())
	})
	if diff := cmp.Diff(want, got, cmpIP, opt); diff != "" {
		t.Fatalf("unexpected events (-want +got):\n%s", diff)
	}
}

func startFake(t *testing.T, k *fakeKernel) *Monitor {
	t.Helper()
	m, err := start(context.Background(), Config{}, k)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMonitorInitialDumpAndClose(t *testing.T) {
	k := newFakeKernel()
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo", MTU: 65536, RawFlags: unix.IFF_UP | unix.IFF_LOOPBACK}}
	va := nlLink(2, "va", true)
	a := nlAddr(t, 2, "10.0.0.1/24")
	r := nlRoute(2, "10.0.0.254")
	k.set([]netlink.Link{va, lo}, []netlink.Addr{a}, []netlink.Route{r})
	m := startFake(t, k)
	expect(t, m,
		LinkEvent{OpNew, convLink(lo)}, LinkEvent{OpNew, convLink(va)},
		AddrEvent{OpNew, convAddr(t, a)}, RouteEvent{OpNew, convRoute(t, r)},
		Synced{})

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-m.Events(); ok {
		t.Error("Events not closed after Close")
	}
	k.checkStopped(t)
}

func TestMonitorNotifications(t *testing.T) {
	k := newFakeKernel()
	va, vb := nlLink(2, "va", true), nlLink(3, "vb", true)
	a := nlAddr(t, 2, "10.0.0.1/24")
	r := nlRoute(2, "10.0.0.254")
	k.set([]netlink.Link{va}, []netlink.Addr{a}, []netlink.Route{r})
	m := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, convLink(va)}, AddrEvent{OpNew, convAddr(t, a)}, RouteEvent{OpNew, convRoute(t, r)}, Synced{})
	g := k.gen(t, 0)

	// A duplicate link and an AF_BRIDGE deletion say nothing; the next
	// event proves they were read and dropped.
	g.links.send(t, linkUpdate(unix.RTM_NEWLINK, va))
	brDel := linkUpdate(unix.RTM_DELLINK, va)
	brDel.IfInfomsg.Family = unix.AF_BRIDGE
	g.links.send(t, brDel)
	g.links.send(t, linkUpdate(unix.RTM_NEWLINK, vb))
	expect(t, m, LinkEvent{OpNew, convLink(vb)})

	// Duplicate RTM_NEWADDR, with other remaining lifetimes.
	six := nlAddr(t, 3, "2001:db8::1/64")
	six.Flags, six.PreferedLft, six.ValidLft = unix.IFA_F_TENTATIVE, 1800, 3600
	g.addrs.send(t, addrUpdate(six, true))
	sixLater := six
	sixLater.PreferedLft, sixLater.ValidLft = 1790, 3590
	g.addrs.send(t, addrUpdate(sixLater, true))
	sixDone := sixLater
	sixDone.Flags = 0
	g.addrs.send(t, addrUpdate(sixDone, true))
	expect(t, m, AddrEvent{OpNew, convAddr(t, six)}, AddrEvent{OpNew, convAddr(t, sixDone)})

	// Deleting an unknown address, and a malformed one, say nothing.
	g.addrs.send(t, addrUpdate(nlAddr(t, 3, "10.7.7.7/8"), false))
	g.addrs.send(t, netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.IP{1, 2, 3}}, NewAddr: true})
	g.addrs.send(t, addrUpdate(six, false))
	expect(t, m, AddrEvent{OpDel, convAddr(t, six)})

	// A replace does not say what it replaced: the monitor re-reads the
	// routes and reports the one that is gone.
	r2 := nlRoute(3, "10.0.0.253")
	k.set([]netlink.Link{va, vb}, []netlink.Addr{a}, []netlink.Route{r2})
	g.routes.send(t, netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, NlFlags: unix.NLM_F_REPLACE, Route: r2})
	expect(t, m, RouteEvent{OpNew, convRoute(t, r2)}, RouteEvent{OpDel, convRoute(t, r)})
}

func TestMonitorLinkDeletion(t *testing.T) {
	k := newFakeKernel()
	va, vb := nlLink(2, "va", true), nlLink(3, "vb", true)
	a, b := nlAddr(t, 2, "10.0.0.1/24"), nlAddr(t, 3, "10.9.0.1/24")
	ra, rb := nlRoute(2, "10.0.0.254"), nlRoute(3, "10.9.0.254")
	rb.Src = net.IP{10, 0, 0, 1} // uses va's address: the kernel drops it silently too
	k.set([]netlink.Link{va, vb}, []netlink.Addr{a, b}, []netlink.Route{ra, rb})
	m := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, convLink(va)}, LinkEvent{OpNew, convLink(vb)},
		AddrEvent{OpNew, convAddr(t, a)}, AddrEvent{OpNew, convAddr(t, b)},
		RouteEvent{OpNew, convRoute(t, ra)}, RouteEvent{OpNew, convRoute(t, rb)}, Synced{})
	g := k.gen(t, 0)

	k.set([]netlink.Link{vb}, []netlink.Addr{b}, nil)
	g.links.send(t, linkUpdate(unix.RTM_DELLINK, va))
	expect(t, m, RouteEvent{OpDel, convRoute(t, ra)}, AddrEvent{OpDel, convAddr(t, a)}, LinkEvent{OpDel, convLink(va)},
		RouteEvent{OpDel, convRoute(t, rb)}) // from the sweep
	// The kernel's own RTM_DELADDR comes late and says nothing new.
	g.addrs.send(t, addrUpdate(a, false))
	g.addrs.send(t, addrUpdate(b, false))
	expect(t, m, AddrEvent{OpDel, convAddr(t, b)})
}

func TestMonitorLinkDownSweep(t *testing.T) {
	k := newFakeKernel()
	va := nlLink(2, "va", true)
	a := nlAddr(t, 2, "10.0.0.1/24")
	r := nlRoute(2, "10.0.0.254")
	k.set([]netlink.Link{va}, []netlink.Addr{a}, []netlink.Route{r})
	m := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, convLink(va)}, AddrEvent{OpNew, convAddr(t, a)}, RouteEvent{OpNew, convRoute(t, r)}, Synced{})
	g := k.gen(t, 0)

	// Carrier loss keeps the routes: no sweep.
	noCarrier := nlLink(2, "va", true)
	noCarrier.Attrs().RawFlags &^= unix.IFF_LOWER_UP
	g.links.send(t, linkUpdate(unix.RTM_NEWLINK, noCarrier))
	expect(t, m, LinkEvent{OpNew, convLink(noCarrier)})

	down := nlLink(2, "va", false)
	k.set([]netlink.Link{down}, []netlink.Addr{a}, nil)
	g.links.send(t, linkUpdate(unix.RTM_NEWLINK, down))
	expect(t, m, LinkEvent{OpNew, convLink(down)}, RouteEvent{OpDel, convRoute(t, r)})
	k.mu.Lock()
	dumps := k.routeDumps
	k.mu.Unlock()
	if dumps != 2 { // the initial one and the sweep
		t.Errorf("%d route dumps, want 2", dumps)
	}
}

func TestMonitorResync(t *testing.T) {
	tests := []struct {
		name       string
		fail       func(t *testing.T, g *generation)
		wantReason string
		wantErrno  error
	}{
		{
			name: "ENOBUFS on addresses",
			fail: func(t *testing.T, g *generation) {
				g.addrs.kill(t, errors.New("Receive failed: no buffer space available"))
			},
			wantReason: "address notifications overran the socket receive buffer",
			wantErrno:  syscall.ENOBUFS,
		},
		{
			name:       "route subscription error",
			fail:       func(t *testing.T, g *generation) { g.routes.kill(t, errors.New("Receive failed: bad file descriptor")) },
			wantReason: "route notifications: Receive failed: bad file descriptor",
		},
		{
			name:       "link channel closed without error",
			fail:       func(t *testing.T, g *generation) { g.links.kill(t, nil) },
			wantReason: "link notifications: channel closed unexpectedly",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel()
			va, vb := nlLink(2, "va", true), nlLink(3, "vb", true)
			a, b := nlAddr(t, 2, "10.0.0.1/24"), nlAddr(t, 3, "10.9.0.1/24")
			r := nlRoute(2, "10.0.0.254")
			k.set([]netlink.Link{va, vb}, []netlink.Addr{a, b}, []netlink.Route{r})
			m := startFake(t, k)
			expect(t, m, LinkEvent{OpNew, convLink(va)}, LinkEvent{OpNew, convLink(vb)},
				AddrEvent{OpNew, convAddr(t, a)}, AddrEvent{OpNew, convAddr(t, b)}, RouteEvent{OpNew, convRoute(t, r)}, Synced{})
			g0 := k.gen(t, 0)

			// While notifications are lost: vb goes away, a new address
			// appears. Re-subscribing fails half way once, then a dump
			// fails (after an interrupted one that is retried at once).
			c := nlAddr(t, 2, "10.0.0.2/24")
			k.mu.Lock()
			k.nlLinks, k.nlAddrs = []netlink.Link{va}, []netlink.Addr{a, c}
			k.subscribeErrs = []error{nil, errors.New("injected subscribe failure")}
			k.linkDumpErrs = []error{netlink.ErrDumpInterrupted, errors.New("injected dump failure")}
			k.mu.Unlock()
			tt.fail(t, g0)

			ev := <-m.Events()
			rn, ok := ev.(ResyncNeeded)
			if !ok {
				t.Fatalf("got %v, want ResyncNeeded", ev)
			}
			if !strings.Contains(rn.Reason.Error(), tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", rn.Reason, tt.wantReason)
			}
			if tt.wantErrno != nil && !errors.Is(rn.Reason, tt.wantErrno) {
				t.Errorf("reason %q is not %v", rn.Reason, tt.wantErrno)
			}
			expect(t, m,
				AddrEvent{OpDel, convAddr(t, b)}, LinkEvent{OpDel, convLink(vb)},
				LinkEvent{OpNew, convLink(va)}, AddrEvent{OpNew, convAddr(t, a)}, AddrEvent{OpNew, convAddr(t, c)},
				RouteEvent{OpNew, convRoute(t, r)}, Synced{})

			// The old readers are gone, the new subscriptions deliver.
			// Generation 1 failed half way, generation 2 in its dump.
			if !g0.exited(testTimeout) {
				t.Fatal("a reader of the lost session still runs")
			}
			g := k.gen(t, 3)
			k.mu.Lock()
			if n := len(k.gens); n != 4 {
				t.Errorf("%d subscription generations, want 4", n)
			}
			k.mu.Unlock()
			g.addrs.send(t, addrUpdate(c, false))
			expect(t, m, AddrEvent{OpDel, convAddr(t, c)})
			m.Close()
			k.checkStopped(t)
		})
	}
}

func TestMonitorCloseWhileConsumerStalls(t *testing.T) {
	k := newFakeKernel()
	var addrs []netlink.Addr
	ip := netip.MustParseAddr("10.0.0.1")
	for range eventBuffer + 50 { // more than Events holds: the monitor blocks
		addrs = append(addrs, nlAddr(t, 2, ip.String()+"/32"))
		ip = ip.Next()
	}
	k.set([]netlink.Link{nlLink(2, "va", true)}, addrs, nil)
	m, err := start(context.Background(), Config{}, k)
	if err != nil {
		t.Fatal(err)
	}
	g := k.gen(t, 0)
	// Fill the update channel too, so a reader is blocked on its send.
	stopSending := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case g.links.in <- linkUpdate(unix.RTM_NEWLINK, nlLink(10+i, "x", true)):
			case <-stopSending:
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close blocks while the consumer does not read")
	}
	close(stopSending)
	<-sent
	k.checkStopped(t)
	n := 0
	for range m.Events() {
		n++
	}
	if n < eventBuffer {
		t.Errorf("%d buffered events, want at least %d", n, eventBuffer)
	}
}

func TestMonitorContextEnds(t *testing.T) {
	k := newFakeKernel()
	ctx, cancel := context.WithCancel(context.Background())
	m, err := start(ctx, Config{}, k)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, m, Synced{})
	cancel()
	select {
	case _, ok := <-m.Events():
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(testTimeout):
		t.Fatal("Events not closed after the context ended")
	}
	m.Close()
	k.checkStopped(t)
}

func TestStartFails(t *testing.T) {
	tests := []struct {
		name  string
		setup func(k *fakeKernel)
		want  string
	}{
		{"subscribe", func(k *fakeKernel) { k.subscribeErrs = []error{errors.New("injected")} },
			"subscribing to link notifications: injected"},
		// The link subscription that worked must be stopped again.
		{"route subscription", func(k *fakeKernel) { k.subscribeErrs = []error{nil, nil, errors.New("injected")} },
			"subscribing to route notifications: injected"},
		{"dump", func(k *fakeKernel) { k.linkDumpErrs = []error{errors.New("boom")} }, "dumping links: boom"},
		{"dump keeps being interrupted", func(k *fakeKernel) {
			k.linkDumpErrs = slices.Repeat([]error{netlink.ErrDumpInterrupted}, maxDumpAttempts)
		}, "dumping links: results may be incomplete or inconsistent (5 attempts)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel()
			tt.setup(k)
			m, err := start(context.Background(), Config{}, k)
			if err == nil {
				m.Close()
				t.Fatal("start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			k.checkStopped(t)
		})
	}
}

func TestStartBadConfig(t *testing.T) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		cfg  Config
		want string
	}{
		{"negative buffer", context.Background(), Config{ReceiveBufferSize: -1}, "negative ReceiveBufferSize -1"},
		{"closed descriptor", context.Background(), Config{NetNS: 1 << 20}, "network namespace fd 1048576: bad file descriptor"},
		{"not a namespace", context.Background(), Config{NetNS: int(devNull.Fd())}, "opening rtnetlink in network namespace fd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := Start(tt.ctx, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				if m != nil {
					m.Close()
				}
				t.Errorf("Start: error %v, want it to contain %q", err, tt.want)
			}
			if _, err := Snapshot(tt.ctx, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Snapshot: error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Snapshot(canceled, Config{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Snapshot with a canceled context: %v", err)
	}
}
