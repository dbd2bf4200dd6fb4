package integration

// Differential tests of the in-memory fake (nl/mptcptest) against a real
// kernel: the same operations go through the real client to both, and the
// answers (errno and extended-ack text), endpoint tables, limits and
// listener events must match exactly.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
)

var (
	fvkSeed  = flag.Uint64("fvk.seed", 0, "seed of TestFakeVsKernelRandom (0: from the clock)")
	fvkSteps = flag.Int("fvk.steps", 400, "operations of TestFakeVsKernelRandom")
)

// The address pool: some configured in the namespace (port endpoints can
// listen on them), some not, IPv4, IPv6 and v4-mapped.
var (
	fvkLocal = []netip.Addr{
		netip.MustParseAddr("10.77.0.1"),
		netip.MustParseAddr("10.77.0.2"),
		netip.MustParseAddr("2001:db8:77::1"),
	}
	fvkPool = append(slices.Clone(fvkLocal),
		netip.MustParseAddr("10.88.0.1"),
		netip.MustParseAddr("10.88.0.2"),
		netip.MustParseAddr("2001:db8:88::1"),
		netip.MustParseAddr("::ffff:10.77.0.1"),
		netip.MustParseAddr("::ffff:10.88.0.2"),
		netip.MustParseAddr("0.0.0.0"),
	)
)

// fvkPair is the real kernel and the fake side by side.
type fvkPair struct {
	real, fake *mptcp.Client
	k          *mptcptest.Kernel
}

// newFVKPair creates a namespace with the local pool configured on lo,
// and a fake that knows the same local addresses.
func newFVKPair(t *testing.T) (*fvkPair, *nstest.NS) {
	t.Helper()
	ns := nstest.New(t)
	for _, a := range fvkLocal {
		if a.Is4() {
			ns.MustRun("ip", "addr", "add", a.String()+"/32", "dev", "lo")
		} else {
			ns.MustRun("ip", "addr", "add", a.String()+"/128", "dev", "lo", "nodad")
		}
	}
	real, err := mptcp.Dial(&mptcp.Config{NetNS: ns.Handle().FD()})
	if err != nil {
		t.Fatalf("dial kernel in %s: %v", ns, err)
	}
	t.Cleanup(func() { _ = real.Close() })
	k := mptcptest.NewKernel()
	k.SetLocalAddrs(fvkLocal...)
	fake, err := k.Dial()
	if err != nil {
		t.Fatalf("dial fake: %v", err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	return &fvkPair{real: real, fake: fake, k: k}, ns
}

// fvkAddrCmp compares addresses by value (netip.Addr has unexported
// fields).
var fvkAddrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// fvkEventTimeout bounds every wait for an event.
const fvkEventTimeout = 10 * time.Second

// fvkOp is one operation applied to both sides; it returns a description
// of what the client answered (beyond the error).
type fvkOp struct {
	desc string
	do   func(c *mptcp.Client) (string, error)
}

// fvkOutcome renders a client result for comparison: the errno name and
// the kernel's message, or the client's own error text.
func fvkOutcome(out string, err error) string {
	var me *mptcp.Error
	switch {
	case err == nil:
		return "ok " + out
	case errors.As(err, &me):
		return fmt.Sprintf("%d (%v): %q", me.Errno, me.Errno, me.Message)
	}
	return "client error: " + err.Error()
}

// step applies op to both sides and compares the answers and the state.
func (p *fvkPair) step(t *testing.T, i int, op fvkOp, history []string) {
	t.Helper()
	realOut := fvkOutcome(op.do(p.real))
	fakeOut := fvkOutcome(op.do(p.fake))
	where := func() string {
		return fmt.Sprintf("step %d: %s\nhistory (oldest first):\n  %s", i, op.desc, strings.Join(history, "\n  "))
	}
	if realOut != fakeOut {
		t.Fatalf("%s\nanswers differ:\n  kernel: %s\n  fake:   %s", where(), realOut, fakeOut)
	}
	realEps, err := p.real.Endpoints()
	if err != nil {
		t.Fatalf("%s\nkernel endpoints: %v", where(), err)
	}
	fakeEps, err := p.fake.Endpoints()
	if err != nil {
		t.Fatalf("%s\nfake endpoints: %v", where(), err)
	}
	if diff := cmp.Diff(realEps, fakeEps, fvkAddrCmp); diff != "" {
		t.Fatalf("%s\nunexpected fake endpoints (-kernel +fake):\n%s", where(), diff)
	}
	realLim, err := p.real.Limits()
	if err != nil {
		t.Fatalf("%s\nkernel limits: %v", where(), err)
	}
	fakeLim, err := p.fake.Limits()
	if err != nil {
		t.Fatalf("%s\nfake limits: %v", where(), err)
	}
	if diff := cmp.Diff(realLim, fakeLim); diff != "" {
		t.Fatalf("%s\nunexpected fake limits (-kernel +fake):\n%s", where(), diff)
	}
}

// fvkGen draws random operations, biased towards the interesting cases:
// ids in use, addresses already present, full tables.
type fvkGen struct {
	rng *rand.Rand
	ids func() []mptcp.ID // ids currently in the (fake) table
}

func (g *fvkGen) pick(n int) int { return g.rng.IntN(n) }

func (g *fvkGen) addr() netip.Addr { return fvkPool[g.pick(len(fvkPool))] }

// id is 0, an id in use, or any id, with 255 and its neighbours favoured
// for the wrap-around of id allocation.
func (g *fvkGen) id() mptcp.ID {
	switch g.pick(6) {
	case 0, 1:
		return 0
	case 2, 3:
		if ids := g.ids(); len(ids) > 0 {
			return ids[g.pick(len(ids))]
		}
		return mptcp.ID(1 + g.pick(10))
	case 4:
		return []mptcp.ID{1, 2, 3, 9, 254, 255}[g.pick(6)]
	}
	return mptcp.ID(1 + g.pick(255))
}

func (g *fvkGen) flags(all bool) mptcp.Flags {
	bits := []mptcp.Flags{mptcp.FlagSignal, mptcp.FlagSubflow, mptcp.FlagBackup, mptcp.FlagFullmesh, mptcp.FlagLaminar}
	var f mptcp.Flags
	for _, b := range bits {
		if g.pick(3) == 0 {
			f |= b
		}
	}
	if all && g.pick(12) == 0 {
		f |= mptcp.FlagImplicit
	}
	if g.pick(16) == 0 {
		f |= 0x40 // unknown to the kernel: dropped
	}
	return f
}

func (g *fvkGen) port() uint16 {
	if g.pick(3) == 0 {
		return []uint16{7000, 7001}[g.pick(2)]
	}
	return 0
}

func (g *fvkGen) u32p(max int) *uint32 {
	if g.pick(4) == 0 {
		return nil
	}
	v := uint32(g.pick(max + 1))
	return &v
}

func (g *fvkGen) op() fvkOp {
	switch n := g.pick(100); {
	case n < 40:
		e := mptcp.Endpoint{ID: g.id(), Addr: g.addr(), Port: g.port(), Flags: g.flags(true)}
		if g.pick(5) == 0 {
			e.IfIndex = []int{1, 999}[g.pick(2)]
		}
		if e.Port != 0 && g.pick(3) > 0 {
			// Mostly valid port endpoints: signal without subflow.
			e.Flags = e.Flags&^(mptcp.FlagSubflow|mptcp.FlagFullmesh) | mptcp.FlagSignal
		}
		return fvkOp{fmt.Sprintf("add %+v", e), func(c *mptcp.Client) (string, error) { return "", c.AddEndpoint(e) }}
	case n < 60:
		id, addr := g.id(), netip.Addr{}
		if id == 0 || g.pick(4) == 0 {
			addr = g.addr()
		}
		return fvkOp{fmt.Sprintf("delete id %d %v", id, addr), func(c *mptcp.Client) (string, error) {
			return "", c.DeleteEndpoint(id, addr)
		}}
	case n < 63:
		return fvkOp{"flush", func(c *mptcp.Client) (string, error) { return "", c.FlushEndpoints() }}
	case n < 78:
		e := mptcp.Endpoint{ID: g.id(), Flags: g.flags(false)}
		if e.ID == 0 {
			e.Addr, e.Port = g.addr(), g.port()
		}
		return fvkOp{fmt.Sprintf("set flags %+v", e), func(c *mptcp.Client) (string, error) { return "", c.SetEndpointFlags(e) }}
	case n < 88:
		l := mptcp.Limits{Subflows: g.u32p(9), AddAddrAccepted: g.u32p(9)}
		return fvkOp{fmt.Sprintf("set limits %s", fvkLimits(l)), func(c *mptcp.Client) (string, error) { return "", c.SetLimits(l) }}
	case n < 95:
		id := g.id()
		return fvkOp{fmt.Sprintf("get id %d", id), func(c *mptcp.Client) (string, error) {
			e, err := c.Endpoint(id)
			return fmt.Sprintf("%+v", e), err
		}}
	}
	// Userspace PM commands: no connection exists, so the token is bad.
	tok := mptcp.Token(g.rng.Uint32())
	e := mptcp.Endpoint{ID: g.id(), Addr: g.addr(), Flags: g.flags(false)}
	remote := netip.AddrPortFrom(g.addr(), 443)
	ops := []fvkOp{
		{fmt.Sprintf("announce %v %+v", tok, e), func(c *mptcp.Client) (string, error) { return "", c.Announce(tok, e) }},
		{fmt.Sprintf("remove %v id %d", tok, e.ID), func(c *mptcp.Client) (string, error) { return "", c.Remove(tok, e.ID) }},
		{fmt.Sprintf("create subflow %v %+v -> %v", tok, e, remote), func(c *mptcp.Client) (string, error) {
			return "", c.CreateSubflow(tok, e, remote)
		}},
		{fmt.Sprintf("connection endpoints %v", tok), func(c *mptcp.Client) (string, error) {
			eps, err := c.ConnectionEndpoints(tok)
			return fmt.Sprint(eps), err
		}},
	}
	return ops[g.pick(len(ops))]
}

func fvkLimits(l mptcp.Limits) string {
	s := func(p *uint32) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("subflows %s add_addr_accepted %s", s(l.Subflows), s(l.AddAddrAccepted))
}

// TestFakeVsKernelRandom applies a seeded random sequence of endpoint,
// limit and flag operations to the fake and to a fresh namespace. Rerun a
// failure with -fvk.seed.
func TestFakeVsKernelRandom(t *testing.T) {
	p, _ := newFVKPair(t)
	seed := *fvkSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: rerun with go test ./integration/ -run FakeVsKernelRandom -fvk.seed=%d", seed, seed)
		}
	})
	g := &fvkGen{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	g.ids = func() []mptcp.ID {
		var ids []mptcp.ID
		for _, e := range p.k.Endpoints() {
			ids = append(ids, e.ID)
		}
		return ids
	}
	var history []string
	for i := range *fvkSteps {
		op := g.op()
		p.step(t, i, op, history)
		if history = append(history, op.desc); len(history) > 12 {
			history = history[1:]
		}
	}
}

// TestFakeVsKernelScripted replays sequences that exercise one rule each,
// so that a regression names the rule.
func TestFakeVsKernelScripted(t *testing.T) {
	a := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 66, 0, byte(i)}) }
	add := func(e mptcp.Endpoint) fvkOp {
		return fvkOp{fmt.Sprintf("add %+v", e), func(c *mptcp.Client) (string, error) { return "", c.AddEndpoint(e) }}
	}
	del := func(id mptcp.ID) fvkOp {
		return fvkOp{fmt.Sprintf("delete %d", id), func(c *mptcp.Client) (string, error) {
			return "", c.DeleteEndpoint(id, netip.Addr{})
		}}
	}
	sub := func(i int) fvkOp { return add(mptcp.Endpoint{Addr: a(i), Flags: mptcp.FlagSubflow}) }
	subID := func(i int, id mptcp.ID) fvkOp {
		return add(mptcp.Endpoint{ID: id, Addr: a(i), Flags: mptcp.FlagSubflow})
	}
	tests := []struct {
		name string
		ops  []fvkOp
	}{
		{"full table", []fvkOp{sub(1), sub(2), sub(3), sub(4), sub(5), sub(6), sub(7), sub(8), sub(9), subID(9, 200)}},
		{"id reuse after delete", []fvkOp{sub(1), sub(2), sub(3), del(3), sub(4), del(2), sub(5), sub(6)}},
		{"id wrap-around", []fvkOp{subID(1, 254), sub(2), sub(3), subID(4, 255), sub(5), del(1), sub(6)}},
		{"explicit ids", []fvkOp{subID(1, 7), subID(2, 7), subID(2, 3), sub(3), sub(4), sub(5)}},
		{"flush resets allocation", []fvkOp{subID(1, 100), sub(2),
			{"flush", func(c *mptcp.Client) (string, error) { return "", c.FlushEndpoints() }}, sub(3)}},
		{"port listeners", []fvkOp{
			add(mptcp.Endpoint{Addr: fvkLocal[0], Port: 7000, Flags: mptcp.FlagSignal}),
			add(mptcp.Endpoint{Addr: fvkLocal[0], Port: 7000, Flags: mptcp.FlagSignal}),
			add(mptcp.Endpoint{Addr: fvkLocal[0], Port: 7001, Flags: mptcp.FlagSignal}),
			add(mptcp.Endpoint{Addr: fvkLocal[0], Flags: mptcp.FlagSignal}),
			add(mptcp.Endpoint{Addr: netip.MustParseAddr("10.88.0.9"), Port: 7000, Flags: mptcp.FlagSignal}),
			add(mptcp.Endpoint{Addr: fvkLocal[0], Port: 7002, Flags: mptcp.FlagSignal | mptcp.FlagSubflow}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newFVKPair(t)
			var history []string
			for i, op := range tt.ops {
				p.step(t, i, op, history)
				history = append(history, op.desc)
			}
		})
	}
}

// TestFakeVsKernelListenerEvents compares the LISTENER_CREATED and
// LISTENER_CLOSED events of port endpoints: created, refused by a full
// table (created then closed), deleted and flushed.
func TestFakeVsKernelListenerEvents(t *testing.T) {
	p, ns := newFVKPair(t)
	realEvents := fvkCollect(t, func() (*mptcp.EventListener, error) {
		h := ns.Handle()
		return mptcp.ListenEvents(&mptcp.Config{NetNS: h.FD()})
	})
	fakeEvents := fvkCollect(t, p.k.ListenEvents)

	ops := []mptcp.Endpoint{
		{Addr: fvkLocal[0], Port: 7000, Flags: mptcp.FlagSignal},
		{Addr: fvkLocal[2], Port: 7001, Flags: mptcp.FlagSignal | mptcp.FlagBackup},
		{Addr: fvkLocal[1], Port: 7000, Flags: mptcp.FlagSignal},
	}
	for i, e := range ops {
		p.step(t, i, fvkOp{fmt.Sprintf("add %+v", e), func(c *mptcp.Client) (string, error) { return "", c.AddEndpoint(e) }}, nil)
	}
	for i := range 5 {
		e := mptcp.Endpoint{Addr: netip.AddrFrom4([4]byte{10, 66, 0, byte(i + 1)}), Flags: mptcp.FlagSubflow}
		p.step(t, 10+i, fvkOp{fmt.Sprintf("add %+v", e), func(c *mptcp.Client) (string, error) { return "", c.AddEndpoint(e) }}, nil)
	}
	full := mptcp.Endpoint{Addr: fvkLocal[1], Port: 7005, Flags: mptcp.FlagSignal}
	p.step(t, 20, fvkOp{"add to full table", func(c *mptcp.Client) (string, error) { return "", c.AddEndpoint(full) }}, nil)
	p.step(t, 21, fvkOp{"delete 2", func(c *mptcp.Client) (string, error) { return "", c.DeleteEndpoint(2, netip.Addr{}) }}, nil)
	p.step(t, 22, fvkOp{"flush", func(c *mptcp.Client) (string, error) { return "", c.FlushEndpoints() }}, nil)

	// 3 created, 1 created+closed, 1 closed, 2 closed.
	const want = 3 + 2 + 1 + 2
	got, fake := realEvents(want), fakeEvents(want)
	if diff := cmp.Diff(got, fake); diff != "" {
		t.Errorf("unexpected fake listener events (-kernel +fake):\n%s", diff)
	}
}

// fvkCollect starts a listener and returns a function that waits for n
// events and renders them with the attributes that were sent.
func fvkCollect(t *testing.T, listen func() (*mptcp.EventListener, error)) func(n int) []string {
	t.Helper()
	l, err := listen()
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ch := make(chan mptcp.Event, 64)
	go func() {
		defer close(ch)
		for {
			evs, err := l.Receive()
			if err != nil {
				return
			}
			for _, ev := range evs {
				ch <- ev
			}
		}
	}()
	return func(n int) []string {
		var out []string
		timeout := time.After(fvkEventTimeout)
		for len(out) < n {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("listener stopped after %d events: %q", len(out), out)
				}
				out = append(out, fvkEvent(ev))
			case <-timeout:
				t.Fatalf("got %d events, want %d: %q", len(out), n, out)
			}
		}
		return out
	}
}

// fvkEvent renders an event with exactly the attributes present.
func fvkEvent(ev mptcp.Event) string {
	parts := []string{ev.Type.String()}
	add := func(a mptcp.EventAttr, name string, v any) {
		if ev.Has(a) {
			parts = append(parts, fmt.Sprintf("%s=%v", name, v))
		}
	}
	add(mptcp.AttrToken, "token", ev.Token)
	add(mptcp.AttrFamily, "family", ev.Family)
	add(mptcp.AttrSaddr4, "saddr4", ev.Saddr)
	add(mptcp.AttrSaddr6, "saddr6", ev.Saddr)
	add(mptcp.AttrDaddr4, "daddr4", ev.Daddr)
	add(mptcp.AttrDaddr6, "daddr6", ev.Daddr)
	add(mptcp.AttrSport, "sport", ev.Sport)
	add(mptcp.AttrDport, "dport", ev.Dport)
	add(mptcp.AttrLocalID, "locid", ev.LocalID)
	add(mptcp.AttrRemoteID, "remid", ev.RemoteID)
	add(mptcp.AttrBackup, "backup", ev.Backup)
	add(mptcp.AttrIfIndex, "ifindex", ev.IfIndex)
	return strings.Join(parts, " ")
}

// TestFakeVsKernelEventOverrun compares a listener that falls behind: with
// the smallest receive buffer, the kernel keeps two events, reports the
// loss first, and drops further events until the queue is drained.
func TestFakeVsKernelEventOverrun(t *testing.T) {
	p, ns := newFVKPair(t)
	real, err := mptcp.ListenEvents(&mptcp.Config{NetNS: ns.Handle().FD()})
	if err != nil {
		t.Fatalf("listen kernel: %v", err)
	}
	t.Cleanup(func() { _ = real.Close() })
	fake, err := p.k.ListenEvents()
	if err != nil {
		t.Fatalf("listen fake: %v", err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	for _, l := range []*mptcp.EventListener{real, fake} {
		if err := l.SetReadBuffer(1); err != nil {
			t.Fatalf("SetReadBuffer: %v", err)
		}
	}
	port := mptcp.Endpoint{ID: 1, Addr: fvkLocal[0], Port: 7000, Flags: mptcp.FlagSignal}
	cycle := func(i int) {
		p.step(t, i, fvkOp{"add port endpoint", func(c *mptcp.Client) (string, error) { return "", c.AddEndpoint(port) }}, nil)
		p.step(t, i, fvkOp{"delete it", func(c *mptcp.Client) (string, error) { return "", c.DeleteEndpoint(1, netip.Addr{}) }}, nil)
	}
	for i := range 3 {
		cycle(i)
	}
	receive := func(l *mptcp.EventListener) []string {
		var out []string
		for range 3 {
			out = append(out, fvkReceive(t, l))
		}
		return out
	}
	got, fakeGot := receive(real), receive(fake)
	// Drained: events flow again.
	cycle(3)
	got, fakeGot = append(got, fvkReceive(t, real)), append(fakeGot, fvkReceive(t, fake))
	if diff := cmp.Diff(got, fakeGot); diff != "" {
		t.Errorf("unexpected fake receives (-kernel +fake):\n%s", diff)
	}
}

// fvkReceive renders one Receive result.
func fvkReceive(t *testing.T, l *mptcp.EventListener) string {
	t.Helper()
	evs, err := fvkReceiveEvents(t, l)
	if err != nil {
		return "error: " + err.Error()
	}
	var parts []string
	for _, ev := range evs {
		parts = append(parts, fvkEvent(ev))
	}
	return strings.Join(parts, "; ")
}

// fvkReceiveEvents is Receive failing the test after a timeout.
func fvkReceiveEvents(t *testing.T, l *mptcp.EventListener) ([]mptcp.Event, error) {
	t.Helper()
	type result struct {
		evs []mptcp.Event
		err error
	}
	ch := make(chan result, 1)
	go func() {
		evs, err := l.Receive()
		ch <- result{evs, err}
	}()
	select {
	case r := <-ch:
		return r.evs, r.err
	case <-time.After(fvkEventTimeout):
		t.Fatal("Receive timed out")
	}
	return nil, nil
}

// TestFakeVsKernelUserspacePM compares the userspace path-manager commands
// on a real MPTCP connection. The fake learns the connection from the
// kernel's own CREATED event.
func TestFakeVsKernelUserspacePM(t *testing.T) {
	p, ns := newFVKPair(t)
	ns.MustRun("sysctl", "-q", "-w", "net.mptcp.path_manager=userspace")
	if err := p.k.SetPathManager("userspace"); err != nil {
		t.Fatal(err)
	}
	h := ns.Handle()
	realEvents, err := mptcp.ListenEvents(&mptcp.Config{NetNS: h.FD()})
	if err != nil {
		t.Fatalf("listen kernel: %v", err)
	}
	t.Cleanup(func() { _ = realEvents.Close() })
	fakeEvents, err := p.k.ListenEvents()
	if err != nil {
		t.Fatalf("listen fake: %v", err)
	}
	t.Cleanup(func() { _ = fakeEvents.Close() })

	// A connection from 10.77.0.1 to itself, port 5000.
	server := netip.AddrPortFrom(fvkLocal[0], 5000)
	var ln net.Listener
	var conn net.Conn
	err = h.Do(func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		var err error
		if ln, err = lc.Listen(context.Background(), "tcp4", server.String()); err != nil {
			return err
		}
		var d net.Dialer
		d.SetMultipathTCP(true)
		ctx, cancel := context.WithTimeout(context.Background(), fvkEventTimeout)
		defer cancel()
		conn, err = d.DialContext(ctx, "tcp4", server.String())
		return err
	})
	if err != nil {
		t.Fatalf("MPTCP connection in %s: %v", ns, err)
	}
	t.Cleanup(func() { _ = conn.Close(); _ = ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	// Data makes the connection fully established, which subflows need.
	_ = conn.SetDeadline(time.Now().Add(fvkEventTimeout))
	if _, err := conn.Write([]byte("x")); err != nil {
		t.Fatalf("write: %v", err)
	}
	select {
	case c := <-accepted:
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(fvkEventTimeout))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("server read: %v", err)
		}
	case <-time.After(fvkEventTimeout):
		t.Fatal("no connection accepted")
	}

	// The client side's events name the connection to drive; the fake
	// learns it from them.
	clientSide := func(typ mptcp.EventType) func(mptcp.Event) bool {
		return func(ev mptcp.Event) bool { return ev.Type == typ && !ev.ServerSide }
	}
	created := fvkWaitEvent(t, realEvents, clientSide(mptcp.EventCreated))
	tok := created.Token
	established := fvkWaitEvent(t, realEvents, func(ev mptcp.Event) bool {
		return ev.Type == mptcp.EventEstablished && ev.Token == tok
	})
	p.k.Inject(created, established)
	fvkWaitEvent(t, fakeEvents, clientSide(mptcp.EventEstablished))

	sig := mptcp.Endpoint{ID: 5, Addr: fvkLocal[1], Flags: mptcp.FlagSignal}
	sf := mptcp.Endpoint{ID: 7, Addr: fvkLocal[1], Flags: mptcp.FlagBackup}
	v6 := mptcp.Endpoint{ID: 8, Addr: fvkLocal[2]}
	nonLocal := mptcp.Endpoint{ID: 9, Addr: netip.MustParseAddr("10.88.0.1")}
	announce := func(e mptcp.Endpoint) fvkOp {
		return fvkOp{fmt.Sprintf("announce %+v", e), func(c *mptcp.Client) (string, error) { return "", c.Announce(tok, e) }}
	}
	remove := func(id mptcp.ID) fvkOp {
		return fvkOp{fmt.Sprintf("remove %d", id), func(c *mptcp.Client) (string, error) { return "", c.Remove(tok, id) }}
	}
	create := func(e mptcp.Endpoint) fvkOp {
		return fvkOp{fmt.Sprintf("create subflow %+v", e), func(c *mptcp.Client) (string, error) {
			return "", c.CreateSubflow(tok, e, server)
		}}
	}
	list := fvkOp{"connection endpoints", func(c *mptcp.Client) (string, error) {
		eps, err := c.ConnectionEndpoints(tok)
		return fmt.Sprintf("%+v", eps), err
	}}
	backup := func(local netip.AddrPort, b bool) fvkOp {
		return fvkOp{fmt.Sprintf("backup %v %v", local, b), func(c *mptcp.Client) (string, error) {
			return "", c.SetSubflowBackup(tok, local, server, b)
		}}
	}
	ops := []fvkOp{
		announce(sig), announce(sig), announce(withEndpointID(sig, 6)), announce(withEndpointID(sig, 0)),
		announce(mptcp.Endpoint{ID: 6, Addr: fvkLocal[1]}), list,
		remove(5), remove(5), list,
		create(sf), list, create(withEndpointID(sf, 10)), create(v6), create(nonLocal),
		create(mptcp.Endpoint{ID: 11, Addr: fvkLocal[1], Flags: mptcp.FlagSignal}),
		backup(netip.AddrPortFrom(fvkLocal[1], 0), false),
		backup(netip.AddrPortFrom(netip.MustParseAddr("10.88.0.1"), 0), true),
		{"destroy unknown subflow", func(c *mptcp.Client) (string, error) {
			return "", c.DestroySubflow(tok, netip.AddrPortFrom(fvkLocal[1], 1), server)
		}},
	}
	var history []string
	for i, op := range ops {
		p.step(t, i, op, history)
		history = append(history, op.desc)
	}

	// Each side destroys the subflow it created, named by its own port.
	sub := func(l *mptcp.EventListener) netip.AddrPort {
		ev := fvkWaitEvent(t, l, func(ev mptcp.Event) bool {
			return ev.Type == mptcp.EventSubEstablished && ev.Token == tok && ev.Saddr == fvkLocal[1]
		})
		return netip.AddrPortFrom(ev.Saddr, ev.Sport)
	}
	realLocal, fakeLocal := sub(realEvents), sub(fakeEvents)
	destroy := fvkOp{"destroy the subflow", func(c *mptcp.Client) (string, error) {
		local := fakeLocal
		if c == p.real {
			local = realLocal
		}
		return "", c.DestroySubflow(tok, local, server)
	}}
	// Last: RM_ADDR for id 0 makes the peer drop the initial subflow.
	for i, op := range []fvkOp{destroy, list, destroy, remove(0)} {
		p.step(t, len(ops)+i, op, history)
		history = append(history, op.desc)
	}
}

func withEndpointID(e mptcp.Endpoint, id mptcp.ID) mptcp.Endpoint { e.ID = id; return e }

// fvkWaitEvent returns the first event match accepts, skipping others,
// failing after a timeout.
func fvkWaitEvent(t *testing.T, l *mptcp.EventListener, match func(mptcp.Event) bool) mptcp.Event {
	t.Helper()
	for {
		evs, err := fvkReceiveEvents(t, l)
		if err != nil {
			t.Fatalf("waiting for an event: %v", err)
		}
		for _, ev := range evs {
			if match(ev) {
				return ev
			}
		}
	}
}
