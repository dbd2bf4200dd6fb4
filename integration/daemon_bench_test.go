package integration

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Intel's mptcpd (Debian packages mptcpd and mptcpd-plugins), the anchor.
const (
	intelMptcpd  = "/usr/libexec/mptcpd"
	intelAddrAdv = "/usr/lib/x86_64-linux-gnu/mptcpd/addr_adv.so"
)

// endpointTimeout, startTimeout and stopTimeout are the daemon tests'
// (daemon_helpers_test.go).
const (
	// idleSettle lets the daemon finish start-up work before its RSS is read.
	idleSettle = 200 * time.Millisecond

	defaultDaemonCycles = 200
)

// benchDaemon is a path manager daemon under measurement.
type benchDaemon struct {
	name string
	// argv is the daemon's command line; it skips b when the daemon is
	// not available. nil is the kernel-only anchor: no daemon, the
	// benchmark writes each endpoint itself right after the address
	// change, which is the least any daemon can take.
	argv func(b *testing.B) []string
}

var benchDaemons = []benchDaemon{
	{"kernel-only", nil},
	{"intel-mptcpd", intelArgv},
	{"mptcpd-go", oursArgv},
}

func intelArgv(b *testing.B) []string {
	for _, f := range []string{intelMptcpd, intelAddrAdv} {
		if _, err := os.Stat(f); err != nil {
			b.Skipf("Intel's mptcpd is not installed (Debian packages mptcpd, mptcpd-plugins): %v", err)
		}
	}
	return []string{intelMptcpd, "--log=stderr", "--addr-flags=subflow",
		"--notify-flags=existing,skip_link_local,skip_loopback", "--path-manager=addr_adv"}
}

// benchPolicy names the veth: the built-in policy ignores virtual links
// without a default route.
const benchPolicy = "match name=bench*\n    flags subflow\n"

func oursArgv(b *testing.B) []string {
	bin := requireMptcpd(b)
	return newMptcpdFiles(b, benchPolicy).argv(bin)
}

// daemonResult is one daemon's line of the summary table.
type daemonResult struct {
	name     string
	measured bool
	add, del latencySummary
	rssKiB   int64
	// cpuPerCycle is the daemon's CPU time (user+system) per add/delete
	// cycle: /proc's 10 ms ticks spread over all cycles.
	cpuPerCycle time.Duration
}

// latencySummary is a latency distribution in three numbers.
type latencySummary struct{ p50, p90, max time.Duration }

func summarize(d []time.Duration) latencySummary {
	s := slices.Clone(d)
	slices.Sort(s)
	return latencySummary{percentile(s, 50), percentile(s, 90), percentile(s, 100)}
}

// percentile is the nearest-rank p-th percentile of sorted, 0 when empty.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func (l latencySummary) String() string {
	us := func(d time.Duration) int64 { return d.Microseconds() }
	return fmt.Sprintf("%d/%d/%d", us(l.p50), us(l.p90), us(l.max))
}

func (l latencySummary) report(b *testing.B, prefix string) {
	b.ReportMetric(float64(l.p50.Microseconds()), prefix+"-p50-us")
	b.ReportMetric(float64(l.p90.Microseconds()), prefix+"-p90-us")
	b.ReportMetric(float64(l.max.Microseconds()), prefix+"-max-us")
}

// BenchmarkDaemonEndpoint measures how fast each daemon turns an address
// change into a kernel endpoint change: the time from just before adding
// (deleting) an IPv4 address on a veth to the first endpoint dump that
// shows (no longer shows) an endpoint for it, and the daemon's idle RSS.
// Each daemon runs in its own fresh namespace in the same run, Intel's
// mptcpd as the anchor, and a side-by-side table follows the benchmark
// lines. One benchmark op is DAEMON_BENCH_CYCLES (default 200) add/delete
// cycles; the percentiles cover every cycle of every op. The kernel-only
// row is the work without a daemon: the benchmark writes the endpoint
// itself once the address request returns. A daemon hears of the address
// before that (the kernel notifies before it adds the address's routes),
// so its write can overlap the end of the request and come in under this
// row. Deletion is slow whoever asks: DEL_ADDR waits for an RCU grace
// period while holding the genetlink mutex (nl/README.md).
func BenchmarkDaemonEndpoint(b *testing.B) {
	cycles := defaultDaemonCycles
	if env := os.Getenv(envDaemonCycles); env != "" {
		n, err := strconv.Atoi(env)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number of cycles", envDaemonCycles, env)
		}
		cycles = n
	}
	results := make([]daemonResult, len(benchDaemons))
	for i, d := range benchDaemons {
		results[i].name = d.name
		b.Run(d.name, func(b *testing.B) {
			results[i] = benchDaemonEndpoint(b, d, cycles)
		})
	}
	printDaemonTable(results)
}

// printDaemonTable prints the results side by side.
func printDaemonTable(results []daemonResult) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "daemon\tadd p50/p90/max µs\tdel p50/p90/max µs\tCPU µs/cycle\tidle RSS KiB")
	for _, r := range results {
		switch {
		case !r.measured:
			fmt.Fprintf(w, "%s\tnot measured (skipped or failed)\t\t\t\n", r.name)
		case r.rssKiB == 0:
			fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\n", r.name, r.add, r.del)
		default:
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\n", r.name, r.add, r.del, r.cpuPerCycle.Microseconds(), r.rssKiB)
		}
	}
	_ = w.Flush()
}

func benchDaemonEndpoint(b *testing.B, d benchDaemon, cycles int) daemonResult {
	var argv []string
	if d.argv != nil {
		argv = d.argv(b)
	}
	ns := nstest.New(b)
	// No IPv6 on the veth: link-local DAD finishing mid-measurement would
	// give the daemon unrelated work.
	ns.MustRun("sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
	nstest.Veth(b, ns, "bench0", ns, "bench1")
	env := openEndpointBench(b, ns)
	if argv != nil {
		env.daemon = startDaemon(b, ns, d.name, argv)
	}

	// Ready once the first address has its endpoint; a second one gives
	// the daemon a couple of endpoints to hold while idle.
	env.change(b, netip.MustParsePrefix("10.77.0.1/24"), true, startTimeout)
	env.change(b, netip.MustParsePrefix("10.77.0.2/24"), true, endpointTimeout)
	var rss int64
	if env.daemon != nil {
		time.Sleep(idleSettle)
		var err error
		if rss, err = vmRSS(env.daemon.cmd.Process.Pid); err != nil {
			b.Fatalf("%s: idle RSS: %v", d.name, err)
		}
	}

	var cpu0 time.Duration
	if env.daemon != nil {
		var err error
		if cpu0, err = cpuTime(env.daemon.cmd.Process.Pid); err != nil {
			b.Fatalf("%s: CPU time: %v", d.name, err)
		}
	}
	var add, del []time.Duration
	next := 0
	for b.Loop() {
		for range cycles {
			p := cycleAddr(next)
			next++
			add = append(add, env.change(b, p, true, endpointTimeout))
			del = append(del, env.change(b, p, false, endpointTimeout))
		}
	}
	r := daemonResult{name: d.name, measured: true, add: summarize(add), del: summarize(del), rssKiB: rss}
	if env.daemon != nil {
		cpu1, err := cpuTime(env.daemon.cmd.Process.Pid)
		if err != nil {
			b.Fatalf("%s: CPU time: %v", d.name, err)
		}
		r.cpuPerCycle = (cpu1 - cpu0) / time.Duration(len(add))
		b.ReportMetric(float64(r.cpuPerCycle.Microseconds()), "CPU-us/cycle")
	}
	r.add.report(b, "add")
	r.del.report(b, "del")
	if rss != 0 {
		b.ReportMetric(float64(rss), "RSS-KiB")
	}
	return r
}

// cycleAddr is the address of cycle i: 10.77.x.y/24 with x ≥ 1, clear of
// the idle endpoints' 10.77.0.0/24.
func cycleAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(1 + i/250%250), byte(1 + i%250)}), 24)
}

// endpointBench changes addresses on bench0 and watches the endpoint table,
// both in-process: a fork per step would swamp what is measured.
type endpointBench struct {
	ns     *nstest.NS
	rtnl   *netlink.Handle
	link   netlink.Link // bench0
	pm     *mptcp.Client
	daemon *background // nil: the benchmark writes the endpoints itself
	ids    map[netip.Addr]mptcp.ID
}

func openEndpointBench(b *testing.B, ns *nstest.NS) *endpointBench {
	fd := ns.Handle().FD()
	pm, err := mptcp.Dial(&mptcp.Config{NetNS: fd})
	if err != nil {
		b.Fatalf("%s: mptcp_pm client: %v", ns, err)
	}
	b.Cleanup(func() { _ = pm.Close() })
	// The handle's sockets are made inside the namespace; it keeps no
	// reference to fd.
	rtnl, err := netlink.NewHandleAt(vnetns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		b.Fatalf("%s: rtnetlink: %v", ns, err)
	}
	b.Cleanup(rtnl.Close)
	link, err := rtnl.LinkByName("bench0")
	if err != nil {
		b.Fatalf("%s: bench0: %v", ns, err)
	}
	return &endpointBench{ns: ns, rtnl: rtnl, link: link, pm: pm, ids: make(map[netip.Addr]mptcp.ID)}
}

// change adds (or deletes) address p on bench0 and dumps the endpoint
// table until an endpoint for it is present (or gone); it returns the time
// from just before the request to the end of that dump. It fails b when
// the daemon dies or timeout passes first.
func (e *endpointBench) change(b *testing.B, p netip.Prefix, add bool, timeout time.Duration) time.Duration {
	b.Helper()
	na := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	op, verb, want := e.rtnl.AddrAdd, "adding it to", "present"
	if !add {
		op, verb, want = e.rtnl.AddrDel, "deleting it from", "gone"
	}
	start := time.Now()
	if err := op(e.link, na); err != nil {
		b.Fatalf("%s: %s bench0: address %s: %v", e.ns, verb, p, err)
	}
	if e.daemon == nil {
		if err := e.writeEndpoint(p.Addr(), add); err != nil {
			b.Fatalf("%s: endpoint for %s: %v", e.ns, p.Addr(), err)
		}
	}
	for {
		eps, err := e.pm.Endpoints()
		if err != nil {
			b.Fatalf("%s: endpoint dump: %v", e.ns, err)
		}
		found := slices.ContainsFunc(eps, func(ep mptcp.Endpoint) bool { return ep.Addr == p.Addr() })
		if found == add {
			return time.Since(start)
		}
		if e.daemon != nil && e.daemon.exited() {
			b.Fatalf("%s: %s exited (%v) before the endpoint for %s was %s", e.ns, e.daemon.name, e.daemon.err, p.Addr(), want)
		}
		if time.Since(start) > timeout {
			b.Fatalf("%s: endpoint for %s not %s %v after %s bench0; endpoints: %v",
				e.ns, p.Addr(), want, timeout, verb, eps)
		}
		runtime.Gosched()
	}
}

// writeEndpoint is the kernel-only anchor's daemon: it adds a subflow
// endpoint for a (with the lowest free id, as mptcpd-go does) or deletes
// it, in the same process, with no event to wait for.
func (e *endpointBench) writeEndpoint(a netip.Addr, add bool) error {
	if !add {
		id := e.ids[a]
		delete(e.ids, a)
		return e.pm.DeleteEndpoint(id, netip.Addr{})
	}
	id := mptcp.ID(1)
	for slices.Contains(slices.Collect(maps.Values(e.ids)), id) {
		id++
	}
	e.ids[a] = id
	return e.pm.AddEndpoint(mptcp.Endpoint{ID: id, Addr: a, Flags: mptcp.FlagSubflow, IfIndex: e.link.Attrs().Index})
}

func TestPercentile(t *testing.T) {
	ten := make([]time.Duration, 10)
	for i := range ten {
		ten[i] = time.Duration(i + 1)
	}
	for _, c := range []struct {
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 50, 7},
		{[]time.Duration{7}, 100, 7},
		{ten, 0, 1},
		{ten, 50, 5},
		{ten, 90, 9},
		{ten, 91, 10},
		{ten, 100, 10},
	} {
		if got := percentile(c.sorted, c.p); got != c.want {
			t.Errorf("percentile(%v, %d) = %v, want %v", c.sorted, c.p, got, c.want)
		}
	}
}
