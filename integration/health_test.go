package integration

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// TestDaemonPathHealth: on the roaming testbed, wlan0's path dies
// silently under an interactive flow (its link stays up, nothing comes
// back). Our daemon withdraws wlan0's endpoint, the flow goes on over
// wwan0, and once the path forwards again the endpoint comes back on
// probation, a new subflow joins over wlan0 and proves it healthy. The
// stall itself is BenchmarkRoaming's to measure.
func TestDaemonPathHealth(t *testing.T) {
	bed := twoLinks(t, 20e6)
	setLimits(t, bed.Server, 8, 8)
	d := startLaptopMptcpd(t, bed)
	waitLaptopEndpoints(t, bed)
	wlan := bed.Link("wlan0")
	client, err := mptcp.Dial(&mptcp.Config{NetNS: bed.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: bed.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer diag.Close()
	hasEndpoint := func(a netip.Addr) bool {
		eps, err := client.Endpoints()
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(eps, func(e mptcp.Endpoint) bool { return e.Addr.Unmap() == a })
	}

	flow := startFlow(t, bed.Interactive, testbed.FlowConfig{})
	waitFlowSubflows(t, bed, diag, []*testbed.Flow{flow}, 2)
	time.Sleep(time.Second)

	if err := wlan.Blackhole(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return !hasEndpoint(wlan.Addr()) }) {
		t.Fatalf("wlan0's endpoint still there 5 s after its path died\nmptcpd:\n%s", d.stderr.String())
	}
	if log := d.stderr.String(); !strings.Contains(log, `msg="path failed, its endpoints withdrawn" link=wlan0 why="no ACK for`) {
		t.Errorf("no failure logged for wlan0:\n%s", log)
	}
	// The flow goes on without wlan0.
	got := flow.Received()
	if !waitFor(2*time.Second, func() bool { return flow.Received() > got }) {
		t.Fatalf("nothing received in 2 s after wlan0's endpoint went\n%s", mptcpCounters(t, bed))
	}

	if err := wlan.Forward(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(d.stderr.String(), `msg="path healthy again" link=wlan0`) }) {
		t.Fatalf("wlan0 not healthy again 10 s after it forwards again\nmptcpd:\n%s", d.stderr.String())
	}
	if !hasEndpoint(wlan.Addr()) {
		t.Error("wlan0 healthy, and its endpoint missing")
	}
	waitFlowSubflows(t, bed, diag, []*testbed.Flow{flow}, 2)
	mustSurvive(t, "interactive", flow)
	if log := d.stderr.String(); strings.Count(log, "path failed") > 2 {
		t.Errorf("wlan0 failed more than twice (one failure, at most one lost probe):\n%s", log)
	}
}
