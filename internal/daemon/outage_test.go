package daemon

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// fakeConns stands in for mptcp_diag: the connections the watch lists.
type fakeConns struct {
	mu    sync.Mutex
	conns []mptcpdiag.Connection
}

func (f *fakeConns) set(conns ...mptcpdiag.Connection) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = conns
}

func (f *fakeConns) list() ([]mptcpdiag.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, nil
}

// connFrom is a connection with one fully established subflow from each
// local address.
func connFrom(locals ...string) mptcpdiag.Connection {
	var c mptcpdiag.Connection
	for _, l := range locals {
		c.Subflows = append(c.Subflows, mptcpdiag.Subflow{Local: netip.AddrPortFrom(netip.MustParseAddr(l), 40000),
			State: mptcpdiag.StateEstablished, Flags: mptcpdiag.SubflowFullyEstablished})
	}
	return c
}

// startOutageRig runs an engine with outage-hold's grace whose one link
// has 192.0.2.1, and whose connections are conns (one on 192.0.2.1 to
// start with).
func startOutageRig(t *testing.T, grace time.Duration) (*engineRig, *running, *fakeConns) {
	t.Helper()
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	conns := &fakeConns{}
	conns.set(connFrom("192.0.2.1"))
	r.e.outage = newOutageWatch(grace, r.e.rec, conns.list)
	l := r.run(t, nil)
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	r.waitFor(t, "at start", hasAddrs("192.0.2.1/subflow"))
	return r, l, conns
}

// With outage-hold on, the endpoint of the last path stays through the
// outage while a connection has a subflow on it; the new address gets an
// endpoint beside it, and the kept one goes once the connection has a
// subflow from the new address.
func TestEngineKeepsEndpointsThroughOutage(t *testing.T) {
	r, l, conns := startOutageRig(t, 2*time.Second)

	l.events <- addr(netmon.OpDel, 2, "192.0.2.1/24")
	time.Sleep(3 * outageRecheck)
	if got := addrs(r.k.Endpoints()); len(got) != 1 {
		t.Fatalf("endpoints %v during the outage, want the last one kept", got)
	}

	l.events <- addr(netmon.OpNew, 2, "192.0.2.77/24")
	r.waitFor(t, "new address beside the kept one", hasAddrs("192.0.2.1/subflow", "192.0.2.77/subflow"))
	time.Sleep(3 * outageRecheck)
	if got := addrs(r.k.Endpoints()); len(got) != 2 {
		t.Fatalf("endpoints %v before a new subflow is up, want the kept one still there", got)
	}
	conns.set(connFrom("192.0.2.1", "192.0.2.77"))
	r.waitFor(t, "new subflow up", hasAddrs("192.0.2.77/subflow"))
}

// Without connections on them, nothing is kept: an outage empties the
// table at once, as without outage-hold.
func TestEngineKeepsNothingUnused(t *testing.T) {
	r, l, conns := startOutageRig(t, 2*time.Second)
	conns.set(connFrom("198.51.100.9"))
	l.events <- addr(netmon.OpDel, 2, "192.0.2.1/24")
	r.waitFor(t, "outage", hasAddrs())
}

// A new path whose joins never come up: the kept endpoint goes after the
// grace time all the same.
func TestEngineKeptGoAfterGrace(t *testing.T) {
	grace := 300 * time.Millisecond
	r, l, _ := startOutageRig(t, grace)
	l.events <- addr(netmon.OpDel, 2, "192.0.2.1/24")
	time.Sleep(2 * outageRecheck)
	l.events <- addr(netmon.OpNew, 2, "192.0.2.77/24")
	start := time.Now()
	r.waitFor(t, "new address beside the kept one", hasAddrs("192.0.2.1/subflow", "192.0.2.77/subflow"))
	r.waitFor(t, "grace over", hasAddrs("192.0.2.77/subflow"))
	if took := time.Since(start); took < grace {
		t.Errorf("the kept endpoint went after %s, before the grace of %s", took, grace)
	}
}
