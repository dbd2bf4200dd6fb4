package pm

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/policy"
)

func TestNetworkFrom(t *testing.T) {
	up := func(i int, name string) netmon.Link {
		return netmon.Link{Index: i, Name: name, Up: true, Carrier: true, OperState: netmon.OperUp}
	}
	lo := up(1, "lo")
	lo.Loopback, lo.OperState = true, netmon.OperUnknown
	eth1 := up(3, "eth1")
	eth1.Carrier, eth1.OperState = false, netmon.OperDown
	eth2 := up(4, "eth2")
	eth2.Up, eth2.Carrier, eth2.OperState = false, false, netmon.OperDown
	wlan0 := up(5, "wlan0")
	wlan0.OperState = netmon.OperDormant
	br0 := up(6, "br0")
	br0.Kind = "bridge"
	veth1 := up(7, "veth1")
	veth1.Kind, veth1.MasterIndex = "veth", 6
	wwan0 := up(8, "wwan0")
	wwan0.OperState = netmon.OperLowerLayerDown

	route := func(dst, gw string, link, table, metric int) netmon.Route {
		r := netmon.Route{Dst: netip.MustParsePrefix(dst), LinkIndex: link, Table: table, Priority: metric}
		if gw != "" {
			r.Gateway = netip.MustParseAddr(gw)
		}
		return r
	}
	s := netmon.NewState()
	for _, ev := range []netmon.Event{
		netmon.LinkEvent{Op: netmon.OpNew, Link: lo},
		netmon.LinkEvent{Op: netmon.OpNew, Link: up(2, "eth0")},
		netmon.LinkEvent{Op: netmon.OpNew, Link: eth1},
		netmon.LinkEvent{Op: netmon.OpNew, Link: eth2},
		netmon.LinkEvent{Op: netmon.OpNew, Link: wlan0},
		netmon.LinkEvent{Op: netmon.OpNew, Link: br0},
		netmon.LinkEvent{Op: netmon.OpNew, Link: veth1},
		netmon.LinkEvent{Op: netmon.OpNew, Link: wwan0},
		netmon.AddrEvent{Op: netmon.OpNew, Addr: netmon.Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("192.0.2.10/24"), Flags: netmon.AddrPermanent}},
		netmon.AddrEvent{Op: netmon.OpNew, Addr: netmon.Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("fe80::1/64"), Scope: netmon.ScopeLink}},
		netmon.AddrEvent{Op: netmon.OpNew, Addr: netmon.Addr{LinkIndex: 99, Prefix: netip.MustParsePrefix("203.0.113.9/24")}},
		netmon.RouteEvent{Op: netmon.OpNew, Route: route("0.0.0.0/0", "192.0.2.254", 2, mainTable, 200)},
		netmon.RouteEvent{Op: netmon.OpNew, Route: route("0.0.0.0/0", "192.0.2.1", 2, mainTable, 100)},
		netmon.RouteEvent{Op: netmon.OpNew, Route: route("::/0", "fe80::1", 2, mainTable, 1024)},
		netmon.RouteEvent{Op: netmon.OpNew, Route: route("0.0.0.0/0", "10.0.0.1", 6, 100, 0)},
		netmon.RouteEvent{Op: netmon.OpNew, Route: route("10.0.0.0/8", "", 6, mainTable, 0)},
		netmon.RouteEvent{Op: netmon.OpNew, Route: route("0.0.0.0/0", "", 8, mainTable, 0)},
		netmon.RouteEvent{Op: netmon.OpNew, Route: route("::/0", "", 0, mainTable, 0)},
	} {
		s.Apply(ev)
	}

	got := NetworkFrom(s, nil)
	want := Network{
		Links: []Link{
			{Index: 1, Name: "lo", Kind: policy.KindOther, Usable: true},
			{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true, DefaultRoute6: true,
				Gateways: []netip.Addr{ip("192.0.2.1"), ip("192.0.2.254"), ip("fe80::1")}},
			{Index: 3, Name: "eth1", Kind: policy.KindEthernet, Why: "no carrier"},
			{Index: 4, Name: "eth2", Kind: policy.KindEthernet, Why: "down"},
			{Index: 5, Name: "wlan0", Kind: policy.KindWiFi, Why: "operstate DORMANT"},
			{Index: 6, Name: "br0", Kind: policy.KindOther, Usable: true},
			{Index: 7, Name: "veth1", Kind: policy.KindOther, Why: "enslaved to br0"},
			{Index: 8, Name: "wwan0", Kind: policy.KindWWAN, Why: "operstate LOWERLAYERDOWN", DefaultRoute4: true},
		},
		Addrs: []Address{
			{LinkIndex: 2, Prefix: netip.MustParsePrefix("192.0.2.10/24"), Flags: netmon.AddrPermanent},
			{LinkIndex: 2, Prefix: netip.MustParsePrefix("fe80::1/64"), Scope: netmon.ScopeLink},
		},
	}
	opts := []cmp.Option{cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })}
	if diff := cmp.Diff(want, got, opts...); diff != "" {
		t.Errorf("unexpected network (-want +got):\n%s", diff)
	}

	// The classifier decides the kinds.
	virtual := func(netmon.Link) policy.Kind { return policy.KindVirtual }
	for _, l := range NetworkFrom(s, virtual).Links {
		if l.Kind != policy.KindVirtual {
			t.Errorf("%s: kind %v, want the classifier's virtual", l.Name, l.Kind)
		}
	}
}

// TestNetworkEqual changes every field of a Link and an Address in turn,
// by reflection, so that a field added later without Equal knowing about
// it fails here.
func TestNetworkEqual(t *testing.T) {
	base := func() Network {
		return Network{
			Links: []Link{{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true,
				Gateways: []netip.Addr{netip.MustParseAddr("192.0.2.254")}}},
			Addrs: []Address{{LinkIndex: 2, Prefix: netip.MustParsePrefix("192.0.2.1/24"), Scope: netmon.ScopeUniverse}},
		}
	}
	if !base().Equal(base()) {
		t.Fatal("a network differs from its copy")
	}
	for _, elem := range []func(*Network) reflect.Value{
		func(n *Network) reflect.Value { return reflect.ValueOf(&n.Links[0]).Elem() },
		func(n *Network) reflect.Value { return reflect.ValueOf(&n.Addrs[0]).Elem() },
	} {
		typ := elem(&Network{Links: []Link{{}}, Addrs: []Address{{}}}).Type()
		for i := range typ.NumField() {
			n := base()
			f := elem(&n).Field(i)
			switch f.Kind() {
			case reflect.Int, reflect.Int32:
				f.SetInt(f.Int() + 1)
			case reflect.Uint8, reflect.Uint32:
				f.SetUint(f.Uint() + 1)
			case reflect.String:
				f.SetString(f.String() + "x")
			case reflect.Bool:
				f.SetBool(!f.Bool())
			case reflect.Slice:
				f.Set(reflect.AppendSlice(f, f))
			case reflect.Struct: // netip.Prefix
				f.Set(reflect.ValueOf(netip.MustParsePrefix("198.51.100.1/32")))
			default:
				t.Fatalf("%s.%s: kind %s not covered by this test", typ, typ.Field(i).Name, f.Kind())
			}
			if n.Equal(base()) || base().Equal(n) {
				t.Errorf("%s.%s changed, Equal still true", typ, typ.Field(i).Name)
			}
		}
	}
	if n := base(); n.Equal(Network{Links: n.Links}) {
		t.Error("a network without its addresses is Equal")
	}
}

func TestRegained(t *testing.T) {
	n := testNetwork() // wwan0, index 4, has no carrier
	back := testNetwork()
	back.Links[3].Usable, back.Links[3].Why = true, ""
	noWiFi := testNetwork()
	noWiFi.Links[2].Usable, noWiFi.Links[2].Why = false, "no carrier"
	withoutWWAN := testNetwork()
	withoutWWAN.Links = slices.Delete(withoutWWAN.Links, 3, 4)
	for _, tt := range []struct {
		name          string
		before, after Network
		want          []int
	}{
		{"unchanged", n, n, nil},
		{"carrier back", n, back, []int{4}},
		{"carrier lost", n, noWiFi, nil},
		{"two back", noWiFi, back, []int{3, 4}},
		{"a new link", withoutWWAN, back, nil},
	} {
		if got := Regained(tt.before, tt.after); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
