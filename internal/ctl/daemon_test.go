package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
)

// noDaemon is Env.Daemon where no mptcpd runs.
func noDaemon(_, dir string) (*control.Client, error) {
	return nil, &control.NotRunningError{Path: filepath.Join(dir, "netns-1-2.sock"), Missing: true}
}

// fakeDaemon is a control server with canned replies, as a running mptcpd
// would answer.
type fakeDaemon struct {
	srv *control.Server

	mu        sync.Mutex
	status    control.Status
	explain   control.Explain
	conns     control.Connections
	reloadErr error
	reloads   int
}

func (d *fakeDaemon) Status() control.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

func (d *fakeDaemon) Explain() control.Explain {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.explain
}

func (d *fakeDaemon) Connections() control.Connections {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns
}

func (d *fakeDaemon) Reload(context.Context) (control.Reloaded, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reloads++
	if d.reloadErr != nil {
		return control.Reloaded{}, d.reloadErr
	}
	return control.Reloaded{Config: "/etc/mptcpd/mptcpd.conf", Policy: "/etc/mptcpd/policy"}, nil
}

// startFakeDaemon serves d on a socket of its own.
func startFakeDaemon(t *testing.T, d *fakeDaemon) *fakeDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d.srv, err = control.Listen(control.Config{Path: filepath.Join(dir, "d.sock"), Group: -1, Backend: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.srv.Close() })
	return d
}

// env runs mptcpctl against d, with the clock at now.
func (d *fakeDaemon) env(o, e *bytes.Buffer, b Backend) Env {
	return Env{
		Stdout: o, Stderr: e,
		Open:   func(string) (Backend, error) { return b, nil },
		Daemon: func(string, string) (*control.Client, error) { return control.Dial(d.srv.Path()) },
		Now:    func() time.Time { return statusNow },
	}
}

func (d *fakeDaemon) run(t *testing.T, b Backend, line string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	code := Main(strings.Fields(line), d.env(&o, &e, b))
	return code, o.String(), e.String()
}

var (
	// The daemon's zone: times print in it, whatever the test's.
	daemonZone = time.FixedZone("", 2*3600)
	started    = time.Date(2025, 3, 1, 12, 0, 0, 0, daemonZone)
	lastPass   = started.Add(3*time.Minute + 11*time.Second + 188*time.Millisecond)
	statusNow  = lastPass.Add(812 * time.Millisecond)
)

func wantEP(id mptcp.ID, addr string, port uint16, dev, kernel string, flags ...string) control.Wanted {
	return control.Wanted{Endpoint: control.Endpoint{ID: id, Address: netip.MustParseAddr(addr), Port: port, Flags: flags, Dev: dev}, Kernel: kernel}
}

func kernelEP(id mptcp.ID, addr, dev string, flags ...string) control.Endpoint {
	return control.Endpoint{ID: id, Address: netip.MustParseAddr(addr), Flags: flags, Dev: dev}
}

// inKernelStatus has an endpoint in every kernel state, a foreign one,
// an administrator's limit and problems too long for a line.
func inKernelStatus() control.Status {
	return control.Status{
		Version: "v1.2.3", PID: 812, Started: started, Mode: control.ModeInKernel,
		Config: "/etc/mptcpd/mptcpd.conf", Policy: "/etc/mptcpd/policy",
		StateFile: "/run/mptcpd-go/netns-4-4026531840.json", Socket: "/run/mptcpd-go/netns-4-4026531840.sock",
		LastPass: lastPass,
		Links: []control.Link{
			{Index: 2, Name: "eth0", Kind: "ethernet", Usable: true, DefaultRoute4: true},
			{Index: 3, Name: "wlan0", Kind: "wifi", Usable: true, DefaultRoute4: true, DefaultRoute6: true},
			{Index: 4, Name: "wwan0", Kind: "wwan", Why: "no carrier"},
			{Index: 5, Name: "eth1", Kind: "ethernet", Usable: true},
		},
		Endpoints: []control.Wanted{
			wantEP(1, "10.1.0.2", 0, "eth0", "present", "subflow"),
			wantEP(0, "2001:db8:1::2", 0, "eth0", "missing", "subflow"),
			wantEP(2, "10.2.0.2", 6000, "wlan0", "differs", "signal"),
			wantEP(4, "10.5.0.2", 0, "eth1", "held", "subflow", "backup"),
		},
		Kernel: &control.Kernel{
			Owned: []control.Endpoint{kernelEP(1, "10.1.0.2", "eth0", "subflow"), kernelEP(2, "10.2.0.2", "wlan0", "subflow"),
				kernelEP(3, "10.3.0.2", "wwan0", "subflow", "backup")},
			Foreign:      []control.Endpoint{kernelEP(4, "10.5.0.2", "eth1", "subflow", "backup"), kernelEP(5, "10.9.9.9", "", "signal")},
			Kept:         []int{3},
			InDoubt:      []control.Endpoint{kernelEP(6, "10.4.0.2", "", "subflow")},
			Limits:       control.Limits{Subflows: u32p(2), AddAddrAccepted: u32p(0)},
			WantedLimits: control.Limits{Subflows: u32p(3), AddAddrAccepted: u32p(1)},
			AdminLimits:  []string{"add_addr_accepted"},
		},
		Problems: []control.Problem{
			{Time: started.Add(time.Second), Level: "WARN", Message: "endpoint left out: the kernel holds at most 8 per namespace decision=\"10.6.0.2/24 on usb1: over limit\""},
			{Time: started.Add(2 * time.Minute), Level: "ERROR", Message: "source routing err=\"file exists\""},
		},
		Counters: control.Counters{Passes: 41, Resyncs: 1, Reloads: 2},
	}
}

func userspaceStatus() control.Status {
	return control.Status{
		Version: "v1.2.3", PID: 813, Started: started.Add(-50 * time.Hour), Mode: control.ModeUserspace, Plugin: "sspi",
		Config: "built-in", Policy: "built-in", Socket: "/run/mptcpd-go/netns-4-4026531840.sock",
		LastPass: lastPass,
		Links:    []control.Link{{Index: 2, Name: "eth0", Kind: "ethernet", Usable: true, DefaultRoute4: true}},
		Endpoints: []control.Wanted{
			wantEP(0, "10.1.0.2", 0, "eth0", "", "subflow"),
			wantEP(0, "2001:db8:1::2", 0, "eth0", "", "subflow", "backup"),
		},
		Userspace: &control.Userspace{Connections: 2, Events: 120, Resyncs: 1, CommandErrors: 1},
		Problems:  []control.Problem{},
		Counters:  control.Counters{Passes: 1, Retries: 1},
	}
}

func TestGoldenStatus(t *testing.T) {
	starting := inKernelStatus()
	starting.LastPass, starting.Links, starting.Endpoints = time.Time{}, nil, nil
	starting.Kernel = &control.Kernel{Owned: []control.Endpoint{}, Foreign: []control.Endpoint{}}
	for _, tt := range []struct {
		name   string
		status control.Status
		line   string
	}{
		{"status.txt", inKernelStatus(), "status"},
		{"status-userspace.txt", userspaceStatus(), "status"},
		{"status-starting.txt", starting, "status"},
		{"status.json", inKernelStatus(), "-j status"},
		{"status-pretty.json", userspaceStatus(), "-j -p status"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := startFakeDaemon(t, &fakeDaemon{status: tt.status})
			code, stdout, stderr := d.run(t, testBackend(), tt.line)
			if code != ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			goldenFile(t, tt.name, []byte(stdout))
			if !strings.HasSuffix(tt.name, ".txt") {
				return
			}
			for i, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
				if n := len([]rune(line)); n > 80 {
					t.Errorf("line %d has %d columns: %q", i+1, n, line)
				}
			}
		})
	}
}

// The JSON is the daemon's reply: it decodes back to what was sent.
func TestStatusJSONRoundTrip(t *testing.T) {
	want := inKernelStatus()
	d := startFakeDaemon(t, &fakeDaemon{status: want})
	_, stdout, _ := d.run(t, testBackend(), "-j status")
	var got control.Status
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("status -j (-want +got):\n%s", diff)
	}
}

// explain prints the daemon's decisions exactly as policy explain prints
// the same decisions computed from the files.
func TestDaemonExplainMatchesPolicyExplain(t *testing.T) {
	x := explainGolden(t)
	dx := control.ExplainFrom(x.policy, explainNetwork, x.plan)
	dx.Mode, dx.Why, dx.Config, dx.ConfigFound = control.ModeInKernel, x.src.Why, x.src.Config, x.src.ConfigFound
	dx.Capacity, dx.Foreign, dx.KernelLimits = x.capacity, x.foreign, control.LimitsFrom(x.kernelLimits)
	for _, e := range explainKernel {
		dx.Kernel = append(dx.Kernel, control.EndpointFrom(e, ""))
	}
	d := startFakeDaemon(t, &fakeDaemon{explain: dx})
	for _, tt := range []struct{ line, golden string }{
		{"explain", "explain.txt"},
		{"ex", "explain.txt"},
		{"-j explain", "explain.json"},
		{"-j -p explain", "explain-pretty.json"},
	} {
		code, stdout, stderr := d.run(t, testBackend(), tt.line)
		if code != ExitOK || stderr != "" {
			t.Fatalf("%s: exit %d, stderr %q", tt.line, code, stderr)
		}
		want, err := os.ReadFile(filepath.Join("testdata", tt.golden))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), stdout); diff != "" {
			t.Errorf("%s differs from %s (-policy explain +explain):\n%s", tt.line, tt.golden, diff)
		}
	}
}

func TestDaemonExplainUserspace(t *testing.T) {
	lp := explainPolicy(t)
	plan := pm.Desired(explainNetwork, lp.policy, mptcp.MPTCP_PM_MAX_ADDR_ID)
	dx := control.ExplainFrom(lp.policy, explainNetwork, plan)
	dx.Mode, dx.Plugin, dx.Why, dx.Config, dx.ConfigFound = control.ModeUserspace, "sspi", lp.src.Why, lp.src.Config, true
	dx.Capacity = mptcp.MPTCP_PM_MAX_ADDR_ID
	d := startFakeDaemon(t, &fakeDaemon{explain: dx})
	code, stdout, stderr := d.run(t, testBackend(), "explain")
	if code != ExitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	goldenFile(t, "explain-userspace.txt", []byte(stdout))
	if strings.Contains(stdout, "kernel") || strings.Contains(stdout, "limits") {
		t.Errorf("the userspace mode has no endpoint table or limits to compare:\n%s", stdout)
	}
}

func TestDaemonReload(t *testing.T) {
	d := startFakeDaemon(t, &fakeDaemon{})
	for _, tt := range []struct {
		line, stdout string
		err          error
		code         int
		stderr       string
	}{
		{line: "reload"},
		{line: "r"},
		{line: "-j reload", stdout: `{"config":"/etc/mptcpd/mptcpd.conf","policy":"/etc/mptcpd/policy"}` + "\n"},
		{
			line: "reload", err: errors.New(`/etc/mptcpd/policy:3: unknown keyword "mtach"`), code: ExitFailure,
			stderr: `Error: mptcpd kept its running configuration: /etc/mptcpd/policy:3: unknown keyword "mtach"` + "\n",
		},
		{line: "reload now", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "now")},
	} {
		d.mu.Lock()
		d.reloadErr, d.reloads = tt.err, 0
		d.mu.Unlock()
		code, stdout, stderr := d.run(t, testBackend(), tt.line)
		if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d, %q, %q", tt.line, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
		}
		d.mu.Lock()
		if want := map[bool]int{true: 1, false: 0}[tt.code != ExitUsage]; d.reloads != want {
			t.Errorf("%s: %d reloads, want %d", tt.line, d.reloads, want)
		}
		d.mu.Unlock()
	}
}

func TestDaemonEvents(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{"events", "1 12:03:11.188000 addr new inet 10.1.0.2/24 dev 2\n" +
			"2 12:03:11.188412 endpoint added 10.1.0.2 id 1 subflow dev eth0\n"},
		{"-j events", `{"seq":1,"time":"2025-03-01T12:03:11.188+02:00","kind":"addr","op":"new","link":"eth0","address":"10.1.0.2/24","text":"addr new inet 10.1.0.2/24 dev 2"}` + "\n" +
			`{"seq":2,"time":"2025-03-01T12:03:11.188412+02:00","kind":"endpoint","op":"added","link":"eth0","address":"10.1.0.2","text":"endpoint added 10.1.0.2 id 1 subflow dev eth0"}` + "\n"},
	} {
		t.Run(tt.line, func(t *testing.T) {
			d := startFakeDaemon(t, &fakeDaemon{})
			var o, e syncBuffer
			env := d.env(nil, nil, testBackend())
			env.Stdout, env.Stderr = &o, &e
			done := make(chan int, 1)
			go func() { done <- Main(strings.Fields(tt.line), env) }()
			waitFor(t, "the client to watch", d.srv.Watched)
			d.srv.Emit(control.Event{Time: lastPass, Kind: control.KindAddr, Op: "new", Link: "eth0", Address: "10.1.0.2/24", Text: "addr new inet 10.1.0.2/24 dev 2"})
			d.srv.Emit(control.Event{Time: lastPass.Add(412 * time.Microsecond), Kind: control.KindEndpoint, Op: "added", Link: "eth0", Address: "10.1.0.2", Text: "endpoint added 10.1.0.2 id 1 subflow dev eth0"})
			waitFor(t, "both events printed", func() bool { return strings.Count(o.String(), "\n") == 2 })
			d.srv.Close() // the daemon stops
			select {
			case code := <-done:
				if code != ExitListen || e.String() != "Error: mptcpd closed the event stream (it stopped)\n" {
					t.Errorf("after the daemon stopped: exit %d, stderr %q", code, e.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("events did not end with the daemon")
			}
			if diff := cmp.Diff(tt.want, o.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

// Without a daemon the daemon commands say so and exit 3; connections
// shows the kernel's view alone, silently.
func TestNoDaemon(t *testing.T) {
	dir := t.TempDir()
	sock, err := control.SocketPath(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"status", "explain", "events", "reload", "-j status", "status --state-dir " + dir} {
		var o, e bytes.Buffer
		code := Main(strings.Fields(line), Env{Stdout: &o, Stderr: &e, StateDir: dir, Open: func(string) (Backend, error) { return testBackend(), nil }})
		want := "mptcpd is not running in this network namespace (no " + sock + ")\n"
		if code != ExitNoDaemon || o.Len() != 0 || e.String() != want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d and %q", line, code, o.String(), e.String(), ExitNoDaemon, want)
		}
	}
	// --state-dir wins over Env.StateDir.
	var o, e bytes.Buffer
	other := t.TempDir()
	Main([]string{"status", "--state-dir", other}, Env{Stdout: &o, Stderr: &e, StateDir: dir})
	if !strings.Contains(e.String(), "(no "+other+"/netns-") {
		t.Errorf("status --state-dir %s: %q", other, e.String())
	}

	code, stdout, stderr := runFake(connectionsBackend(), "connections")
	want, _ := os.ReadFile("testdata/connections.txt")
	if code != ExitOK || stdout != string(want) || stderr != "" {
		t.Errorf("connections without a daemon: exit %d, stderr %q, output differs from connections.txt:\n%s", code, stderr, stdout)
	}
}

func TestDaemonPermissionDenied(t *testing.T) {
	denied := func(string, string) (*control.Client, error) {
		return nil, fmt.Errorf("control: /run/mptcpd-go/netns-1-2.sock: %w (root and the members of mptcpd.conf's control-group may connect)", os.ErrPermission)
	}
	var o, e bytes.Buffer
	code := Main([]string{"status"}, Env{Stdout: &o, Stderr: &e, Daemon: denied})
	if code != ExitFailure || !strings.Contains(e.String(), "permission denied") {
		t.Errorf("status: exit %d, stderr %q", code, e.String())
	}
	// connections still lists the kernel's, and says what it left out.
	o.Reset()
	e.Reset()
	code = Main([]string{"connections"}, Env{Stdout: &o, Stderr: &e, Daemon: denied, Open: func(string) (Backend, error) { return connectionsBackend(), nil }})
	want, _ := os.ReadFile("testdata/connections.txt")
	if code != ExitOK || o.String() != string(want) || !strings.HasPrefix(e.String(), "Warning: without mptcpd's view: control: ") {
		t.Errorf("connections: exit %d, stderr %q, output:\n%s", code, e.String(), o.String())
	}
}

// Views of the daemon over goldenConnections: in the in-kernel mode it
// owns endpoint 1 (the backup join uses it); in the userspace mode its
// plugin asked for that join, announced an address and waits for a
// subflow, and the IPv6 connection is not in its table.
var (
	inKernelView = control.Connections{Mode: control.ModeInKernel, Connections: []control.Connection{},
		Owned: []control.Endpoint{{ID: 1, Address: netip.MustParseAddr("10.2.0.2"), Flags: []string{"subflow", "backup"}, Dev: "wlan0", IfIndex: 3},
			kernelEP(3, "10.3.0.2", "", "subflow")}}
	userspaceView = control.Connections{Mode: control.ModeUserspace, Plugin: "sspi", Owned: []control.Endpoint{},
		Connections: []control.Connection{{
			Token: "86c266db", Local: netip.MustParseAddrPort("10.1.0.2:52401"), Remote: netip.MustParseAddrPort("192.0.2.1:443"),
			Established: true,
			PeerAddrs:   []control.PeerAddr{{ID: 1, Address: netip.MustParseAddrPort("198.51.100.7:443")}},
			Subflows: []control.Subflow{
				{Local: netip.MustParseAddrPort("10.1.0.2:52401"), Remote: netip.MustParseAddrPort("192.0.2.1:443"), IfIndex: 2},
				{Local: netip.MustParseAddrPort("10.7.7.7:0"), Remote: netip.MustParseAddrPort("192.0.2.1:443"), LocalID: 3, Backup: true, Pending: true},
			},
			Announced: []control.Endpoint{{ID: 2, Address: netip.MustParseAddr("10.2.0.2"), Flags: []string{"signal"}, Dev: "wlan0"}},
			Commands: []control.Command{
				{Time: lastPass, Op: control.OpAnnounce, ID: 2, Local: netip.MustParseAddrPort("10.2.0.2:0")},
				{Time: lastPass.Add(time.Millisecond), Op: control.OpCreateSubflow, ID: 1, Local: netip.MustParseAddrPort("10.2.0.2:0"), Remote: netip.MustParseAddrPort("192.0.2.1:443")},
				{Time: lastPass.Add(2 * time.Millisecond), Op: control.OpCreateSubflow, ID: 3, Local: netip.MustParseAddrPort("10.7.7.7:0"),
					Remote: netip.MustParseAddrPort("198.51.100.7:443"), Error: "mptcp: create subflow: connection timed out"},
			},
		}}}
)

func TestGoldenConnectionsWithDaemon(t *testing.T) {
	for _, tt := range []struct {
		name  string
		view  control.Connections
		line  string
		lines []string // that must be there
	}{
		{"connections-daemon.txt", inKernelView, "connections", []string{"  mptcpd: endpoint 10.2.0.2 id 1 subflow backup dev wlan0\n"}},
		{"connections-daemon.json", inKernelView, "-j connections", nil},
		{"connections-userspace.txt", userspaceView, "connections", []string{"  mptcpd: not in plugin sspi's table\n"}},
		{"connections-userspace-pretty.json", userspaceView, "-j -p connections", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := startFakeDaemon(t, &fakeDaemon{conns: tt.view})
			code, stdout, stderr := d.run(t, connectionsBackend(), tt.line)
			if code != ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			goldenFile(t, tt.name, []byte(stdout))
			for _, l := range tt.lines {
				if !strings.Contains(stdout, l) {
					t.Errorf("no line %q", l)
				}
			}
			// The kernel's view is all there: the daemon's only adds.
			_, alone, _ := runFake(connectionsBackend(), tt.line)
			if !strings.HasSuffix(tt.name, ".txt") {
				return
			}
			var kept []string
			for _, l := range strings.SplitAfter(stdout, "\n") {
				if !strings.HasPrefix(l, "  mptcpd: ") {
					kept = append(kept, strings.Replace(l, " by mptcpd\n", "\n", 1))
				}
			}
			if diff := cmp.Diff(alone, strings.Join(kept, "")); diff != "" {
				t.Errorf("without the daemon's additions, the output differs from the kernel's view (-kernel +merged):\n%s", diff)
			}
		})
	}
}
