package netmon

import (
	"context"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// TestDecodersAgainstVishvananda dumps a real namespace with the package's
// decoders (Snapshot) and with vishvananda/netlink, converted as netmon did
// before it had its own decoders, and compares. It needs root.
func TestDecodersAgainstVishvananda(t *testing.T) {
	ns, peer := nstest.New(t), nstest.New(t)
	nstest.Veth(t, ns, "or0", peer, "or9")
	for _, cmd := range [][]string{
		{"link", "add", "or1", "type", "veth", "peer", "name", "or2"},
		{"link", "add", "br0", "type", "bridge"},
		{"link", "set", "or1", "master", "br0"},
		{"link", "set", "or1", "up"},
		{"link", "set", "br0", "up"},
		{"tuntap", "add", "mode", "tap", "tp0"},
		{"addr", "add", "10.61.0.1/24", "dev", "or0"},
		{"addr", "add", "10.61.0.2/24", "dev", "or0"}, // secondary
		{"addr", "add", "10.62.0.1", "peer", "10.62.9.9/24", "dev", "or0"},
		{"addr", "add", "10.63.0.1/24", "dev", "br0", "valid_lft", "300", "preferred_lft", "100"},
		{"addr", "add", "fd61::1/64", "dev", "or0", "nodad"},
		{"addr", "add", "fd62::1/64", "dev", "br0"}, // tentative: br0 has no carrier
		{"route", "add", "default", "via", "10.61.0.254", "dev", "or0", "metric", "50"},
		{"route", "add", "10.70.0.0/16", "via", "10.61.0.253", "table", "1000", "proto", "static"},
		{"route", "add", "10.71.0.0/16", "nexthop", "via", "10.61.0.251", "dev", "or0", "nexthop", "via", "10.61.0.252", "dev", "or0"},
		{"route", "add", "blackhole", "10.72.0.0/16"},
		{"route", "add", "10.73.0.0/16", "dev", "or0", "tos", "0x10", "src", "10.61.0.1"},
		{"-6", "route", "add", "default", "via", "fd61::fe", "dev", "or0", "metric", "100"},
		{"-6", "route", "add", "fd70::/48", "nexthop", "via", "fd61::fd", "dev", "or0", "nexthop", "via", "fd61::fc", "dev", "or0"},
	} {
		ns.MustRun("ip", cmd...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := Snapshot(ctx, Config{NetNS: ns.Handle().FD()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.Handle().FD()), unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := NewState()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		want.Apply(LinkEvent{Op: OpNew, Link: oracleLink(l)})
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		want.Apply(AddrEvent{Op: OpNew, Addr: oracleAddr(t, a)})
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		for _, rt := range oracleRoutes(t, r) {
			want.Apply(RouteEvent{Op: OpNew, Route: rt})
		}
	}

	// The lifetimes count down between the two dumps.
	approx := cmp.Comparer(func(a, b time.Duration) bool { return a == b || (a-b).Abs() <= 2*time.Second })
	for _, c := range []struct {
		what      string
		want, got any
	}{
		{"links", want.Links(), got.Links()},
		{"addresses", want.Addrs(), got.Addrs()},
		{"routes", want.Routes(), got.Routes()},
	} {
		if diff := cmp.Diff(c.want, c.got, cmpNetip, approx); diff != "" {
			t.Errorf("%s (-vishvananda +netmon):\n%s", c.what, diff)
		}
	}
	// Make sure the namespace has what the comparison is about.
	if n := len(got.Routes()); n < 8 {
		t.Errorf("only %d routes: %v", n, got.Routes())
	}
	if l, ok := got.LinkByName("or1"); !ok || l.MasterIndex == 0 || l.Kind != "veth" {
		t.Errorf("or1: %v", l)
	}
	if l, ok := got.LinkByName("tp0"); !ok || l.Kind != "tun" {
		t.Errorf("tp0: %v", l)
	}
}

// The oracle: how netmon converted vishvananda's types.

func oracleLink(l netlink.Link) Link {
	a := l.Attrs()
	kind := l.Type()
	switch l.(type) {
	case *netlink.Device:
		kind = ""
	case *netlink.Tuntap:
		kind = "tun"
	}
	var hw net.HardwareAddr
	if len(a.HardwareAddr) > 0 {
		hw = a.HardwareAddr
	}
	return Link{
		Index: a.Index, Name: a.Name, Kind: kind, OperState: OperState(a.OperState),
		Up: a.RawFlags&unix.IFF_UP != 0, Carrier: a.RawFlags&unix.IFF_LOWER_UP != 0, Loopback: a.RawFlags&unix.IFF_LOOPBACK != 0,
		HardwareAddr: hw, MTU: a.MTU, MasterIndex: a.MasterIndex,
	}
}

func oracleAddr(t *testing.T, a netlink.Addr) Addr {
	return Addr{
		LinkIndex: a.LinkIndex, Prefix: oraclePrefix(t, *a.IPNet), Scope: Scope(a.Scope), Flags: AddrFlags(uint32(a.Flags)),
		PreferredLifetime: oracleLifetime(a.PreferedLft), ValidLifetime: oracleLifetime(a.ValidLft),
	}
}

func oracleLifetime(s int) time.Duration {
	if uint32(s) == math.MaxUint32 {
		return Forever
	}
	return time.Duration(uint32(s)) * time.Second
}

// oraclePrefix: the mask's size gives the family.
func oraclePrefix(t *testing.T, n net.IPNet) netip.Prefix {
	ones, bits := n.Mask.Size()
	return netip.PrefixFrom(oracleIP(t, n.IP, bits), ones)
}

func oracleIP(t *testing.T, b net.IP, bits int) netip.Addr {
	if len(b) == 0 {
		return netip.Addr{}
	}
	a, ok := netip.AddrFromSlice(b)
	if bits == 32 {
		a = a.Unmap()
	}
	if !ok || a.BitLen() != bits {
		t.Fatalf("oracle: IP %v in a %d-bit family", b, bits)
	}
	return a
}

func oracleRoutes(t *testing.T, r netlink.Route) []Route {
	if r.Flags&unix.RTM_F_CLONED != 0 || r.Table == unix.RT_TABLE_LOCAL || r.Type != unix.RTN_UNICAST {
		return nil
	}
	unspecified := netip.IPv4Unspecified()
	switch r.Family {
	case unix.AF_INET:
	case unix.AF_INET6:
		unspecified = netip.IPv6Unspecified()
	default:
		return nil
	}
	bits := unspecified.BitLen()
	base := Route{Dst: netip.PrefixFrom(unspecified, 0), Src: oracleIP(t, r.Src, bits), Table: r.Table, Priority: r.Priority,
		TOS: uint8(r.Tos), Protocol: RouteProtocol(r.Protocol), Scope: Scope(r.Scope)}
	if r.Dst != nil {
		base.Dst = oraclePrefix(t, *r.Dst)
	}
	if len(r.MultiPath) == 0 {
		base.LinkIndex, base.Gateway = r.LinkIndex, oracleIP(t, r.Gw, bits)
		return []Route{base}
	}
	var routes []Route
	for _, nh := range r.MultiPath {
		rt := base
		rt.LinkIndex, rt.Gateway = nh.LinkIndex, oracleIP(t, nh.Gw, bits)
		routes = append(routes, rt)
	}
	return routes
}
