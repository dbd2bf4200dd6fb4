package integration

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// Environment knobs of BenchmarkRoaming.
const (
	envRoamingRuns   = "ROAMING_RUNS"   // runs per cell; default 3
	envRoamingOutage = "ROAMING_OUTAGE" // scenario 5's time without any link; default 30s
)

const (
	roamingRate   = 50e6            // tbf on each link, bits per second
	roamingWarmUp = 2 * time.Second // past slow start (internal/testbed's doc)
	// roamingSettle is how long scenario 4 leaves the data on wwan0
	// before wlan0 comes back: longer than scenario 1's worst stall.
	roamingSettle = 3 * time.Second
	// roamingTail keeps the flows going after a resumption was seen, so
	// that surviving means working again, not one byte moved.
	roamingTail = time.Second
	// roamingJoinTimeout bounds the wait for the flows' subflows before
	// the event; missing it is a broken set-up, not a measurement.
	roamingJoinTimeout = 5 * time.Second
)

// never is a measure that did not happen within its scenario's window.
const never = time.Duration(math.MaxInt64)

// BenchmarkRoaming prints, in one run, a table of what a handover costs
// under three path managers on the roaming testbed (internal/testbed): the
// in-kernel one with a static subflow endpoint per link (the anchor),
// Intel's mptcpd 0.12 with addr_adv (when /usr/libexec/mptcpd exists) and
// ours with its built-in policy (wlan* subflow, wwan* backup). Every run
// is a fresh testbed, wlan0 and wwan0 at 50 Mbit/s each, whose server
// accepts 8 joins, carrying a bulk MPTCP upload and an interactive flow
// (64 bytes every 10 ms, echoed), both cubic; the event comes after a 2 s
// warm-up. The scenarios:
//
//  1. wlan0's AP vanishes (carrier loss at the AP): the longest stall;
//  2. wlan0's path dies silently (Blackhole): the longest stall;
//  3. wlan0 is renumbered: the longest stall;
//  4. wlan0's carrier comes back while the data runs on wwan0: the
//     longest stall during the move back;
//  5. both links lose carrier; ROAMING_OUTAGE (30 s) later wlan0 is
//     renumbered and gets its carrier back: the time from that return to
//     the first data received;
//  6. the flows start while wlan0 is down without an address; then it
//     comes up, takes an address and, a few milliseconds later, a default
//     route, as a DHCP client brings a network up: the time until the
//     laptop first sends data over a subflow from wlan0 on the existing
//     connections (target 50 ms).
//
// In the stall scenarios (1-4) the bulk flow also gives its recovery,
// the time from the event until 1 MB more arrived: a stall of 200 ms can
// hide a second at a trickle.
//
// A cell gives the p50 and max over ROAMING_RUNS (3) runs, how many runs
// the connection survived (every byte arrived, in order, and the stream
// ended) and whether every byte received was the one sent. A connection a
// path manager loses is a result, not a failure of the benchmark. Each
// sub-benchmark reports the bulk and interactive medians; a measure that
// did not happen within its window counts as the window there.
//
// Run it with `go test -run '^$' -bench Roaming -benchtime 1x
// -timeout 30m ./integration/`: the defaults take about 15 minutes.
func BenchmarkRoaming(b *testing.B) {
	nstest.Require(b)
	runs, outage := roamingEnv(b)
	scenarios := roamingScenarios(outage)
	cells := make([][]roamingCell, len(scenarios)) // by scenario, path manager
	for i, s := range scenarios {
		cells[i] = make([]roamingCell, len(roamingPMs))
		b.Run(s.name, func(b *testing.B) {
			for j, pm := range roamingPMs {
				b.Run(pm.name, func(b *testing.B) { benchRoamingCell(b, &cells[i][j], s, pm, runs) })
			}
		})
	}
	printRoamingTable(os.Stdout, scenarios, cells, runs, outage)
}

func roamingEnv(b *testing.B) (runs int, outage time.Duration) {
	runs, outage = 3, 30*time.Second
	if env := os.Getenv(envRoamingRuns); env != "" {
		n, err := strconv.Atoi(env)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number of runs", envRoamingRuns, env)
		}
		runs = n
	}
	if env := os.Getenv(envRoamingOutage); env != "" {
		d, err := time.ParseDuration(env)
		if err != nil || d <= 0 {
			b.Fatalf("%s=%q: want a positive duration such as 5s", envRoamingOutage, env)
		}
		outage = d
	}
	return runs, outage
}

// roamingPM is a path manager under measurement.
type roamingPM struct {
	name    string // sub-benchmark and table row
	missing string // what a skipped cell means
	// prepare checks, once per cell, that the path manager is there
	// (skipping b when not) and returns how to set it going on the
	// laptop of a fresh testbed.
	prepare func(b *testing.B) func(t testing.TB, bed *testbed.Testbed)
}

var roamingPMs = []roamingPM{
	{name: "kernel-only", prepare: func(*testing.B) func(testing.TB, *testbed.Testbed) {
		return func(t testing.TB, bed *testbed.Testbed) {
			if err := bed.StaticEndpoints(mptcp.FlagSubflow); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{name: "intel-mptcpd", missing: "Intel's mptcpd is not installed", prepare: func(b *testing.B) func(testing.TB, *testbed.Testbed) {
		argv := intelArgv(b)
		// It sets the laptop's limits itself (4 and 4).
		return func(t testing.TB, bed *testbed.Testbed) {
			d := start(t, "Intel's mptcpd", bed.Laptop.Command(context.Background(), argv[0], argv[1:]...))
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("Intel's mptcpd stderr:\n%s", d.stderr.String())
				}
			})
		}
	}},
	{name: "mptcpd-go", missing: "cmd/mptcpd is not built", prepare: func(b *testing.B) func(testing.TB, *testbed.Testbed) {
		requireMptcpd(b)
		return func(t testing.TB, bed *testbed.Testbed) { startLaptopMptcpd(t, bed) }
	}},
}

// roamingFlow is one of the flows each run carries.
type roamingFlow struct {
	name   string // table row
	metric string // prefix of its reported metrics
	start  func(bed *testbed.Testbed) func(testbed.FlowConfig) (*testbed.Flow, error)
	// recovered is how many bytes after the event mean the flow is back
	// at work, for the scenarios that measure a stall: a stall hides
	// how slowly the data comes after it (the kernel's MPTCP resends
	// one chunk per retransmission period until it gives up on the
	// dead subflow). 0: not measured.
	recovered int64
}

// roamingRecovered is the bulk flow's recovery mark: 1 MB, 168 ms at
// 50 Mbit/s once the sender is at full rate on one link.
const roamingRecovered = 1 << 20

var roamingFlows = []roamingFlow{
	{"bulk upload", "bulk", func(bed *testbed.Testbed) func(testbed.FlowConfig) (*testbed.Flow, error) { return bed.Upload }, roamingRecovered},
	{"interactive", "ssh", func(bed *testbed.Testbed) func(testbed.FlowConfig) (*testbed.Flow, error) { return bed.Interactive }, 0},
}

// roamingMeasure is what a scenario times, for each flow.
type roamingMeasure int

const (
	// measureStall: the longest gap in the flow's receive log that
	// overlaps the window from the event on.
	measureStall roamingMeasure = iota
	// measureResume: from the event to the first read after it.
	measureResume
	// measureWlanData: from the event to the first data the laptop
	// sends over a subflow from wlan0's address.
	measureWlanData
)

// unit names the measure in the reported metrics.
func (m roamingMeasure) unit() string {
	return [...]string{"stall", "resume", "wlan0-data"}[m]
}

// roamingScenario is one column of the table.
type roamingScenario struct {
	name     string // sub-benchmark
	column   string // table heading
	measure  roamingMeasure
	window   time.Duration // after the event, for the measure to happen
	subflows int           // each flow's established subflows before the event
	// before changes the testbed before the path manager starts; nil
	// changes nothing.
	before func(bed *testbed.Testbed) error
	// event applies the scenario's change, after any lead-up, and
	// returns when the change began: the window's start.
	event func(bed *testbed.Testbed) (time.Time, error)
}

func roamingScenarios(outage time.Duration) []roamingScenario {
	wlan := func(bed *testbed.Testbed) *testbed.Link { return bed.Link("wlan0") }
	// now applies an event without lead-up.
	now := func(apply func(*testbed.Link) error) func(*testbed.Testbed) (time.Time, error) {
		return func(bed *testbed.Testbed) (time.Time, error) {
			at := time.Now()
			return at, apply(wlan(bed))
		}
	}
	return []roamingScenario{{
		name: "carrier-loss", column: "1 wlan0 carrier lost at the AP: stall",
		measure: measureStall, window: 5 * time.Second, subflows: 2,
		event: now(func(l *testbed.Link) error { return l.CarrierLoss(testbed.AtAP) }),
	}, {
		name: "blackhole", column: "2 wlan0 dies silently: stall",
		measure: measureStall, window: 5 * time.Second, subflows: 2,
		event: now((*testbed.Link).Blackhole),
	}, {
		name: "renumber", column: "3 wlan0 renumbered: stall",
		measure: measureStall, window: 5 * time.Second, subflows: 2,
		event: now((*testbed.Link).Renumber),
	}, {
		name: "move-back", column: "4 wlan0 back while on wwan0: stall",
		measure: measureStall, window: 5 * time.Second, subflows: 2,
		event: func(bed *testbed.Testbed) (time.Time, error) {
			if err := wlan(bed).CarrierLoss(testbed.AtAP); err != nil {
				return time.Time{}, err
			}
			time.Sleep(roamingSettle)
			at := time.Now()
			return at, wlan(bed).CarrierBack(testbed.AtAP)
		},
	}, {
		name:    "outage",
		column:  fmt.Sprintf("5 no link for %v, wlan0 back renumbered: back to data", outage),
		measure: measureResume, window: 10 * time.Second, subflows: 2,
		event: func(bed *testbed.Testbed) (time.Time, error) {
			for _, l := range bed.Links {
				if err := l.CarrierLoss(testbed.AtAP); err != nil {
					return time.Time{}, err
				}
			}
			time.Sleep(outage)
			if err := wlan(bed).Renumber(); err != nil {
				return time.Time{}, err
			}
			at := time.Now()
			return at, wlan(bed).CarrierBack(testbed.AtAP)
		},
	}, {
		name: "new-link", column: "6 wlan0 up, new address: up to data on wlan0 (target 50 ms)",
		measure: measureWlanData, window: 5 * time.Second, subflows: 1,
		before: func(bed *testbed.Testbed) error {
			l := wlan(bed)
			if err := l.CarrierLoss(testbed.AtLaptop); err != nil {
				return err
			}
			return laptopIP(bed, "addr del "+l.Prefix().String()+" dev "+l.Name)
		},
		// Link, then address, then default route (CarrierBack's, a few
		// ms later), as a DHCP client brings a network up. A subflow
		// opened from the address in between finds no route through
		// wlan0 and is sent on-link, where nothing answers its ARP.
		event: func(bed *testbed.Testbed) (time.Time, error) {
			l := wlan(bed)
			at := time.Now()
			if err := laptopIP(bed, "link set "+l.Name+" up", "addr add "+l.Prefix().String()+" dev "+l.Name); err != nil {
				return at, err
			}
			return at, l.CarrierBack(testbed.AtLaptop)
		},
	}}
}

// laptopIP runs ip commands in the laptop's namespace in one `ip -batch`.
func laptopIP(bed *testbed.Testbed, lines ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "-n", bed.Laptop.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("in %s: ip -batch %q: %v: %s", bed.Laptop, lines, err, out)
	}
	return nil
}

// roamingSample is what one flow did in one run.
type roamingSample struct {
	d        time.Duration // the scenario's measure; never: not within its window
	recovery time.Duration // until the flow's recovered bytes arrived; never: not within the window; 0: not measured
	survived bool
	bytesOK  bool // every byte received was the one sent
}

// roamingCell is one scenario under one path manager.
type roamingCell struct {
	note    string            // why it was not measured; "" when it was
	samples [][]roamingSample // by flow (roamingFlows), one per run
}

func benchRoamingCell(b *testing.B, c *roamingCell, s roamingScenario, pm roamingPM, runs int) {
	defer func() {
		switch {
		case b.Skipped():
			c.note = "not measured: " + cmp.Or(pm.missing, "skipped (see the log)")
		case b.Failed():
			c.note = "failed (see the log)"
		}
	}()
	startPM := pm.prepare(b)
	c.samples = make([][]roamingSample, len(roamingFlows))
	for b.Loop() {
		for range runs {
			inRunScope(b, func(t testing.TB) {
				for i, r := range roamingRun(t, s, startPM) {
					c.samples[i] = append(c.samples[i], r)
				}
			})
		}
	}
	b.ReportMetric(0, "ns/op") // a cell's wall time says nothing
	for i, f := range roamingFlows {
		p50, _ := c.summary(i)
		b.ReportMetric(float64(min(p50, s.window).Microseconds())/1e3, f.metric+"-"+s.measure.unit()+"-p50-ms")
		if rec, ok := c.recovery(i); ok {
			b.ReportMetric(float64(min(rec, s.window).Microseconds())/1e3, f.metric+"-recovery-p50-ms")
		}
	}
}

// roamingRun is one run of s in a fresh testbed: a sample per flow.
func roamingRun(t testing.TB, s roamingScenario, startPM func(testing.TB, *testbed.Testbed)) []roamingSample {
	bed := twoLinks(t, roamingRate)
	// The server accepts joins: the kernel's default (2 subflows) would
	// refuse new ones while dead ones from a lost link still count.
	if err := bed.Server.SetLimits(8, 8); err != nil {
		t.Fatal(err)
	}
	if s.before != nil {
		if err := s.before(bed); err != nil {
			t.Fatal(err)
		}
	}
	startPM(t, bed)
	waitLaptopEndpoints(t, bed)
	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: bed.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = diag.Close() })
	var flows []*testbed.Flow
	for _, f := range roamingFlows {
		flows = append(flows, startFlow(t, f.start(bed), testbed.FlowConfig{}))
	}
	waitFlowSubflows(t, bed, diag, flows, s.subflows)
	time.Sleep(roamingWarmUp)

	at, err := s.event(bed)
	if err != nil {
		t.Fatal(err)
	}
	end := at.Add(s.window)
	var wlanData []time.Duration
	switch s.measure {
	case measureStall:
		time.Sleep(time.Until(end))
	case measureResume:
		var got []int64
		for _, f := range flows {
			got = append(got, f.Received())
		}
		waitFor(time.Until(end), func() bool {
			for i, f := range flows {
				if f.Received() == got[i] {
					return false
				}
			}
			return true
		})
		time.Sleep(roamingTail)
	case measureWlanData:
		wlanData = firstDataFrom(t, diag, flows, bed.Link("wlan0").Addr(), at, end)
		time.Sleep(roamingTail)
	}

	var out []roamingSample
	for i, r := range stopFlows(flows) {
		smp := roamingSample{survived: r.Survived, bytesOK: r.Verified == r.Received}
		switch s.measure {
		case measureStall:
			smp.d = stallIn(r.Trace, at, end)
			if n := roamingFlows[i].recovered; n > 0 {
				smp.recovery = never
				if d, ok := r.Trace.TimeTo(at, n); ok && d <= s.window {
					smp.recovery = d
				}
			}
		case measureResume:
			smp.d = resumeIn(r.Trace, at, end)
		case measureWlanData:
			smp.d = wlanData[i]
		}
		out = append(out, smp)
	}
	return out
}

// waitLaptopEndpoints waits until the laptop has an endpoint for each
// address on its links: the path manager has taken the network in, and
// the flows opened next find their endpoints.
func waitLaptopEndpoints(t testing.TB, bed *testbed.Testbed) {
	t.Helper()
	var want []netip.Addr
	for _, l := range bed.Links {
		st, err := l.State()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(st.Addrs, l.Prefix()) {
			want = append(want, l.Addr())
		}
	}
	c, err := mptcp.Dial(&mptcp.Config{NetNS: bed.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var eps []mptcp.Endpoint
	has := func(a netip.Addr) bool {
		return slices.ContainsFunc(eps, func(e mptcp.Endpoint) bool { return e.Addr.Unmap() == a })
	}
	if !waitFor(startTimeout, func() bool {
		eps, err = c.Endpoints()
		return err == nil && !slices.ContainsFunc(want, func(a netip.Addr) bool { return !has(a) })
	}) {
		t.Fatalf("laptop endpoints after %v (%v):\n%swant one for each of %v", startTimeout, err, formatEndpoints(eps), want)
	}
}

// waitFlowSubflows waits until each flow's connection has n established
// subflows.
func waitFlowSubflows(t testing.TB, bed *testbed.Testbed, diag *mptcpdiag.Client, flows []*testbed.Flow, n int) {
	t.Helper()
	var got []int
	if !waitFor(roamingJoinTimeout, func() bool {
		conns, err := diag.Connections()
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, f := range flows {
			est := 0
			if c := f.Connection(conns); c != nil {
				est = c.Established()
			}
			got = append(got, est)
		}
		return !slices.ContainsFunc(got, func(k int) bool { return k < n })
	}) {
		t.Fatalf("established subflows of the flows after %v: %v, want %d each\n%s", roamingJoinTimeout, got, n, mptcpCounters(t, bed))
	}
}

// firstDataFrom polls the laptop's connections until every flow has sent
// data over a subflow from addr, or until end, and returns for each flow
// the time from at to the first dump that showed it (never: none did).
func firstDataFrom(t testing.TB, diag *mptcpdiag.Client, flows []*testbed.Flow, addr netip.Addr, at, end time.Time) []time.Duration {
	t.Helper()
	got := make([]time.Duration, len(flows))
	for i := range got {
		got[i] = never
	}
	for slices.Contains(got, never) && time.Now().Before(end) {
		conns, err := diag.Connections()
		seen := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range flows {
			c := f.Connection(conns)
			if got[i] != never || c == nil {
				continue
			}
			if slices.ContainsFunc(c.Subflows, func(sf mptcpdiag.Subflow) bool {
				return sf.Local.Addr().Unmap() == addr && sf.TCP.BytesSent > 0
			}) {
				got[i] = seen.Sub(at)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return got
}

// stopFlows stops the flows at once: each dead one takes stopGrace.
func stopFlows(flows []*testbed.Flow) []testbed.Result {
	rs := make([]testbed.Result, len(flows))
	var wg sync.WaitGroup
	for i, f := range flows {
		wg.Go(func() { rs[i] = f.Stop(stopGrace) })
	}
	wg.Wait()
	return rs
}

// stallIn is the longest gap of tr in [from, to], never when the flow
// read nothing after it began.
func stallIn(tr testbed.Trace, from, to time.Time) time.Duration {
	g := tr.MaxGap(from, to)
	if len(tr) == 0 || !tr[len(tr)-1].At.After(g.Start) {
		return never
	}
	return g.Len
}

// resumeIn is the time from at to the first read after it, never when
// none came by to.
func resumeIn(tr testbed.Trace, at, to time.Time) time.Duration {
	i := sort.Search(len(tr), func(i int) bool { return tr[i].At.After(at) })
	if i == len(tr) || tr[i].At.After(to) {
		return never
	}
	return tr[i].At.Sub(at)
}

// summary is the p50 and max of flow i's measure over the runs.
func (c *roamingCell) summary(i int) (p50, worst time.Duration) {
	var d []time.Duration
	for _, s := range c.samples[i] {
		d = append(d, s.d)
	}
	slices.Sort(d)
	return percentile(d, 50), percentile(d, 100)
}

// recovery is the p50 of flow i's recovery over the runs, when measured.
func (c *roamingCell) recovery(i int) (time.Duration, bool) {
	var d []time.Duration
	for _, s := range c.samples[i] {
		if s.recovery != 0 {
			d = append(d, s.recovery)
		}
	}
	if len(d) == 0 {
		return 0, false
	}
	slices.Sort(d)
	return percentile(d, 50), true
}

// format is flow i's cell of the table.
func (c *roamingCell) format(i int, window time.Duration) string {
	switch {
	case c.note != "":
		return c.note
	case len(c.samples) == 0 || len(c.samples[i]) == 0:
		return "not run"
	}
	p50, worst := c.summary(i)
	survived, bytes := 0, "ok"
	for _, s := range c.samples[i] {
		if s.survived {
			survived++
		}
		if !s.bytesOK {
			bytes = "CORRUPT"
		}
	}
	rec := ""
	if d, ok := c.recovery(i); ok {
		rec = " · 1 MB in " + formatMeasure(d, window)
	}
	return fmt.Sprintf("%s / %s%s · %d/%d · %s", formatMeasure(p50, window), formatMeasure(worst, window), rec, survived, len(c.samples[i]), bytes)
}

func formatMeasure(d, window time.Duration) string {
	switch {
	case d == never:
		return "> " + window.String()
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1e3)
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// printRoamingTable prints the cells as one markdown table, a row per
// path manager and flow, the anchor first.
func printRoamingTable(w io.Writer, scenarios []roamingScenario, cells [][]roamingCell, runs int, outage time.Duration) {
	fmt.Fprintf(w, "\nHandover on the roaming testbed: wlan0 and wwan0 at %g Mbit/s each, cubic, a bulk upload and an\n", roamingRate/1e6)
	fmt.Fprintf(w, "interactive flow (64 B every 10 ms, echoed) per run, event after a %v warm-up, %d run(s) per cell.\n", roamingWarmUp, runs)
	fmt.Fprintf(w, "Cell: p50 / max · runs the connection survived · bytes verified. \"> T\": nothing within the window T.\n")
	fmt.Fprintf(w, "Stall cells of the bulk upload add \"1 MB in\": the p50 time from the event until 1 MB more arrived.\n\n")
	head := []string{"path manager", "flow"}
	for _, s := range scenarios {
		head = append(head, s.column)
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat(" --- |", len(head)))
	for j, pm := range roamingPMs {
		name := pm.name
		if j == 0 {
			name += " (anchor)"
		}
		for i, f := range roamingFlows {
			row := []string{name, f.name}
			for k, s := range scenarios {
				row = append(row, cells[k][j].format(i, s.window))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
	}
	fmt.Fprintln(w)
}

// runScope is one run's share of a benchmark: its cleanups run when the
// run ends, not with the benchmark, so that every run has its own fresh
// testbed and path manager; and its logs (a testbed logs every event)
// are shown only when it fails, or with -v.
type runScope struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	logs     []string
}

func (s *runScope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *runScope) Logf(format string, args ...any) {
	if testing.Verbose() {
		s.TB.Logf(format, args...)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs = append(s.logs, fmt.Sprintf(format, args...))
}

// inRunScope runs f in a new scope of tb and ends the scope, also when f
// fails or skips.
func inRunScope(tb testing.TB, f func(testing.TB)) {
	s := &runScope{TB: tb}
	defer func() {
		for i := len(s.cleanups) - 1; i >= 0; i-- {
			s.cleanups[i]()
		}
		if s.Failed() {
			for _, l := range s.logs {
				s.TB.Log(l)
			}
		}
	}()
	f(s)
}
