package netmon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

const testTimeout = 5 * time.Second

// fakeSub is one fake notification socket: a queue of datagrams and a
// pending failure, read like the real socket.
type fakeSub struct {
	mu      sync.Mutex
	queue   [][]syscall.NetlinkMessage
	failure error
	woken   bool
	notify  chan struct{} // signalled when something changed
	closed  chan struct{}
	closing sync.Once
}

var _ subscription = (*fakeSub)(nil)

func newFakeSub() *fakeSub {
	return &fakeSub{notify: make(chan struct{}, 1), closed: make(chan struct{})}
}

func (s *fakeSub) receive() ([]syscall.NetlinkMessage, error) {
	for {
		s.mu.Lock()
		switch {
		case s.woken:
			s.mu.Unlock()
			return nil, os.ErrDeadlineExceeded
		case len(s.queue) > 0:
			d := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return d, nil
		case s.failure != nil:
			err := s.failure
			s.mu.Unlock()
			return nil, err
		}
		s.mu.Unlock()
		<-s.notify
	}
}

func (s *fakeSub) pending() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0, s.failure
}

func (s *fakeSub) wake() {
	s.mu.Lock()
	s.woken = true
	s.mu.Unlock()
	s.signal()
}

func (s *fakeSub) close() { s.closing.Do(func() { close(s.closed) }) }

func (s *fakeSub) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// deliver queues datagrams, then a failure (if not nil) for after them,
// at once: the monitor sees them all pending.
func (s *fakeSub) deliver(t *testing.T, failure error, datagrams ...[]syscall.NetlinkMessage) {
	t.Helper()
	select {
	case <-s.closed:
		t.Fatal("the subscription is closed already")
	default:
	}
	s.mu.Lock()
	s.queue = append(s.queue, datagrams...)
	if failure != nil {
		s.failure = failure
	}
	s.mu.Unlock()
	s.signal()
}

// send queues one datagram per message.
func (s *fakeSub) send(t *testing.T, msgs ...syscall.NetlinkMessage) {
	t.Helper()
	var datagrams [][]syscall.NetlinkMessage
	for _, m := range msgs {
		datagrams = append(datagrams, []syscall.NetlinkMessage{m})
	}
	s.deliver(t, nil, datagrams...)
}

func (s *fakeSub) isClosed(timeout time.Duration) bool {
	select {
	case <-s.closed:
		return true
	case <-time.After(timeout):
		return false
	}
}

// fakeKernel serves dumps from its fields and records subscriptions.
type fakeKernel struct {
	mu            sync.Mutex
	dumps         map[uint16][]syscall.NetlinkMessage // by request type
	subscribeErrs []error                             // returned by successive subscribes (nil: success)
	dumpErrs      map[uint16][]error                  // returned by successive dumps, after the messages
	routeDumps    int
	subs          []*fakeSub
	newSub        chan struct{}
	closed        bool
}

var _ kernel = (*fakeKernel)(nil)

func newFakeKernel() *fakeKernel {
	return &fakeKernel{dumps: make(map[uint16][]syscall.NetlinkMessage), dumpErrs: make(map[uint16][]error),
		newSub: make(chan struct{}, 100)}
}

func (k *fakeKernel) subscribe() (subscription, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.subscribeErrs) > 0 {
		err := k.subscribeErrs[0]
		k.subscribeErrs = k.subscribeErrs[1:]
		if err != nil {
			return nil, err
		}
	}
	s := newFakeSub()
	k.subs = append(k.subs, s)
	k.newSub <- struct{}{}
	return s, nil
}

func (k *fakeKernel) dump(typ uint16, fn func(syscall.NetlinkMessage)) error {
	k.mu.Lock()
	if typ == unix.RTM_GETROUTE {
		k.routeDumps++
	}
	msgs := slices.Clone(k.dumps[typ])
	var err error
	if errs := k.dumpErrs[typ]; len(errs) > 0 {
		err, k.dumpErrs[typ] = errs[0], errs[1:]
	}
	k.mu.Unlock()
	for _, m := range msgs {
		fn(m)
	}
	return err
}

func (k *fakeKernel) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
}

// set replaces what the next dumps return.
func (k *fakeKernel) set(links []Link, addrs []Addr, routes []Route) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dumps = make(map[uint16][]syscall.NetlinkMessage)
	for _, l := range links {
		k.dumps[unix.RTM_GETLINK] = append(k.dumps[unix.RTM_GETLINK], nlmsg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, encodeLink(l)))
	}
	for _, a := range addrs {
		k.dumps[unix.RTM_GETADDR] = append(k.dumps[unix.RTM_GETADDR], nlmsg(unix.RTM_NEWADDR, unix.NLM_F_MULTI, encodeAddr(a)))
	}
	for _, r := range routes {
		k.dumps[unix.RTM_GETROUTE] = append(k.dumps[unix.RTM_GETROUTE], nlmsg(unix.RTM_NEWROUTE, unix.NLM_F_MULTI, encodeRoute(r)))
	}
}

// sub waits for the i-th subscription.
func (k *fakeKernel) sub(t *testing.T, i int) *fakeSub {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		k.mu.Lock()
		if len(k.subs) > i {
			s := k.subs[i]
			k.mu.Unlock()
			return s
		}
		k.mu.Unlock()
		select {
		case <-k.newSub:
		case <-deadline:
			t.Fatalf("no subscription %d", i)
		}
	}
}

// checkStopped verifies that every subscription and the kernel were
// closed, as Close promises.
func (k *fakeKernel) checkStopped(t *testing.T) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed {
		t.Error("kernel not closed")
	}
	for i, s := range k.subs {
		if !s.isClosed(testTimeout) {
			t.Errorf("subscription %d not closed", i)
		}
	}
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

// logBuffer is a Logger whose output the test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func startFake(t *testing.T, k *fakeKernel) (*Monitor, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	m, err := start(context.Background(), Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}, k)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, logs
}

func TestMonitorInitialDumpAndClose(t *testing.T) {
	k := newFakeKernel()
	lo := Link{Index: 1, Name: "lo", MTU: 65536, Up: true, Carrier: true, Loopback: true, OperState: OperUnknown}
	va := veth(2, "va", true)
	a := permanentAddr(2, "10.0.0.1/24")
	r := defaultRoute(2, "10.0.0.254")
	k.set([]Link{va, lo}, []Addr{a}, []Route{r})
	// A malformed dump entry is logged and skipped.
	k.dumps[unix.RTM_GETADDR] = append(k.dumps[unix.RTM_GETADDR], nlmsg(unix.RTM_NEWADDR, unix.NLM_F_MULTI, []byte{2, 24}))
	m, logs := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, lo}, LinkEvent{OpNew, va}, AddrEvent{OpNew, a}, RouteEvent{OpNew, r}, Synced{})
	if want := "ignoring a malformed dump entry"; !strings.Contains(logs.String(), want) {
		t.Errorf("log %q does not say %q", logs, want)
	}

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
	va, vb := veth(2, "va", true), veth(3, "vb", true)
	a := permanentAddr(2, "10.0.0.1/24")
	r := defaultRoute(2, "10.0.0.254")
	k.set([]Link{va}, []Addr{a}, []Route{r})
	m, logs := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, va}, AddrEvent{OpNew, a}, RouteEvent{OpNew, r}, Synced{})
	s := k.sub(t, 0)

	// A duplicate link, an AF_BRIDGE deletion and a neighbour say
	// nothing; the next event proves they were read and dropped.
	s.send(t, nlmsg(unix.RTM_NEWLINK, 0, encodeLink(va)),
		nlmsg(unix.RTM_DELLINK, 0, withAttrs(ifinfomsg{family: unix.AF_BRIDGE, index: 2}.bytes(), nil)),
		nlmsg(unix.RTM_NEWNEIGH, 0, make([]byte, 12)),
		nlmsg(unix.RTM_NEWLINK, 0, encodeLink(vb)))
	expect(t, m, LinkEvent{OpNew, vb})

	// Duplicate RTM_NEWADDR, with other remaining lifetimes.
	six := Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("2001:db8::1/64"), Flags: AddrTentative,
		PreferredLifetime: 1800 * time.Second, ValidLifetime: 3600 * time.Second}
	sixLater := six
	sixLater.PreferredLifetime, sixLater.ValidLifetime = 1790*time.Second, 3590*time.Second
	sixDone := sixLater
	sixDone.Flags = 0
	s.send(t, nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(six)), nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(sixLater)),
		nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(sixDone)))
	expect(t, m, AddrEvent{OpNew, six}, AddrEvent{OpNew, sixDone})

	// Deleting an unknown address, and a malformed message, say
	// nothing (the latter is logged).
	s.send(t, nlmsg(unix.RTM_DELADDR, 0, encodeAddr(permanentAddr(3, "10.7.7.7/8"))),
		nlmsg(unix.RTM_NEWADDR, 0, withAttrs(ifaddrmsg{family: unix.AF_INET, prefixLen: 24, index: 3}.bytes(), nil)),
		nlmsg(unix.RTM_DELADDR, 0, encodeAddr(six)))
	expect(t, m, AddrEvent{OpDel, six})
	if want := "RTM_NEWADDR: address on link 3: no IFA_LOCAL or IFA_ADDRESS"; !strings.Contains(logs.String(), want) {
		t.Errorf("log %q does not say %q", logs, want)
	}

	// One socket: kinds keep the kernel's order, also within a datagram.
	c := permanentAddr(3, "10.9.0.1/24")
	connected := Route{Dst: netip.MustParsePrefix("10.9.0.0/24"), Src: c.Prefix.Addr(), LinkIndex: 3, Table: unix.RT_TABLE_MAIN,
		Protocol: unix.RTPROT_KERNEL, Scope: ScopeLink}
	s.deliver(t, nil, []syscall.NetlinkMessage{nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(c)), nlmsg(unix.RTM_NEWROUTE, 0, encodeRoute(connected))})
	expect(t, m, AddrEvent{OpNew, c}, RouteEvent{OpNew, connected})

	// A replace does not say what it replaced: the monitor re-reads the
	// routes and reports the one that is gone.
	r2 := defaultRoute(3, "10.9.0.254")
	k.set([]Link{va, vb}, []Addr{a, c}, []Route{connected, r2})
	s.send(t, nlmsg(unix.RTM_NEWROUTE, unix.NLM_F_REPLACE, encodeRoute(r2)))
	expect(t, m, RouteEvent{OpNew, r2}, RouteEvent{OpDel, r})
}

func TestMonitorLinkDeletion(t *testing.T) {
	k := newFakeKernel()
	va, vb := veth(2, "va", true), veth(3, "vb", true)
	a, b := permanentAddr(2, "10.0.0.1/24"), permanentAddr(3, "10.9.0.1/24")
	ra, rb := defaultRoute(2, "10.0.0.254"), defaultRoute(3, "10.9.0.254")
	rb.Src = netip.MustParseAddr("10.0.0.1") // uses va's address: the kernel drops it silently too
	k.set([]Link{va, vb}, []Addr{a, b}, []Route{ra, rb})
	m, _ := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, va}, LinkEvent{OpNew, vb}, AddrEvent{OpNew, a}, AddrEvent{OpNew, b},
		RouteEvent{OpNew, ra}, RouteEvent{OpNew, rb}, Synced{})
	s := k.sub(t, 0)

	k.set([]Link{vb}, []Addr{b}, nil)
	s.send(t, nlmsg(unix.RTM_DELLINK, 0, encodeLink(va)))
	expect(t, m, RouteEvent{OpDel, ra}, AddrEvent{OpDel, a}, LinkEvent{OpDel, va},
		RouteEvent{OpDel, rb}) // from the sweep
	// The kernel's own RTM_DELADDR comes late and says nothing new.
	s.send(t, nlmsg(unix.RTM_DELADDR, 0, encodeAddr(a)), nlmsg(unix.RTM_DELADDR, 0, encodeAddr(b)))
	expect(t, m, AddrEvent{OpDel, b})
}

func TestMonitorLinkDownSweep(t *testing.T) {
	k := newFakeKernel()
	va := veth(2, "va", true)
	a := permanentAddr(2, "10.0.0.1/24")
	r := defaultRoute(2, "10.0.0.254")
	k.set([]Link{va}, []Addr{a}, []Route{r})
	m, _ := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, va}, AddrEvent{OpNew, a}, RouteEvent{OpNew, r}, Synced{})
	s := k.sub(t, 0)

	// Carrier loss keeps the routes: no sweep.
	noCarrier := va
	noCarrier.Carrier = false
	s.send(t, nlmsg(unix.RTM_NEWLINK, 0, encodeLink(noCarrier)))
	expect(t, m, LinkEvent{OpNew, noCarrier})

	// The sweep waits until no notification is pending.
	down := veth(2, "va", false)
	b := permanentAddr(2, "10.0.0.2/24")
	k.set([]Link{down}, []Addr{a, b}, nil)
	s.send(t, nlmsg(unix.RTM_NEWLINK, 0, encodeLink(down)), nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(b)))
	expect(t, m, LinkEvent{OpNew, down}, AddrEvent{OpNew, b}, RouteEvent{OpDel, r})
	k.mu.Lock()
	dumps := k.routeDumps
	k.mu.Unlock()
	if dumps != 2 { // the initial one and the sweep
		t.Errorf("%d route dumps, want 2", dumps)
	}
}

// An IPv4 address deletion costs a route dump only when a route still in
// state may have gone with it silently: one using it as source, or any
// IPv4 route of a link that lost its last IPv4 address.
func TestMonitorAddrDeletionSweep(t *testing.T) {
	k := newFakeKernel()
	va := veth(2, "va", true)
	a, b, c := permanentAddr(2, "10.0.0.1/24"), permanentAddr(2, "10.0.0.2/24"), permanentAddr(2, "10.0.0.3/24")
	connected := Route{Dst: netip.MustParsePrefix("10.0.0.0/24"), Src: a.Prefix.Addr(), LinkIndex: 2, Table: unix.RT_TABLE_MAIN,
		Protocol: unix.RTPROT_KERNEL, Scope: ScopeLink}
	viaB := defaultRoute(2, "10.0.0.254")
	viaB.Src = b.Prefix.Addr()
	k.set([]Link{va}, []Addr{a, b, c}, []Route{connected, viaB})
	m, _ := startFake(t, k)
	expect(t, m, LinkEvent{OpNew, va}, AddrEvent{OpNew, a}, AddrEvent{OpNew, b}, AddrEvent{OpNew, c},
		RouteEvent{OpNew, viaB}, RouteEvent{OpNew, connected}, Synced{})
	s := k.sub(t, 0)
	dumps := func() int {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.routeDumps
	}

	// c is nobody's source: no dump.
	k.set([]Link{va}, []Addr{a, b}, []Route{connected, viaB})
	s.send(t, nlmsg(unix.RTM_DELADDR, 0, encodeAddr(c)))
	expect(t, m, AddrEvent{OpDel, c})
	// a's connected route goes with a notification, before the socket is
	// idle: no dump either.
	k.set([]Link{va}, []Addr{b}, []Route{viaB})
	s.send(t, nlmsg(unix.RTM_DELADDR, 0, encodeAddr(a)), nlmsg(unix.RTM_DELROUTE, 0, encodeRoute(connected)))
	expect(t, m, AddrEvent{OpDel, a}, RouteEvent{OpDel, connected})
	// An event after them proves the monitor went idle in between.
	s.send(t, nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(c)))
	expect(t, m, AddrEvent{OpNew, c})
	if n := dumps(); n != 1 {
		t.Fatalf("%d route dumps, want only the initial one", n)
	}

	// b is viaB's source: the kernel drops viaB silently, the sweep sees it.
	k.set([]Link{va}, []Addr{c}, nil)
	s.send(t, nlmsg(unix.RTM_DELADDR, 0, encodeAddr(b)))
	expect(t, m, AddrEvent{OpDel, b}, RouteEvent{OpDel, viaB})
	if n := dumps(); n != 2 {
		t.Errorf("%d route dumps, want 2", n)
	}
}

func TestMonitorResync(t *testing.T) {
	tests := []struct {
		name string
		// lose makes s lose notifications; the link it deletes is gone
		// anyway, before the resync.
		lose       func(t *testing.T, s *fakeSub)
		wantReason string
		wantErrno  error
	}{
		{
			name:       "ENOBUFS",
			lose:       func(t *testing.T, s *fakeSub) { s.deliver(t, os.NewSyscallError("recvfrom", unix.ENOBUFS)) },
			wantReason: "notifications overran the socket receive buffer: recvfrom: no buffer space available",
			wantErrno:  syscall.ENOBUFS,
		},
		{
			name:       "receive error",
			lose:       func(t *testing.T, s *fakeSub) { s.deliver(t, os.NewSyscallError("recvfrom", unix.EBADF)) },
			wantReason: "receiving notifications: recvfrom: bad file descriptor",
		},
		{
			name: "truncated datagram",
			lose: func(t *testing.T, s *fakeSub) {
				s.deliver(t, fmt.Errorf("%w: 70000 bytes, buffer 65536", errTruncated))
			},
			wantReason: "receiving notifications: datagram truncated: 70000 bytes",
		},
		{
			// The socket error shows when the monitor checks whether
			// it is idle before the sweep after a link went down.
			name: "ENOBUFS before a sweep",
			lose: func(t *testing.T, s *fakeSub) {
				s.deliver(t, os.NewSyscallError("recvfrom", unix.ENOBUFS),
					[]syscall.NetlinkMessage{nlmsg(unix.RTM_NEWLINK, 0, encodeLink(veth(3, "vb", false)))})
			},
			wantReason: "notifications overran the socket receive buffer",
			wantErrno:  syscall.ENOBUFS,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel()
			va, vb := veth(2, "va", true), veth(3, "vb", true)
			a, b := permanentAddr(2, "10.0.0.1/24"), permanentAddr(3, "10.9.0.1/24")
			r := defaultRoute(2, "10.0.0.254")
			k.set([]Link{va, vb}, []Addr{a, b}, []Route{r})
			m, _ := startFake(t, k)
			expect(t, m, LinkEvent{OpNew, va}, LinkEvent{OpNew, vb}, AddrEvent{OpNew, a}, AddrEvent{OpNew, b},
				RouteEvent{OpNew, r}, Synced{})
			s0 := k.sub(t, 0)

			// While notifications are lost: vb goes away, a new address
			// appears. Re-subscribing fails once, then a dump fails
			// (after an interrupted one that is retried at once).
			c := permanentAddr(2, "10.0.0.2/24")
			k.set([]Link{va}, []Addr{a, c}, []Route{r})
			k.mu.Lock()
			k.subscribeErrs = []error{errors.New("injected subscribe failure")}
			k.dumpErrs[unix.RTM_GETLINK] = []error{errDumpInterrupted, errors.New("injected dump failure")}
			k.mu.Unlock()
			tt.lose(t, s0)

			var rn ResyncNeeded
			lastVB := vb
			for rn.Reason == nil { // vb going down comes first in one case
				ev := <-m.Events()
				if le, ok := ev.(LinkEvent); ok && le.Link.Index == vb.Index {
					lastVB = le.Link
					continue
				}
				var ok bool
				if rn, ok = ev.(ResyncNeeded); !ok {
					t.Fatalf("got %v, want ResyncNeeded", ev)
				}
			}
			if !strings.Contains(rn.Reason.Error(), tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", rn.Reason, tt.wantReason)
			}
			if tt.wantErrno != nil && !errors.Is(rn.Reason, tt.wantErrno) {
				t.Errorf("reason %q is not %v", rn.Reason, tt.wantErrno)
			}
			expect(t, m,
				AddrEvent{OpDel, b}, LinkEvent{OpDel, lastVB},
				LinkEvent{OpNew, va}, AddrEvent{OpNew, a}, AddrEvent{OpNew, c}, RouteEvent{OpNew, r}, Synced{})

			// The lost socket is closed, so is the one whose dump
			// failed; the third delivers.
			s := k.sub(t, 2)
			for i := range 2 {
				if !k.sub(t, i).isClosed(testTimeout) {
					t.Errorf("subscription %d not closed", i)
				}
			}
			k.mu.Lock()
			if n := len(k.subs); n != 3 {
				t.Errorf("%d subscriptions, want 3", n)
			}
			k.mu.Unlock()
			s.send(t, nlmsg(unix.RTM_DELADDR, 0, encodeAddr(c)))
			expect(t, m, AddrEvent{OpDel, c})
			m.Close()
			k.checkStopped(t)
		})
	}
}

func TestMonitorCloseWhileConsumerStalls(t *testing.T) {
	k := newFakeKernel()
	var addrs []Addr
	ip := netip.MustParseAddr("10.0.0.1")
	for range eventBuffer + 50 { // more than Events holds: the monitor blocks
		addrs = append(addrs, permanentAddr(2, ip.String()+"/32"))
		ip = ip.Next()
	}
	k.set([]Link{veth(2, "va", true)}, addrs, nil)
	m, err := start(context.Background(), Config{}, k)
	if err != nil {
		t.Fatal(err)
	}
	// Notifications pile up too.
	s := k.sub(t, 0)
	for i := range 100 {
		s.send(t, nlmsg(unix.RTM_NEWLINK, 0, encodeLink(veth(10+i, "x", true))))
	}
	time.Sleep(20 * time.Millisecond)
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(testTimeout):
		t.Fatal("Close blocks while the consumer does not read")
	}
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
	cancel() // the monitor waits for a notification: the wake ends it
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
			"netmon: subscribing to notifications: injected"},
		{"link dump", func(k *fakeKernel) { k.dumpErrs[unix.RTM_GETLINK] = []error{errors.New("boom")} }, "netmon: dumping links: boom"},
		// The subscription that worked must be closed again.
		{"route dump", func(k *fakeKernel) { k.dumpErrs[unix.RTM_GETROUTE] = []error{syscall.EBUSY} },
			"netmon: dumping routes: device or resource busy"},
		{"dump keeps being interrupted", func(k *fakeKernel) {
			k.dumpErrs[unix.RTM_GETADDR] = slices.Repeat([]error{errDumpInterrupted}, maxDumpAttempts)
		}, "netmon: dumping addresses: the table changed while it was dumped (NLM_F_DUMP_INTR) (5 attempts)"},
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
