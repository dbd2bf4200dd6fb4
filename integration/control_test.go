package integration

// The daemon's control socket against running daemons in namespaces:
// status follows the network within milliseconds, explain is policy
// explain's, events stream in order, only root and the control group may
// connect, malformed requests change nothing, and each namespace's daemon
// answers for its namespace only.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// socketPath is the control socket of d's namespace.
func (d *mptcpd) socketPath(t *testing.T) string {
	t.Helper()
	path, err := control.SocketPath(d.files.state, d.ns.Handle().FD())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// control connects to d's socket in-process.
func (d *mptcpd) control(t *testing.T) *control.Client {
	t.Helper()
	c, err := control.Dial(d.socketPath(t))
	if err != nil {
		t.Fatalf("%s: %v", d.ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitControlStatus polls d's status until cond holds and returns it with the
// time it took.
func waitControlStatus(t *testing.T, c *control.Client, what string, cond func(control.Status) bool) (control.Status, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		st, err := c.Status()
		if err != nil {
			t.Fatalf("%s: status: %v", what, err)
		}
		if cond(st) {
			return st, time.Since(start)
		}
		if time.Since(start) > endpointTimeout {
			t.Fatalf("%s: status after %v: %+v", what, endpointTimeout, st)
		}
		// Polling leaves the daemon the CPU it needs to get there.
		time.Sleep(100 * time.Microsecond)
	}
}

// wants reports whether the status has a present endpoint on addr.
func wants(st control.Status, addr string) bool {
	return slices.ContainsFunc(st.Endpoints, func(w control.Wanted) bool {
		return w.Address == netip.MustParseAddr(addr) && w.Kernel == "present"
	})
}

// ctlArgs are mptcpctl's arguments for a daemon command on d.
func (d *mptcpd) ctlArgs(json bool, args ...string) []string {
	argv := []string{"-n", d.ns.Name}
	if json {
		argv = append(argv, "-j")
	}
	return append(append(argv, args...), "--state-dir", d.files.state)
}

func requireCtl(t *testing.T) mptcpTool {
	t.Helper()
	ctl := requireMptcpctl(t)
	if ctl.sub != nil {
		t.Skip("MPTCPCTL=ip: iproute2 has no daemon commands")
	}
	return ctl
}

// TestControlStatusLatency measures how long after an address change the
// status shows the endpoint the daemon made for it (and its removal).
func TestControlStatusLatency(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	d := startMptcpd(t, ns, wlanPolicy)
	c := d.control(t)
	waitControlStatus(t, c, "first pass", func(st control.Status) bool { return !st.LastPass.IsZero() })

	const rounds = 20
	var added, deleted []time.Duration
	for i := range rounds {
		a := fmt.Sprintf("10.1.%d.1", i)
		ipBatch(t, ns, "addr add "+a+"/24 dev wlan0")
		_, took := waitControlStatus(t, c, "after adding "+a, func(st control.Status) bool { return wants(st, a) })
		added = append(added, took)
		ipBatch(t, ns, "addr del "+a+"/24 dev wlan0")
		st, took := waitControlStatus(t, c, "after deleting "+a, func(st control.Status) bool { return len(st.Endpoints) == 0 })
		deleted = append(deleted, took)
		if len(st.Kernel.Owned) != 0 {
			t.Fatalf("after deleting %s: kernel table %+v", a, st.Kernel)
		}
	}
	// The time runs from ip's return (the kernel has the address) to the
	// first status showing the endpoint in the kernel's table.
	a, del := summarize(added), summarize(deleted)
	t.Logf("status shows an added address's endpoint after p50 %v, p90 %v, max %v; a deleted one's removal after p50 %v, p90 %v, max %v (%d rounds; deleting waits for the kernel's RCU grace period)",
		a.p50, a.p90, a.max, del.p50, del.p90, del.max, rounds)
}

// TestControlExplainMatchesPolicyExplain: the daemon's explain prints what
// policy explain computes from the same files and namespace.
func TestControlExplainMatchesPolicyExplain(t *testing.T) {
	t.Parallel()
	ns, files, ctl := policyCLISetup(t)
	d := &mptcpd{ns: ns, pm: nlDialNS(t, ns),
		files: &mptcpdFiles{policy: files[1], conf: files[3], state: filepath.Join(shmTempDir(t), "state")}}
	d.start(t)
	// Its pass adds the IPv6 endpoint the policy wants (the others are
	// foreign and held); policy explain must see the table after it.
	c := d.control(t)
	waitControlStatus(t, c, "first pass", func(st control.Status) bool { return wants(st, "2001:db8:1::2") })

	for _, json := range []bool{false, true} {
		daemon := ctl.runArgv(t, d.ctlArgs(json, "explain"))
		policy := ctl.run(t, ns.Name, json, append([]string{"policy", "explain"}, files...)...)
		if daemon.code != 0 || policy.code != 0 {
			t.Fatalf("explain: exit %d (%q); policy explain: exit %d (%q)", daemon.code, daemon.stderr, policy.code, policy.stderr)
		}
		if daemon.stdout != policy.stdout {
			t.Errorf("json %v: explain:\n%s\npolicy explain:\n%s", json, daemon.stdout, policy.stdout)
		}
	}
	if t.Failed() {
		return
	}
	r := ctl.runArgv(t, d.ctlArgs(false, "explain"))
	for _, want := range []string{"endpoint subflow (line 7); kernel id", "10.99.0.2/24", "ignored (line 4)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("explain lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestControlEventsInOrder follows `mptcpctl events -j` through address
// changes: each change and the daemon's endpoint write come in order,
// numbered without gaps.
func TestControlEventsInOrder(t *testing.T) {
	t.Parallel()
	ctl := requireCtl(t)
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	d := newMptcpd(t, ns, wlanPolicy+markerRule)
	d.addMarker(t)
	d.start(t)
	ev := start(t, "mptcpctl events", exec.Command(ctl.path, d.ctlArgs(true, "events")...))

	// The stream is live once a change shows in it.
	live := false
	for i := 0; i < 50 && !live; i++ {
		d.barrier(t)
		live = strings.Contains(ev.stdout.String(), `"address":"`+markerAddr)
	}
	if !live {
		t.Fatalf("no event for the marker address after 50 tries: %s%s", ev.stdout.String(), ev.stderr.String())
	}
	mark := len(ev.stdout.lines())
	wlan := linkIndex(t, ns, "wlan0")
	// Two subnets: deleting the first address promotes no second one.
	one, two := ep("10.1.0.1", subflow, wlan), ep("10.1.1.1", subflow, wlan)
	// One change at a time: a burst would be one pass, its writes after
	// all its changes.
	for _, step := range []struct {
		cmd  string
		want []mptcp.Endpoint
	}{
		{"addr add 10.1.0.1/24 dev wlan0", []mptcp.Endpoint{one}},
		{"addr add 10.1.1.1/24 dev wlan0", []mptcp.Endpoint{one, two}},
		{"addr del 10.1.0.1/24 dev wlan0", []mptcp.Endpoint{two}},
	} {
		ipBatch(t, ns, step.cmd)
		d.waitEndpoints(t, "after ip "+step.cmd, step.want...)
	}
	want := []string{
		"addr new 10.1.0.1/24", "endpoint added 10.1.0.1",
		"addr new 10.1.1.1/24", "endpoint added 10.1.1.1",
		"addr del 10.1.0.1/24", "endpoint deleted 10.1.0.1",
	}
	var got []string
	var evs []control.Event
	waitFor(endpointTimeout, func() bool {
		evs, got = nil, nil
		for _, line := range ev.stdout.lines()[mark:] {
			var e control.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("event line %q: %v", line, err)
			}
			evs = append(evs, e)
			if (e.Kind == control.KindAddr || e.Kind == control.KindEndpoint) && strings.HasPrefix(e.Address, "10.1.") {
				got = append(got, e.Kind+" "+e.Op+" "+e.Address)
			}
		}
		return len(got) >= len(want)
	})
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 || evs[i].Time.Before(evs[i-1].Time.Add(-time.Millisecond)) {
			t.Errorf("event %d: seq %d at %v after seq %d at %v", i, evs[i].Seq, evs[i].Time, evs[i-1].Seq, evs[i-1].Time)
		}
	}
	for _, e := range evs {
		if e.Kind == control.KindEndpoint && e.Link != "wlan0" && !strings.HasPrefix(e.Address, "10.255.") {
			t.Errorf("endpoint event %+v: want link wlan0", e)
		}
	}
}

// TestControlPermissions: with control-group set, root and the group's
// members may use the socket, anyone else is refused.
func TestControlPermissions(t *testing.T) {
	t.Parallel()
	ctl := requireCtl(t)
	ns := newDaemonNS(t)
	const group = 4242 // a number: no group of that name needed
	// nobody must reach the socket and the binary: a world-readable
	// directory of the test's own.
	dir := shmTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mptcpctl")
	data, err := os.ReadFile(ctl.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	d := newMptcpd(t, ns, wlanPolicy, fmt.Sprintf("--control-group=%d", group))
	d.files.state = filepath.Join(dir, "state")
	d.start(t)

	fi, err := os.Lstat(d.socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != os.ModeSocket|0o660 || st.Uid != 0 || st.Gid != group {
		t.Errorf("socket mode %v owner %d:%d, want socket 0660 root:%d", fi.Mode(), st.Uid, st.Gid, group)
	}

	run := func(cred *syscall.Credential) result {
		cmd := exec.Command(bin, d.ctlArgs(false, "status")...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		r := result{stdout: o.String(), stderr: e.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const nobody = 65534
	for _, tt := range []struct {
		name string
		cred *syscall.Credential
		ok   bool
	}{
		{"root", nil, true},
		{"nobody", &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}, false},
		{"nobody in the group", &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{group}}, true},
	} {
		r := run(tt.cred)
		switch {
		case tt.ok && (r.code != 0 || !strings.HasPrefix(r.stdout, "mptcpd ")):
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want the status", tt.name, r.code, r.stdout, r.stderr)
		case !tt.ok && (r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "permission denied")):
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and permission denied", tt.name, r.code, r.stdout, r.stderr)
		}
	}
}

// TestControlMalformedRequests sends garbage on the socket: each request
// gets an error, and the daemon goes on serving and following the
// network.
func TestControlMalformedRequests(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	d := startMptcpd(t, ns, wlanPolicy)
	conn, err := net.Dial("unix", d.socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(endpointTimeout))
	r := bufio.NewReader(conn)
	for _, req := range []string{"status", `{"method":"shutdown"}`, `{"method":`, "\x00\xff", `["status"]`, `{}`} {
		if _, err := io.WriteString(conn, req+"\n"); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		var reply control.ErrorReply
		if err != nil || json.Unmarshal([]byte(line), &reply) != nil || reply.Error == "" {
			t.Errorf("%q: reply %q, %v; want an error", req, line, err)
		}
	}
	if _, err := io.WriteString(conn, strings.Repeat("x", control.MaxRequest+10)+"\n"); err != nil {
		t.Fatal(err)
	}
	if line, _ := r.ReadString('\n'); !strings.Contains(line, "request longer than") {
		t.Errorf("oversized request: %q", line)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after an oversized request: %v, want EOF", err)
	}

	ipBatch(t, ns, "addr add 10.1.0.1/24 dev wlan0")
	d.waitEndpoints(t, "after the malformed requests", ep("10.1.0.1", subflow, linkIndex(t, ns, "wlan0")))
	waitControlStatus(t, d.control(t), "status after the malformed requests", func(st control.Status) bool { return wants(st, "10.1.0.1") })
	if d.proc.exited() {
		t.Fatalf("the daemon exited: %v", d.proc.err)
	}
}

// TestControlPerNamespace runs two daemons in two namespaces on one state
// directory: two sockets, each answering for its own namespace; a second
// daemon in a namespace refuses to start; without a daemon mptcpctl says
// so.
func TestControlPerNamespace(t *testing.T) {
	t.Parallel()
	ctl := requireCtl(t)
	var ds []*mptcpd
	for i := range 2 {
		ns := newDaemonNS(t)
		nstest.Veth(t, ns, fmt.Sprintf("wlan%d", i), ns, "wpeer")
		ns.MustRun("ip", "addr", "add", fmt.Sprintf("10.%d.0.1/24", i+1), "dev", fmt.Sprintf("wlan%d", i))
		d := newMptcpd(t, ns, wlanPolicy)
		if i > 0 {
			d.files.state = ds[0].files.state
		}
		d.start(t)
		ds = append(ds, d)
	}
	socks, _ := filepath.Glob(filepath.Join(ds[0].files.state, "netns-*.sock"))
	if len(socks) != 2 || ds[0].socketPath(t) == ds[1].socketPath(t) {
		t.Errorf("sockets %q, want one per namespace", socks)
	}
	for i, d := range ds {
		st, _ := waitControlStatus(t, d.control(t), "first pass in "+d.ns.Name, func(st control.Status) bool { return len(st.Endpoints) == 1 })
		name, addr := fmt.Sprintf("wlan%d", i), fmt.Sprintf("10.%d.0.1", i+1)
		if st.PID != d.proc.cmd.Process.Pid || len(st.Links) == 0 || !wants(st, addr) ||
			!slices.ContainsFunc(st.Links, func(l control.Link) bool { return l.Name == name }) {
			t.Errorf("%s: status of pid %d with links %+v, endpoints %+v; want pid %d, %s and %s",
				d.ns, st.PID, st.Links, st.Endpoints, d.proc.cmd.Process.Pid, name, addr)
		}
		r := ctl.runArgv(t, d.ctlArgs(true, "status"))
		var viaCtl control.Status
		if err := json.Unmarshal([]byte(r.stdout), &viaCtl); err != nil || viaCtl.PID != d.proc.cmd.Process.Pid {
			t.Errorf("mptcpctl -n %s status: pid %d (%v), stderr %q", d.ns, viaCtl.PID, err, r.stderr)
		}
	}

	// A second daemon in the first namespace stops before touching anything.
	second := startDaemon(t, ds[0].ns, "second mptcpd", ds[0].files.argv(requireMptcpd(t)))
	if !waitFor(startTimeout, second.exited) {
		t.Fatal("a second daemon in the namespace is still running")
	}
	second.ended = true
	if !strings.Contains(second.stderr.String(), "another mptcpd runs in this network namespace") {
		t.Errorf("second daemon: %v\n%s", second.err, second.stderr.String())
	}
	if _, err := ds[0].control(t).Status(); err != nil {
		t.Errorf("the first daemon after the second's attempt: %v", err)
	}

	// A namespace without a daemon.
	empty := nstest.New(t)
	r := ctl.runArgv(t, []string{"-n", empty.Name, "status", "--state-dir", ds[0].files.state})
	if r.code != 3 || !strings.HasPrefix(r.stderr, "mptcpd is not running in this network namespace (no "+ds[0].files.state+"/netns-") {
		t.Errorf("status without a daemon: exit %d, stderr %q", r.code, r.stderr)
	}
	// After a daemon stops, its socket goes with it.
	if err := ds[1].proc.terminate(stopTimeout); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ds[1].socketPath(t)); !os.IsNotExist(err) {
		t.Errorf("socket after SIGTERM: %v", err)
	}
}
