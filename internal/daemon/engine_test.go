package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// The engine against the fake kernel and a hand-fed event stream: what
// the integration tests show end to end, here without root and with every
// step visible.

// fakeRouter records the source routes it was asked for.
type fakeRouter struct {
	mu      sync.Mutex
	applied [][]pm.SourceRoute
}

func (r *fakeRouter) Apply(s []pm.SourceRoute) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, s)
	return nil
}

func (*fakeRouter) Close() error { return nil }

// engineRig is an engine wired to a fake kernel, with its notifications
// to systemd recorded.
type engineRig struct {
	k       *mptcptest.Kernel
	e       *engine
	mu      sync.Mutex
	notices []string
}

// testPolicy makes endpoints on test* links only; the default policy would
// ignore the veth-like links of these tests.
func testSettings(t testing.TB, text string) *settings {
	t.Helper()
	conf := policy.DefaultConfig()
	p, err := policy.Parse("test.policy", []byte(text), conf.BaseSettings())
	if err != nil {
		t.Fatal(err)
	}
	return &settings{conf: conf, policy: p}
}

func newEngineRig(t testing.TB, s *settings) *engineRig {
	t.Helper()
	k := mptcptest.NewKernel()
	c, err := k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	st, err := pm.OpenStore(shmDir(t) + "/state.json")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	r := &engineRig{k: k}
	kv := &kernelView{Kernel: c}
	r.e = &engine{log: log, rec: pm.NewReconciler(kv, st, log), kernel: kv, store: st, routes: &fakeRouter{}, state: netmon.NewState(),
		notify: func(n string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.notices = append(r.notices, n)
		}}
	r.e.use(s)
	return r
}

func (r *engineRig) notifications() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notices)
}

// shmDir is a scratch directory on tmpfs, like /run on a real system (the
// store skips fsync there).
func shmDir(t testing.TB) string {
	d, err := os.MkdirTemp("/dev/shm", "mptcpd-engine-")
	if err != nil {
		d = t.TempDir()
	} else {
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	return d
}

func link(index int, name string) netmon.Event {
	return netmon.LinkEvent{Op: netmon.OpNew, Link: netmon.Link{Index: index, Name: name, Kind: "veth", Up: true, Carrier: true, OperState: netmon.OperUp}}
}

func addr(op netmon.Op, index int, prefix string) netmon.Event {
	return netmon.AddrEvent{Op: op, Addr: netmon.Addr{LinkIndex: index, Prefix: netip.MustParsePrefix(prefix),
		Scope: netmon.ScopeUniverse, PreferredLifetime: netmon.Forever, ValidLifetime: netmon.Forever}}
}

// twoLinks feeds the events of a namespace with test0 (index 2,
// 192.0.2.1) and second (index 3, 198.51.100.1), then Synced.
func (l *running) twoLinks(second string) {
	l.events <- link(2, "test0")
	l.events <- link(3, second)
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- addr(netmon.OpNew, 3, "198.51.100.1/24")
	l.events <- netmon.Synced{}
}

// running is a loop in a goroutine, fed through events and hup.
type running struct {
	events chan netmon.Event
	hup    chan os.Signal
	cancel context.CancelFunc
	done   chan error
}

func (r *engineRig) run(t *testing.T, reload func() (*settings, error)) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &running{events: make(chan netmon.Event, 8192), hup: make(chan os.Signal, 1), cancel: cancel, done: make(chan error, 1)}
	go func() { l.done <- r.e.loop(ctx, l.events, l.hup, reload) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-l.done:
		case <-time.After(10 * time.Second):
			t.Error("loop did not return after its context ended")
		}
	})
	return l
}

// waitFor polls the fake kernel until cond holds on its endpoint table.
func (r *engineRig) waitFor(t *testing.T, what string, cond func([]mptcp.Endpoint) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(r.k.Endpoints()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: endpoints %v", what, r.k.Endpoints())
		}
		time.Sleep(time.Millisecond)
	}
}

func addrs(eps []mptcp.Endpoint) []string {
	var s []string
	for _, e := range eps {
		s = append(s, fmt.Sprintf("%s/%s", e.Addr, e.Flags))
	}
	slices.Sort(s)
	return s
}

func hasAddrs(want ...string) func([]mptcp.Endpoint) bool {
	slices.Sort(want)
	return func(eps []mptcp.Endpoint) bool { return slices.Equal(addrs(eps), want) }
}

const subflowPolicy = "match name=test*\n    flags subflow\n"

func TestEngineFollowsEvents(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	l := r.run(t, nil)
	// Nothing happens before the first complete state.
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	time.Sleep(20 * time.Millisecond)
	if eps := r.k.Endpoints(); len(eps) != 0 {
		t.Fatalf("endpoints before Synced: %v", eps)
	}
	if n := r.notifications(); len(n) != 0 {
		t.Fatalf("notifications before Synced: %v", n)
	}
	l.events <- netmon.Synced{}
	r.waitFor(t, "after Synced", hasAddrs("192.0.2.1/subflow"))
	if n := r.notifications(); len(n) == 0 || n[0] != "READY=1" {
		t.Errorf("notifications %v: want READY=1 first, after the first pass", n)
	}

	l.events <- addr(netmon.OpNew, 2, "2001:db8::1/64")
	r.waitFor(t, "IPv6 address added", hasAddrs("192.0.2.1/subflow", "2001:db8::1/subflow"))
	l.events <- addr(netmon.OpDel, 2, "192.0.2.1/24")
	r.waitFor(t, "IPv4 address deleted", hasAddrs("2001:db8::1/subflow"))
	l.events <- netmon.LinkEvent{Op: netmon.OpDel, Link: netmon.Link{Index: 2, Name: "test0"}}
	r.waitFor(t, "link deleted", hasAddrs())

	ready := 0
	for _, n := range r.notifications() {
		if n == "READY=1" {
			ready++
		}
	}
	if ready != 1 {
		t.Errorf("READY=1 sent %d times, want once: %v", ready, r.notifications())
	}
}

// A burst queued while the engine is busy costs one pass, with no
// intermediate states reaching the kernel.
func TestEngineCoalescesBursts(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.e.apply(link(2, "test0"))
	r.e.apply(netmon.Synced{})
	r.e.pass()
	r.k.ResetOps()

	events := make(chan netmon.Event, 4096)
	for i := range 1000 {
		a := fmt.Sprintf("10.0.%d.%d/16", i/250, 1+i%250)
		events <- addr(netmon.OpNew, 2, a)
		if i != 999 {
			events <- addr(netmon.OpDel, 2, a)
		}
	}
	l := &running{events: events}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.e.loop(ctx, l.events, nil, nil) }()
	r.waitFor(t, "after the burst", hasAddrs("10.0.3.250/subflow"))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("loop: %v", err)
	}
	var writes []mptcptest.Op
	for _, op := range r.k.Ops() {
		if op.Cmd != mptcp.MPTCP_PM_CMD_SET_LIMITS {
			writes = append(writes, op)
		}
	}
	if len(writes) != 1 || writes[0].Cmd != mptcp.MPTCP_PM_CMD_ADD_ADDR {
		t.Errorf("endpoint writes for a burst of 1999 events: %v, want one ADD_ADDR", writes)
	}
}

// A failed write is retried soon, without waiting for the periodic
// resync or another event.
func TestEngineRetriesFailures(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.k.FailNext(mptcp.MPTCP_PM_CMD_ADD_ADDR, syscall.ENOMEM)
	l := r.run(t, nil)
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	r.waitFor(t, "after the retry", hasAddrs("192.0.2.1/subflow"))
	var adds []syscall.Errno
	for _, op := range r.k.Ops() {
		if op.Cmd == mptcp.MPTCP_PM_CMD_ADD_ADDR {
			adds = append(adds, op.Errno)
		}
	}
	if !slices.Equal(adds, []syscall.Errno{syscall.ENOMEM, 0}) {
		t.Errorf("ADD_ADDR results %v, want the failure then a success", adds)
	}
}

// Lost events force a full pass: the kernel's table is read again, so an
// endpoint deleted behind the daemon's back comes back (event passes trust
// the table the last pass left).
func TestEngineResyncRereadsKernel(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	l := r.run(t, nil)
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	r.waitFor(t, "start", hasAddrs("192.0.2.1/subflow"))

	c, err := r.k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eps := r.k.Endpoints()
	if err := c.DeleteEndpoint(eps[0].ID, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	l.events <- netmon.ResyncNeeded{Reason: errors.New("test: ENOBUFS")}
	l.events <- netmon.Synced{}
	r.waitFor(t, "after the resync", hasAddrs("192.0.2.1/subflow"))
}

// SIGHUP: a bad file keeps the running configuration; a good one applies
// at once, changing flags in place.
func TestEngineReload(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	var next func() (*settings, error)
	l := r.run(t, func() (*settings, error) { return next() })
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	r.waitFor(t, "start", hasAddrs("192.0.2.1/subflow"))
	id := r.k.Endpoints()[0].ID

	reloaded := make(chan struct{}, 1)
	next = func() (*settings, error) {
		defer func() { reloaded <- struct{}{} }()
		return nil, errors.New("test.policy:1: unknown keyword")
	}
	l.hup <- syscall.SIGHUP
	<-reloaded
	l.events <- addr(netmon.OpNew, 2, "192.0.2.2/24")
	r.waitFor(t, "after a bad reload", hasAddrs("192.0.2.1/subflow", "192.0.2.2/subflow"))

	next = func() (*settings, error) {
		defer func() { reloaded <- struct{}{} }()
		return testSettings(t, "match name=test*\n    flags subflow backup\n"), nil
	}
	l.hup <- syscall.SIGHUP
	<-reloaded
	r.waitFor(t, "after a good reload", hasAddrs("192.0.2.1/subflow backup", "192.0.2.2/subflow backup"))
	if got := r.k.Endpoints()[0].ID; got != id {
		t.Errorf("endpoint id %d after the reload, was %d: replaced instead of SET_FLAGS", got, id)
	}
	n := r.notifications()
	if !slices.Contains(n, "RELOADING=1") || n[len(n)-1] == "RELOADING=1" {
		t.Errorf("notifications %v: want RELOADING=1 followed by READY=1", n)
	}
}

func TestEngineMonitorGone(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	events := make(chan netmon.Event)
	close(events)
	err := r.e.loop(context.Background(), events, nil, nil)
	if err == nil || err.Error() != "network monitor stopped" {
		t.Errorf("loop with a closed event stream: %v", err)
	}
}

// BenchmarkEnginePass is the daemon's own work for one address appearing
// and going away: two event passes against the fake kernel, state file
// on tmpfs included.
func BenchmarkEnginePass(b *testing.B) {
	r := newEngineRig(b, testSettings(b, subflowPolicy))
	r.e.apply(link(2, "test0"))
	r.e.apply(netmon.Synced{})
	r.e.pass()
	add, del := addr(netmon.OpNew, 2, "192.0.2.1/24"), addr(netmon.OpDel, 2, "192.0.2.1/24")
	for b.Loop() {
		r.e.apply(add)
		r.e.pass()
		r.e.apply(del)
		r.e.pass()
	}
	if eps := r.k.Endpoints(); len(eps) != 0 {
		b.Fatalf("endpoints left: %v", eps)
	}
}
