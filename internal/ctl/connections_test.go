package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// fakeConnections serves Connections from a prepared list, counting the
// dumps, and OutputLink from a routing table.
type fakeConnections struct {
	conns  []mptcpdiag.Connection
	err    error
	dumps  int
	routes map[fakeRoute]int // the output link
}

type fakeRoute struct{ src, dst netip.Addr }

func (f *fakeConnections) OutputLink(src, dst netip.Addr) int {
	return f.routes[fakeRoute{src, dst}]
}

func (f *fakeConnections) Connections() ([]mptcpdiag.Connection, error) {
	f.dumps++
	// A copy: the command filters the slice in place.
	return append([]mptcpdiag.Connection(nil), f.conns...), f.err
}

// goldenConnections are a client's IPv4 connection with an initial subflow
// (device by its route), a backup join bound to a device and a join with
// no route; an IPv6 connection that fell back to TCP,
// on a kernel too old for subflows_total; and two listeners.
var goldenConnections = []mptcpdiag.Connection{
	{
		Family: mptcpdiag.AF_INET, State: mptcpdiag.StateEstablished, Inode: 4242, UID: 1000,
		Local: netip.MustParseAddrPort("10.1.0.2:52401"), Remote: netip.MustParseAddrPort("192.0.2.1:443"),
		Info: mptcpdiag.Info{
			Size: 96, Subflows: 2, SubflowsTotal: 3, SubflowsMax: 2, AddAddrAccepted: 1, AddAddrAcceptedMax: 2,
			LocalAddrUsed: 2, LocalAddrMax: 2, Flags: mptcpdiag.InfoRemoteKeyReceived, Token: 0x86c266db,
			BytesSent: 1048581, BytesReceived: 5, BytesAcked: 1048581, BytesRetrans: 2896, Retransmits: 2,
		},
		Subflows: []mptcpdiag.Subflow{
			{
				Local: netip.MustParseAddrPort("10.1.0.2:52401"), Remote: netip.MustParseAddrPort("192.0.2.1:443"),
				State: mptcpdiag.StateEstablished, LocalToken: 0x86c266db,
				Flags: mptcpdiag.SubflowCapableLocal | mptcpdiag.SubflowCapableRemote | mptcpdiag.SubflowFullyEstablished | mptcpdiag.SubflowConnected,
				TCP: mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, BytesSent: 600005, BytesAcked: 600006, BytesReceived: 5,
					TotalRetrans: 2, BytesRetrans: 2896, RTT: 61 * time.Microsecond, RTTVar: 33 * time.Microsecond, MinRTT: 24 * time.Microsecond, SndCwnd: 10},
			},
			{
				Local: netip.MustParseAddrPort("10.2.0.2:48743"), Remote: netip.MustParseAddrPort("192.0.2.1:443"),
				State: mptcpdiag.StateEstablished, IfIndex: 3, LocalID: 1, LocalToken: 0x86c266db, RemoteToken: 0xb81f7acb,
				Flags: mptcpdiag.SubflowJoinLocal | mptcpdiag.SubflowJoinRemote | mptcpdiag.SubflowBackupLocal | mptcpdiag.SubflowFullyEstablished,
				TCP: mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, BytesSent: 448576, BytesAcked: 448577,
					RTT: 12345 * time.Microsecond, RTTVar: 6 * time.Millisecond, MinRTT: 10 * time.Millisecond, SndCwnd: 20},
			},
			{
				Local: netip.MustParseAddrPort("10.9.0.2:40000"), Remote: netip.MustParseAddrPort("198.51.100.7:443"),
				State: mptcpdiag.StateSynSent, LocalID: 2, RemoteID: 1, LocalToken: 0x86c266db,
				Flags: mptcpdiag.SubflowJoinLocal,
				TCP:   mptcpdiag.TCPInfo{State: mptcpdiag.StateSynSent},
			},
		},
	},
	{
		Family: mptcpdiag.AF_INET6, State: mptcpdiag.StateCloseWait, Inode: 4343,
		Local: netip.MustParseAddrPort("[2001:db8:1::2]:40002"), Remote: netip.MustParseAddrPort("[2001:db8:ffff::1]:80"),
		Info: mptcpdiag.Info{Size: 44, SubflowsMax: 2, Flags: mptcpdiag.InfoFallback, Token: 0x0000beef},
		Subflows: []mptcpdiag.Subflow{{
			Local: netip.MustParseAddrPort("[2001:db8:1::2]:40002"), Remote: netip.MustParseAddrPort("[2001:db8:ffff::1]:80"),
			State: mptcpdiag.StateCloseWait, LocalToken: 0x0000beef, Flags: mptcpdiag.SubflowCapableLocal,
			TCP: mptcpdiag.TCPInfo{State: mptcpdiag.StateCloseWait, BytesReceived: 1 << 33, RTT: 1500 * time.Microsecond},
		}},
	},
	{
		Family: mptcpdiag.AF_INET, State: mptcpdiag.StateListen, Inode: 10,
		Local: netip.MustParseAddrPort("0.0.0.0:5000"), Remote: netip.MustParseAddrPort("0.0.0.0:0"),
		Info: mptcpdiag.Info{Size: 96, SubflowsMax: 2, SubflowsTotal: 1},
	},
	{
		Family: mptcpdiag.AF_INET6, State: mptcpdiag.StateListen, Inode: 11,
		Local: netip.MustParseAddrPort("[::]:5000"), Remote: netip.MustParseAddrPort("[::]:0"),
		Info: mptcpdiag.Info{Size: 96, SubflowsMax: 2, SubflowsTotal: 1},
	},
}

// goldenRoutes route goldenConnections' subflows, except the one in
// SYN_SENT: by eth0 (2) and, for the bound one, wlan0 (3).
var goldenRoutes = map[fakeRoute]int{
	{netip.MustParseAddr("10.1.0.2"), netip.MustParseAddr("192.0.2.1")}:             2,
	{netip.MustParseAddr("10.2.0.2"), netip.MustParseAddr("192.0.2.1")}:             2,
	{netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:ffff::1")}: 2,
	{netip.MustParseAddr("10.7.7.7"), netip.MustParseAddr("10.8.8.8")}:              42,
	{netip.MustParseAddr("10.7.7.7"), netip.MustParseAddr("10.8.8.9")}:              3,
}

func connectionsBackend() *fakeBackend {
	return &fakeBackend{
		fakeLinks:       testLinks,
		fakeConnections: fakeConnections{conns: goldenConnections, routes: goldenRoutes},
	}
}

func TestGoldenConnections(t *testing.T) {
	for _, tt := range []struct{ name, line string }{
		{"connections.txt", "connections"},
		{"connections-all.txt", "connections -a"},
		{"connections.json", "-j connections"},
		{"connections-all-pretty.json", "-j -p connections --all"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runFake(connectionsBackend(), tt.line)
			if code != ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			goldenFile(t, tt.name, []byte(stdout))
		})
	}
}

// TestConnectionsWords: the command is found by prefix, and its option
// may come before or after it.
func TestConnectionsWords(t *testing.T) {
	want := []string{"connections", "connections -a"}
	outputs := map[string]string{}
	for _, line := range want {
		_, outputs[line], _ = runFake(connectionsBackend(), line)
	}
	for _, tt := range []struct{ line, same string }{
		{"c", "connections"},
		{"conn", "connections"},
		{"conn -a", "connections -a"},
		{"connections --all", "connections -a"},
		{"-n ns1 c --all", "connections -a"},
	} {
		code, stdout, stderr := runFake(connectionsBackend(), tt.line)
		if code != ExitOK || stdout != outputs[tt.same] {
			t.Errorf("%s: exit %d, stderr %q, output differs from %q's:\n%s", tt.line, code, stderr, tt.same, stdout)
		}
	}
}

func TestConnectionsErrors(t *testing.T) {
	tests := []struct {
		line   string
		err    error // of the dump
		code   int
		stderr string
		dumped bool
	}{
		{line: "connections bogus", code: ExitUsage, stderr: `Command "bogus" is unknown, try "mptcpctl help".` + "\n"},
		{line: "c -a x", code: ExitUsage, stderr: `Command "x" is unknown, try "mptcpctl help".` + "\n"},
		{line: "connections -x", code: ExitUsage, stderr: "Error: unknown shorthand flag: 'x' in -x\nTry \"mptcpctl --help\".\n"},
		{line: "connections --all=maybe", code: ExitUsage, stderr: "Error: invalid argument \"maybe\" for \"-a, --all\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax\nTry \"mptcpctl --help\".\n"},
		{
			line: "connections", err: errors.New("mptcpdiag: dump TCP sockets (inet): operation not permitted"), dumped: true,
			code: ExitFailure, stderr: "Error: listing MPTCP connections: mptcpdiag: dump TCP sockets (inet): operation not permitted\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			b := connectionsBackend()
			b.fakeConnections.err = tt.err
			code, stdout, stderr := runFake(b, tt.line)
			if code != tt.code || stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing", code, stdout, tt.code)
			}
			if diff := cmp.Diff(tt.stderr, stderr); diff != "" {
				t.Errorf("unexpected stderr (-want +got):\n%s", diff)
			}
			if dumped := b.dumps > 0; dumped != tt.dumped {
				t.Errorf("dumped %v, want %v", dumped, tt.dumped)
			}
		})
	}
}

// TestConnectionsJSONKeys: every connection object has the same keys in
// the same order, listeners included, and so has every subflow.
func TestConnectionsJSONKeys(t *testing.T) {
	for _, dv := range []*daemonView{nil, newDaemonView(inKernelView), newDaemonView(userspaceView)} {
		checkConnectionsJSONKeys(t, dv)
	}
}

func checkConnectionsJSONKeys(t *testing.T, dv *daemonView) {
	var b bytes.Buffer
	conns := append(goldenConnections, mptcpdiag.Connection{})
	fc := &fakeConnections{routes: goldenRoutes}
	formatConnections(&b, conns, format{JSON: true}, subflowDevs{links: testLinks, routes: fc}, dv)
	var objs []json.RawMessage
	if err := json.Unmarshal(b.Bytes(), &objs); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	var connKeys, subKeys, daemonKeys []string
	for i, o := range objs {
		keys := objectKeys(t, o)
		if i == 0 {
			connKeys = keys
		} else if diff := cmp.Diff(connKeys, keys); diff != "" {
			t.Errorf("connection %d: keys differ from the first's (-first +this):\n%s", i, diff)
		}
		var c struct {
			Subflows []json.RawMessage
			Mptcpd   json.RawMessage
		}
		if err := json.Unmarshal(o, &c); err != nil {
			t.Fatal(err)
		}
		if string(c.Mptcpd) != "null" {
			keys := objectKeys(t, c.Mptcpd)
			if daemonKeys == nil {
				daemonKeys = keys
			} else if diff := cmp.Diff(daemonKeys, keys); diff != "" {
				t.Errorf("connection %d: mptcpd keys differ from the first's (-first +this):\n%s", i, diff)
			}
		}
		for j, s := range c.Subflows {
			keys := objectKeys(t, s)
			if subKeys == nil {
				subKeys = keys
			} else if diff := cmp.Diff(subKeys, keys); diff != "" {
				t.Errorf("connection %d, subflow %d: keys differ from the first's (-first +this):\n%s", i, j, diff)
			}
		}
	}
	if dv != nil && daemonKeys == nil {
		t.Error("no connection has the daemon's view")
	}
	for _, keys := range [][]string{connKeys, subKeys, daemonKeys} {
		for _, k := range keys {
			if k != strings.ToLower(k) || strings.ContainsAny(k, "- ") {
				t.Errorf("key %q is not snake_case", k)
			}
		}
	}
}

// objectKeys lists the keys of a JSON object in order.
func objectKeys(t *testing.T, o json.RawMessage) []string {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(o))
	var keys []string
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				depth++
			} else {
				depth--
			}
		case string:
			// At depth 1 a string in key position is a key; values are
			// skipped by reading them whole.
			if depth == 1 {
				keys = append(keys, v)
				var skip json.RawMessage
				if err := d.Decode(&skip); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return keys
}

func TestSubflowDevs(t *testing.T) {
	devs := subflowDevs{links: testLinks, routes: &fakeConnections{routes: goldenRoutes}}
	sub := func(local, remote string, ifindex int) mptcpdiag.Subflow {
		return mptcpdiag.Subflow{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote), IfIndex: ifindex}
	}
	for _, tt := range []struct {
		s    mptcpdiag.Subflow
		want string
	}{
		{sub("10.1.0.2:1", "192.0.2.1:443", 0), "eth0"},
		{sub("10.1.0.2:1", "192.0.2.1:443", 3), "wlan0"}, // bound
		{sub("[::ffff:10.7.7.7]:1", "[::ffff:10.8.8.9]:2", 0), "wlan0"},
		{sub("10.7.7.7:1", "10.8.8.8:2", 0), "if42"},
		{sub("10.7.7.7:1", "10.9.9.9:2", 0), ""}, // no route
	} {
		if got := devs.dev(&tt.s); got != tt.want {
			t.Errorf("dev of %v -> %v bound to %d: %q, want %q", tt.s.Local, tt.s.Remote, tt.s.IfIndex, got, tt.want)
		}
	}
}
