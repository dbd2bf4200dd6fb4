package integration

// Tests of internal/testbed on the real kernel: the topology routes
// through each AP, tbf holds its rate, each scripted event has the effect
// its documentation claims, and the stall measurement sees a cut of the
// right size. TestTestbedDemoCarrierLoss* log the kernel-only baseline
// of a sudden carrier loss under MPTCP.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// stopGrace is how long a flow's receiver may take to read what was in
// flight when the flow stops: a few socket buffers at the shaped rates.
const stopGrace = 5 * time.Second

// twoLinks is a laptop with Wi-Fi and 4G at rate each (0: unshaped).
func twoLinks(t testing.TB, rate uint64) *testbed.Testbed {
	t.Helper()
	return testbed.New(t, testbed.Config{Logf: t.Logf, Links: []testbed.LinkConfig{
		{Name: "wlan0", Shape: testbed.Shape{Rate: rate}},
		{Name: "wwan0", Shape: testbed.Shape{Rate: rate}},
	}})
}

func startFlow(t testing.TB, start func(testbed.FlowConfig) (*testbed.Flow, error), cfg testbed.FlowConfig) *testbed.Flow {
	t.Helper()
	f, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mustSurvive stops f and fails the test unless it survived.
func mustSurvive(t *testing.T, what string, f *testbed.Flow) testbed.Result {
	t.Helper()
	r := f.Stop(stopGrace)
	if !r.Survived || r.Sent == 0 {
		t.Errorf("%s: survived %v, %d bytes sent, %d received, %d verified: %v", what, r.Survived, r.Sent, r.Received, r.Verified, r.Err)
	}
	return r
}

// linkState reads a link or fails the test.
func linkState(t *testing.T, ns *testbed.Namespace, name string) testbed.LinkState {
	t.Helper()
	l, err := ns.Link(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// defaultRoutes lists the laptop's default routes, one line each.
func defaultRoutes(t *testing.T, tb *testbed.Testbed) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "-n", tb.Laptop.Name, "route", "show", "default").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route show default: %v: %s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// hasRouteVia reports whether routes has a default route via gw on dev.
func hasRouteVia(routes []string, gw, dev string) bool {
	return slices.ContainsFunc(routes, func(r string) bool {
		return strings.Contains(r, "via "+gw+" dev "+dev+" ")
	})
}

// TestTestbedRoutes: a connection bound to each link, to each server
// address, crosses that link's AP and no other; unbound, it follows the
// lowest default route metric.
func TestTestbedRoutes(t *testing.T) {
	tb := testbed.New(t, testbed.Config{Logf: t.Logf, ServerAddrs: 2, Links: []testbed.LinkConfig{
		{Name: "wlan0", Metric: 300},
		{Name: "wwan0", Metric: 200},
		{Name: "eth0", Metric: 100},
	}})
	type sample map[string]testbed.Counters // by AP link name, each AP's uplink
	uplinks := func() sample {
		s := sample{}
		for _, l := range tb.Links {
			s[l.Name] = linkState(t, l.AP, "wan").Counters
		}
		return s
	}
	// via sends a little over cfg and returns the link whose AP carried it.
	via := func(cfg testbed.FlowConfig) string {
		t.Helper()
		before := uplinks()
		f := startFlow(t, tb.Upload, cfg)
		waitFor(5*time.Second, func() bool { return f.Received() >= 1<<20 })
		r := mustSurvive(t, "transfer", f)
		after := uplinks()
		var carried []string
		for name := range after {
			if d := after[name].TxBytes - before[name].TxBytes; d >= uint64(r.Received) {
				carried = append(carried, name)
			}
		}
		if len(carried) != 1 {
			t.Fatalf("%+v: %d bytes went through the APs of %q, want exactly one", cfg, r.Received, carried)
		}
		return carried[0]
	}
	for _, l := range tb.Links {
		for _, srv := range tb.ServerAddrs() {
			before := linkState(t, tb.Laptop, l.Name).TxBytes
			if got := via(testbed.FlowConfig{TCP: true, Dev: l.Name, Server: srv}); got != l.Name {
				t.Errorf("bound to %s, to %s: went through the AP of %s", l.Name, srv, got)
			}
			if d := linkState(t, tb.Laptop, l.Name).TxBytes - before; d < 1<<20 {
				t.Errorf("bound to %s: the laptop's %s counted %d bytes sent, want ≥ 1 MiB", l.Name, l.Name, d)
			}
		}
	}
	if got := via(testbed.FlowConfig{TCP: true}); got != "eth0" {
		t.Errorf("unbound: went through the AP of %s, want eth0 (metric 100)", got)
	}
	if got := via(testbed.FlowConfig{}); got != "eth0" {
		t.Errorf("unbound MPTCP without endpoints: went through the AP of %s, want eth0", got)
	}
}

// TestTestbedShape: tbf holds an upload near the rate set, and lifting
// the limit lets it go far faster.
func TestTestbedShape(t *testing.T) {
	tb := twoLinks(t, 0)
	l := tb.Link("wlan0")
	measure := func() float64 {
		f := startFlow(t, tb.Upload, testbed.FlowConfig{TCP: true, Dev: "wlan0"})
		start := time.Now()
		time.Sleep(2 * time.Second)
		r := mustSurvive(t, "upload", f)
		// Past slow start and the burst that fills the queues.
		return r.Trace.Rate(start.Add(time.Second), start.Add(2*time.Second))
	}
	for _, rate := range []uint64{10e6, 40e6} {
		if err := l.SetShape(testbed.Shape{Rate: rate}); err != nil {
			t.Fatal(err)
		}
		got := measure()
		t.Logf("tbf %d Mbit/s: upload %.1f Mbit/s", rate/1e6, got/1e6)
		// Goodput is below the wire rate by the headers (~5 %).
		if got < 0.6*float64(rate) || got > 1.1*float64(rate) {
			t.Errorf("tbf %d Mbit/s: upload %.1f Mbit/s, want 60-110 %%", rate/1e6, got/1e6)
		}
	}
	if err := l.SetShape(testbed.Shape{}); err != nil {
		t.Fatal(err)
	}
	if got := measure(); got < 200e6 {
		t.Errorf("no limit: upload %.1f Mbit/s, want far above the 40 Mbit/s limit", got/1e6)
	}
}

// TestTestbedCarrier: carrier loss at each end leaves the flags and
// routes the documentation claims, and carrier back restores the path.
func TestTestbedCarrier(t *testing.T) {
	type flags struct{ up, lowerUp bool }
	for _, tc := range []struct {
		end          testbed.End
		laptop, ap   flags // the laptop's link and the AP's side during the loss
		defaultRoute bool  // the laptop's default route through the link stays
	}{
		{end: testbed.AtAP, laptop: flags{true, false}, ap: flags{false, false}, defaultRoute: true},
		{end: testbed.AtLaptop, laptop: flags{false, false}, ap: flags{true, false}, defaultRoute: false},
	} {
		t.Run(strings.ReplaceAll(tc.end.String(), " ", "-"), func(t *testing.T) {
			tb := twoLinks(t, 0)
			l := tb.Link("wlan0")
			if err := l.CarrierLoss(tc.end); err != nil {
				t.Fatal(err)
			}
			s, ap := linkState(t, tb.Laptop, "wlan0"), linkState(t, l.AP, "lan")
			if got := (flags{s.Up, s.LowerUp}); got != tc.laptop {
				t.Errorf("carrier loss %s: laptop wlan0 {UP LOWER_UP} %v, want %v", tc.end, got, tc.laptop)
			}
			if got := (flags{ap.Up, ap.LowerUp}); got != tc.ap {
				t.Errorf("carrier loss %s: AP lan {UP LOWER_UP} %v, want %v", tc.end, got, tc.ap)
			}
			if !slices.Contains(s.Addrs, l.Prefix()) {
				t.Errorf("carrier loss %s: addresses %v, want %v kept", tc.end, s.Addrs, l.Prefix())
			}
			if got := hasRouteVia(defaultRoutes(t, tb), l.Gateway().String(), "wlan0"); got != tc.defaultRoute {
				t.Errorf("carrier loss %s: default route through wlan0 present %v, want %v", tc.end, got, tc.defaultRoute)
			}
			if err := l.CarrierBack(tc.end); err != nil {
				t.Fatal(err)
			}
			if !waitFor(2*time.Second, func() bool {
				s, ap := linkState(t, tb.Laptop, "wlan0"), linkState(t, l.AP, "lan")
				return s.Up && s.LowerUp && ap.Up && ap.LowerUp
			}) {
				t.Fatalf("carrier back %s: links not UP with LOWER_UP", tc.end)
			}
			if !hasRouteVia(defaultRoutes(t, tb), l.Gateway().String(), "wlan0") {
				t.Errorf("carrier back %s: no default route through wlan0: %q", tc.end, defaultRoutes(t, tb))
			}
			f := startFlow(t, tb.Upload, testbed.FlowConfig{TCP: true, Dev: "wlan0"})
			waitFor(5*time.Second, func() bool { return f.Received() > 0 })
			mustSurvive(t, "after carrier back", f)
		})
	}
}

// TestTestbedRenumber: the link moves to a new subnet on both sides, the
// old address is gone, and the new one reaches the server.
func TestTestbedRenumber(t *testing.T) {
	tb := twoLinks(t, 0)
	l := tb.Link("wwan0")
	old, oldGW := l.Prefix(), l.Gateway()
	if err := l.Renumber(); err != nil {
		t.Fatal(err)
	}
	if l.Prefix() == old || l.Prefix().Masked() == old.Masked() {
		t.Fatalf("renumbered %s stays in %s", old, l.Prefix())
	}
	if s := linkState(t, tb.Laptop, "wwan0"); !slices.Equal(s.Addrs, []netip.Prefix{l.Prefix()}) || !s.Up || !s.LowerUp {
		t.Errorf("laptop wwan0 after renumbering: addresses %v up %v carrier %v; want only %v, up", s.Addrs, s.Up, s.LowerUp, l.Prefix())
	}
	if ap := linkState(t, l.AP, "lan"); slices.ContainsFunc(ap.Addrs, func(p netip.Prefix) bool { return p.Addr() == oldGW }) ||
		!slices.ContainsFunc(ap.Addrs, func(p netip.Prefix) bool { return p.Addr() == l.Gateway() }) {
		t.Errorf("AP lan after renumbering: addresses %v, want %v and not %v", ap.Addrs, l.Gateway(), oldGW)
	}
	routes := defaultRoutes(t, tb)
	if !hasRouteVia(routes, l.Gateway().String(), "wwan0") || hasRouteVia(routes, oldGW.String(), "wwan0") {
		t.Errorf("default routes after renumbering: %q, want one via %s", routes, l.Gateway())
	}
	f := startFlow(t, tb.Upload, testbed.FlowConfig{TCP: true, Dev: "wwan0"})
	waitFor(5*time.Second, func() bool { return f.Received() > 0 })
	if got := f.Conn().LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != l.Addr() {
		t.Errorf("connection over wwan0 from %s, want %s", got, l.Addr())
	}
	mustSurvive(t, "after renumbering", f)
}

// TestTestbedBlackhole: a blackholed path carries nothing while every
// link stays up and no error comes back; the other path is untouched; a
// black zone stops both; forwarding again resumes the same connections.
func TestTestbedBlackhole(t *testing.T) {
	tb := twoLinks(t, 20e6)
	flows := map[string]*testbed.Flow{}
	for _, l := range tb.Links {
		flows[l.Name] = startFlow(t, tb.Upload, testbed.FlowConfig{TCP: true, Dev: l.Name})
	}
	// progress reports which links' flows received anything in 500 ms,
	// starting 200 ms after the change (the queues drain meanwhile).
	progress := func() map[string]bool {
		time.Sleep(200 * time.Millisecond)
		before := map[string]int64{}
		for n, f := range flows {
			before[n] = f.Received()
		}
		time.Sleep(500 * time.Millisecond)
		got := map[string]bool{}
		for n, f := range flows {
			got[n] = f.Received() > before[n]
		}
		return got
	}
	check := func(what string, want map[string]bool) {
		t.Helper()
		if got := progress(); !maps.Equal(got, want) {
			t.Errorf("%s: progress %v, want %v", what, got, want)
		}
		for _, l := range tb.Links {
			s, ap := linkState(t, tb.Laptop, l.Name), linkState(t, l.AP, "lan")
			if !s.Up || !s.LowerUp || !ap.LowerUp {
				t.Errorf("%s: %s laptop UP %v LOWER_UP %v, AP LOWER_UP %v; want all", what, l.Name, s.Up, s.LowerUp, ap.LowerUp)
			}
		}
	}
	wlan := tb.Link("wlan0")
	check("both forward", map[string]bool{"wlan0": true, "wwan0": true})
	if err := wlan.Blackhole(); err != nil {
		t.Fatal(err)
	}
	check("wlan0 blackholed", map[string]bool{"wlan0": false, "wwan0": true})
	// Silent: a new connection through it times out, no ICMP error;
	// the AP itself still answers (a refusal: nothing listens there).
	dial := func(to string) error {
		d := net.Dialer{Timeout: 500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: wlan.Addr().AsSlice()}}
		return tb.Laptop.Do(func() error {
			c, err := d.Dial("tcp4", net.JoinHostPort(to, "9"))
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := dial(tb.ServerAddrs()[0].String()); !isTimeout(err) {
		t.Errorf("dial the server through the blackholed wlan0: %v, want a timeout", err)
	}
	if err := dial(wlan.Gateway().String()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial the blackholed AP itself: %v, want connection refused", err)
	}
	if err := wlan.Forward(); err != nil {
		t.Fatal(err)
	}
	// The blackholed connection comes back after its next RTO, up to
	// 1.6 s after 700+ ms of silence.
	waitFor(3*time.Second, func() bool { return progress()["wlan0"] })
	check("wlan0 forwards again", map[string]bool{"wlan0": true, "wwan0": true})
	if err := tb.BlackZone(); err != nil {
		t.Fatal(err)
	}
	check("black zone", map[string]bool{"wlan0": false, "wwan0": false})
	if err := tb.EndBlackZone(); err != nil {
		t.Fatal(err)
	}
	waitFor(3*time.Second, func() bool { p := progress(); return p["wlan0"] && p["wwan0"] })
	check("black zone over", map[string]bool{"wlan0": true, "wwan0": true})
	for n, f := range flows {
		mustSurvive(t, n, f)
	}
}

// TestTestbedStall: on a plain TCP connection, a 500 ms cut of its path
// shows as one stall of at least that long (until the first
// retransmission after the cut ends), and an undisturbed one shows none.
// The interactive flow beside it sees the same.
func TestTestbedStall(t *testing.T) {
	const (
		cut = 500 * time.Millisecond
		// What was past the cut in tbf's queues (20 ms each) still
		// arrives after it.
		minStall = cut - 50*time.Millisecond
	)
	for _, tc := range []struct {
		name         string
		cut, restore func(*testbed.Link) error
		min, max     time.Duration
	}{
		// Undisturbed, tail drops in tbf's queue still cost the bulk
		// flow up to ~100 ms now and then (an RTO would be ~220 ms).
		{name: "none", max: 250 * time.Millisecond},
		{"carrier-at-AP", func(l *testbed.Link) error { return l.CarrierLoss(testbed.AtAP) },
			func(l *testbed.Link) error { return l.CarrierBack(testbed.AtAP) }, minStall, 2 * time.Second},
		{"carrier-at-laptop", func(l *testbed.Link) error { return l.CarrierLoss(testbed.AtLaptop) },
			func(l *testbed.Link) error { return l.CarrierBack(testbed.AtLaptop) }, minStall, 2 * time.Second},
		{"blackhole", (*testbed.Link).Blackhole, (*testbed.Link).Forward, minStall, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := twoLinks(t, 20e6)
			l := tb.Link("wlan0")
			bulk := startFlow(t, tb.Upload, testbed.FlowConfig{TCP: true, Dev: "wlan0"})
			ssh := startFlow(t, tb.Interactive, testbed.FlowConfig{TCP: true, Dev: "wlan0"})
			// Past slow start, whose overshoot costs the bulk flow one
			// RTO (~230 ms) at 0.3-1.1 s.
			time.Sleep(2 * time.Second)
			at := time.Now()
			if tc.cut != nil {
				if err := tc.cut(l); err != nil {
					t.Fatal(err)
				}
				time.Sleep(cut - time.Since(at))
				if err := tc.restore(l); err != nil {
					t.Fatal(err)
				}
			}
			end := at.Add(2500 * time.Millisecond)
			time.Sleep(time.Until(end))
			for name, f := range map[string]*testbed.Flow{"bulk": bulk, "interactive": ssh} {
				r := mustSurvive(t, name, f)
				gap := r.Trace.MaxGap(at, end)
				t.Logf("%s: stall %v at +%v, %d bytes", name, gap.Len.Round(time.Millisecond), gap.Start.Sub(at).Round(time.Millisecond), r.Received)
				if gap.Len < tc.min || gap.Len > tc.max {
					t.Errorf("%s: stall %v, want %v to %v", name, gap.Len, tc.min, tc.max)
				}
				if name == "interactive" && len(r.RTTs) < 100 {
					t.Errorf("interactive: %d echoes timed in 4.5 s, want ≥ 100", len(r.RTTs))
				}
			}
		})
	}
}

// TestTestbedDemoCarrierLossUpload is the kernel-only baseline of a
// sudden carrier loss (see demoCarrierLoss) for a bulk upload, under
// cubic (Linux's default) and bbr (this host's default).
func TestTestbedDemoCarrierLossUpload(t *testing.T) {
	for _, cc := range []string{"cubic", "bbr"} {
		t.Run(cc, func(t *testing.T) { demoCarrierLoss(t, "upload", cc) })
	}
}

// TestTestbedDemoCarrierLossInteractive is the same for an ssh-like
// session, whose echoes the server sends on the dead path too.
func TestTestbedDemoCarrierLossInteractive(t *testing.T) {
	demoCarrierLoss(t, "interactive", "cubic")
}

// demoCarrierLoss measures, in three runs, the stall of one MPTCP flow
// over two paths at 50 Mbit/s when the AP of its initial subflow's link
// vanishes: the in-kernel path manager with a static subflow endpoint per
// link, no daemon. It logs the stalls and fails only if the connection
// does not survive.
func demoCarrierLoss(t *testing.T, flow, cc string) {
	var stalls []time.Duration
	for run := range 3 {
		stalls = append(stalls, demoCarrierLossRun(t, flow, cc, run))
	}
	slices.Sort(stalls)
	t.Logf("sudden carrier loss, static endpoints, %s, %s: stall median %v, min %v, max %v", flow, cc,
		stalls[1].Round(time.Millisecond), stalls[0].Round(time.Millisecond), stalls[2].Round(time.Millisecond))
}

// demoCarrierLossRun is one run of demoCarrierLoss.
func demoCarrierLossRun(t *testing.T, flow, cc string, run int) time.Duration {
	tb := testbed.New(t, testbed.Config{Congestion: cc, Links: []testbed.LinkConfig{
		{Name: "wlan0", Shape: testbed.Shape{Rate: 50e6}},
		{Name: "wwan0", Shape: testbed.Shape{Rate: 50e6}},
	}})
	defer tb.Close()
	if err := tb.StaticEndpoints(mptcp.FlagSubflow); err != nil {
		t.Fatal(err)
	}
	start := tb.Upload
	if flow == "interactive" {
		start = tb.Interactive
	}
	f := startFlow(t, start, testbed.FlowConfig{})
	waitSubflows(t, tb, 2)
	time.Sleep(2 * time.Second)
	at := time.Now()
	if err := tb.Link("wlan0").CarrierLoss(testbed.AtAP); err != nil {
		t.Fatal(err)
	}
	end := at.Add(2 * time.Second)
	time.Sleep(time.Until(end))
	r := mustSurvive(t, flow, f)
	gap := r.Trace.MaxGap(at, end)
	t.Logf("run %d: stall %v (from +%v), %.1f Mbit/s before, %.1f after, %d KiB verified",
		run+1, gap.Len.Round(time.Millisecond), gap.Start.Sub(at).Round(time.Millisecond),
		r.Trace.Rate(at.Add(-time.Second), at)/1e6, r.Trace.Rate(end.Add(-time.Second), end)/1e6, r.Verified>>10)
	return gap.Len
}

// waitSubflows waits until one of the laptop's MPTCP connections has n
// subflows.
func waitSubflows(t *testing.T, tb *testbed.Testbed, n int) {
	t.Helper()
	c, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: tb.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got int
	if !waitFor(5*time.Second, func() bool {
		conns, err := c.Connections()
		if err != nil {
			t.Fatal(err)
		}
		got = 0
		for _, conn := range conns {
			if !conn.Listening() {
				got = max(got, len(conn.Subflows))
			}
		}
		return got >= n
	}) {
		t.Fatalf("%d subflows after 5 s, want %d\n%s", got, n, mptcpCounters(t, tb))
	}
}

// mptcpCounters are the laptop's and the server's non-zero MPTCP
// counters, to tell why a subflow is missing.
func mptcpCounters(t testing.TB, tb *testbed.Testbed) string {
	var b strings.Builder
	for _, ns := range []*testbed.Namespace{tb.Laptop, tb.Server} {
		out, err := ns.Command(t.Context(), "nstat", "-az", "MPTcp*").CombinedOutput()
		fmt.Fprintf(&b, "%s (%v):\n", ns, err)
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[1] != "0" {
				fmt.Fprintf(&b, "\t%s\n", l)
			}
		}
	}
	return b.String()
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
