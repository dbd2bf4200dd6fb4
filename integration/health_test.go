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
// back). Our daemon takes wlan0 out: in the in-kernel mode it withdraws
// wlan0's endpoint, in the userspace one the roaming plugin closes the
// subflow. The flow goes on over wwan0, and once the path forwards again
// wlan0 comes back on probation, a new subflow joins over it and proves
// it healthy. The stall itself is BenchmarkRoaming's to measure.
func TestDaemonPathHealth(t *testing.T) {
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"in-kernel", nil},
		{"userspace", []string{"--path-manager=roaming", "--set-path-manager"}},
	} {
		t.Run(mode.name, func(t *testing.T) { testPathHealth(t, mode.args...) })
	}
}

func testPathHealth(t *testing.T, args ...string) {
	inKernel := len(args) == 0
	bed := twoLinks(t, 20e6)
	if err := bed.Server.SetLimits(8, 8); err != nil {
		t.Fatal(err)
	}
	d := startLaptopMptcpd(t, bed, args...)
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
	if inKernel {
		waitLaptopEndpoints(t, bed)
	} else {
		if !waitFor(startTimeout, func() bool { return strings.Contains(d.stderr.String(), `msg="mptcpd started"`) }) {
			t.Fatalf("mptcpd not started after %v:\n%s", startTimeout, d.stderr.String())
		}
	}
	hasEndpoint := func(a netip.Addr) bool {
		eps, err := client.Endpoints()
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(eps, func(e mptcp.Endpoint) bool { return e.Addr.Unmap() == a })
	}

	flow := startFlow(t, bed.Interactive, testbed.FlowConfig{})
	flows := []*testbed.Flow{flow}
	waitFlowSubflows(t, bed, diag, flows, 2)
	// subflowsFrom counts the flow's subflows from a, in any state.
	subflowsFrom := func(a netip.Addr) int {
		conns, err := diag.Connections()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if c := flow.Connection(conns); c != nil {
			for _, s := range c.Subflows {
				if s.Local.Addr().Unmap() == a {
					n++
				}
			}
		}
		return n
	}
	time.Sleep(time.Second)

	if err := wlan.Blackhole(); err != nil {
		t.Fatal(err)
	}
	// Gone, not left closing: the stranded subflow is aborted too.
	if !waitFor(5*time.Second, func() bool { return subflowsFrom(wlan.Addr()) == 0 }) {
		t.Fatalf("the flow still has %d subflows from wlan0 5 s after its path died\nmptcpd:\n%s", subflowsFrom(wlan.Addr()), d.stderr.String())
	}
	if log := d.stderr.String(); !strings.Contains(log, `msg="path failed, its endpoints withdrawn" link=wlan0 why="no ACK for`) {
		t.Errorf("no failure logged for wlan0:\n%s", log)
	}
	if inKernel && hasEndpoint(wlan.Addr()) {
		t.Error("wlan0 failed, and its endpoint is still there")
	}
	// The flow goes on without wlan0.
	got := flow.Received()
	if !waitFor(2*time.Second, func() bool { return flow.Received() > got }) {
		t.Fatalf("nothing received in 2 s after wlan0 went\n%s", mptcpCounters(t, bed))
	}

	if err := wlan.Forward(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(d.stderr.String(), `msg="path healthy again" link=wlan0`) }) {
		t.Fatalf("wlan0 not healthy again 10 s after it forwards again\nmptcpd:\n%s", d.stderr.String())
	}
	if inKernel && !hasEndpoint(wlan.Addr()) {
		t.Error("wlan0 healthy, and its endpoint missing")
	}
	waitFlowSubflows(t, bed, diag, flows, 2)
	mustSurvive(t, "interactive", flow)
	if log := d.stderr.String(); strings.Count(log, "path failed") > 2 {
		t.Errorf("wlan0 failed more than twice (one failure, at most one lost probe):\n%s", log)
	}
}
