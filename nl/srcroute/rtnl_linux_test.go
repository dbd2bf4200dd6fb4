package srcroute

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/internal/golden"
	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

func TestNetlinkConversionsRoundTrip(t *testing.T) {
	routes := slices.Concat(spec1Routes, spec2Routes)
	for _, r := range routes {
		if got, ok := routeFromNetlink(*routeToNetlink(r)); !ok || got != r {
			t.Errorf("route %s came back as %s (ok %v)", r, got, ok)
		}
	}
	for _, r := range slices.Concat(spec1Rules, spec2Rules) {
		if got, ok := ruleFromNetlink(*ruleToNetlink(r)); !ok || got != r {
			t.Errorf("rule %s came back as %s (ok %v)", r, got, ok)
		}
	}
}

func TestMarkedObjectsThatAreNotOurs(t *testing.T) {
	main := *routeToNetlink(spec2Routes[0])
	main.Table = unix.RT_TABLE_MAIN
	if r, ok := routeFromNetlink(main); ok {
		t.Errorf("a marked route of the main table counts as ours: %s", r)
	}
	unmarked := *ruleToNetlink(spec2Rules[0])
	unmarked.Protocol = 0
	if r, ok := ruleFromNetlink(unmarked); ok {
		t.Errorf("an unmarked rule counts as ours: %s", r)
	}
	toMain := *ruleToNetlink(spec2Rules[0])
	toMain.Table = unix.RT_TABLE_MAIN
	if r, ok := ruleFromNetlink(toMain); ok {
		t.Errorf("a marked rule to the main table counts as ours: %s", r)
	}
}

func TestOtherSelectors(t *testing.T) {
	mask := uint32(0xff)
	tests := []struct {
		edit func(*netlink.Rule)
		want string
	}{
		{func(*netlink.Rule) {}, ""},
		{func(r *netlink.Rule) { r.IifName = "u2" }, "iif u2"},
		{func(r *netlink.Rule) { r.Mark, r.Mask = 7, &mask }, "fwmark 7"},
		{func(r *netlink.Rule) { r.Invert, r.OifName = true, "u1" }, "not oif u1"},
		{func(r *netlink.Rule) { r.Dst = ipNet(prefix("192.0.2.0/24")) }, "to 192.0.2.0/24"},
		{func(r *netlink.Rule) { r.Goto = 5 }, "goto 5"},
		{func(r *netlink.Rule) { r.SuppressPrefixlen = 0 }, "suppress_prefixlength 0"},
		{func(r *netlink.Rule) { r.Dport = netlink.NewRulePortRange(80, 80); r.IPProto = 6 }, "ipproto 6 dport"},
	}
	for _, tt := range tests {
		nr := ruleToNetlink(spec2Rules[0])
		tt.edit(nr)
		if got := otherSelectors(*nr); got != tt.want {
			t.Errorf("otherSelectors = %q, want %q", got, tt.want)
		}
		if r, _ := ruleFromNetlink(*nr); (r == spec2Rules[0]) != (tt.want == "") {
			t.Errorf("rule with %q read as %s: equal to the wanted one %v", tt.want, r, r == spec2Rules[0])
		}
	}
}

// topo is a host namespace with two uplinks to two router namespaces:
//
//	host u1 10.1.0.2/24 2001:db8:1::2/64 --- d1 10.1.0.1 2001:db8:1::1 r1
//	host u2 10.2.0.2/24 2001:db8:2::2/64 --- d2 10.2.0.1 2001:db8:2::1 r2
//
// The host's main table routes everything through r1. r2 also has
// 198.51.100.1 and 2001:db8:ff::1 on lo: peers that only u2 reaches.
type topo struct {
	host, r1, r2 *nstest.NS
	hostNS       *netns.Handle
	u1, u2       int
}

func newTopo(t *testing.T) *topo {
	tp := &topo{host: nstest.New(t), r1: nstest.New(t), r2: nstest.New(t)}
	nstest.Veth(t, tp.host, "u1", tp.r1, "d1")
	nstest.Veth(t, tp.host, "u2", tp.r2, "d2")
	for _, c := range []struct {
		ns   *nstest.NS
		args string
	}{
		{tp.host, "addr add 10.1.0.2/24 dev u1"},
		{tp.host, "addr add 2001:db8:1::2/64 dev u1 nodad"},
		{tp.host, "addr add 10.2.0.2/24 dev u2"},
		{tp.host, "addr add 2001:db8:2::2/64 dev u2 nodad"},
		{tp.host, "route add default via 10.1.0.1 dev u1"},
		{tp.host, "-6 route add default via 2001:db8:1::1 dev u1"},
		{tp.r1, "addr add 10.1.0.1/24 dev d1"},
		{tp.r1, "addr add 2001:db8:1::1/64 dev d1 nodad"},
		{tp.r2, "addr add 10.2.0.1/24 dev d2"},
		{tp.r2, "addr add 2001:db8:2::1/64 dev d2 nodad"},
		{tp.r2, "addr add 198.51.100.1/32 dev lo"},
		{tp.r2, "addr add 2001:db8:ff::1/128 dev lo nodad"},
	} {
		c.ns.MustRun("ip", strings.Fields(c.args)...)
	}
	tp.hostNS = tp.host.Handle()
	tp.u1, tp.u2 = ifindex(t, tp.host, "u1"), ifindex(t, tp.host, "u2")
	return tp
}

func ifindex(t *testing.T, ns *nstest.NS, name string) int {
	t.Helper()
	out := ns.MustRun("ip", "-o", "link", "show", "dev", name)
	idx, _, _ := strings.Cut(out, ":")
	i, err := strconv.Atoi(idx)
	if err != nil {
		t.Fatalf("ifindex of %s in %q: %v", name, out, err)
	}
	return i
}

func (tp *topo) manager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Config{NetNS: tp.hostNS.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func (tp *topo) spec1() Spec {
	return Spec{
		LinkIndex: tp.u1, Table: 101, Priority: 1001,
		Gateways: []netip.Addr{addr("10.1.0.1"), addr("2001:db8:1::1")},
		Addrs:    []netip.Prefix{prefix("10.1.0.2/24"), prefix("2001:db8:1::2/64")},
	}
}

func (tp *topo) spec2(gw4, gw6 string, addrs ...string) Spec {
	s := Spec{LinkIndex: tp.u2, Table: 102, Priority: 1002, Gateways: []netip.Addr{addr(gw4), addr(gw6)}}
	for _, a := range addrs {
		s.Addrs = append(s.Addrs, prefix(a))
	}
	return s
}

// ipState is what iproute2 shows of the rules and of the tables the tests
// use, the oracle for what Apply did.
func ipState(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		for _, view := range []string{"rule show", "route show table 101", "route show table 102", "route show table 200", "route show table main"} {
			args := append([]string{fam}, strings.Fields(view)...)
			b.WriteString("$ ip " + strings.Join(args, " ") + "\n")
			out, stderr, err := ns.Run("ip", args...)
			// IPv4 creates a table with its first route; before, it is empty.
			if err != nil && !strings.Contains(stderr, "FIB table does not exist") {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, stderr)
			}
			b.WriteString(out)
		}
	}
	return b.String()
}

// goldenFile compares what ip shows with testdata/NAME.golden (-update
// rewrites it from the kernel's answers).
func goldenFile(t *testing.T, name, got string) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name+".golden"), []byte(got))
}

// TestApplyInNamespace installs, re-applies, updates, shrinks and clears
// two specs among routes and rules the manager does not own, checking each
// step with ip(8).
func TestApplyInNamespace(t *testing.T) {
	tp := newTopo(t)
	for _, args := range []string{
		// Unmarked twins of the rules Apply adds, and a route in its table.
		"rule add from 10.2.0.2 lookup 102 priority 1002",
		"-6 rule add from 2001:db8:2::2 lookup 102 priority 1002",
		"route add 192.0.2.0/24 via 10.2.0.1 dev u2 table 102",
		"-6 route add 2001:db8:99::/48 via 2001:db8:2::1 dev u2 table 102",
		// Another program's table and rule.
		"rule add to 198.18.0.0/15 lookup 200 priority 500 proto static",
		"route add 198.18.0.0/15 via 10.1.0.1 dev u1 table 200 proto static",
		// Apply's marker, but in the main table: not Apply's.
		"route add 203.0.113.0/24 via 10.1.0.1 dev u1 proto 113",
	} {
		tp.host.MustRun("ip", strings.Fields(args)...)
	}
	before := ipState(t, tp.host)
	goldenFile(t, "before", before)

	m := tp.manager(t)
	specs := []Spec{tp.spec1(), tp.spec2("10.2.0.1", "2001:db8:2::1", "10.2.0.2/24", "2001:db8:2::2/64")}
	u1, u2 := tp.u1, tp.u2
	step := func(name string, apply func() (Changes, error), want Changes) {
		t.Helper()
		got, err := apply()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := cmp.Diff(want, got, cmpOpts...); d != "" {
			t.Errorf("%s: unexpected changes (-want +got):\n%s", name, d)
		}
	}

	step("install", func() (Changes, error) { return m.Apply(specs) }, Changes{
		RoutesAdded: []Route{
			connected(101, u1, "10.1.0.0/24", "10.1.0.2"),
			connected(101, u1, "2001:db8:1::/64", "2001:db8:1::2"),
			connected(102, u2, "10.2.0.0/24", "10.2.0.2"),
			connected(102, u2, "2001:db8:2::/64", "2001:db8:2::2"),
			defaultRoute(101, u1, "10.1.0.1"),
			defaultRoute(101, u1, "2001:db8:1::1"),
			defaultRoute(102, u2, "10.2.0.1"),
			defaultRoute(102, u2, "2001:db8:2::1"),
		},
		RulesAdded: []Rule{
			rule(1001, "10.1.0.2/32", 101),
			rule(1001, "2001:db8:1::2/128", 101),
			rule(1002, "10.2.0.2/32", 102),
			rule(1002, "2001:db8:2::2/128", 102),
		},
	})
	applied := ipState(t, tp.host)
	goldenFile(t, "applied", applied)

	// A restarted daemon finds its objects by their marker alone.
	step("again, by a new manager", func() (Changes, error) { return tp.manager(t).Apply(specs) }, Changes{})
	if got := ipState(t, tp.host); got != applied {
		t.Errorf("the second Apply changed what ip shows:\n%s", cmp.Diff(applied, got))
	}

	tp.host.MustRun("ip", "addr", "add", "10.2.0.3/24", "dev", "u2")
	tp.host.MustRun("ip", "addr", "add", "2001:db8:2::3/64", "dev", "u2", "nodad")
	specs[1] = tp.spec2("10.2.0.254", "2001:db8:2::254", "10.2.0.2/24", "2001:db8:2::2/64", "10.2.0.3/24", "2001:db8:2::3/64")
	step("new gateways and addresses", func() (Changes, error) { return m.Apply(specs) }, Changes{
		RoutesRemoved: []Route{defaultRoute(102, u2, "10.2.0.1"), defaultRoute(102, u2, "2001:db8:2::1")},
		RoutesAdded:   []Route{defaultRoute(102, u2, "10.2.0.254"), defaultRoute(102, u2, "2001:db8:2::254")},
		RulesAdded:    []Rule{rule(1002, "10.2.0.3/32", 102), rule(1002, "2001:db8:2::3/128", 102)},
	})
	goldenFile(t, "updated", ipState(t, tp.host))

	step("one spec less", func() (Changes, error) { return m.Apply(specs[1:]) }, Changes{
		RulesRemoved: []Rule{rule(1001, "10.1.0.2/32", 101), rule(1001, "2001:db8:1::2/128", 101)},
		RoutesRemoved: []Route{
			connected(101, u1, "10.1.0.0/24", "10.1.0.2"),
			connected(101, u1, "2001:db8:1::/64", "2001:db8:1::2"),
			defaultRoute(101, u1, "10.1.0.1"),
			defaultRoute(101, u1, "2001:db8:1::1"),
		},
	})
	goldenFile(t, "shrunk", ipState(t, tp.host))

	if err := m.Clear(); err != nil {
		t.Fatal(err)
	}
	if got := ipState(t, tp.host); got != before {
		t.Errorf("Clear left a state other than before Apply (-before +after):\n%s", cmp.Diff(before, got))
	}
	step("apply nothing after Clear", func() (Changes, error) { return m.Apply(nil) }, Changes{})
}

// TestForeignRouteInTheWay checks that a route Apply cannot add because an
// unmarked one holds its place is reported by name and left to its owner,
// while the rest goes in.
func TestForeignRouteInTheWay(t *testing.T) {
	tp := newTopo(t)
	tp.host.MustRun("ip", "route", "add", "default", "via", "10.1.0.1", "dev", "u1", "table", "103")
	// Config.NetNS 0: the namespace of the calling thread.
	var m *Manager
	if err := tp.hostNS.Do(func() (err error) { m, err = New(Config{}); return err }); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	spec := Spec{LinkIndex: tp.u2, Table: 103, Priority: 1003, Gateways: []netip.Addr{addr("10.2.0.1")}, Addrs: []netip.Prefix{prefix("10.2.0.2/24")}}
	changes, err := m.Apply([]Spec{spec})
	wantErr := "srcroute: adding route default via 10.2.0.1 ifindex " + strconv.Itoa(tp.u2) + " table 103: file exists"
	if err == nil || err.Error() != wantErr || !errors.Is(err, syscall.EEXIST) {
		t.Errorf("Apply error %v, want %q wrapping EEXIST", err, wantErr)
	}
	want := Changes{
		RoutesAdded: []Route{connected(103, tp.u2, "10.2.0.0/24", "10.2.0.2")},
		RulesAdded:  []Rule{rule(1003, "10.2.0.2/32", 103)},
	}
	if d := cmp.Diff(want, changes, cmpOpts...); d != "" {
		t.Errorf("unexpected changes (-want +got):\n%s", d)
	}
	const foreign = "default via 10.1.0.1 dev u1 \n"
	if got := tp.host.MustRun("ip", "route", "show", "table", "103"); got != foreign+"10.2.0.0/24 dev u2 proto 113 scope link src 10.2.0.2 \n" {
		t.Errorf("table 103 after Apply:\n%s", got)
	}
	if err := m.Clear(); err != nil {
		t.Fatal(err)
	}
	if got := tp.host.MustRun("ip", "route", "show", "table", "103"); got != foreign {
		t.Errorf("table 103 after Clear:\n%s", got)
	}
}

// TestSourceRoutingTakesTheSecondUplink connects from u2's addresses to
// peers only r2 has: the main table sends the SYN to r1, where it dies;
// with u2's spec applied it leaves through u2.
func TestSourceRoutingTakesTheSecondUplink(t *testing.T) {
	tp := newTopo(t)
	r2NS := tp.r2.Handle()
	peers := []struct{ src, dst string }{
		{"10.2.0.2", "198.51.100.1"},
		{"2001:db8:2::2", "2001:db8:ff::1"},
	}
	var listeners []net.Listener
	for _, p := range peers {
		var ln net.Listener
		if err := r2NS.Do(func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(p.dst, "0"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go serveRemoteAddr(ln)
		listeners = append(listeners, ln)
	}
	dial := func(src string, ln net.Listener, timeout time.Duration) (string, error) {
		var seen []byte
		err := tp.hostNS.Do(func() error {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
			c, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(timeout))
			seen, err = io.ReadAll(c)
			return err
		})
		return string(seen), err
	}

	for i, p := range peers {
		if _, err := dial(p.src, listeners[i], time.Second); err == nil {
			t.Fatalf("%s reached %s through the main table; the test proves nothing", p.src, p.dst)
		}
	}
	m := tp.manager(t)
	if _, err := m.Apply([]Spec{tp.spec1(), tp.spec2("10.2.0.1", "2001:db8:2::1", "10.2.0.2/24", "2001:db8:2::2/64")}); err != nil {
		t.Fatal(err)
	}
	for i, p := range peers {
		seen, err := dial(p.src, listeners[i], 5*time.Second)
		if err != nil {
			t.Errorf("%s -> %s with source routing: %v", p.src, p.dst, err)
			continue
		}
		if host, _, _ := net.SplitHostPort(seen); host != p.src {
			t.Errorf("%s saw the connection from %q, want %s", p.dst, seen, p.src)
		}
	}
}

// serveRemoteAddr answers each connection with its remote address.
func serveRemoteAddr(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, c.RemoteAddr().String())
		c.Close()
	}
}
