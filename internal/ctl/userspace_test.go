package ctl

import (
	"bytes"
	"io"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
)

// The userspace commands against the recording backend: what each command
// line asks of the path manager, and that a bad one asks nothing.
func TestUserspaceCommands(t *testing.T) {
	tests := []commandCase{
		{line: "userspace announce 10.0.2.2 id 1 token 7ab06eec",
			calls: []string{"dial", "Announce 7ab06eec {ID:1 Addr:10.0.2.2 Port:0 Flags:signal IfIndex:0}", "close"}},
		{line: "u a 10.0.2.2 i 2 t 0xbeef p 6000 d eth0",
			calls: []string{"dial", "Announce 0000beef {ID:2 Addr:10.0.2.2 Port:6000 Flags:signal IfIndex:2}", "close"}},
		{line: "userspace remove id 0 token 7ab06eec", calls: []string{"dial", "Remove 7ab06eec 0", "close"}},
		{line: "us r i 3 t 1", calls: []string{"dial", "Remove 00000001 3", "close"}},
		{line: "userspace subflow create token 7ab06eec local 10.0.2.2 id 2 dev wlan0 remote 10.0.1.1 port 5000",
			calls: []string{"dial", "CreateSubflow 7ab06eec {ID:2 Addr:10.0.2.2 Port:0 Flags: IfIndex:3} 10.0.1.1:5000", "close"}},
		{line: "u s c t 1 l dead::2 p 4000 i 9 backup r dead::1 p 443",
			calls: []string{"dial", "CreateSubflow 00000001 {ID:9 Addr:dead::2 Port:4000 Flags:backup IfIndex:0} [dead::1]:443", "close"}},
		{line: "u s c t 7ab06eec l 10.0.2.2 i 1 r 10.0.1.1 p 5000", // the example of the help
			calls: []string{"dial", "CreateSubflow 7ab06eec {ID:1 Addr:10.0.2.2 Port:0 Flags: IfIndex:0} 10.0.1.1:5000", "close"}},
		{line: "userspace subflow destroy token 7ab06eec local 10.0.2.2 port 40000 remote 10.0.1.1 port 5000",
			calls: []string{"dial", "DestroySubflow 7ab06eec 10.0.2.2:40000 10.0.1.1:5000", "close"}},
		{line: "u s d t 1 r 10.0.1.1 p 5000 l 10.0.2.2 p 40000",
			calls: []string{"dial", "DestroySubflow 00000001 10.0.2.2:40000 10.0.1.1:5000", "close"}},
		{line: "userspace subflow backup token 7ab06eec local 10.0.2.2 remote 10.0.1.1",
			calls: []string{"dial", "SetSubflowBackup 7ab06eec 10.0.2.2:0 10.0.1.1:0 true", "close"}},
		{line: "u s b t 1 l 10.0.2.2 p 40000 r 10.0.1.1 p 5000",
			calls: []string{"dial", "SetSubflowBackup 00000001 10.0.2.2:40000 10.0.1.1:5000 true", "close"}},
		{line: "userspace subflow nobackup token 7ab06eec local 10.0.2.2 remote 10.0.1.1 port 5000",
			calls: []string{"dial", "SetSubflowBackup 7ab06eec 10.0.2.2:0 10.0.1.1:5000 false", "close"}},
		{line: "u s n t 1 l 10.0.2.2 r 10.0.1.1",
			calls: []string{"dial", "SetSubflowBackup 00000001 10.0.2.2:0 10.0.1.1:0 false", "close"}},
		{line: "userspace endpoints token 7ab06eec", stdout: dumpText,
			calls: []string{"dial", "ConnectionEndpoints 7ab06eec", "close"}},
		{line: "-j u e t 7ab06eec", stdout: dumpJSON,
			calls: []string{"dial", "ConnectionEndpoints 7ab06eec", "close"}},

		// Usage errors: nothing reaches the kernel.
		{line: "userspace", code: ExitUsage, stderr: "Usage:" + userspaceUsage[6:] + "\n"},
		{line: "userspace subflow", code: ExitUsage, stderr: "Usage:" + userspaceUsage[6:] + "\n"},
		{line: "userspace bogus", code: ExitUsage, stderr: `Command "bogus" is unknown, try "mptcpctl help".` + "\n"},
		{line: "u s bogus", code: ExitUsage, stderr: `Command "bogus" is unknown, try "mptcpctl help".` + "\n"},
		{line: "u a bogus id 1 token 1", code: ExitUsage,
			stderr: `Error: argument "bogus" is wrong: neither an address nor a keyword (ADDRESS, id, token, port, dev)` + "\n"},
		{line: "u a 10.0.2.2 id 1 token 7ab06eecc", code: ExitUsage,
			stderr: `Error: argument "7ab06eecc" is wrong: invalid token: up to 8 hex digits, as monitor prints it` + "\n"},
		{line: "u a 10.0.2.2 id 1", code: ExitUsage, stderr: `Error: argument "token" is required` + "\n"},
		{line: "u s c t 1 l 10.0.2.2 i 1 r 10.0.1.1", code: ExitUsage, stderr: `Error: argument "port" is required after remote ADDRESS` + "\n"},
		{line: "u s c t 1 l 10.0.2.2 i 1 r 10.0.1.1 p 1 dev nosuch", code: ExitUsage,
			stderr: `Error: argument "dev" is wrong: dev describes the local address: write it after local ADDRESS` + "\n"},
		{line: "u s c t 1 l 10.0.2.2 i 1 dev nosuch r 10.0.1.1 p 1", code: ExitUsage,
			stderr: `Error: argument "nosuch" is wrong: device does not exist` + "\n"},
		{line: "u s d t 1 l 10.0.2.2 r 10.0.1.1 p 1", code: ExitUsage, stderr: `Error: argument "port" is required after local ADDRESS` + "\n"},
		{line: "u e", code: ExitUsage, stderr: `Error: argument "token" is required` + "\n"},
	}
	runCommandCases(t, tests)
}

// userspaceConn is the fake kernel's userspace-PM connection of these tests.
var userspaceConn = mptcptest.Connection{
	Token:     0x7ab06eec,
	Local:     netip.MustParseAddrPort("10.0.1.2:40000"),
	Remote:    netip.MustParseAddrPort("10.0.1.1:5000"),
	Userspace: true,
}

// TestFakeKernelUserspace runs the userspace commands through the real
// client against the fake kernel: what it receives, what the kernel's
// refusals print, and the endpoints dump as text and JSON (golden files).
func TestFakeKernelUserspace(t *testing.T) {
	k := mptcptest.NewKernel()
	k.AddConnection(userspaceConn)
	k.AddConnection(mptcptest.Connection{Token: 0x1, Local: netip.MustParseAddrPort("10.0.1.2:40001"),
		Remote: netip.MustParseAddrPort("10.0.1.1:5000")}) // in-kernel PM
	b := &fakeKernelBackend{fakeLinks: fakeLinks{"lo": 1, "c2": 5}, k: k}
	steps := []struct {
		line   string
		code   int
		stdout string
		stderr string
	}{
		{line: "userspace announce 10.0.2.2 id 1 token 7ab06eec port 6000 dev c2"},
		{line: "u a 10.0.2.2 id 2 token 7ab06eec port 6000", code: ExitKernel, stderr: "Error: did not match address and id.\n"},
		{line: "u a 10.0.3.2 id 1 token 7ab06eec", code: ExitKernel, stderr: "Error: did not match address and id.\n"},
		{line: "u a 10.0.2.2 id 1 token 12345678", code: ExitKernel, stderr: "Error: invalid token.\n"},
		{line: "u a 10.0.2.2 id 1 token 1", code: ExitKernel, stderr: "Error: userspace PM not selected.\n"},
		{line: "userspace subflow create token 7ab06eec local 10.0.2.2 id 3 remote 10.0.2.1 port 5000 backup"},
		{line: "u s c t 7ab06eec l 2001:db8::2 i 4 r 2001:db8::1 p 5000", code: ExitKernel, stderr: "Error: families mismatch.\n"},
		{line: "u s c t 7ab06eec l 10.0.3.2 i 4 d c2 r 10.0.2.1 p 5000"},
		{line: "userspace endpoints token 7ab06eec", stdout: "10.0.2.2 port 6000 id 1 signal dev c2 \n" +
			"10.0.2.2 id 3 subflow backup \n" +
			"10.0.3.2 id 4 subflow dev c2 \n"},
		{line: "u s nobackup t 7ab06eec l 10.0.2.2 r 10.0.2.1 p 5000"},
		{line: "u s b t 7ab06eec l 10.0.9.9 r 10.0.2.1", code: ExitKernel, stderr: "Error: subflow not found.\n"},
		{line: "u s d t 7ab06eec l 10.0.3.2 p 1 r 10.0.2.1 p 5000", code: ExitKernel, stderr: "Error: subflow not found.\n"},
		{line: "u s d t 7ab06eec l 10.0.3.2 p 32769 r 10.0.2.1 p 5000"},
		{line: "userspace remove id 1 token 7ab06eec"},
		{line: "u r i 1 t 7ab06eec", code: ExitKernel, stderr: "Error: address with id 1 not found.\n"},
		{line: "u e t 12345678", code: ExitKernel, stderr: "Error: invalid token.\n"},
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

	var ops []string
	for _, op := range k.Ops() {
		if op.Errno == 0 {
			ops = append(ops, op.String())
		}
	}
	wantOps := []string{
		"ANNOUNCE token 7ab06eec 10.0.2.2 port 6000 id 1 signal ifindex 5: ok",
		"SUBFLOW_CREATE token 7ab06eec 10.0.2.2 id 3 backup remote 10.0.2.1:5000: ok",
		"SUBFLOW_CREATE token 7ab06eec 10.0.3.2 id 4 ifindex 5 remote 10.0.2.1:5000: ok",
		"SET_FLAGS token 7ab06eec 10.0.2.2 id 0 remote 10.0.2.1:5000: ok",
		"SUBFLOW_DESTROY token 7ab06eec 10.0.3.2 port 32769 id 0 remote 10.0.2.1:5000: ok",
		"REMOVE token 7ab06eec id 1: ok",
	}
	if diff := cmp.Diff(wantOps, ops); diff != "" {
		t.Errorf("unexpected requests (-want +got):\n%s", diff)
	}
	subflows := k.Subflows(userspaceConn.Token)
	if len(subflows) != 2 || subflows[1].Backup {
		t.Errorf("subflows after the session: %+v; want the initial one and 10.0.2.2's, not backup", subflows)
	}
}

func TestGoldenUserspaceEndpoints(t *testing.T) {
	k := mptcptest.NewKernel()
	k.AddConnection(userspaceConn)
	k.AddConnection(mptcptest.Connection{Token: 0xbeef, Userspace: true,
		Local: netip.MustParseAddrPort("[2001:db8:1::2]:40000"), Remote: netip.MustParseAddrPort("[2001:db8:1::1]:443")})
	k.AddConnection(mptcptest.Connection{Token: 0xabc, Userspace: true,
		Local: netip.MustParseAddrPort("10.0.1.2:40001"), Remote: netip.MustParseAddrPort("10.0.1.1:5000")})
	b := &fakeKernelBackend{fakeLinks: fakeLinks{"lo": 1, "c2": 5}, k: k}
	for _, line := range []string{
		"u a 10.0.2.2 id 1 t 7ab06eec p 6000 d c2",
		"u a 10.0.4.2 id 7 t 7ab06eec",
		"u s c t 7ab06eec l 10.0.3.2 i 2 d c2 backup r 10.0.1.1 p 5000",
		"u s c t 7ab06eec l 10.0.5.2 i 255 r 10.0.1.1 p 5000",
		"u a 2001:db8:2::2 id 1 t beef",
	} {
		if code, _, stderr := runFake(b, line); code != 0 {
			t.Fatalf("%s: exit %d: %s", line, code, stderr)
		}
	}
	for _, tt := range []struct{ name, line string }{
		{"userspace-endpoints.txt", "userspace endpoints token 7ab06eec"},
		{"userspace-endpoints.json", "-j userspace endpoints token 7ab06eec"},
		{"userspace-endpoints-pretty.json", "-j -p userspace endpoints token 7ab06eec"},
		{"userspace-endpoints-v6.txt", "userspace endpoints token 0000beef"},
		{"userspace-endpoints-empty.json", "-j userspace endpoints token 0xabc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runFake(b, tt.line)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			goldenFile(t, tt.name, []byte(stdout))
		})
	}
}

// TestFakeKernelUserspaceBadArgumentsSendNothing: no request of any kind,
// successful or not, reaches the kernel for a bad command line.
func TestFakeKernelUserspaceBadArgumentsSendNothing(t *testing.T) {
	k := mptcptest.NewKernel()
	k.AddConnection(userspaceConn)
	b := &fakeKernelBackend{fakeLinks: fakeLinks{"lo": 1}, k: k}
	for _, line := range []string{
		"u", "u x", "u s", "u s x",
		"u a 10.0.2.2 id 0 token 7ab06eec", "u a 10.0.2.2 token 7ab06eec", "u a id 1 token 7ab06eec",
		"u a 10.0.2.2 id 1 token zz", "u a 10.0.2.2 id 1", "u a 10.0.2.2 id 1 token 7ab06eec dev nosuch",
		"u r token 7ab06eec", "u r id 1", "u r id 1 token 7ab06eec 10.0.2.2",
		"u s c token 7ab06eec local 10.0.2.2 remote 10.0.1.1 port 5000",
		"u s c token 7ab06eec local 10.0.2.2 id 1 remote 10.0.1.1",
		"u s c token 7ab06eec local 10.0.2.2 id 1 remote ::1 port 5000",
		"u s c token 7ab06eec id 1 local 10.0.2.2 remote 10.0.1.1 port 5000",
		"u s d token 7ab06eec local 10.0.1.2 remote 10.0.1.1 port 5000",
		"u s d token 7ab06eec local 10.0.1.2 port 40000 remote 10.0.1.1",
		"u s b token 7ab06eec local 10.0.1.2", "u s n local 10.0.1.2 remote 10.0.1.1",
		"u e", "u e token", "u e token 7ab06eec extra",
	} {
		code, _, stderr := runFake(b, line)
		if code != ExitUsage || stderr == "" {
			t.Errorf("%s: exit %d, stderr %q; want %d and a message", line, code, stderr, ExitUsage)
		}
	}
	if ops := k.Ops(); len(ops) != 0 {
		t.Errorf("bad command lines reached the kernel: %v", ops)
	}
}

// Extended-ack texts and errnos of the kernel come through as for the
// endpoint commands.
func TestUserspaceKernelErrors(t *testing.T) {
	for _, tt := range []struct {
		line, stderr string
		err          error
	}{
		{"u s d t 1 l 10.0.2.2 p 1 r 10.0.1.1 p 2", "Error: subflow not found.\n",
			&mptcp.Error{Op: "destroy subflow", Errno: syscall.ESRCH, Message: "subflow not found"}},
		{"u s c t 1 l 10.0.2.2 i 1 r 10.0.1.1 p 2", "RTNETLINK answers: Cannot assign requested address\n",
			&mptcp.Error{Op: "create subflow", Errno: syscall.EADDRNOTAVAIL}},
		{"u e t 1", "Error: invalid token.\n",
			&mptcp.Error{Op: "list connection endpoints", Errno: syscall.EINVAL, Message: "invalid token"}},
	} {
		b := testBackend()
		b.reqErr = tt.err
		code, stdout, stderr, _ := run(t, b, tt.line)
		if code != ExitKernel || stdout != "" || stderr != tt.stderr {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d, nothing, %q", tt.line, code, stdout, stderr, ExitKernel, tt.stderr)
		}
	}
}

func TestUserspaceHelp(t *testing.T) {
	b := testBackend()
	_, stdout, _, _ := run(t, b, "help")
	if !strings.Contains(stdout, userspaceUsage) {
		t.Errorf("mptcpctl help lacks the userspace usage:\n%s", stdout)
	}
	var o bytes.Buffer
	code := Main([]string{"userspace", "--help"}, Env{Stdout: &o, Stderr: io.Discard, Open: func(string) (Backend, error) { return b, nil }})
	for _, want := range []string{userspaceUsage, "port\"\nbelongs to the address it follows", "always hex"} {
		if code != 0 || !strings.Contains(o.String(), want) {
			t.Errorf("userspace --help: exit %d, lacks %q:\n%s", code, want, o.String())
		}
	}
	if len(b.calls) != 0 {
		t.Errorf("help called the backend: %v", b.calls)
	}
}

func TestUserspaceCompletion(t *testing.T) {
	b := testBackend()
	b.conns = []mptcpdiag.Connection{
		{Info: mptcpdiag.Info{Token: 0x7ab06eec}, State: mptcpdiag.StateEstablished},
		{Info: mptcpdiag.Info{Token: 0x7bcd0001}, State: mptcpdiag.StateEstablished},
		{State: mptcpdiag.StateListen},
	}
	tests := []struct {
		line string
		want []string
	}{
		{"__complete userspace subflow create token 7a", []string{"7ab06eec"}},
		{"__complete userspace endpoints token ", []string{"7ab06eec", "7bcd0001"}},
		{"__complete userspace subflow create token 1 ", []string{"token", "local", "id", "port", "dev", "remote", "backup"}},
		{"__complete userspace subflow destroy token 1 local ", nil},
		{"__complete userspace s", []string{"subflow"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			if got := complete(t, b, tt.line); !cmp.Equal(tt.want, got) {
				t.Errorf("unexpected completions (-want +got):\n%s", cmp.Diff(tt.want, got))
			}
		})
	}
}
