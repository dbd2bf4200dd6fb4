package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// fakeBackend records every call mptcpctl makes, so tests see what would
// have been sent to the kernel and that bad arguments send nothing.
type fakeBackend struct {
	fakeLinks
	fakeNetwork
	fakeConnections
	calls []string

	endpoints []mptcp.Endpoint
	limits    mptcp.Limits
	// reqErr is returned by every path manager request.
	reqErr  error
	dialErr error

	listenErr error
	// batches are returned by Receive in order, then io.EOF.
	batches []batch
}

type batch struct {
	events []mptcp.Event
	err    error
}

func (b *fakeBackend) record(f string, args ...any) {
	b.calls = append(b.calls, fmt.Sprintf(f, args...))
}

func (b *fakeBackend) PathManager() (PathManager, error) {
	b.record("dial")
	if b.dialErr != nil {
		return nil, b.dialErr
	}
	return &fakePM{b}, nil
}

func (b *fakeBackend) ListenEvents() (EventSource, error) {
	b.record("listen")
	if b.listenErr != nil {
		return nil, b.listenErr
	}
	return &fakeEvents{b}, nil
}

func (b *fakeBackend) Close() error { return nil }

type fakePM struct{ b *fakeBackend }

func (p *fakePM) Endpoints() ([]mptcp.Endpoint, error) {
	p.b.record("Endpoints")
	return p.b.endpoints, p.b.reqErr
}

func (p *fakePM) Endpoint(id mptcp.ID) (mptcp.Endpoint, error) {
	p.b.record("Endpoint %d", id)
	if p.b.reqErr != nil {
		return mptcp.Endpoint{}, p.b.reqErr
	}
	for _, e := range p.b.endpoints {
		if e.ID == id {
			return e, nil
		}
	}
	return mptcp.Endpoint{}, &mptcp.Error{Op: "get endpoint", Errno: syscall.EINVAL, Message: "address not found"}
}

func (p *fakePM) AddEndpoint(e mptcp.Endpoint) error {
	p.b.record("AddEndpoint %+v", e)
	return p.b.reqErr
}

func (p *fakePM) DeleteEndpoint(id mptcp.ID, addr netip.Addr) error {
	p.b.record("DeleteEndpoint %d %v", id, addr)
	return p.b.reqErr
}

func (p *fakePM) FlushEndpoints() error {
	p.b.record("FlushEndpoints")
	return p.b.reqErr
}

func (p *fakePM) SetEndpointFlags(e mptcp.Endpoint) error {
	p.b.record("SetEndpointFlags %+v", e)
	return p.b.reqErr
}

func (p *fakePM) Limits() (mptcp.Limits, error) {
	p.b.record("Limits")
	return p.b.limits, p.b.reqErr
}

func (p *fakePM) SetLimits(l mptcp.Limits) error {
	s := func(v *uint32) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprint(*v)
	}
	p.b.record("SetLimits subflows=%s add_addr_accepted=%s", s(l.Subflows), s(l.AddAddrAccepted))
	return p.b.reqErr
}

func (p *fakePM) Announce(token mptcp.Token, e mptcp.Endpoint) error {
	p.b.record("Announce %v %+v", token, e)
	return p.b.reqErr
}

func (p *fakePM) Remove(token mptcp.Token, id mptcp.ID) error {
	p.b.record("Remove %v %d", token, id)
	return p.b.reqErr
}

func (p *fakePM) CreateSubflow(token mptcp.Token, local mptcp.Endpoint, remote netip.AddrPort) error {
	p.b.record("CreateSubflow %v %+v %v", token, local, remote)
	return p.b.reqErr
}

func (p *fakePM) DestroySubflow(token mptcp.Token, local, remote netip.AddrPort) error {
	p.b.record("DestroySubflow %v %v %v", token, local, remote)
	return p.b.reqErr
}

func (p *fakePM) SetSubflowBackup(token mptcp.Token, local, remote netip.AddrPort, backup bool) error {
	p.b.record("SetSubflowBackup %v %v %v %v", token, local, remote, backup)
	return p.b.reqErr
}

func (p *fakePM) ConnectionEndpoints(token mptcp.Token) ([]mptcp.Endpoint, error) {
	p.b.record("ConnectionEndpoints %v", token)
	return p.b.endpoints, p.b.reqErr
}

func (p *fakePM) Close() error {
	p.b.record("close")
	return nil
}

type fakeEvents struct{ b *fakeBackend }

func (e *fakeEvents) Receive() ([]mptcp.Event, error) {
	if len(e.b.batches) == 0 {
		return nil, io.EOF
	}
	bt := e.b.batches[0]
	e.b.batches = e.b.batches[1:]
	return bt.events, bt.err
}

func (e *fakeEvents) Close() error {
	e.b.record("close events")
	return nil
}

// run runs Main on a command line with backend b, returning the exit
// status, stdout, stderr and the namespace names opened.
func run(t *testing.T, b *fakeBackend, line string) (code int, stdout, stderr string, opened []string) {
	t.Helper()
	var o, e bytes.Buffer
	env := Env{
		Stdout:  &o,
		Stderr:  &e,
		Version: "v9.9-test",
		Daemon:  noDaemon,
		Open: func(ns string) (Backend, error) {
			opened = append(opened, ns)
			if ns == "missing" {
				return nil, fmt.Errorf("cannot open network namespace %q: %w", ns,
					&fs.PathError{Op: "open", Path: "/run/netns/missing", Err: syscall.ENOENT})
			}
			return b, nil
		},
	}
	code = Main(strings.Fields(line), env)
	return code, o.String(), e.String(), opened
}

func testBackend() *fakeBackend {
	return &fakeBackend{
		fakeLinks: testLinks,
		endpoints: []mptcp.Endpoint{
			{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), Flags: mptcp.FlagSubflow, IfIndex: 2},
			{ID: 2, Addr: netip.MustParseAddr("10.0.0.2"), Port: 6000, Flags: mptcp.FlagSignal | mptcp.FlagBackup},
		},
		limits: mptcp.Limits{Subflows: u32(2), AddAddrAccepted: u32(0)},
	}
}

const (
	dumpText = "10.0.0.1 id 1 subflow dev eth0 \n10.0.0.2 port 6000 id 2 signal backup \n"
	dumpJSON = `[{"address":"10.0.0.1","id":1,"subflow":true,"dev":"eth0"},{"address":"10.0.0.2","port":6000,"id":2,"signal":true,"backup":true}]` + "\n"
	usageErr = "Command %q is unknown, try \"mptcpctl help\".\n"
)

var dumpCalls = []string{"dial", "Endpoints", "close"}

// commandCase is one command line against the recording backend: its
// exit status, output, and the calls it made.
type commandCase struct {
	line   string
	code   int
	stdout string
	stderr string
	calls  []string
}

// runCommandCases runs each case on a fresh recording backend.
func runCommandCases(t *testing.T, tests []commandCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			b := testBackend()
			code, stdout, stderr, _ := run(t, b, tt.line)
			if code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			if diff := cmp.Diff(tt.stdout, stdout); diff != "" {
				t.Errorf("unexpected stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.stderr, stderr); diff != "" {
				t.Errorf("unexpected stderr (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.calls, b.calls); diff != "" {
				t.Errorf("unexpected backend calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	tests := []commandCase{
		// Every command word and the abbreviations ip accepts.
		{line: "endpoint add 10.0.0.1 dev eth0 id 3 subflow", calls: []string{"dial", "AddEndpoint {ID:3 Addr:10.0.0.1 Port:0 Flags:subflow IfIndex:2}", "close"}},
		{line: "e a 10.0.0.9 port 5 signal", calls: []string{"dial", "AddEndpoint {ID:0 Addr:10.0.0.9 Port:5 Flags:signal IfIndex:0}", "close"}},
		{line: "endp ad dead:beef::1 laminar", calls: []string{"dial", "AddEndpoint {ID:0 Addr:dead:beef::1 Port:0 Flags:laminar IfIndex:0}", "close"}},
		{line: "endpoint delete id 3", calls: []string{"dial", "DeleteEndpoint 3 invalid IP", "close"}},
		{line: "e del id 0 10.0.0.1", calls: []string{"dial", "DeleteEndpoint 0 10.0.0.1", "close"}},
		{line: "e d i 7", calls: []string{"dial", "DeleteEndpoint 7 invalid IP", "close"}},
		{line: "endpoint change id 3 backup", calls: []string{"dial", "SetEndpointFlags {ID:3 Addr:invalid IP Port:0 Flags:backup IfIndex:0}", "close"}},
		{line: "e c 10.0.0.2 port 6000 nobackup", calls: []string{"dial", "SetEndpointFlags {ID:0 Addr:10.0.0.2 Port:6000 Flags: IfIndex:0}", "close"}},
		{line: "endpoint show", stdout: dumpText, calls: dumpCalls},
		{line: "endpoint", stdout: dumpText, calls: dumpCalls},
		{line: "e", stdout: dumpText, calls: dumpCalls},
		{line: "e s", stdout: dumpText, calls: dumpCalls},
		{line: "endpoint show id 2", stdout: "10.0.0.2 port 6000 id 2 signal backup \n", calls: []string{"dial", "Endpoint 2", "close"}},
		{line: "e sh i 1", stdout: "10.0.0.1 id 1 subflow dev eth0 \n", calls: []string{"dial", "Endpoint 1", "close"}},
		{line: "-j e s id 1", stdout: `[{"address":"10.0.0.1","id":1,"subflow":true,"dev":"eth0"}]` + "\n", calls: []string{"dial", "Endpoint 1", "close"}},
		{line: "-j endpoint show", stdout: dumpJSON, calls: dumpCalls},
		{line: "--json e", stdout: dumpJSON, calls: dumpCalls},
		{line: "-j -p e s id 1", stdout: "[ {\n        \"address\": \"10.0.0.1\",\n        \"id\": 1,\n        \"subflow\": true,\n        \"dev\": \"eth0\"\n    } ]\n", calls: []string{"dial", "Endpoint 1", "close"}},
		{line: "endpoint flush", calls: []string{"dial", "FlushEndpoints", "close"}},
		{line: "e f whatever 1 2", calls: []string{"dial", "FlushEndpoints", "close"}},
		{line: "limits", stdout: "add_addr_accepted 0 subflows 2 \n", calls: []string{"dial", "Limits", "close"}},
		{line: "l sh", stdout: "add_addr_accepted 0 subflows 2 \n", calls: []string{"dial", "Limits", "close"}},
		{line: "l show subflows 5", stdout: "add_addr_accepted 0 subflows 2 \n", calls: []string{"dial", "Limits", "close"}},
		{line: "-j limits show", stdout: `{"add_addr_accepted":0,"subflows":2}` + "\n", calls: []string{"dial", "Limits", "close"}},
		{line: "limits set subflows 3 add_addr_accepted 4", calls: []string{"dial", "SetLimits subflows=3 add_addr_accepted=4", "close"}},
		{line: "l s a 1", calls: []string{"dial", "SetLimits subflows=- add_addr_accepted=1", "close"}},
		{line: "l s", calls: []string{"dial", "SetLimits subflows=- add_addr_accepted=-", "close"}},

		// Usage errors: nothing reaches the kernel.
		{line: "", code: ExitUsage, stderr: usageText + "\n"},
		{line: "bogus", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "bogus")},
		{line: "endpoints", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "endpoints")},
		{line: "e bogus", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "bogus")},
		{line: "e help", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "help")},
		{line: "l bogus", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "bogus")},
		{line: "monitor x", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "x")},
		{line: "l monitor x", code: ExitUsage, stderr: fmt.Sprintf(usageErr, "x")},
		{line: "e a bogus", code: ExitFailure, stderr: "Error: any valid address is expected rather than \"bogus\".\n"},
		{line: "e a", code: ExitUsage, stderr: "Error: argument \"ADDRESS\" is required\n"},
		{line: "e a 10.0.0.1 port 5", code: ExitUsage, stderr: "Error: argument \"port\" is wrong: flags must have signal when using port\n"},
		{line: "e a 10.0.0.1 dev nosuch", code: ExitUsage, stderr: "Error: argument \"nosuch\" is wrong: device does not exist\n"},
		{line: "e del", code: ExitUsage, stderr: "Error: argument \"ID\" is required\n"},
		{line: "e c id 1 signal", code: ExitUsage, stderr: "Error: argument \"signal\" is wrong: invalid flags, backup and fullmesh only\n"},
		{line: "e s id 300", code: ExitUsage, stderr: "Error: argument \"300\" is wrong: invalid ID\n"},
		{line: "l s subflows -1", code: ExitUsage, stderr: "Error: argument \"-1\" is wrong: invalid subflows\n"},
		{line: "l sh bogus", code: ExitUsage, stderr: "Error: argument \"bogus\" is wrong: unknown limit\n"},
		{line: "l s subflows", code: ExitUsage, stderr: "Command line is not complete: \"subflows\" needs a value. Try \"mptcpctl help\".\n"},
		{line: "-x e s", code: ExitUsage, stderr: "Option \"-x\" is unknown, try \"mptcpctl -help\".\n"},
		{line: "-n", code: ExitUsage, stderr: "Option \"-n\" needs a value (-netns VALUE).\n"},

		// Help and version.
		{line: "--version", stdout: "mptcpctl v9.9-test\n"},
	}
	runCommandCases(t, tests)
}

func TestMainHelp(t *testing.T) {
	for _, line := range []string{"help", "h", "he", "hel", "--help", "-h"} {
		t.Run(line, func(t *testing.T) {
			b := testBackend()
			code, stdout, stderr, _ := run(t, b, line)
			if code != ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
			}
			for _, want := range []string{"mptcpctl endpoint add ADDRESS", "Exit status", "255  usage error"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("help lacks %q:\n%s", want, stdout)
				}
			}
			if len(b.calls) != 0 {
				t.Errorf("help called the backend: %v", b.calls)
			}
		})
	}
}

func TestMainNetns(t *testing.T) {
	b := testBackend()
	code, _, _, opened := run(t, b, "-n blue -j endpoint show")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if diff := cmp.Diff([]string{"blue"}, opened); diff != "" {
		t.Errorf("unexpected namespaces opened (-want +got):\n%s", diff)
	}
	_, _, _, opened = run(t, b, "--netns=red limits")
	if diff := cmp.Diff([]string{"red"}, opened); diff != "" {
		t.Errorf("unexpected namespaces opened (-want +got):\n%s", diff)
	}

	code, stdout, stderr, _ := run(t, b, "-n missing endpoint show")
	if code != ExitUsage || stdout != "" || stderr != "Cannot open network namespace \"missing\": No such file or directory\n" {
		t.Errorf("missing namespace: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestMainKernelErrors(t *testing.T) {
	tests := []struct {
		name   string
		b      func(*fakeBackend)
		line   string
		code   int
		stderr string
	}{
		{
			name: "extack message",
			b: func(b *fakeBackend) {
				b.reqErr = &mptcp.Error{Op: "add endpoint", Errno: syscall.EEXIST, Message: "too many addresses or duplicate one: -17"}
			},
			line:   "e a 10.0.0.1",
			code:   ExitKernel,
			stderr: "Error: too many addresses or duplicate one: -17.\n",
		},
		{
			name: "extack message with full stop",
			b: func(b *fakeBackend) {
				b.reqErr = &mptcp.Error{Op: "set limits", Errno: syscall.EINVAL, Message: "limit greater than maximum (8)."}
			},
			line:   "l s subflows 9",
			code:   ExitKernel,
			stderr: "Error: limit greater than maximum (8).\n",
		},
		{
			name:   "errno only",
			b:      func(b *fakeBackend) { b.reqErr = &mptcp.Error{Op: "flush endpoints", Errno: syscall.EPERM} },
			line:   "e f",
			code:   ExitKernel,
			stderr: "RTNETLINK answers: Operation not permitted\n",
		},
		{
			name:   "dump error",
			b:      func(b *fakeBackend) { b.reqErr = &mptcp.Error{Op: "dump endpoints", Errno: syscall.EPERM} },
			line:   "e s",
			code:   ExitKernel,
			stderr: "RTNETLINK answers: Operation not permitted\nDump terminated\n",
		},
		{
			name:   "not found",
			line:   "e s id 9",
			code:   ExitKernel,
			stderr: "Error: address not found.\n",
		},
		{
			name: "no MPTCP",
			b: func(b *fakeBackend) {
				b.dialErr = fmt.Errorf("mptcp: %w: generic netlink family mptcp_pm not found", mptcp.ErrNotSupported)
			},
			line:   "e s",
			code:   ExitFailure,
			stderr: "Error: mptcp: not supported by this kernel: generic netlink family mptcp_pm not found\n",
		},
		{
			name:   "other failure",
			b:      func(b *fakeBackend) { b.reqErr = errors.New("netlink receive: connection reset") },
			line:   "l",
			code:   ExitFailure,
			stderr: "Error: netlink receive: connection reset\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBackend()
			if tt.b != nil {
				tt.b(b)
			}
			code, stdout, stderr, _ := run(t, b, tt.line)
			if code != tt.code || stdout != "" {
				t.Errorf("exit %d, stdout %q; want exit %d and no output", code, stdout, tt.code)
			}
			if diff := cmp.Diff(tt.stderr, stderr); diff != "" {
				t.Errorf("unexpected stderr (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMainMonitor(t *testing.T) {
	evs := goldenEvents()
	tests := []struct {
		name    string
		line    string
		b       func(*fakeBackend)
		code    int
		stdout  string
		stderr  string
		batches []batch
	}{
		{
			name:    "text",
			line:    "monitor",
			batches: []batch{{events: evs[:2]}, {events: evs[13:14]}},
			stdout: "[       CREATED] token=7ab06eec remid=0 locid=0 saddr4=10.1.1.2 daddr4=10.1.1.1 sport=51482 dport=5000\n" +
				"[   ESTABLISHED] token=7ab06eec remid=0 locid=0 saddr4=10.1.1.2 daddr4=10.1.1.1 sport=51482 dport=5000\n" +
				"[        CLOSED] token=7ab06eec\n",
		},
		{
			name:    "json, abbreviated, via limits",
			line:    "-j l m",
			batches: []batch{{events: evs[13:14]}},
			stdout:  `{"event":"CLOSED","token":"7ab06eec"}` + "\n",
		},
		{
			name:    "lost events",
			line:    "mon",
			batches: []batch{{err: fmt.Errorf("mptcp: %w", mptcp.ErrEventsLost)}, {events: evs[13:14]}},
			stdout:  "[        CLOSED] token=7ab06eec\n",
			stderr:  "netlink receive error No buffer space available (105): events were lost\n",
		},
		{
			name: "malformed event among good ones",
			line: "monitor",
			batches: []batch{
				{events: evs[:1], err: fmt.Errorf("mptcp: receive events: %w: CLOSED event: truncated", mptcp.ErrMalformedEvent)},
				{events: evs[13:14]},
			},
			stdout: "[       CREATED] token=7ab06eec remid=0 locid=0 saddr4=10.1.1.2 daddr4=10.1.1.1 sport=51482 dport=5000\n" +
				"[        CLOSED] token=7ab06eec\n",
			stderr: "Warning: mptcp: receive events: malformed event: CLOSED event: truncated\n",
		},
		{
			name:    "receive failure",
			line:    "m",
			batches: []batch{{events: evs[13:14]}, {err: syscall.EBADF}},
			code:    ExitListen,
			stdout:  "[        CLOSED] token=7ab06eec\n",
			stderr:  "Error: receiving events: bad file descriptor\n",
		},
		{
			name:   "no permission",
			line:   "monitor",
			b:      func(b *fakeBackend) { b.listenErr = &mptcp.Error{Op: "join events", Errno: syscall.EPERM} },
			code:   ExitUsage,
			stderr: "can't subscribe to mptcp events: Operation not permitted\n",
		},
		{
			name:   "no MPTCP",
			line:   "monitor",
			b:      func(b *fakeBackend) { b.listenErr = fmt.Errorf("mptcp: %w", mptcp.ErrNotSupported) },
			code:   ExitFailure,
			stderr: "Error: mptcp: not supported by this kernel\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBackend()
			b.batches = tt.batches
			if tt.b != nil {
				tt.b(b)
			}
			code, stdout, stderr, _ := run(t, b, tt.line)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if diff := cmp.Diff(tt.stdout, stdout); diff != "" {
				t.Errorf("unexpected stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.stderr, stderr); diff != "" {
				t.Errorf("unexpected stderr (-want +got):\n%s", diff)
			}
		})
	}
}

// countingWriter records each Write, to check one write per event.
type countingWriter struct{ writes []string }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func TestMonitorWritesEachEvent(t *testing.T) {
	b := testBackend()
	evs := goldenEvents()
	b.batches = []batch{{events: evs[:3]}}
	var w countingWriter
	code := Main([]string{"monitor"}, Env{Stdout: &w, Stderr: io.Discard, Open: func(string) (Backend, error) { return b, nil }})
	if code != 0 || len(w.writes) != 3 {
		t.Fatalf("exit %d, writes %q; want 0 and one write per event", code, w.writes)
	}
}

func TestCompletion(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"__complete endpoint add 10.0.0.1 ", []string{"dev", "id", "port", "signal", "subflow", "backup", "fullmesh", "laminar"}},
		{"__complete endpoint change id 3 b", []string{"backup"}},
		{"__complete limits set s", []string{"subflows"}},
		{"__complete endpoint add 10.0.0.1 id ", nil},
		{"__complete e", []string{"endpoint", "events", "explain"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, complete(t, testBackend(), tt.line)); diff != "" {
				t.Errorf("unexpected completions (-want +got):\n%s", diff)
			}
		})
	}
}

// complete runs cobra's completion request line (a trailing blank asks
// for a new word) and returns the words offered.
func complete(t *testing.T, b Backend, line string) []string {
	t.Helper()
	args := strings.Fields(line)
	if strings.HasSuffix(line, " ") {
		args = append(args, "")
	}
	var o bytes.Buffer
	Main(args, Env{Stdout: &o, Stderr: io.Discard, Open: func(string) (Backend, error) { return b, nil }})
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(o.String()), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "Completion") {
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
	}
	return got
}
