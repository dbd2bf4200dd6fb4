package ctl

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
)

// These tests run mptcpctl end to end, through the real nl/mptcp client,
// against nl/mptcptest's fake kernel, without root. The expected output and
// statuses are those `ip mptcp` 6.1 gave on Linux 6.18 for the same
// command lines (see TestCommandsMatchIP for the live comparison).

// fakeKernelBackend serves a namespace from a fake kernel.
type fakeKernelBackend struct {
	fakeLinks
	fakeNetwork
	fakeConnections
	k *mptcptest.Kernel

	mu        sync.Mutex
	listeners []*mptcp.EventListener
}

func (b *fakeKernelBackend) PathManager() (PathManager, error) {
	c, err := b.k.Dial()
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (b *fakeKernelBackend) ListenEvents() (EventSource, error) {
	l, err := b.k.ListenEvents()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.listeners = append(b.listeners, l)
	b.mu.Unlock()
	return l, nil
}

// stopListening closes the monitor's listener, which ends the monitor.
func (b *fakeKernelBackend) stopListening() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.listeners {
		l.Close()
	}
}

func (b *fakeKernelBackend) Close() error { return nil }

func runFake(b Backend, line string) (int, string, string) {
	var o, e bytes.Buffer
	code := Main(strings.Fields(line), Env{Stdout: &o, Stderr: &e, Open: func(string) (Backend, error) { return b, nil }, Daemon: noDaemon})
	return code, o.String(), e.String()
}

func TestFakeKernelSession(t *testing.T) {
	k := mptcptest.NewKernel()
	b := &fakeKernelBackend{fakeLinks: fakeLinks{"lo": 1, "v1": 5}, k: k}
	steps := []struct {
		line   string
		code   int
		stdout string
		stderr string
	}{
		{line: "limits", stdout: "add_addr_accepted 0 subflows 2 \n"},
		{line: "l s s 3 a 4"},
		{line: "-j l", stdout: `{"add_addr_accepted":4,"subflows":3}` + "\n"},
		{line: "limits set subflows 9", code: ExitKernel, stderr: "Error: limit greater than maximum (8).\n"},
		{line: "-j e", stdout: "[]\n"},
		{line: "-j -p e", stdout: "[ ]\n"},
		{line: "endpoint add 10.0.0.1 dev v1 subflow backup"},
		{line: "e a 10.1.2.1 port 6000 signal"},
		{line: "e a 10.0.0.3 id 7 signal backup"},
		{line: "e a dead:beef::1 subflow fullmesh"},
		{line: "e a 10.0.0.9 dev if77"},
		{line: "e a 10.0.0.1", code: ExitKernel, stderr: "Error: too many addresses or duplicate one: -17.\n"},
		{line: "e a 10.0.0.99 id 1", code: ExitKernel, stderr: "Error: too many addresses or duplicate one: -16.\n"},
		{line: "e a 10.0.0.10 subflow signal port 80", code: ExitKernel, stderr: "Error: flags must have signal and not subflow when using port.\n"},
		{line: "endpoint show", stdout: "10.0.0.1 id 1 subflow backup dev v1 \n" +
			"10.1.2.1 port 6000 id 2 signal \n" +
			"10.0.0.3 id 7 signal backup \n" +
			"dead:beef::1 id 8 subflow fullmesh \n" +
			"10.0.0.9 id 9 dev if77 \n"},
		{line: "-j e s id 2", stdout: `[{"address":"10.1.2.1","port":6000,"id":2,"signal":true}]` + "\n"},
		{line: "e s id 0", code: ExitKernel, stderr: "Error: address not found.\n"},
		{line: "e c id 7 nobackup"},
		{line: "e c 10.0.0.1 fullmesh"},
		{line: "e c 10.1.2.1 port 6000 backup"},
		{line: "e c id 99 backup", code: ExitKernel, stderr: "Error: address not found.\n"},
		{line: "e d id 99", code: ExitKernel, stderr: "Error: address not found.\n"},
		{line: "e d id 9"},
		{line: "e s", stdout: "10.0.0.1 id 1 subflow fullmesh dev v1 \n" +
			"10.1.2.1 port 6000 id 2 signal backup \n" +
			"10.0.0.3 id 7 signal \n" +
			"dead:beef::1 id 8 subflow fullmesh \n"},
		{line: "e f"},
		{line: "e s"},
	}
	for _, s := range steps {
		code, stdout, stderr := runFake(b, s.line)
		if code != s.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", s.line, code, s.code, stderr)
		}
		if diff := cmp.Diff(s.stdout, stdout); diff != "" {
			t.Errorf("%s: unexpected stdout (-want +got):\n%s", s.line, diff)
		}
		if diff := cmp.Diff(s.stderr, stderr); diff != "" {
			t.Errorf("%s: unexpected stderr (-want +got):\n%s", s.line, diff)
		}
	}
}

func TestFakeKernelBadArgumentsSendNothing(t *testing.T) {
	k := mptcptest.NewKernel()
	b := &fakeKernelBackend{fakeLinks: fakeLinks{"lo": 1}, k: k}
	for _, line := range []string{
		"e a bogus", "e a 10.0.0.1 port 5", "e a 10.0.0.1 dev nosuch", "e a 10.0.0.1 signal fullmesh",
		"e d", "e d id 0", "e c id 1 signal", "e c backup", "l s subflows x", "l s bogus 1", "e x",
	} {
		if code, _, _ := runFake(b, line); code == 0 {
			t.Errorf("%s: exit 0, want a failure", line)
		}
	}
	if ops := k.Ops(); len(ops) != 0 {
		t.Errorf("bad command lines reached the kernel: %v", ops)
	}
}

func TestFakeKernelImplicitEndpoint(t *testing.T) {
	k := mptcptest.NewKernel()
	if _, err := k.AddImplicitEndpoint(netip.MustParseAddr("10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	b := &fakeKernelBackend{k: k}
	// ip 6.1 has no name for the implicit flag.
	code, stdout, _ := runFake(b, "e s")
	if want := "10.0.0.5 id 1 rawflags 10 \n"; code != 0 || stdout != want {
		t.Errorf("exit %d, stdout %q; want 0, %q", code, stdout, want)
	}
}

func TestFakeKernelFailures(t *testing.T) {
	k := mptcptest.NewKernel()
	b := &fakeKernelBackend{k: k}
	k.FailNext(mptcp.MPTCP_PM_CMD_FLUSH_ADDRS, syscall.EPERM)
	code, _, stderr := runFake(b, "e f")
	if want := "RTNETLINK answers: Operation not permitted\n"; code != ExitKernel || stderr != want {
		t.Errorf("failed flush: exit %d, stderr %q; want %d, %q", code, stderr, ExitKernel, want)
	}
	k.HideFamily()
	for _, line := range []string{"e s", "monitor"} {
		code, _, stderr := runFake(b, line)
		if code != ExitFailure || !strings.Contains(stderr, "not supported") {
			t.Errorf("%s without MPTCP: exit %d, stderr %q; want %d and a not-supported message", line, code, stderr, ExitFailure)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until cond holds or fails the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFakeKernelMonitor(t *testing.T) {
	for _, tt := range []struct {
		name, line, want, wantErr string
	}{
		{
			name: "text",
			line: "monitor",
			want: "[       CREATED] token=7ab06eec remid=0 locid=0 saddr4=10.1.1.2 daddr4=10.1.1.1 sport=51482 dport=5000\n" +
				"[SF_ESTABLISHED] token=7ab06eec remid=1 locid=2 saddr6=dead:beef::2 daddr6=dead:beef::1 sport=40000 dport=443 backup=1 ifindex=3\n" +
				"[UNKNOWN 15]\n" +
				"[        CLOSED] token=7ab06eec\n",
			wantErr: "netlink receive error No buffer space available (105): events were lost\n",
		},
		{
			name: "json",
			line: "-j monitor",
			want: `{"event":"CREATED","token":"7ab06eec","remid":0,"locid":0,"saddr4":"10.1.1.2","daddr4":"10.1.1.1","sport":51482,"dport":5000}` + "\n" +
				`{"event":"SF_ESTABLISHED","token":"7ab06eec","remid":1,"locid":2,"saddr6":"dead:beef::2","daddr6":"dead:beef::1","sport":40000,"dport":443,"backup":1,"ifindex":3,"dev":"eth3"}` + "\n" +
				`{"event":"LISTENER_CREATED","saddr4":"10.1.2.1","sport":6000}` + "\n" +
				`{"event":"CLOSED","token":"7ab06eec"}` + "\n",
			wantErr: "netlink receive error No buffer space available (105): events were lost\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := mptcptest.NewKernel()
			b := &fakeKernelBackend{fakeLinks: fakeLinks{"eth3": 3}, k: k}
			var o, e syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- Main(strings.Fields(tt.line), Env{Stdout: &o, Stderr: &e, Open: func(string) (Backend, error) { return b, nil }})
			}()
			waitFor(t, "the monitor to subscribe", func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				return len(b.listeners) == 1
			})
			tok := mptcp.Token(0x7ab06eec)
			k.Inject(mptcp.Event{Type: mptcp.EventCreated, Token: tok,
				Saddr: netip.MustParseAddr("10.1.1.2"), Daddr: netip.MustParseAddr("10.1.1.1"), Sport: 51482, Dport: 5000})
			waitFor(t, "the first event", func() bool { return o.String() != "" })
			k.LoseEvents()
			waitFor(t, "the loss report", func() bool { return e.String() != "" })
			k.Inject(
				mptcp.Event{Type: mptcp.EventSubEstablished, Token: tok, RemoteID: 1, LocalID: 2, Backup: true, IfIndex: 3,
					Saddr: netip.MustParseAddr("dead:beef::2"), Daddr: netip.MustParseAddr("dead:beef::1"), Sport: 40000, Dport: 443},
				mptcp.Event{Type: mptcp.EventListenerCreated, Saddr: netip.MustParseAddr("10.1.2.1"), Sport: 6000},
				mptcp.Event{Type: mptcp.EventClosed, Token: tok},
			)
			waitFor(t, "all events", func() bool { return strings.Count(o.String(), "\n") == 4 })
			b.stopListening()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("monitor exited %d, want 0 after its listener closed", code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("monitor did not stop after its listener closed")
			}
			if diff := cmp.Diff(tt.want, o.String()); diff != "" {
				t.Errorf("unexpected monitor output (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantErr, e.String()); diff != "" {
				t.Errorf("unexpected monitor stderr (-want +got):\n%s", diff)
			}
		})
	}
}
