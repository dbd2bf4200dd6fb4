package ctl

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// fakeLinks is a namespace's link table for tests.
type fakeLinks map[string]int

func (l fakeLinks) LinkIndex(name string) int { return l[name] }

func (l fakeLinks) LinkName(index int) (string, bool) {
	for name, i := range l {
		if i == index {
			return name, true
		}
	}
	return "", false
}

var testLinks = fakeLinks{"lo": 1, "eth0": 2, "wlan0": 3}

// wantErr describes an expected *ExitError.
type wantErr struct {
	code int
	msg  string
}

func checkErr(t *testing.T, err error, want *wantErr) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("got error %v, want exit %d %q", err, want.code, want.msg)
	}
	if ee.Code != want.code || ee.Msg != want.msg {
		t.Fatalf("got exit %d %q, want exit %d %q", ee.Code, ee.Msg, want.code, want.msg)
	}
}

func invArg(arg, msg string) *wantErr {
	return &wantErr{ExitUsage, `Error: argument "` + arg + `" is wrong: ` + msg}
}

func TestParseEndpointArgs(t *testing.T) {
	a4 := netip.MustParseAddr("10.0.0.1")
	a6 := netip.MustParseAddr("dead:beef::1")
	tests := []struct {
		name  string
		op    endpointOp
		args  string
		words []string // instead of args, for words with blanks or none
		want  endpointArgs
		err   *wantErr
	}{
		// Keywords and their abbreviations (ip's matches: any prefix).
		{name: "add minimal", op: opAdd, args: "10.0.0.1", want: endpointArgs{Addr: a4}},
		{name: "add all", op: opAdd, args: "10.0.0.1 dev eth0 id 7 port 6000 signal backup",
			want: endpointArgs{Addr: a4, IfIndex: 2, ID: 7, IDSet: true, Port: 6000, Flags: mptcp.FlagSignal | mptcp.FlagBackup}},
		{name: "abbreviated keywords", op: opAdd, args: "10.0.0.1 i 20 d wlan0 p 0 subflow",
			want: endpointArgs{Addr: a4, ID: 20, IDSet: true, IfIndex: 3, Flags: mptcp.FlagSubflow}},
		{name: "de for dev", op: opAdd, args: "de lo 10.0.0.1", want: endpointArgs{Addr: a4, IfIndex: 1}},
		{name: "po for port", op: opAdd, args: "10.0.0.1 po 80 signal", want: endpointArgs{Addr: a4, Port: 80, Flags: mptcp.FlagSignal}},
		{name: "address anywhere", op: opAdd, args: "id 3 dead:beef::1 fullmesh subflow",
			want: endpointArgs{Addr: a6, ID: 3, IDSet: true, Flags: mptcp.FlagFullmesh | mptcp.FlagSubflow}},
		{name: "last address wins", op: opAdd, args: "10.0.0.9 10.0.0.1", want: endpointArgs{Addr: a4}},
		{name: "last id wins", op: opAdd, args: "10.0.0.1 id 3 id 4", want: endpointArgs{Addr: a4, ID: 4, IDSet: true}},
		{name: "hex and octal numbers", op: opAdd, args: "10.0.0.1 id 0x1f port 010 signal",
			want: endpointArgs{Addr: a4, ID: 31, IDSet: true, Port: 8, Flags: mptcp.FlagSignal}},
		{name: "id 0 accepted by 6.1", op: opAdd, args: "10.0.0.1 id 0", want: endpointArgs{Addr: a4, IDSet: true}},
		{name: "id -0", op: opAdd, args: "10.0.0.1 id -0", want: endpointArgs{Addr: a4, IDSet: true}},
		{name: "laminar", op: opAdd, args: "10.0.0.1 laminar", want: endpointArgs{Addr: a4, Flags: mptcp.FlagLaminar}},
		{name: "nobackup adds nothing", op: opAdd, args: "10.0.0.1 nobackup nofullmesh", want: endpointArgs{Addr: a4}},
		{name: "dev by if%u", op: opAdd, args: "10.0.0.1 dev if77", want: endpointArgs{Addr: a4, IfIndex: 77}},
		{name: "dev by if%u negative", op: opAdd, args: "10.0.0.1 dev if-1", want: endpointArgs{Addr: a4, IfIndex: -1}},
		{name: "ip-style IPv4", op: opAdd, args: "012.0x10.1", want: endpointArgs{Addr: netip.MustParseAddr("10.16.1.0")}},
		{name: "4-in-6 stays IPv6", op: opAdd, args: "::ffff:1.2.3.4", want: endpointArgs{Addr: netip.AddrFrom16(netip.MustParseAddr("::ffff:1.2.3.4").As16())}},

		// Flags are matched exactly; prefixes of flags are addresses.
		{name: "flag prefix is no flag", op: opAdd, args: "10.0.0.1 sig", err: &wantErr{ExitFailure, `Error: any valid address is expected rather than "sig".`}},
		{name: "implicit not accepted", op: opAdd, args: "10.0.0.1 implicit", err: &wantErr{ExitFailure, `Error: any valid address is expected rather than "implicit".`}},
		{name: "bogus", op: opAdd, args: "bogus", err: &wantErr{ExitFailure, `Error: any valid address is expected rather than "bogus".`}},
		{name: "zone refused", op: opAdd, args: "fe80::1%lo", err: &wantErr{ExitFailure, `Error: any valid address is expected rather than "fe80::1%lo".`}},
		{name: "empty word", op: opAdd, words: []string{"10.0.0.1", ""}, err: &wantErr{ExitFailure, `Error: any valid address is expected rather than "".`}},
		{name: "any", op: opAdd, args: "any", err: &wantErr{ExitFailure, `Error: "any" names no address: an IPv4 or IPv6 address is expected.`}},
		{name: "keyword is not a prefix", op: opAdd, args: "10.0.0.1 ids 3", err: &wantErr{ExitFailure, `Error: any valid address is expected rather than "ids".`}},

		// Values.
		{name: "id too big", op: opAdd, args: "10.0.0.1 id 256", err: invArg("256", "invalid ID")},
		{name: "id negative", op: opAdd, args: "10.0.0.1 id -1", err: invArg("-1", "invalid ID")},
		{name: "id junk", op: opAdd, args: "10.0.0.1 id 3x", err: invArg("3x", "invalid ID")},
		{name: "port too big", op: opAdd, args: "10.0.0.1 port 70000 signal", err: invArg("70000", "expected port")},
		{name: "unknown device", op: opAdd, args: "10.0.0.1 dev nosuch", err: invArg("nosuch", "device does not exist")},
		{name: "if0 is no device", op: opAdd, args: "10.0.0.1 dev if0", err: invArg("if0", "device does not exist")},
		{name: "device with blank", op: opAdd, words: []string{"10.0.0.1", "dev", "a b"}, err: invArg("a b", "invalid interface name")},
		{name: "device with slash", op: opAdd, args: "10.0.0.1 dev a/b", err: invArg("a/b", "invalid interface name")},
		{name: "device name too long", op: opAdd, args: "10.0.0.1 dev 0123456789abcdef", err: invArg("0123456789abcdef", "invalid interface name")},
		{name: "id without value", op: opAdd, args: "10.0.0.1 id", err: &wantErr{ExitUsage, `Command line is not complete: "id" needs a value. Try "mptcpctl help".`}},
		{name: "dev without value", op: opAdd, args: "10.0.0.1 d", err: &wantErr{ExitUsage, `Command line is not complete: "d" needs a value. Try "mptcpctl help".`}},
		{name: "port without value", op: opChange, args: "port", err: &wantErr{ExitUsage, `Command line is not complete: "port" needs a value. Try "mptcpctl help".`}},

		// add rules, in ip's order.
		{name: "add without address", op: opAdd, args: "id 3 subflow", err: &wantErr{ExitUsage, `Error: argument "ADDRESS" is required`}},
		{name: "add nothing", op: opAdd, args: "", err: &wantErr{ExitUsage, `Error: argument "ADDRESS" is required`}},
		{name: "signal then fullmesh", op: opAdd, args: "10.0.0.1 signal fullmesh", err: invArg("fullmesh", "flags mustn't have both signal and fullmesh")},
		{name: "fullmesh then signal", op: opAdd, args: "10.0.0.1 fullmesh signal", err: invArg("signal", "flags mustn't have both signal and fullmesh")},
		{name: "port without signal", op: opAdd, args: "10.0.0.1 port 5 subflow", err: invArg("port", "flags must have signal when using port")},
		{name: "port 0 without signal", op: opAdd, args: "10.0.0.1 port 0", want: endpointArgs{Addr: a4}},
		{name: "port with signal and subflow left to kernel", op: opAdd, args: "10.0.0.1 port 5 signal subflow",
			want: endpointArgs{Addr: a4, Port: 5, Flags: mptcp.FlagSignal | mptcp.FlagSubflow}},

		// change rules.
		{name: "change by id", op: opChange, args: "id 7 backup fullmesh", want: endpointArgs{ID: 7, IDSet: true, Flags: mptcp.FlagBackup | mptcp.FlagFullmesh}},
		{name: "change by address and port", op: opChange, args: "10.0.0.1 port 6000 nobackup", want: endpointArgs{Addr: a4, Port: 6000}},
		{name: "change backup nobackup keeps backup", op: opChange, args: "id 3 backup nobackup", want: endpointArgs{ID: 3, IDSet: true, Flags: mptcp.FlagBackup}},
		{name: "change nothing", op: opChange, args: "backup", err: &wantErr{ExitKernel, "Error: missing address ID: change needs id ID (not 0) or ADDRESS."}},
		{name: "change id 0", op: opChange, args: "id 0 backup", err: &wantErr{ExitKernel, "Error: missing address ID: change needs id ID (not 0) or ADDRESS."}},
		{name: "change without flags", op: opChange, args: "id 4", want: endpointArgs{ID: 4, IDSet: true}},
		{name: "change signal", op: opChange, args: "id 7 signal", err: invArg("signal", "invalid flags, backup and fullmesh only")},
		{name: "change laminar", op: opChange, args: "id 7 backup laminar", err: invArg("laminar", "invalid flags, backup and fullmesh only")},
		{name: "change signal fullmesh allowed", op: opChange, args: "id 7 fullmesh", want: endpointArgs{ID: 7, IDSet: true, Flags: mptcp.FlagFullmesh}},
		{name: "change port with id", op: opChange, args: "id 7 port 5 backup", err: invArg("port", "port can't be used with id")},
		{name: "change port 0 with id", op: opChange, args: "id 7 port 0 backup", want: endpointArgs{ID: 7, IDSet: true, Flags: mptcp.FlagBackup}},

		// delete rules.
		{name: "delete by id", op: opDelete, args: "id 3", want: endpointArgs{ID: 3, IDSet: true}},
		{name: "delete id 0 with address", op: opDelete, args: "id 0 10.0.0.1", want: endpointArgs{IDSet: true, Addr: a4}},
		{name: "delete without id", op: opDelete, args: "", err: &wantErr{ExitUsage, `Error: argument "ID" is required`}},
		{name: "delete address only", op: opDelete, args: "10.0.0.1", err: &wantErr{ExitUsage, `Error: argument "ID" is required`}},
		{name: "delete id and address", op: opDelete, args: "id 3 10.0.0.3", err: invArg("ADDRESS", "invalid for non-zero id address")},
		{name: "delete id 0 alone", op: opDelete, args: "id 0", err: invArg("ID", "address is needed for deleting id 0 address")},
		{name: "delete takes flags", op: opDelete, args: "id 3 signal fullmesh", want: endpointArgs{ID: 3, IDSet: true, Flags: mptcp.FlagSignal | mptcp.FlagFullmesh}},

		// show parses everything, the kernel looks at the id only.
		{name: "show id", op: opShow, args: "id 3", want: endpointArgs{ID: 3, IDSet: true}},
		{name: "show address", op: opShow, args: "10.0.0.1", want: endpointArgs{Addr: a4}},
		{name: "show bogus", op: opShow, args: "id 3 bogus", err: &wantErr{ExitFailure, `Error: any valid address is expected rather than "bogus".`}},
		{name: "show port", op: opShow, args: "id 3 port 9", want: endpointArgs{ID: 3, IDSet: true, Port: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.words
			if args == nil {
				args = strings.Fields(tt.args)
			}
			got, err := parseEndpointArgs(tt.op, args, testLinks)
			checkErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("unexpected arguments (-want +got):\n%s", diff)
			}
		})
	}
}

func u32(v uint32) *uint32 { return &v }

func TestParseLimits(t *testing.T) {
	tests := []struct {
		args string
		want mptcp.Limits
		err  *wantErr
	}{
		{args: "", want: mptcp.Limits{}},
		{args: "subflows 3", want: mptcp.Limits{Subflows: u32(3)}},
		{args: "add_addr_accepted 4", want: mptcp.Limits{AddAddrAccepted: u32(4)}},
		{args: "subflows 3 add_addr_accepted 4", want: mptcp.Limits{Subflows: u32(3), AddAddrAccepted: u32(4)}},
		{args: "s 2 a 1", want: mptcp.Limits{Subflows: u32(2), AddAddrAccepted: u32(1)}},
		{args: "sub 0x3 add 010", want: mptcp.Limits{Subflows: u32(3), AddAddrAccepted: u32(8)}},
		{args: "subflows 1 subflows 2", want: mptcp.Limits{Subflows: u32(2)}},
		{args: "subflows 4294967295", want: mptcp.Limits{Subflows: u32(4294967295)}},
		{args: "subflows 4294967296", err: invArg("4294967296", "invalid subflows")},
		{args: "subflows -1", err: invArg("-1", "invalid subflows")},
		{args: "add_addr_accepted x", err: invArg("x", "invalid add_addr_accepted")},
		{args: "bogus 1", err: invArg("bogus", "unknown limit")},
		{args: "subflowsx 1", err: invArg("subflowsx", "unknown limit")},
		{args: "subflows", err: &wantErr{ExitUsage, `Command line is not complete: "subflows" needs a value. Try "mptcpctl help".`}},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			got, err := parseLimits(strings.Fields(tt.args))
			checkErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("unexpected limits (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParseArgs feeds arbitrary words to every parser: they must never
// panic, and every error must be an *ExitError with a message and one of
// the statuses a parse error may have.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"10.0.0.1 dev eth0 id 7 port 6000 signal backup",
		"id 0 ::1", "i", "d if9", "p 0x", "subflows 3 add_addr_accepted 4", "id 3 id",
		"fullmesh signal", "s 1 a", "dev  ", "any",
		"token 7ab06eec local 10.0.2.2 id 2 dev eth0 remote 10.0.1.1 port 5000 backup",
		"l 10.0.2.2 p 1 r ::1 p 2 t 0x1", "10.0.2.2 i 1 t ffffffff", "t", "port 1 local",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Split(line, " ")
		for op := opAdd; op <= opShow; op++ {
			_, err := parseEndpointArgs(op, args, testLinks)
			checkFuzzErr(t, line, err)
		}
		_, err := parseLimits(args)
		checkFuzzErr(t, line, err)
		for op := usAnnounce; op <= usEndpoints; op++ {
			a, err := parseUserspaceArgs(op, args, testLinks)
			checkFuzzErr(t, line, err)
			// What parses is complete enough to send.
			if err == nil && (!a.TokenSet || (op != usRemove && op != usEndpoints && !a.Local.Addr.IsValid())) {
				t.Fatalf("parsing %q as %s: incomplete arguments %+v accepted", line, userspaceGrammars[op].name, a)
			}
		}
	})
}

func checkFuzzErr(t *testing.T, line string, err error) {
	if err == nil {
		return
	}
	var ee *ExitError
	if !errors.As(err, &ee) || (ee.Code != ExitUsage && ee.Code != ExitFailure && ee.Code != ExitKernel) || ee.Msg == "" {
		t.Fatalf("parsing %q: unexpected error %#v", line, err)
	}
}
