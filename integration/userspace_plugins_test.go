package integration

// Real-kernel tests of the userspace path manager's plugins: mptcpd runs
// one plugin in the client (or server) namespace of a topology of two or
// three links, and each test counts the subflows of a live connection per
// link from the kernel's own list (mptcp_diag), never from the daemon's
// state. Every connection ends with a checksummed echo over its subflows.

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netns"
	"github.com/mptcpd-go/mptcpd/pm"
	// What the daemon has built in, for requirePlugin.
	_ "github.com/mptcpd-go/mptcpd/pm/plugins/all"
)

// usPolicy: eth0 and wlan0 usable, wwan0 a backup.
const usPolicy = "match name=eth*,wlan*\n    flags subflow\nmatch name=wwan*\n    flags subflow backup\n"

// TestDaemonUserspaceConnecting runs each plugin on the connecting side:
// the client's subflows, per link and remote address, are what the
// plugin's README promises.
func TestDaemonUserspaceConnecting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, plugin string
		links        int
		policy       string
		client       []string // ip commands in the client before the connection
		server       []string // and in the server (in-kernel path manager)
		dial         string   // an IPv6 server address to connect to; "" is 10.0.1.1:5000
		want         []string // the client's subflows (see linkSubflows)
	}{{
		// A subflow is bound to its link: IPv6 has no on-link fallback for
		// a bound lookup without a route (IPv4 has), so wlan0 gets its
		// own route to the server's first subnet, as a router would give.
		name: "sspi IPv6", plugin: "sspi", links: 2, policy: usPolicy,
		client: []string{"addr add 2001:db8:1::2/64 dev eth0 nodad", "addr add 2001:db8:2::2/64 dev wlan0 nodad",
			"route add 2001:db8:1::/64 via 2001:db8:2::1 dev wlan0 metric 2048"},
		server: []string{"addr add 2001:db8:1::1/64 dev s1 nodad", "addr add 2001:db8:2::1/64 dev s2 nodad"},
		dial:   "[2001:db8:1::1]:5000",
		want:   []string{"eth0 -> [2001:db8:1::1]:5000", "wlan0 -> [2001:db8:1::1]:5000"},
	}, {
		name: "sspi one per link", plugin: "sspi", links: 3, policy: usPolicy,
		want: []string{"eth0 -> 10.0.1.1:5000", "wlan0 -> 10.0.1.1:5000", "wwan0 -> 10.0.1.1:5000 backup"},
	}, {
		name: "sspi ignored link", plugin: "sspi", links: 3,
		policy: "match name=wlan*\n    ignore\n" + usPolicy,
		want:   []string{"eth0 -> 10.0.1.1:5000", "wwan0 -> 10.0.1.1:5000 backup"},
	}, {
		// The second address of wlan0 gives no second subflow there, and
		// the server's announcement no subflow to it.
		name: "sspi two addresses on a link", plugin: "sspi", links: 2, policy: usPolicy,
		client: []string{"addr add 10.0.2.3/24 dev wlan0"},
		server: []string{"mptcp endpoint add 10.0.2.1 signal"},
		want:   []string{"eth0 -> 10.0.1.1:5000", "wlan0 -> 10.0.1.1:5000"},
	}, {
		name: "fullmesh 2x2", plugin: "fullmesh", links: 2, policy: usPolicy,
		server: []string{"mptcp endpoint add 10.0.2.1 signal"},
		want: []string{
			"eth0 -> 10.0.1.1:5000", "eth0 -> 10.0.2.1:5000",
			"wlan0 -> 10.0.1.1:5000", "wlan0 -> 10.0.2.1:5000",
		},
	}, {
		name: "fullmesh 3x3", plugin: "fullmesh", links: 3, policy: usPolicy,
		server: []string{"mptcp endpoint add 10.0.2.1 signal", "mptcp endpoint add 10.0.3.1 signal"},
		want: []string{
			"eth0 -> 10.0.1.1:5000", "eth0 -> 10.0.2.1:5000", "eth0 -> 10.0.3.1:5000",
			"wlan0 -> 10.0.1.1:5000", "wlan0 -> 10.0.2.1:5000", "wlan0 -> 10.0.3.1:5000",
			"wwan0 -> 10.0.1.1:5000 backup", "wwan0 -> 10.0.2.1:5000 backup", "wwan0 -> 10.0.3.1:5000 backup",
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			echo := requireMptcpecho(t)
			top := newUSTopology(t, c.links)
			if len(c.client) > 0 {
				ipBatch(t, top.client, c.client...)
			}
			// Room for every join the client may open.
			ipBatch(t, top.server, append([]string{"mptcp limits set subflows 8"}, c.server...)...)
			startMptcpd(t, top.client, c.policy, "--path-manager="+c.plugin, "--set-path-manager")
			// The wildcard accepts joins to every server address.
			listen, dial := "0.0.0.0:5000", "10.0.1.1:5000"
			if c.dial != "" {
				listen, dial = "[::]:5000", c.dial
			}
			startServer(t, top.server, echo, listen)
			held := holdConnection(t, top.client, echo, connWait, len(c.want)-1, dial)
			newLinkSubflows(t, top.client).wait(t, c.plugin, c.want...)
			held.release(t, connWait)
		})
	}
}

// TestDaemonUserspaceFullmeshLimit checks that fullmesh stops at the
// policy's subflows limit: 3 local x 3 remote addresses, subflows 4 (the
// initial subflow and 4 more), each a distinct pair of the mesh.
func TestDaemonUserspaceFullmeshLimit(t *testing.T) {
	t.Parallel()
	echo := requireMptcpecho(t)
	top := newUSTopology(t, 3)
	ipBatch(t, top.server, "mptcp limits set subflows 8",
		"mptcp endpoint add 10.0.2.1 signal", "mptcp endpoint add 10.0.3.1 signal")
	events := listenPM(t, top.client)
	startMptcpd(t, top.client, "subflows 4\n"+usPolicy, "--path-manager=fullmesh", "--set-path-manager")
	startServer(t, top.server, echo, "0.0.0.0:5000")
	held := holdConnection(t, top.client, echo, connWait, 4, "10.0.1.1:5000")
	defer held.release(t, connWait)

	sf := newLinkSubflows(t, top.client)
	var got []string
	if !waitFor(endpointTimeout, func() bool { got = sf.read(t); return len(got) >= 5 }) {
		t.Fatalf("subflows %q, want 5", got)
	}
	events.settle(t)
	if got = sf.read(t); len(got) != 5 {
		t.Fatalf("subflows a while later: %d, want 5 (subflows 4):\n\t%s", len(got), strings.Join(got, "\n\t"))
	}
	mesh := map[string]bool{}
	for _, l := range usLinks {
		for _, r := range []string{"10.0.1.1", "10.0.2.1", "10.0.3.1"} {
			s := l + " -> " + r + ":5000"
			if l == "wwan0" {
				s += " backup"
			}
			mesh[s] = true
		}
	}
	for _, s := range got {
		if !mesh[s] {
			t.Errorf("subflow %q is not a pair of the mesh, or is one twice", s)
		}
		delete(mesh, s)
	}
	if !strings.Contains(strings.Join(got, "\n"), "eth0 -> 10.0.1.1:5000") {
		t.Errorf("the initial subflow is gone: %q", got)
	}
	// Nothing was opened and closed again to get there.
	if evs := events.teardowns(0); len(evs) > 0 {
		t.Errorf("teardowns at the limit:\n%s", formatEvents(evs))
	}
}

// TestDaemonUserspaceSSPIDuplicate opens, by hand, a second subflow on a
// link that sspi already covers: sspi closes it and keeps its own.
func TestDaemonUserspaceSSPIDuplicate(t *testing.T) {
	t.Parallel()
	echo := requireMptcpecho(t)
	ctl := requireMptcpctl(t)
	top := newUSTopology(t, 2)
	startMptcpd(t, top.client, usPolicy, "--path-manager=sspi", "--set-path-manager")
	startServer(t, top.server, echo, "0.0.0.0:5000")
	held := holdConnection(t, top.client, echo, connWait, 1, "10.0.1.1:5000")
	sf := newLinkSubflows(t, top.client)
	sf.wait(t, "before", "eth0 -> 10.0.1.1:5000", "wlan0 -> 10.0.1.1:5000")

	conns, err := sf.diag.Connections()
	if err != nil {
		t.Fatal(err)
	}
	// sspi's own wlan0 subflow: the duplicate uses its address and id.
	var own mptcpdiag.Subflow
	for _, c := range conns {
		for _, s := range c.Subflows {
			if s.Local.Addr() == netip.MustParseAddr("10.0.2.2") {
				own = s
			}
		}
	}
	if !own.Local.IsValid() {
		t.Fatal("no wlan0 subflow in mptcp_diag")
	}
	events := listenPM(t, top.client)
	events.settle(t)
	mark := len(events.seen)
	mustCtl(t, ctl, top.client, 0, ptr(""), "", "userspace", "subflow", "create", "token", own.LocalToken.String(),
		"local", "10.0.2.2", "id", strconv.Itoa(int(own.LocalID)), "dev", "wlan0", "remote", "10.0.1.1", "port", "5000")
	dup := events.wait(t, "SUB_ESTABLISHED of the second wlan0 subflow", mark, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubEstablished && e.Saddr.String() == "10.0.2.2" && e.Sport != own.Local.Port()
	})
	events.wait(t, "SUB_CLOSED of the second wlan0 subflow", mark, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubClosed && e.Sport == dup.Sport
	})
	sf.wait(t, "after the duplicate", "eth0 -> 10.0.1.1:5000", "wlan0 -> 10.0.1.1:5000")
	if !established(t, top.client, own.Local, netip.MustParseAddrPort("10.0.1.1:5000")) {
		t.Errorf("sspi closed its own wlan0 subflow (port %d), not the duplicate (port %d)", own.Local.Port(), dup.Sport)
	}
	held.release(t, connWait)
}

// TestDaemonUserspaceSSPIAccepting runs sspi on the server: it announces
// one address per link other than the connection's, and the client's
// in-kernel path manager joins each, one subflow per link.
func TestDaemonUserspaceSSPIAccepting(t *testing.T) {
	t.Parallel()
	echo := requireMptcpecho(t)
	top := newUSTopology(t, 3)
	ipBatch(t, top.client, "mptcp limits set subflows 8 add_addr_accepted 8")
	client := listenPM(t, top.client)
	startMptcpd(t, top.server, "match name=s*\n    flags subflow\n", "--path-manager=sspi", "--set-path-manager")
	startServer(t, top.server, echo, "0.0.0.0:5000")
	held := holdConnection(t, top.client, echo, connWait, 2, "10.0.1.1:5000")
	newLinkSubflows(t, top.client).wait(t, "client of sspi",
		"eth0 -> 10.0.1.1:5000", "wlan0 -> 10.0.2.1:5000", "wwan0 -> 10.0.3.1:5000")
	checkAnnounced(t, client, "10.0.2.1", "10.0.3.1")
	held.release(t, connWait)
}

// requirePlugin skips while the daemon has no plugin name built in.
func requirePlugin(t *testing.T, name string) {
	t.Helper()
	if !slices.Contains(pm.Plugins(), name) {
		t.Skipf("plugin %s is not built in (pm/plugins/all has %q)", name, pm.Plugins())
	}
}

// dialIn opens an MPTCP connection from ns to addr, in-process, and
// checks a first echo over it; the test ends it.
func dialIn(t *testing.T, ns *nstest.NS, addr string) *net.TCPConn {
	t.Helper()
	var c *net.TCPConn
	err := netns.DoFD(ns.Handle().FD(), func() error {
		var err error
		c, _, err = echoDial(addr)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// transfer checks that a 256 KiB echo completes over c.
func transfer(t *testing.T, c *net.TCPConn, what string) {
	t.Helper()
	if err := echoCheck(c, 256<<10); err != nil {
		t.Fatalf("%s: echo over %s -> %s: %v", what, c.LocalAddr(), c.RemoteAddr(), err)
	}
}

// localID returns the local address id of the client's subflow from
// addr, as mptcp_diag reports it.
func localID(t *testing.T, sf *linkSubflows, addr string) mptcp.ID {
	t.Helper()
	conns, err := sf.diag.Connections()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		for _, s := range c.Subflows {
			if s.Local.Addr() == netip.MustParseAddr(addr) {
				return s.LocalID
			}
		}
	}
	t.Fatalf("no subflow from %s in %s", addr, sf.ns)
	return 0
}

// roamingPolicy makes every link usable with no backup flag: wwan0 is
// backup only because roaming makes cellular links so.
const roamingPolicy = "classify eth* ethernet\nclassify wlan* wifi\nclassify wwan* wwan\n" +
	"match name=eth*,wlan*,wwan*\n    flags subflow\n"

// TestDaemonUserspaceRoaming moves a live connection between links under
// the roaming plugin: an address added gets a subflow at once, one
// deleted loses its subflow and the server hears REMOVED, a link that
// loses carrier likewise, and one whose carrier returns is used again;
// the cellular link's subflow is a backup one. An echo completes after
// every step.
func TestDaemonUserspaceRoaming(t *testing.T) {
	t.Parallel()
	requirePlugin(t, "roaming")
	top := newUSTopology(t, 3)
	ipBatch(t, top.client, "addr del 10.0.2.2/24 dev wlan0")
	ipBatch(t, top.server, "mptcp limits set subflows 8")
	server := listenPM(t, top.server)
	startMptcpd(t, top.client, roamingPolicy, "--path-manager=roaming", "--set-path-manager")
	echoServe(t, top.server, serverAddr)
	c := dialIn(t, top.client, dialAddr)
	sf := newLinkSubflows(t, top.client)

	const eth, wlan, wwan = "eth0 -> 10.0.1.1:5000", "wlan0 -> 10.0.1.1:5000", "wwan0 -> 10.0.1.1:5000 backup"
	sf.wait(t, "at the start", eth, wwan)
	transfer(t, c, "at the start")

	ipBatch(t, top.client, "addr add 10.0.2.2/24 dev wlan0")
	sf.wait(t, "wlan0 address added", eth, wlan, wwan)
	transfer(t, c, "wlan0 address added")

	for _, s := range []struct {
		what, ns, cmd, addr string
		want                []string
	}{
		{"wlan0 address deleted", "client", "addr del 10.0.2.2/24 dev wlan0", "10.0.2.2", []string{eth, wwan}},
		{"wwan0 carrier lost", "server", "link set s3 down", "10.0.3.2", []string{eth}},
	} {
		id := localID(t, sf, s.addr)
		server.settle(t)
		mark := len(server.seen)
		ns := top.client
		if s.ns == "server" {
			ns = top.server
		}
		ipBatch(t, ns, s.cmd)
		sf.wait(t, s.what, s.want...)
		server.wait(t, fmt.Sprintf("REMOVED id %d (%s)", id, s.addr), mark, func(e mptcp.Event) bool {
			return e.Type == mptcp.EventRemoved && e.RemoteID == id
		})
		transfer(t, c, s.what)
	}

	ipBatch(t, top.server, "link set s3 up")
	sf.wait(t, "wwan0 carrier back", eth, wwan)
	transfer(t, c, "wwan0 carrier back")
}

// TestDaemonUserspaceRoamingMakeBeforeBreak starts a connection on the
// cellular link alone, then gives wlan0 an address: roaming opens the
// wlan0 subflow, and only once it is established turns the cellular one
// into a backup (the server sees SUB_ESTABLISHED before SUB_PRIORITY).
func TestDaemonUserspaceRoamingMakeBeforeBreak(t *testing.T) {
	t.Parallel()
	requirePlugin(t, "roaming")
	top := newUSTopology(t, 3)
	ipBatch(t, top.client, "addr del 10.0.1.2/24 dev eth0", "addr del 10.0.2.2/24 dev wlan0")
	ipBatch(t, top.server, "mptcp limits set subflows 8")
	server := listenPM(t, top.server)
	startMptcpd(t, top.client, roamingPolicy, "--path-manager=roaming", "--set-path-manager")
	echoServe(t, top.server, serverAddr)
	c := dialIn(t, top.client, "10.0.3.1:5000")
	sf := newLinkSubflows(t, top.client)
	// The only path carries the data: not a backup.
	sf.wait(t, "cellular only", "wwan0 -> 10.0.3.1:5000")
	transfer(t, c, "cellular only")

	server.settle(t)
	mark := len(server.seen)
	ipBatch(t, top.client, "addr add 10.0.2.2/24 dev wlan0")
	sf.wait(t, "wlan0 address added", "wlan0 -> 10.0.3.1:5000", "wwan0 -> 10.0.3.1:5000 backup")
	up := server.wait(t, "SUB_ESTABLISHED from wlan0", mark, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubEstablished && e.Daddr.Unmap() == netip.MustParseAddr("10.0.2.2")
	})
	prio := server.wait(t, "SUB_PRIORITY backup of the cellular subflow", mark, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubPriority && e.Daddr.Unmap() == netip.MustParseAddr("10.0.3.2") && e.Backup
	})
	if i, j := slices.Index(server.seen, up), slices.Index(server.seen, prio); j < i {
		t.Errorf("the cellular subflow turned backup before the wlan0 one was up (break before make):\n%s",
			formatEvents(server.seen[mark:]))
	}
	transfer(t, c, "after the switch")
}

// TestDaemonUserspaceAnnounce runs announce on the server, whose echo
// server listens on 10.0.1.1 only: the plugin announces the signal
// addresses (ids not 0), with listeners of its own for their joins (on
// the policy's port where it gives one), and the client's in-kernel path
// manager joins each: one subflow per link.
func TestDaemonUserspaceAnnounce(t *testing.T) {
	t.Parallel()
	requirePlugin(t, "announce")
	top := newUSTopology(t, 3)
	ipBatch(t, top.client, "mptcp limits set subflows 8 add_addr_accepted 8")
	client := listenPM(t, top.client)
	startMptcpd(t, top.server, "match name=s1\n    flags subflow\nmatch name=s2\n    flags signal\n"+
		"match name=s3\n    flags signal\n    port 6000\n", "--path-manager=announce", "--set-path-manager")
	echoServe(t, top.server, "10.0.1.1:5000")
	c := dialIn(t, top.client, dialAddr)
	newLinkSubflows(t, top.client).wait(t, "client of announce",
		"eth0 -> 10.0.1.1:5000", "wlan0 -> 10.0.2.1:5000", "wwan0 -> 10.0.3.1:6000")
	checkAnnounced(t, client, "10.0.2.1", "10.0.3.1")
	transfer(t, c, "over the announced addresses")
}

// checkAnnounced checks that the peer announced each of addrs, with an
// id other than 0, as ev (the client's events) saw it.
func checkAnnounced(t *testing.T, ev *pmEvents, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		an := ev.wait(t, "ANNOUNCED "+a, 0, func(e mptcp.Event) bool {
			return e.Type == mptcp.EventAnnounced && e.Daddr.String() == a
		})
		if an.RemoteID == 0 {
			t.Errorf("%s announced with id 0", a)
		}
	}
}
