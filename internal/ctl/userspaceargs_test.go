package ctl

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

func TestParseToken(t *testing.T) {
	tests := []struct {
		word string
		want mptcp.Token
		ok   bool
	}{
		{"7ab06eec", 0x7ab06eec, true},
		{"7AB06EEC", 0x7ab06eec, true},
		{"0x7ab06eec", 0x7ab06eec, true},
		{"0X0000beef", 0xbeef, true},
		{"00000001", 1, true},
		{"1", 1, true},
		{"10", 0x10, true}, // hex, not decimal
		{"ffffffff", 0xffffffff, true},
		{"0", 0, true},
		{"0x", 0, false},
		{"", 0, false},
		{"1ffffffff", 0, false},
		{"0x1ffffffff", 0, false},
		{"7ab06eeg", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"0x-1", 0, false},
		{"1_0", 0, false},
		{" 1", 0, false},
		{"0x0x1", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseToken(tt.word)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseToken(%q) = %v, %v; want %v, %v", tt.word, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseUserspaceArgs(t *testing.T) {
	l4 := netip.MustParseAddr("10.0.2.2")
	r4 := netip.MustParseAddr("10.0.1.1")
	l6 := netip.MustParseAddr("2001:db8::2")
	r6 := netip.MustParseAddr("2001:db8::1")
	const tok = mptcp.Token(0x7ab06eec)
	incomplete := func(kw string) *wantErr {
		return &wantErr{ExitUsage, `Command line is not complete: "` + kw + `" needs a value. Try "mptcpctl help".`}
	}
	required := func(kw string) *wantErr {
		return &wantErr{ExitUsage, `Error: argument "` + kw + `" is required`}
	}
	tests := []struct {
		name  string
		op    userspaceOp
		args  string
		words []string // instead of args, for an empty word
		want  userspaceArgs
		err   *wantErr
	}{
		// announce: a bare address, its words anywhere.
		{name: "announce", op: usAnnounce, args: "10.0.2.2 id 1 token 7ab06eec",
			want: userspaceArgs{Token: tok, TokenSet: true, Local: mptcp.Endpoint{Addr: l4, ID: 1}, IDSet: true}},
		{name: "announce all", op: usAnnounce, args: "token 0x7ab06eec dev eth0 port 6000 id 255 10.0.2.2",
			want: userspaceArgs{Token: tok, TokenSet: true, Local: mptcp.Endpoint{Addr: l4, ID: 255, Port: 6000, IfIndex: 2}, IDSet: true}},
		{name: "announce abbreviated", op: usAnnounce, args: "2001:db8::2 i 0x10 t 1 p 010 d wlan0",
			want: userspaceArgs{Token: 1, TokenSet: true, Local: mptcp.Endpoint{Addr: l6, ID: 16, Port: 8, IfIndex: 3}, IDSet: true}},
		{name: "announce repeated overrides", op: usAnnounce, args: "10.9.9.9 id 3 token 1 10.0.2.2 id 1 token 7ab06eec",
			want: userspaceArgs{Token: tok, TokenSet: true, Local: mptcp.Endpoint{Addr: l4, ID: 1}, IDSet: true}},
		{name: "announce without address", op: usAnnounce, args: "id 1 token 1", err: required("ADDRESS")},
		{name: "announce without id", op: usAnnounce, args: "10.0.2.2 token 1", err: required("id")},
		{name: "announce id 0", op: usAnnounce, args: "10.0.2.2 id 0 token 1",
			err: invArg("id", "announce needs an id from 1 to 255 (0 is the initial subflow's address)")},
		{name: "announce without token", op: usAnnounce, args: "10.0.2.2 id 1", err: required("token")},
		{name: "announce bad word", op: usAnnounce, args: "10.0.2.2 id 1 token 1 bogus",
			err: invArg("bogus", "neither an address nor a keyword (ADDRESS, id, token, port, dev)")},
		{name: "announce any", op: usAnnounce, args: "any id 1 token 1",
			err: invArg("any", "names no address: an IPv4 or IPv6 address is expected")},
		{name: "announce local keyword", op: usAnnounce, args: "local 10.0.2.2 id 1 token 1",
			err: invArg("local", "announce takes ADDRESS, id, token, port, dev")},
		{name: "announce backup", op: usAnnounce, args: "10.0.2.2 id 1 token 1 backup",
			err: invArg("backup", "neither an address nor a keyword (ADDRESS, id, token, port, dev)")},
		{name: "announce bad id", op: usAnnounce, args: "10.0.2.2 id 256 token 1", err: invArg("256", "invalid ID")},
		{name: "announce bad port", op: usAnnounce, args: "10.0.2.2 id 1 port 65536 token 1", err: invArg("65536", "expected port")},
		{name: "announce unknown dev", op: usAnnounce, args: "10.0.2.2 id 1 token 1 dev nosuch", err: invArg("nosuch", "device does not exist")},
		{name: "announce token without value", op: usAnnounce, args: "10.0.2.2 id 1 token", err: incomplete("token")},

		// Tokens.
		{name: "token decimal-looking is hex", op: usEndpoints, args: "token 10", want: userspaceArgs{Token: 0x10, TokenSet: true}},
		{name: "token too long", op: usEndpoints, args: "token 123456789", err: invArg("123456789", "invalid token: up to 8 hex digits, as monitor prints it")},
		{name: "token not hex", op: usEndpoints, args: "t xyz", err: invArg("xyz", "invalid token: up to 8 hex digits, as monitor prints it")},
		{name: "token empty", op: usEndpoints, words: []string{"token", ""}, err: invArg("", "invalid token: up to 8 hex digits, as monitor prints it")},
		{name: "endpoints without token", op: usEndpoints, args: "", err: required("token")},
		{name: "endpoints extra word", op: usEndpoints, args: "token 1 10.0.2.2",
			err: invArg("10.0.2.2", "unknown keyword: endpoints takes token")},
		{name: "endpoints id", op: usEndpoints, args: "token 1 id 2", err: invArg("id", "endpoints takes token")},

		// remove: id 0 is allowed, anywhere.
		{name: "remove", op: usRemove, args: "id 3 token 7ab06eec", want: userspaceArgs{Token: tok, TokenSet: true, Local: mptcp.Endpoint{ID: 3}, IDSet: true}},
		{name: "remove id 0 after token", op: usRemove, args: "t 7ab06eec i 0", want: userspaceArgs{Token: tok, TokenSet: true, IDSet: true}},
		{name: "remove without id", op: usRemove, args: "token 1", err: required("id")},
		{name: "remove with address", op: usRemove, args: "id 1 token 1 10.0.2.2",
			err: invArg("10.0.2.2", "unknown keyword: remove takes id, token")},
		{name: "remove with port", op: usRemove, args: "id 1 token 1 port 5", err: invArg("port", "remove takes id, token")},

		// subflow create.
		{name: "create", op: usCreate, args: "token 7ab06eec local 10.0.2.2 id 2 remote 10.0.1.1 port 5000",
			want: userspaceArgs{Token: tok, TokenSet: true, Local: mptcp.Endpoint{Addr: l4, ID: 2}, IDSet: true, RemoteAddr: r4, RemotePort: 5000}},
		{name: "create all, abbreviated, any order", op: usCreate, args: "r 10.0.1.1 p 5000 backup l 10.0.2.2 d eth0 p 4000 i 0 t 7ab06eec",
			want: userspaceArgs{Token: tok, TokenSet: true, Local: mptcp.Endpoint{Addr: l4, Port: 4000, IfIndex: 2, Flags: mptcp.FlagBackup}, IDSet: true, RemoteAddr: r4, RemotePort: 5000}},
		{name: "create IPv6", op: usCreate, args: "token 1 local 2001:db8::2 id 1 remote 2001:db8::1 port 443",
			want: userspaceArgs{Token: 1, TokenSet: true, Local: mptcp.Endpoint{Addr: l6, ID: 1}, IDSet: true, RemoteAddr: r6, RemotePort: 443}},
		{name: "create 4-in-6 to IPv4", op: usCreate, args: "token 1 local ::ffff:10.0.2.2 id 1 remote 10.0.1.1 port 443",
			want: userspaceArgs{Token: 1, TokenSet: true, Local: mptcp.Endpoint{Addr: netip.AddrFrom16(l4.As16()), ID: 1}, IDSet: true, RemoteAddr: r4, RemotePort: 443}},
		{name: "create without token", op: usCreate, args: "local 10.0.2.2 id 2 remote 10.0.1.1 port 5000", err: required("token")},
		{name: "create without local", op: usCreate, args: "token 1 remote 10.0.1.1 port 5000", err: required("local")},
		{name: "create without id", op: usCreate, args: "token 1 local 10.0.2.2 remote 10.0.1.1 port 5000",
			err: &wantErr{ExitUsage, `Error: argument "id" is required after local ADDRESS (0 only for the initial subflow's address)`}},
		{name: "create without remote", op: usCreate, args: "token 1 local 10.0.2.2 id 2", err: required("remote")},
		{name: "create without remote port", op: usCreate, args: "token 1 local 10.0.2.2 id 2 port 5000 remote 10.0.1.1",
			err: &wantErr{ExitUsage, `Error: argument "port" is required after remote ADDRESS`}},
		{name: "create families differ", op: usCreate, args: "token 1 local 10.0.2.2 id 2 remote 2001:db8::1 port 5000",
			err: &wantErr{ExitUsage, "Error: subflow create: local 10.0.2.2 and remote 2001:db8::1 are of different address families"}},
		{name: "create id after remote", op: usCreate, args: "token 1 local 10.0.2.2 remote 10.0.1.1 port 5000 id 2",
			err: invArg("id", "id describes the local address: write it after local ADDRESS")},
		{name: "create abbreviated id before local", op: usCreate, args: "token 1 i 2 local 10.0.2.2 remote 10.0.1.1 port 5000",
			err: invArg("i", "id describes the local address: write it after local ADDRESS")},
		{name: "create dev after remote", op: usCreate, args: "token 1 local 10.0.2.2 id 1 remote 10.0.1.1 dev eth0 port 5000",
			err: invArg("dev", "dev describes the local address: write it after local ADDRESS")},
		{name: "create port first", op: usCreate, args: "port 5000 token 1 local 10.0.2.2 id 1 remote 10.0.1.1",
			err: invArg("port", "a port belongs to the address before it: write local ADDRESS port NR or remote ADDRESS port NR")},
		{name: "create bad local", op: usCreate, args: "token 1 local bogus", err: invArg("bogus", "an IPv4 or IPv6 address is expected")},
		{name: "create keyword as local", op: usCreate, args: "token 1 local remote 10.0.1.1", err: invArg("remote", "an IPv4 or IPv6 address is expected")},
		{name: "create bad remote", op: usCreate, args: "token 1 local 10.0.2.2 id 1 remote fe80::1%eth0 port 1", err: invArg("fe80::1%eth0", "an IPv4 or IPv6 address is expected")},
		{name: "create default remote", op: usCreate, args: "token 1 local 10.0.2.2 id 1 remote default port 1", err: invArg("default", "names no address: an IPv4 or IPv6 address is expected")},
		{name: "create remote without value", op: usCreate, args: "token 1 local 10.0.2.2 id 1 remote", err: incomplete("remote")},
		{name: "create flag prefix", op: usCreate, args: "token 1 local 10.0.2.2 id 1 remote 10.0.1.1 port 1 back",
			err: invArg("back", "unknown keyword: subflow create takes token, local, id, port, dev, remote, backup")},
		{name: "create fullmesh", op: usCreate, args: "token 1 local 10.0.2.2 id 1 remote 10.0.1.1 port 1 fullmesh",
			err: invArg("fullmesh", "unknown keyword: subflow create takes token, local, id, port, dev, remote, backup")},

		// subflow destroy: both ports.
		{name: "destroy", op: usDestroy, args: "token 7ab06eec local 10.0.2.2 port 40000 remote 10.0.1.1 port 5000",
			want: userspaceArgs{Token: tok, TokenSet: true, Local: mptcp.Endpoint{Addr: l4, Port: 40000}, RemoteAddr: r4, RemotePort: 5000}},
		{name: "destroy without local port", op: usDestroy, args: "token 1 local 10.0.2.2 remote 10.0.1.1 port 5000",
			err: &wantErr{ExitUsage, `Error: argument "port" is required after local ADDRESS`}},
		{name: "destroy local port 0", op: usDestroy, args: "token 1 local 10.0.2.2 port 0 remote 10.0.1.1 port 5000",
			err: &wantErr{ExitUsage, `Error: argument "port" is required after local ADDRESS`}},
		{name: "destroy without remote port", op: usDestroy, args: "token 1 local 10.0.2.2 port 1 remote 10.0.1.1",
			err: &wantErr{ExitUsage, `Error: argument "port" is required after remote ADDRESS`}},
		{name: "destroy takes no id", op: usDestroy, args: "token 1 local 10.0.2.2 id 1", err: invArg("id", "subflow destroy takes token, local, port, remote")},
		{name: "destroy takes no backup", op: usDestroy, args: "token 1 backup",
			err: invArg("backup", "unknown keyword: subflow destroy takes token, local, port, remote")},
		{name: "destroy families differ", op: usDestroy, args: "token 1 local 2001:db8::2 port 1 remote 10.0.1.1 port 2",
			err: &wantErr{ExitUsage, "Error: subflow destroy: local 2001:db8::2 and remote 10.0.1.1 are of different address families"}},

		// subflow backup and nobackup: ports optional.
		{name: "backup without ports", op: usBackup, args: "token 1 local 10.0.2.2 remote 10.0.1.1",
			want: userspaceArgs{Token: 1, TokenSet: true, Local: mptcp.Endpoint{Addr: l4}, RemoteAddr: r4}},
		{name: "nobackup with remote port", op: usNobackup, args: "remote 10.0.1.1 port 5000 local 10.0.2.2 token 1",
			want: userspaceArgs{Token: 1, TokenSet: true, Local: mptcp.Endpoint{Addr: l4}, RemoteAddr: r4, RemotePort: 5000}},
		{name: "backup without remote", op: usBackup, args: "token 1 local 10.0.2.2", err: required("remote")},
		{name: "nobackup names itself", op: usNobackup, args: "token 1 dev eth0", err: invArg("dev", "subflow nobackup takes token, local, port, remote")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.words
			if args == nil {
				args = strings.Fields(tt.args)
			}
			got, err := parseUserspaceArgs(tt.op, args, testLinks)
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
