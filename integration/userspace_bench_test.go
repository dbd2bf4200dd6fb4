package integration

// Load on the userspace path manager mode: a churn test (the daemon's
// connection table returns to empty and its memory stays flat), a test of
// its recovery from lost events, and BenchmarkDaemonUserspace (connections per second, and the time from a
// connection to its second subflow), with Intel's mptcpd sspi in the same
// run. The traffic is made in-process: an MPTCP echo server in the server
// namespace and dialers on threads moved into the client namespace, since
// a process per connection would be what is measured.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// Environment knobs of BenchmarkDaemonUserspace.
const (
	// envUserspaceConns is the number of short connections of the
	// throughput run in each op.
	envUserspaceConns = "USERSPACE_BENCH_CONNS"
	// envUserspaceSamples is the number of connections, one at a time,
	// whose second subflow is timed in each op.
	envUserspaceSamples = "USERSPACE_BENCH_SAMPLES"

	// envUserspaceBacklog is the number of connections opened while the
	// daemon is stopped, whose second subflows time its own rate.
	envUserspaceBacklog = "USERSPACE_BENCH_BACKLOG"

	defaultUserspaceConns   = 2000
	defaultUserspaceSamples = 200
	defaultUserspaceBacklog = 2000
)

const (
	intelPluginDir = "/usr/lib/x86_64-linux-gnu/mptcpd"
	intelSSPI      = intelPluginDir + "/sspi.so"
	// churnWorkers is how many connections are open at once in a churn:
	// enough to keep both cores of the test machine busy.
	churnWorkers = 4
	// echoSize is the transfer of every short connection.
	echoSize = 64
	// serverAddr is where the in-process echo server listens (the
	// wildcard, so that joins to any server address are accepted), and
	// dialAddr where the clients connect: over eth0.
	serverAddr = "0.0.0.0:5000"
	dialAddr   = "10.0.1.1:5000"
)

// prepareChurn makes the client namespace fit for tens of thousands of
// short connections: the client closes first, so its subflows wait in
// TIME_WAIT; a wide port range and reuse keep ports from running out.
func prepareChurn(tb testing.TB, ns *nstest.NS) {
	tb.Helper()
	ns.MustRun("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535", "net.ipv4.tcp_tw_reuse=1")
}

// echoServe runs an MPTCP echo server on addr inside ns until the test
// ends: each connection echoes until the peer closes.
func echoServe(tb testing.TB, ns *nstest.NS, addr string) {
	tb.Helper()
	var ln net.Listener
	err := netns.DoFD(ns.Handle().FD(), func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		tb.Fatalf("echo server on %s in %s: %v", addr, ns, err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open = map[net.Conn]bool{}
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(open, c)
				mu.Unlock()
			})
		}
	})
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close() // a client the test left open
		}
		mu.Unlock()
		wg.Wait()
	})
}

// echoDial connects to addr (from the namespace the calling thread is
// in), checks the connection is MPTCP, echoes echoSize random bytes and
// checks them. It returns the open connection and when the connect
// returned.
func echoDial(addr string) (*net.TCPConn, time.Time, error) {
	var d net.Dialer
	d.Timeout = connWait
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", addr)
	connected := time.Now()
	if err != nil {
		return nil, connected, err
	}
	tc := c.(*net.TCPConn)
	if err := echoCheck(tc, echoSize); err != nil {
		tc.Close()
		return nil, connected, fmt.Errorf("%s -> %s: %w", tc.LocalAddr(), addr, err)
	}
	return tc, connected, nil
}

// echoCheck echoes size random bytes over c and checks what comes back;
// it writes while it reads, so any size fits.
func echoCheck(c *net.TCPConn, size int) error {
	if ok, err := c.MultipathTCP(); err != nil || !ok {
		return fmt.Errorf("not MPTCP (fell back to TCP): %v", err)
	}
	if err := c.SetDeadline(time.Now().Add(connWait)); err != nil {
		return err
	}
	out, in := make([]byte, size), make([]byte, size)
	for i := range out {
		out[i] = byte(rand.Uint32())
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		werr <- err
	}()
	if _, err := io.ReadFull(c, in); err != nil {
		return fmt.Errorf("read echo of %d bytes: %w", size, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write %d bytes: %w", size, err)
	}
	if !bytes.Equal(in, out) {
		return errors.New("echoed data differs from what was sent")
	}
	return nil
}

// churn makes n short connections from ns to addr, churnWorkers at a
// time, each one echo and a close, and returns how long they took. The
// first failure stops it.
func churn(ns *nstest.NS, addr string, n int) (time.Duration, error) {
	var next atomic.Int64
	errs := make(chan error, churnWorkers)
	start := time.Now()
	for range churnWorkers {
		go func() {
			errs <- netns.DoFD(ns.Handle().FD(), func() error {
				for next.Add(1) <= int64(n) {
					c, _, err := echoDial(addr)
					if err != nil {
						next.Store(int64(n)) // the others stop too
						return err
					}
					if err := c.Close(); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	var first error
	for range churnWorkers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return time.Since(start), first
}

// startQuietDaemon runs argv in ns like startDaemon and waits until its
// stderr holds ready. Unlike mptcpd.start it adds no -d: under churn,
// debug lines would cost more than the work measured.
func startQuietDaemon(tb testing.TB, ns *nstest.NS, name string, argv []string, ready string, env ...string) *background {
	tb.Helper()
	d := startDaemon(tb, ns, name, argv, env...)
	if !waitFor(startTimeout, func() bool { return strings.Contains(d.stderr.String(), ready) || d.exited() }) || d.exited() {
		tb.Fatalf("%s not ready (%q) within %v: %v\n%s", name, ready, startTimeout, d.err, d.stderr.String())
	}
	return d
}

// oursReady is what mptcpd-go logs once it watches the network.
const oursReady = `msg="mptcpd started"`

// waitStatus reads the daemon's notifications until STATUS=want.
func waitStatus(t *testing.T, sd *notifySocket, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case m, ok := <-sd.msgs:
			if !ok {
				t.Fatalf("notification socket closed while waiting for STATUS=%s", want)
			}
			if m == "STATUS="+want {
				return
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("no STATUS=%s within %v; notifications since the last wait: %q", want, timeout, seen)
		}
	}
}

// churnSetup is the churn tests' scene: two links, an echo server, and
// the sspi daemon in the client, which reports its table's size (STATUS)
// at a pass every second when it changed.
type churnSetup struct {
	top daemonTopology
	d   *background
	sd  *notifySocket
}

func newChurnSetup(t *testing.T, extra ...string) *churnSetup {
	t.Helper()
	s := &churnSetup{top: newUSTopology(t, 2), sd: listenNotify(t)}
	prepareChurn(t, s.top.client)
	echoServe(t, s.top.server, serverAddr)
	argv := newMptcpdFiles(t, usPolicy).argv(requireMptcpd(t),
		append([]string{"--path-manager=sspi", "--set-path-manager", "--resync-interval=1s"}, extra...)...)
	s.d = startQuietDaemon(t, s.top.client, "mptcpd sspi", argv, oursReady, "NOTIFY_SOCKET="+s.sd.path)
	waitStatus(t, s.sd, "userspace plugin sspi, 0 connections", startTimeout)
	return s
}

// dropCounts forgets the STATUS lines sent so far.
func (s *churnSetup) dropCounts() {
	for len(s.sd.msgs) > 0 {
		<-s.sd.msgs
	}
}

// waitCount waits until the daemon reports n connections in its table.
func (s *churnSetup) waitCount(t *testing.T, n int) {
	t.Helper()
	waitStatus(t, s.sd, fmt.Sprintf("userspace plugin sspi, %d connections", n), endpointTimeout)
}

// TestDaemonUserspaceChurn runs 20000 short connections through the sspi
// daemon: afterwards its connection table is empty again (STATUS, from
// the daemon's own count) and its RSS grew by less than churnRSSSlack
// since a warm-up of churnWarmup connections.
func TestDaemonUserspaceChurn(t *testing.T) {
	const (
		churnWarmup = 3000
		churnTotal  = 20000
		// churnRSSSlack catches a leak of about 100 bytes per connection.
		churnRSSSlack = 2048 // KiB
	)
	echo := requireMptcpecho(t)
	s := newChurnSetup(t)
	top, d := s.top, s.d

	// empty proves the table empty: a held connection (with the subflow
	// sspi opened for it) makes the count 1, then its close 0.
	empty := func(what string) int64 {
		t.Helper()
		s.dropCounts() // sent while the churn ran
		held := holdConnection(t, top.client, echo, connWait, 1, dialAddr)
		s.waitCount(t, 1)
		held.release(t, connWait)
		s.waitCount(t, 0)
		rss, err := vmRSS(d.cmd.Process.Pid)
		if err != nil {
			t.Fatalf("%s: RSS: %v", what, err)
		}
		return rss
	}
	took, err := churn(top.client, dialAddr, churnWarmup)
	if err != nil {
		t.Fatalf("warm-up churn: %v", err)
	}
	rss0 := empty("after the warm-up")
	took2, err := churn(top.client, dialAddr, churnTotal-churnWarmup)
	if err != nil {
		t.Fatalf("churn: %v", err)
	}
	rss1 := empty("after the churn")
	t.Logf("%d connections in %v, %.0f/s; RSS %d KiB after %d, %d KiB after all; %d warnings, %d of them lost events",
		churnTotal, took+took2, float64(churnTotal)/(took+took2).Seconds(), rss0, churnWarmup, rss1,
		strings.Count(d.stderr.String(), "level=WARN"), strings.Count(d.stderr.String(), "events lost"))
	if rss1-rss0 > churnRSSSlack {
		t.Errorf("RSS grew by %d KiB over %d connections (from %d to %d KiB), more than %d KiB",
			rss1-rss0, churnTotal-churnWarmup, rss0, rss1, churnRSSSlack)
	}
	if n := strings.Count(d.stderr.String(), "level=ERROR"); n > 0 {
		t.Errorf("%d errors logged:\n%s", n, d.stderr.String())
	}
}

// TestDaemonUserspaceLostEvents makes the daemon's event socket overflow
// (the daemon stopped while 200 connections come and go), then opens a
// connection every millisecond while it recovers: every one of them must
// get its second subflow, and the table must end empty. The kernel keeps
// dropping a congested netlink socket's events, silently after the first
// ENOBUFS, until its queue is empty (net/netlink/af_netlink.c:
// netlink_overrun, netlink_rcv_wake): connections opened in that window
// are known from mptcp_diag only.
func TestDaemonUserspaceLostEvents(t *testing.T) {
	const probes = 100
	// 64 KiB (the kernel doubles it) holds ~150 events: 200 connections
	// overflow it; the daemon's default of 4 MiB would not.
	s := newChurnSetup(t, "--events-rcvbuf=65536")
	top, d := s.top, s.d

	signal := func(sig syscall.Signal) {
		t.Helper()
		if err := d.cmd.Process.Signal(sig); err != nil {
			t.Fatalf("%v: %v", sig, err)
		}
	}
	signal(syscall.SIGSTOP)
	// About 5 events each: far beyond the default buffer's 256.
	if _, err := churn(top.client, dialAddr, 200); err != nil {
		signal(syscall.SIGCONT)
		t.Fatalf("churn: %v", err)
	}
	signal(syscall.SIGCONT)
	type probe struct {
		c     *net.TCPConn
		after time.Duration // since SIGCONT
	}
	var open []probe
	resumed := time.Now()
	err := netns.DoFD(top.client.Handle().FD(), func() error {
		for range probes {
			c, _, err := echoDial(dialAddr)
			if err != nil {
				return err
			}
			open = append(open, probe{c, time.Since(resumed)})
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	defer func() {
		for _, p := range open {
			p.c.Close()
		}
	}()
	if err != nil {
		t.Fatalf("probe connections: %v", err)
	}
	if !waitFor(endpointTimeout, func() bool {
		return strings.Contains(d.stderr.String(), "connection table rebuilt") && strings.Contains(d.stderr.String(), "events lost")
	}) {
		t.Fatalf("the daemon's event socket did not overflow (no lost events logged): the test proves nothing\n%s", d.stderr.String())
	}

	// Each probe's second subflow, from the kernel's list.
	sf := newLinkSubflows(t, top.client)
	var missing []string
	waitFor(endpointTimeout, func() bool {
		conns, err := sf.diag.Connections()
		if err != nil {
			t.Fatalf("mptcp_diag: %v", err)
		}
		two := map[uint16]bool{}
		for _, c := range conns {
			if !c.Listening() && len(c.Subflows) == 2 {
				two[c.Local.Port()] = true
			}
		}
		missing = missing[:0]
		for _, p := range open {
			if !two[uint16(p.c.LocalAddr().(*net.TCPAddr).Port)] {
				missing = append(missing, fmt.Sprintf("%s (opened %v after SIGCONT)", p.c.LocalAddr(), p.after.Round(time.Millisecond)))
			}
		}
		return len(missing) == 0
	})
	if len(missing) > 0 {
		t.Errorf("%d of %d connections opened while the daemon recovered from lost events got no second subflow within %v:\n\t%s\ndaemon:\n%s",
			len(missing), probes, endpointTimeout, strings.Join(missing, "\n\t"), d.stderr.String())
	}
	for _, p := range open {
		transfer(t, p.c, "probe")
		p.c.Close()
	}
	// The probes were open for more than a pass: a 0 after the counts
	// sent so far is the table after their close.
	s.dropCounts()
	s.waitCount(t, 0)
}

// usBenchDaemon is a userspace path manager daemon under measurement.
type usBenchDaemon struct {
	name string
	// start runs the daemon in ns (whose path manager is already the
	// userspace one); it skips b when the daemon is not available. nil is
	// the kernel-only anchor: no daemon, only the benchmark's listener.
	start func(b *testing.B, ns *nstest.NS) *background
}

var usBenchDaemons = []usBenchDaemon{
	{"kernel-only", nil},
	{"intel-mptcpd sspi", startIntelSSPI},
	{"mptcpd-go sspi", startOursSSPI},
}

func startIntelSSPI(b *testing.B, ns *nstest.NS) *background {
	for _, f := range []string{intelMptcpd, intelSSPI} {
		if _, err := os.Stat(f); err != nil {
			b.Skipf("Intel's mptcpd is not installed (Debian packages mptcpd, mptcpd-plugins): %v", err)
		}
	}
	argv := []string{intelMptcpd, "--log=stderr", "--plugin-dir=" + intelPluginDir, "--path-manager=sspi",
		"--notify-flags=existing,skip_link_local,skip_loopback"}
	return startQuietDaemon(b, ns, "intel-mptcpd", argv, "single-subflow-per-interface path manager initialized")
}

func startOursSSPI(b *testing.B, ns *nstest.NS) *background {
	argv := newMptcpdFiles(b, usPolicy).argv(requireMptcpd(b), "--path-manager=sspi")
	return startQuietDaemon(b, ns, "mptcpd-go", argv, oursReady)
}

// usResult is one daemon's line of the summary table.
type usResult struct {
	name     string
	measured bool
	conns    int
	// wall is how long the clients took; handled, when the daemon could
	// be asked (it opens subflows), until it had acted on all of them.
	wall, handled time.Duration
	events        int64 // mptcp_pm events the kernel sent in that time
	lost          int64 // times the benchmark's own listener lost events
	daemonLost    int   // times the daemon logged lost events
	// connect → second subflow; est: the connection's ESTABLISHED event
	// → the second subflow's SUB_ESTABLISHED. nil: no subflow came.
	connect, est []time.Duration
	missed       int // samples whose second subflow did not come
	// backlog connections were opened, then closed, while the daemon
	// was stopped; opened and closed are how long it took, once resumed,
	// to act on each (backlogRun).
	backlog        int
	opened, closed time.Duration
	rss0, rss1     int64
	rssHeld        int64 // with a backlog of connections open
	cpuPerConn     time.Duration
}

// BenchmarkDaemonUserspace measures the userspace path manager mode with
// the sspi plugin on a client of two links, for each daemon in its own
// fresh namespaces, in the same run: mptcpd-go, Intel's mptcpd (the
// anchor, when installed) and no daemon at all. One op is two runs:
//
//   - throughput: USERSPACE_BENCH_CONNS (default 2000) short connections,
//     4 at a time, each one 64-byte checksummed echo and a close. The rate
//     is connections per second of wall time until the daemon has acted
//     on the last one: a final connection gets its second subflow only
//     after the daemon has read every earlier event (one event socket,
//     in order). Intel's sspi opens no subflow, so its rate is the
//     clients' wall time only. events/s is what the kernel emitted.
//   - latency: USERSPACE_BENCH_SAMPLES (default 200) connections one at a
//     time, from the return of connect (and from the connection's
//     ESTABLISHED event) to the SUB_ESTABLISHED of its second subflow,
//     both read by an mptcp_pm listener in the client namespace. The
//     event is more precise than polling mptcp_diag, which costs a dump
//     per poll and would compete with the daemon for the CPU; the
//     listener's timestamps include its own wake-up (a few µs).
//   - backlog: the daemon's own rate, which the throughput run cannot
//     show because the clients share the two cores with it and alone
//     make fewer connections per second than the target. The daemon is
//     stopped (SIGSTOP) while USERSPACE_BENCH_BACKLOG (default 2000)
//     connections open, echo and stay open; their events wait in its
//     socket. The rate is connections per second from SIGCONT to the
//     SUB_ESTABLISHED of the last one's second subflow, with the clients
//     idle. Each connection costs the daemon two events read and one
//     subflow opened, whose handshake the kernel runs in that request.
//
// A daemon that opens no second subflow in its first samples is reported
// as such rather than waited for. The table also shows the daemon's CPU
// time per connection and its RSS before and after.
func BenchmarkDaemonUserspace(b *testing.B) {
	conns := envCount(b, envUserspaceConns, defaultUserspaceConns)
	samples := envCount(b, envUserspaceSamples, defaultUserspaceSamples)
	backlog := envCount(b, envUserspaceBacklog, defaultUserspaceBacklog)
	results := make([]usResult, len(usBenchDaemons))
	for i, d := range usBenchDaemons {
		results[i].name = d.name
		b.Run(d.name, func(b *testing.B) {
			results[i] = benchDaemonUserspace(b, d, conns, samples, backlog)
		})
	}
	printUserspaceTable(results)
}

// envCount reads a positive count from the environment.
func envCount(b *testing.B, name string, def int) int {
	env := os.Getenv(name)
	if env == "" {
		return def
	}
	n, err := strconv.Atoi(env)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, env)
	}
	return n
}

func benchDaemonUserspace(b *testing.B, d usBenchDaemon, conns, samples, backlog int) usResult {
	// No IPv6: DAD finishing mid-run would give the daemon unrelated work.
	top := newUSTopology(b, 2, "net.ipv6.conf.default.disable_ipv6=1")
	prepareChurn(b, top.client)
	top.client.MustRun("sysctl", "-q", "-w", "net.mptcp.path_manager=userspace")
	echoServe(b, top.server, serverAddr)
	tap := tapPM(b, top.client)
	var daemon *background
	if d.start != nil {
		daemon = d.start(b, top.client)
		time.Sleep(idleSettle)
	}
	r := usResult{name: d.name, measured: true}
	var cpu0 time.Duration
	if daemon != nil {
		var err error
		if r.rss0, err = vmRSS(daemon.cmd.Process.Pid); err != nil {
			b.Fatalf("%s: RSS: %v", d.name, err)
		}
		if cpu0, err = cpuTime(daemon.cmd.Process.Pid); err != nil {
			b.Fatalf("%s: CPU time: %v", d.name, err)
		}
	}
	opensSubflows := daemon != nil
	for b.Loop() {
		// Latency first: it finds out whether the daemon opens
		// subflows, which the throughput run's end needs.
		if opensSubflows {
			connect, est, missed := tap.latency(b, top.client, samples)
			if len(connect) == 0 {
				opensSubflows = false
			}
			r.connect, r.est, r.missed = append(r.connect, connect...), append(r.est, est...), r.missed+missed
		}
		r.conns += conns
		events0 := tap.events.Load()
		wall, handled := tap.throughput(b, top.client, conns, opensSubflows)
		r.wall, r.handled = r.wall+wall, r.handled+handled
		r.events += tap.events.Load() - events0
		if opensSubflows {
			// Memory after the churn, before the backlog holds more.
			var err error
			if r.rss1, err = vmRSS(daemon.cmd.Process.Pid); err != nil {
				b.Fatalf("%s: RSS: %v", d.name, err)
			}
			run := tap.backlog(b, top.client, daemon, backlog)
			r.backlog, r.opened, r.closed = r.backlog+backlog, r.opened+run.opened, r.closed+run.closed
			r.rssHeld = max(r.rssHeld, run.rssHeld)
		}
	}
	if n := tap.dropped.Load(); n > 0 {
		b.Fatalf("%d events of timed connections dropped: the queue of %d was full", n, tapQueue)
	}
	r.lost = tap.lost.Load()
	if daemon != nil {
		r.daemonLost = strings.Count(daemon.stderr.String(), "events lost")
		if daemon.exited() {
			b.Fatalf("%s exited: %v\n%s", d.name, daemon.err, daemon.stderr.String())
		}
		cpu1, err := cpuTime(daemon.cmd.Process.Pid)
		if err != nil {
			b.Fatalf("%s: CPU time: %v", d.name, err)
		}
		r.cpuPerConn = (cpu1 - cpu0) / time.Duration(r.conns+len(r.connect)+r.missed+r.backlog)
		if r.rss1 == 0 {
			if r.rss1, err = vmRSS(daemon.cmd.Process.Pid); err != nil {
				b.Fatalf("%s: RSS: %v", d.name, err)
			}
		}
		b.ReportMetric(float64(r.rss1), "RSS-KiB")
		b.ReportMetric(float64(r.cpuPerConn.Microseconds()), "CPU-us/conn")
	}
	b.ReportMetric(float64(r.conns)/r.span().Seconds(), "conns/s")
	if r.backlog > 0 {
		b.ReportMetric(float64(r.backlog)/(r.opened+r.closed).Seconds(), "backlog-conns/s")
	}
	if len(r.connect) > 0 {
		s := summarize99(r.connect)
		b.ReportMetric(float64(s.p50.Microseconds()), "subflow-p50-us")
		b.ReportMetric(float64(s.p99.Microseconds()), "subflow-p99-us")
	}
	return r
}

// span is the time the throughput runs took: until the daemon had acted
// on them where that is known, else the clients' wall time.
func (r *usResult) span() time.Duration {
	if r.handled > 0 {
		return r.handled
	}
	return r.wall
}

// timedEvent is an mptcp_pm event and when the listener read it.
type timedEvent struct {
	mptcp.Event
	at time.Time
}

// pmTap is the benchmark's own mptcp_pm listener in the client namespace.
// It counts every event, and queues them only while forward is set: the
// churn of a throughput run would fill any queue with events nobody reads.
type pmTap struct {
	ch                    chan timedEvent
	forward               atomic.Bool
	events, lost, dropped atomic.Int64 // dropped: the queue was full
}

// tapQueue holds the events of the connections being timed.
const tapQueue = 4096

func tapPM(b *testing.B, ns *nstest.NS) *pmTap {
	l, err := mptcp.ListenEvents(&mptcp.Config{NetNS: ns.Handle().FD()})
	if err != nil {
		b.Fatalf("mptcp_pm events in %s: %v", ns, err)
	}
	if err := l.SetReadBuffer(8 << 20); err != nil {
		b.Fatalf("mptcp_pm events in %s: %v", ns, err)
	}
	tap := &pmTap{ch: make(chan timedEvent, tapQueue)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, err := l.Receive()
			at := time.Now()
			switch {
			case errors.Is(err, net.ErrClosed):
				return
			case errors.Is(err, mptcp.ErrEventsLost):
				tap.lost.Add(1)
			case err != nil:
				b.Errorf("mptcp_pm events in %s: %v", ns, err)
				return
			}
			tap.events.Add(int64(len(evs)))
			if !tap.forward.Load() {
				continue
			}
			for _, ev := range evs {
				select {
				case tap.ch <- timedEvent{ev, at}:
				default:
					tap.dropped.Add(1)
				}
			}
		}
	}()
	b.Cleanup(func() {
		l.Close()
		<-done
	})
	return tap
}

// next returns the first event that matches, dropping the others, or
// false after timeout.
func (p *pmTap) next(timeout time.Duration, match func(*timedEvent) bool) (timedEvent, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev := <-p.ch:
			if match(&ev) {
				return ev, true
			}
		case <-deadline.C:
			return timedEvent{}, false
		}
	}
}

// watch starts (or stops) queueing events; the queue starts empty.
func (p *pmTap) watch(on bool) {
	p.forward.Store(on)
	for {
		select {
		case <-p.ch:
		default:
			return
		}
	}
}

// firstSubflowWait bounds the wait for the first samples' second
// subflow; subflowWait the later ones' (a miss, reported).
const (
	firstSubflowWait = time.Second
	subflowWait      = time.Second
	// probeSamples without a second subflow mean the daemon opens none.
	probeSamples = 3
)

// latency times samples connections, one at a time, to their second
// subflow. It returns nothing when the first probeSamples got none.
func (p *pmTap) latency(b *testing.B, ns *nstest.NS, samples int) (connect, est []time.Duration, missed int) {
	p.watch(true)
	defer p.watch(false)
	err := netns.DoFD(ns.Handle().FD(), func() error {
		for i := range samples {
			p.watch(true) // the events of earlier samples' closes are not needed
			c, connected, err := echoDial(dialAddr)
			if err != nil {
				return err
			}
			wait := subflowWait
			if i < probeSamples {
				wait = firstSubflowWait
			}
			e, s, ok := p.secondSubflow(c, wait)
			if err := c.Close(); err != nil {
				return err
			}
			if !ok {
				missed++
				if i+1 == probeSamples && len(connect) == 0 {
					return nil
				}
				continue
			}
			connect = append(connect, s.at.Sub(connected))
			est = append(est, s.at.Sub(e.at))
		}
		return nil
	})
	if err != nil {
		b.Fatalf("latency run: %v", err)
	}
	return connect, est, missed
}

// secondSubflow waits, at most wait for each, for the ESTABLISHED event
// of connection c, then for the SUB_ESTABLISHED of its second subflow.
func (p *pmTap) secondSubflow(c *net.TCPConn, wait time.Duration) (est, sub timedEvent, ok bool) {
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	est, ok = p.next(wait, func(ev *timedEvent) bool {
		return ev.Type == mptcp.EventEstablished && ev.Sport == local.Port() && ev.Saddr == local.Addr()
	})
	if !ok {
		return est, sub, false
	}
	sub, ok = p.next(wait, func(ev *timedEvent) bool {
		return ev.Type == mptcp.EventSubEstablished && ev.Token == est.Token
	})
	return est, sub, ok
}

// throughput runs conns short connections and returns the clients' wall
// time and, when awaitDaemon, the time until the daemon had acted on all
// of them: until a last connection got its second subflow.
func (p *pmTap) throughput(b *testing.B, ns *nstest.NS, conns int, awaitDaemon bool) (wall, handled time.Duration) {
	start := time.Now()
	wall, err := churn(ns, dialAddr, conns)
	if err != nil {
		b.Fatalf("throughput run: %v", err)
	}
	if !awaitDaemon {
		return wall, 0
	}
	p.watch(true)
	defer p.watch(false)
	err = netns.DoFD(ns.Handle().FD(), func() error {
		c, _, err := echoDial(dialAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, _, ok := p.secondSubflow(c, endpointTimeout); !ok {
			return fmt.Errorf("the connection after %d others got no second subflow within %v", conns, endpointTimeout)
		}
		handled = time.Since(start)
		return nil
	})
	if err != nil {
		b.Fatalf("throughput run: %v", err)
	}
	return wall, handled
}

// backlogRun is what one backlog run measured.
type backlogRun struct {
	// opened is the time from SIGCONT until the last held connection had
	// its second subflow; closed the time from the second SIGCONT until
	// the daemon had read every close (a connection opened after them
	// got its second subflow).
	opened, closed time.Duration
	rssHeld        int64 // the daemon's RSS with the n connections open
}

// closeSettle lets the kernel queue the close events of the backlog
// (FINs over the veth, SUB_CLOSED, CLOSED) before the daemon resumes.
const closeSettle = 200 * time.Millisecond

// backlog times the daemon on n connections whose events wait for it: it
// stops the daemon, opens n connections and holds them, resumes it and
// waits for every one's second subflow (their SUB_ESTABLISHED events);
// then stops it again, closes them all, resumes it and waits until a
// connection opened after them gets its second subflow, which the daemon
// can open only after reading every earlier event.
func (p *pmTap) backlog(b *testing.B, ns *nstest.NS, daemon *background, n int) backlogRun {
	var stopped bool
	signal := func(sig syscall.Signal) {
		if err := daemon.cmd.Process.Signal(sig); err != nil {
			b.Fatalf("%s: %v: %v", daemon.name, sig, err)
		}
		stopped = sig == syscall.SIGSTOP
	}
	defer func() {
		if stopped {
			signal(syscall.SIGCONT)
		}
	}()
	held := make([]*net.TCPConn, 0, n)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var run backlogRun
	err := netns.DoFD(ns.Handle().FD(), func() error {
		signal(syscall.SIGSTOP)
		for range n {
			c, _, err := echoDial(dialAddr)
			if err != nil {
				return fmt.Errorf("%d connections open: %w", len(held), err)
			}
			held = append(held, c)
		}
		p.watch(true)
		defer p.watch(false)
		resumed := time.Now()
		signal(syscall.SIGCONT)
		subflows := make(map[mptcp.Token]bool, n)
		for len(subflows) < n {
			ev, ok := p.next(endpointTimeout, func(ev *timedEvent) bool { return ev.Type == mptcp.EventSubEstablished })
			if !ok {
				return fmt.Errorf("%d of %d connections got their second subflow within %v of SIGCONT, then none for %v",
					len(subflows), n, time.Since(resumed).Round(time.Millisecond), endpointTimeout)
			}
			subflows[ev.Token] = true
			run.opened = ev.at.Sub(resumed)
		}
		var err error
		if run.rssHeld, err = vmRSS(daemon.cmd.Process.Pid); err != nil {
			return err
		}

		signal(syscall.SIGSTOP)
		for _, c := range held {
			if err := c.Close(); err != nil {
				return err
			}
		}
		held = held[:0]
		time.Sleep(closeSettle)
		p.watch(true)
		resumed = time.Now()
		signal(syscall.SIGCONT)
		c, _, err := echoDial(dialAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, sub, ok := p.secondSubflow(c, endpointTimeout)
		if !ok {
			return fmt.Errorf("the connection after %d closes got no second subflow within %v", n, endpointTimeout)
		}
		run.closed = sub.at.Sub(resumed)
		return nil
	})
	if err != nil {
		b.Fatalf("backlog: %v\n%s", err, daemon.stderr.String())
	}
	return run
}

// latency99 is a latency distribution for the targets, which are about p99.
type latency99 struct{ p50, p99, max time.Duration }

func summarize99(d []time.Duration) latency99 {
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	return latency99{percentile(sorted, 50), percentile(sorted, 99), percentile(sorted, 100)}
}

func (l latency99) String() string {
	return fmt.Sprintf("%d/%d/%d", l.p50.Microseconds(), l.p99.Microseconds(), l.max.Microseconds())
}

// printUserspaceTable prints the results side by side.
func printUserspaceTable(results []usResult) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "daemon\tconns\tconns/s\tevents/s\tlost events\tsamples\tconnect→subflow p50/p99/max µs\tESTABLISHED→subflow p50/p99/max µs\tbacklog conns/s\tCPU µs/conn\tRSS KiB before→after")
	for _, r := range results {
		if !r.measured {
			fmt.Fprintf(w, "%s\tnot measured (skipped or failed)\t\t\t\t\t\t\t\t\t\n", r.name)
			continue
		}
		// Where the daemon's end is known, the clients' own rate too.
		rate := fmt.Sprintf("%.0f (clients)", float64(r.conns)/r.wall.Seconds())
		if r.handled > 0 {
			rate = fmt.Sprintf("%.0f (clients %.0f)", float64(r.conns)/r.handled.Seconds(), float64(r.conns)/r.wall.Seconds())
		}
		lat, est := "-", "-"
		switch {
		case len(r.connect) > 0:
			lat, est = summarize99(r.connect).String(), summarize99(r.est).String()
			if r.missed > 0 {
				lat += fmt.Sprintf(" (%d missed)", r.missed)
			}
		case r.rss0 > 0:
			lat = "no second subflow"
		}
		cpu, rss := "-", "-"
		if r.rss0 > 0 {
			cpu, rss = strconv.FormatInt(r.cpuPerConn.Microseconds(), 10), fmt.Sprintf("%d→%d", r.rss0, r.rss1)
		}
		// How often the benchmark's listener, and the daemon's (as far
		// as its log says), overran.
		lost := fmt.Sprintf("%d", r.lost)
		if r.rss0 > 0 {
			lost = fmt.Sprintf("%d/%d", r.daemonLost, r.lost)
		}
		drain := "-"
		if r.backlog > 0 {
			drain = fmt.Sprintf("%.0f (%d: opened %v, closed %v; RSS %d KiB)", float64(r.backlog)/(r.opened+r.closed).Seconds(),
				r.backlog, r.opened.Round(time.Millisecond), r.closed.Round(time.Millisecond), r.rssHeld)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%.0f\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.name, r.conns, rate,
			float64(r.events)/r.span().Seconds(), lost, len(r.connect)+r.missed, lat, est, drain, cpu, rss)
	}
	_ = w.Flush()
}
