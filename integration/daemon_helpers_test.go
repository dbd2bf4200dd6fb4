package integration

// Helpers of the mptcpd tests and benchmark: the daemon's files, running
// it inside a namespace, reading the endpoint table it programs, and
// watching live MPTCP connections for churn.

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

const (
	// endpointTimeout bounds the wait for a daemon to follow one change
	// of the network or its policy; missing it is a correctness failure,
	// not a slow run.
	endpointTimeout = 5 * time.Second
	// startTimeout also covers the daemon's start-up.
	startTimeout = 10 * time.Second
	// stopTimeout is the grace between SIGTERM and SIGKILL.
	stopTimeout = 5 * time.Second
	// eventQuiet is how long an event stream must stay silent before the
	// events seen so far are taken as complete. It only widens the net
	// for late events: every check also waits for something positive.
	eventQuiet = 300 * time.Millisecond
)

// mptcpdFiles are one daemon's files: an empty mptcpd.conf, the policy
// and the state directory, on tmpfs when there is one: the store fsyncs
// every change, which a disk would make the slowest step of a test.
type mptcpdFiles struct {
	conf, policy, state string
}

func newMptcpdFiles(t testing.TB, policy string) *mptcpdFiles {
	t.Helper()
	dir := shmTempDir(t)
	f := &mptcpdFiles{
		conf:   filepath.Join(dir, "mptcpd.conf"),
		policy: filepath.Join(dir, "policy"),
		state:  filepath.Join(dir, "state"),
	}
	writeFile(t, f.conf, "")
	f.setPolicy(t, policy)
	return f
}

// shmTempDir is a temporary directory on tmpfs (/dev/shm) when there is
// one, else t.TempDir, removed at cleanup.
func shmTempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("/dev/shm", "mptcpd-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// setPolicy replaces the policy file; the daemon reads it at start and
// on SIGHUP.
func (f *mptcpdFiles) setPolicy(t testing.TB, policy string) {
	t.Helper()
	writeFile(t, f.policy, policy)
}

// argv is the daemon's command line with these files and extra flags.
func (f *mptcpdFiles) argv(bin string, extra ...string) []string {
	return append([]string{bin, "--config", f.conf, "--policy", f.policy, "--state-dir", f.state, "--log=stderr"}, extra...)
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	// Not world-writable: the daemon refuses such files.
	writeFileMode(t, path, data, 0o644)
}

func writeFileMode(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// startDaemon runs argv inside ns. At cleanup it stops the daemon with
// SIGTERM (SIGKILL after stopTimeout), unless the test ended it itself,
// and, when t failed, shows its stderr.
func startDaemon(t testing.TB, ns *nstest.NS, name string, argv []string, env ...string) *background {
	t.Helper()
	// ip netns exec execs the daemon, so the process is the daemon itself
	// (its PID is the one signalled, and whose RSS is read).
	cmd := ns.Command(context.Background(), argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	d := start(t, name, cmd)
	t.Cleanup(func() {
		if !d.ended {
			// Stopping a busy daemon is TestDaemonStopWhileBusy's
			// subject: here it is stopped between passes, so that a
			// failure is reported by the test that is about it.
			d.waitIdle(stopTimeout)
			if err := d.terminate(stopTimeout); err != nil {
				t.Errorf("%s: %v", ns, err)
			}
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, d.stderr.String())
		}
	})
	return d
}

// idleQuiet is how long a daemon must write nothing to count as idle.
const idleQuiet = 100 * time.Millisecond

// waitIdle waits, at most timeout, until the process has written nothing
// for idleQuiet: mptcpd logs every kernel write (and with -d every pass),
// so it is then between passes.
func (p *background) waitIdle(timeout time.Duration) {
	n, since := -1, time.Now()
	waitFor(timeout, func() bool {
		if m := len(p.stderr.String()) + len(p.stdout.String()); m != n {
			n, since = m, time.Now()
		}
		return time.Since(since) >= idleQuiet || p.exited()
	})
}

// terminate asks the process to exit with SIGTERM and kills it if it has
// not within grace. An exit before the request, a kill, or an exit status
// other than 0 is an error.
func (p *background) terminate(grace time.Duration) error {
	if p.exited() {
		return fmt.Errorf("%s exited before SIGTERM: %v", p.name, p.err)
	}
	p.ended = true
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("%s: SIGTERM: %w", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.stop()
		return fmt.Errorf("%s still running %v after SIGTERM; killed", p.name, grace)
	}
	if p.err != nil {
		return fmt.Errorf("%s after SIGTERM: %w", p.name, p.err)
	}
	return nil
}

// mptcpd is the daemon under test in one namespace, with a client that
// reads the namespace's endpoint table in-process.
type mptcpd struct {
	ns    *nstest.NS
	files *mptcpdFiles
	extra []string // flags after the files'
	env   []string // added to the test's environment
	pm    *mptcp.Client
	proc  *background // the current run
	runs  int
}

// newMptcpd prepares a daemon with policy in ns; start runs it. extra
// are flags beyond the files and -d (debug: every pass logs "reconciled").
func newMptcpd(t *testing.T, ns *nstest.NS, policy string, extra ...string) *mptcpd {
	t.Helper()
	return &mptcpd{ns: ns, files: newMptcpdFiles(t, policy), extra: extra, pm: nlDialNS(t, ns)}
}

// startMptcpd is newMptcpd and start.
func startMptcpd(t *testing.T, ns *nstest.NS, policy string, extra ...string) *mptcpd {
	t.Helper()
	d := newMptcpd(t, ns, policy, extra...)
	d.start(t)
	return d
}

// start runs the daemon (again) and waits until it watches the network:
// it logs "mptcpd started" once its rtnetlink subscription is in place,
// so every change made afterwards reaches it.
func (d *mptcpd) start(t *testing.T) {
	t.Helper()
	d.runs++
	argv := d.files.argv(requireMptcpd(t), append([]string{"-d"}, d.extra...)...)
	d.proc = startDaemon(t, d.ns, fmt.Sprintf("mptcpd run %d in %s", d.runs, d.ns), argv, d.env...)
	d.waitLog(t, startTimeout, 1, `msg="mptcpd started"`)
}

// kill ends the current run with SIGKILL, as a crash would.
func (d *mptcpd) kill(t *testing.T) {
	t.Helper()
	d.proc.ended = true
	if err := d.proc.cmd.Process.Kill(); err != nil {
		t.Fatalf("%s: SIGKILL: %v", d.proc.name, err)
	}
	if !waitFor(stopTimeout, d.proc.exited) {
		t.Fatalf("%s still running %v after SIGKILL", d.proc.name, stopTimeout)
	}
}

// signal sends sig to the current run.
func (d *mptcpd) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := d.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v", d.proc.name, sig, err)
	}
}

// logLines returns the complete lines of the current run's stderr that
// contain every one of words.
func (d *mptcpd) logLines(words ...string) []string {
	var out []string
	for _, l := range d.proc.stderr.lines() {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(l, w) }) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits until n lines of the current run contain every one of
// words; it fails when the daemon exits first or timeout passes.
func (d *mptcpd) waitLog(t *testing.T, timeout time.Duration, n int, words ...string) {
	t.Helper()
	count := func() int { return len(d.logLines(words...)) }
	waitFor(timeout, func() bool { return count() >= n || d.proc.exited() })
	switch {
	case count() >= n:
	case d.proc.exited():
		t.Fatalf("%s exited (%v) before logging %q", d.proc.name, d.proc.err, words)
	default:
		t.Fatalf("%s: %d lines with %q after %v, want %d", d.proc.name, count(), words, timeout, n)
	}
}

// writeMsgs are the log messages of the daemon's kernel writes, one line
// per endpoint, limit, route or rule.
var writeMsgs = []string{
	`msg="added endpoint"`, `msg="deleted endpoint"`, `msg="changed endpoint flags"`,
	`msg="adopting endpoint"`, `msg="set limit"`,
	`msg="source route added"`, `msg="source route removed"`, `msg="source rule added"`, `msg="source rule removed"`,
}

// writes returns the current run's log lines of kernel writes.
func (d *mptcpd) writes() []string {
	var out []string
	for _, l := range d.proc.stderr.lines() {
		if slices.ContainsFunc(writeMsgs, func(m string) bool { return strings.Contains(l, m) }) {
			out = append(out, l)
		}
	}
	return out
}

// dump reads the endpoint table.
func (d *mptcpd) dump(t *testing.T) []mptcp.Endpoint {
	t.Helper()
	eps, err := d.pm.Endpoints()
	if err != nil {
		t.Fatalf("endpoint dump in %s: %v", d.ns, err)
	}
	return eps
}

// waitEndpoints waits until the endpoint table is exactly want (see
// sameEndpoints) and returns it as dumped. It fails when the daemon
// exits or endpointTimeout passes first.
func (d *mptcpd) waitEndpoints(t *testing.T, what string, want ...mptcp.Endpoint) []mptcp.Endpoint {
	t.Helper()
	var got []mptcp.Endpoint
	var err error
	waitFor(endpointTimeout, func() bool {
		got, err = d.pm.Endpoints()
		return err != nil || sameEndpoints(got, want) || d.proc.exited()
	})
	switch {
	case err != nil:
		t.Fatalf("%s: endpoint dump in %s: %v", what, d.ns, err)
	case sameEndpoints(got, want):
		return got
	case d.proc.exited():
		t.Fatalf("%s: %s exited (%v); endpoints:\n%swant:\n%s", what, d.proc.name, d.proc.err, formatEndpoints(got), formatEndpoints(want))
	}
	t.Fatalf("%s: endpoints after %v:\n%swant:\n%s", what, endpointTimeout, formatEndpoints(got), formatEndpoints(want))
	return nil
}

// ep is an endpoint of a wanted table: any id.
func ep(addr string, flags mptcp.Flags, ifindex int) mptcp.Endpoint {
	return mptcp.Endpoint{Addr: netip.MustParseAddr(addr), Flags: flags, IfIndex: ifindex}
}

// sameEndpoints reports whether the table got is want, in any order; an
// endpoint of want with id 0 matches any id.
func sameEndpoints(got, want []mptcp.Endpoint) bool {
	if len(got) != len(want) {
		return false
	}
	got, want = sortedEndpoints(got), sortedEndpoints(want)
	for i, w := range want {
		g := got[i]
		if w.ID == 0 {
			g.ID = 0
		}
		if g != w {
			return false
		}
	}
	return true
}

func sortedEndpoints(eps []mptcp.Endpoint) []mptcp.Endpoint {
	s := slices.Clone(eps)
	for i := range s {
		s[i].Addr = s[i].Addr.Unmap()
	}
	slices.SortFunc(s, func(a, b mptcp.Endpoint) int { return a.Addr.Compare(b.Addr) })
	return s
}

// formatEndpoints prints a table, one endpoint per line, by address.
func formatEndpoints(eps []mptcp.Endpoint) string {
	if len(eps) == 0 {
		return "\t(none)\n"
	}
	var b strings.Builder
	for _, e := range sortedEndpoints(eps) {
		fmt.Fprintf(&b, "\t%s", e.Addr)
		if e.Port != 0 {
			fmt.Fprintf(&b, " port %d", e.Port)
		}
		if e.ID != 0 {
			fmt.Fprintf(&b, " id %d", e.ID)
		}
		fmt.Fprintf(&b, " [%s] ifindex %d\n", e.Flags, e.IfIndex)
	}
	return b.String()
}

// linkIndex returns the index of link name in ns.
func linkIndex(t *testing.T, ns *nstest.NS, name string) int {
	t.Helper()
	for i, n := range nlIfNames(t, ns) {
		if n == name {
			return i
		}
	}
	t.Fatalf("no link %s in %s", name, ns)
	return 0
}

// ipBatch runs ip commands (without the leading "ip") inside ns in one
// `ip -batch`, stopping at the first that fails.
func ipBatch(t testing.TB, ns *nstest.NS, lines ...string) {
	t.Helper()
	cmd := ipBatchCommand(t, ns, lines...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in %s: ip -batch (%d commands): %v\n%s", ns, len(lines), err, out)
	}
}

// ipBatchCommand prepares ipBatch's command, to run in the background.
func ipBatchCommand(t testing.TB, ns *nstest.NS, lines ...string) *exec.Cmd {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ip-batch")
	writeFile(t, f, strings.Join(lines, "\n")+"\n")
	return ns.Command(context.Background(), "ip", "-batch", f)
}

// Marker: a veth whose addresses a policy always turns into endpoints, so
// that a test can tell when the daemon has taken in every earlier address
// change (see barrier). It carries an IPv4 default route, for policies
// with check-route.
const (
	markerLink = "mark0"
	markerRule = "match name=" + markerLink + "\n    flags subflow\n"
	markerAddr = "10.255.0.1"
)

// addMarker creates the marker link in d's namespace.
func (d *mptcpd) addMarker(t *testing.T) {
	t.Helper()
	nstest.Veth(t, d.ns, markerLink, d.ns, "markpeer")
	d.ns.MustRun("ip", "route", "add", "default", "dev", markerLink, "metric", "4000")
}

// barrier returns once the daemon has acted on every address change made
// before the call: it adds an address to the marker link, waits for its
// endpoint and removes it again. The kernel reports all address changes
// on one rtnetlink socket, in order, so the marker's endpoint proves the
// earlier changes were seen and reconciled. want is the table apart from
// the marker, before and after.
func (d *mptcpd) barrier(t *testing.T, want ...mptcp.Endpoint) {
	t.Helper()
	mark := ep(markerAddr, mptcp.FlagSubflow, linkIndex(t, d.ns, markerLink))
	d.ns.MustRun("ip", "addr", "add", markerAddr+"/24", "dev", markerLink)
	d.waitEndpoints(t, "barrier: marker endpoint added", append(slices.Clone(want), mark)...)
	d.ns.MustRun("ip", "addr", "del", markerAddr+"/24", "dev", markerLink)
	d.waitEndpoints(t, "barrier: marker endpoint removed", want...)
}

// pmEvents gathers the mptcp_pm events of one namespace as they come.
type pmEvents struct {
	name string
	ch   <-chan nlReceived
	seen []mptcp.Event
}

func listenPM(t *testing.T, ns *nstest.NS) *pmEvents {
	t.Helper()
	_, ch := nlListen(t, ns.Handle(), 0)
	return &pmEvents{name: ns.Name, ch: ch}
}

// take records one received result; lost events fail the test, since
// what was lost cannot be checked.
func (e *pmEvents) take(t *testing.T, r nlReceived) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("mptcp_pm events of %s: %v", e.name, r.err)
	}
	e.seen = append(e.seen, r.ev)
}

// wait returns the first event since mark (an index into seen) that
// matches, waiting up to endpointTimeout for it.
func (e *pmEvents) wait(t *testing.T, what string, mark int, match func(mptcp.Event) bool) mptcp.Event {
	t.Helper()
	timeout := time.After(endpointTimeout)
	for i := mark; ; i++ {
		for i >= len(e.seen) {
			select {
			case r := <-e.ch:
				e.take(t, r)
			case <-timeout:
				t.Fatalf("no %s in %s within %v; events since:\n%s", what, e.name, endpointTimeout, formatEvents(e.seen[mark:]))
			}
		}
		if match(e.seen[i]) {
			return e.seen[i]
		}
	}
}

// settle takes events until none came for eventQuiet.
func (e *pmEvents) settle(t *testing.T) {
	t.Helper()
	for {
		select {
		case r := <-e.ch:
			e.take(t, r)
		case <-time.After(eventQuiet):
			return
		}
	}
}

// teardowns returns the events since mark that close a connection or a
// subflow or withdraw an address: what a daemon that churns endpoints
// causes on live connections.
func (e *pmEvents) teardowns(mark int) []mptcp.Event {
	var out []mptcp.Event
	for _, ev := range e.seen[mark:] {
		switch ev.Type {
		case mptcp.EventSubClosed, mptcp.EventRemoved, mptcp.EventClosed:
			out = append(out, ev)
		}
	}
	return out
}

func formatEvents(evs []mptcp.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "\t%s token %s locid %d remid %d %s:%d -> %s:%d backup %v\n",
			ev.Type, ev.Token, ev.LocalID, ev.RemoteID, ev.Saddr, ev.Sport, ev.Daddr, ev.Dport, ev.Backup)
	}
	return b.String()
}

// heldConn is an mptcpecho client whose connection stays open (dial
// -hold) until release.
type heldConn struct {
	b     *background
	stdin io.WriteCloser
}

// holdConnection dials addr from ns and waits until the connection has
// echoed once and has subflows additional subflows.
func holdConnection(t *testing.T, ns *nstest.NS, echo string, wait time.Duration, subflows int, addr string) *heldConn {
	t.Helper()
	cmd := ns.Command(context.Background(), echo, "dial", "-wait", wait.String(),
		"-hold", "-subflows", strconv.Itoa(subflows), addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &heldConn{b: start(t, "held mptcpecho dial "+addr, cmd), stdin: stdin}
	if !waitFor(2*wait, func() bool { return strings.Contains(h.b.stdout.String(), "held\n") || h.b.exited() }) || h.b.exited() {
		t.Fatalf("held connection did not get ready: %v\n%s%s", h.b.err, h.b.stdout.String(), h.b.stderr.String())
	}
	return h
}

// release lets the connection transfer once more and close, and checks
// that it did.
func (h *heldConn) release(t *testing.T, wait time.Duration) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		t.Fatalf("release held connection: %v", err)
	}
	h.stdin.Close()
	if !waitFor(2*wait, h.b.exited) {
		t.Fatalf("held connection did not finish:\n%s%s", h.b.stdout.String(), h.b.stderr.String())
	}
	if h.b.err != nil || !strings.Contains(h.b.stdout.String(), "done\n") {
		t.Fatalf("held connection: %v\n%s%s", h.b.err, h.b.stdout.String(), h.b.stderr.String())
	}
}

// established reports whether ns has an established TCP socket (an MPTCP
// subflow is one) from local to remote.
func established(t *testing.T, ns *nstest.NS, local, remote netip.AddrPort) bool {
	t.Helper()
	out := ns.MustRun("ss", "-Htn", "state", "established")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		// ss shows a socket bound to a device as ADDR%DEV:PORT.
		lp, err1 := netip.ParseAddrPort(stripDev(f[2]))
		rp, err2 := netip.ParseAddrPort(stripDev(f[3]))
		if err1 == nil && err2 == nil && lp == local && rp == remote {
			return true
		}
	}
	return false
}

// stripDev turns IPv4 "ADDR%DEV:PORT" into "ADDR:PORT".
func stripDev(s string) string {
	i, j := strings.IndexByte(s, '%'), strings.LastIndexByte(s, ':')
	if i < 0 || j < i {
		return s
	}
	return s[:i] + s[j:]
}

// subflowOver waits for the SUB_ESTABLISHED of the subflow that the
// connection from ns opened over endpoint id and returns its addresses.
func subflowOver(t *testing.T, ev *pmEvents, id mptcp.ID) (local, remote netip.AddrPort) {
	t.Helper()
	sf := ev.wait(t, fmt.Sprintf("SUB_ESTABLISHED over endpoint id %d", id), 0, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubEstablished && e.LocalID == id
	})
	return netip.AddrPortFrom(sf.Saddr, sf.Sport), netip.AddrPortFrom(sf.Daddr, sf.Dport)
}
