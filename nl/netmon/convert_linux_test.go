package netmon

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// rawLink builds the payload of a RTM_NEWLINK message as the kernel
// sends it, so the tests go through vishvananda's own parser.
func rawLink(family uint8, index int32, flags uint32, name, kind string, hw net.HardwareAddr, master uint32) []byte {
	msg := nl.NewIfInfomsg(int(family))
	msg.Index = index
	msg.Flags = flags
	b := msg.Serialize()
	attrs := []*nl.RtAttr{
		nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)),
		nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(1420)),
		nl.NewRtAttr(unix.IFLA_OPERSTATE, nl.Uint8Attr(uint8(OperLowerLayerDown))),
	}
	if hw != nil {
		attrs = append(attrs, nl.NewRtAttr(unix.IFLA_ADDRESS, hw))
	}
	if master != 0 {
		attrs = append(attrs, nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(master)))
	}
	if kind != "" {
		info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
		info.AddRtAttr(nl.IFLA_INFO_KIND, nl.ZeroTerminated(kind))
		attrs = append(attrs, info)
	}
	for _, a := range attrs {
		b = append(b, a.Serialize()...)
	}
	return b
}

func TestLinkFromNetlink(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x2a}
	tests := []struct {
		name   string
		kind   string // IFLA_INFO_KIND sent
		flags  uint32
		hw     net.HardwareAddr
		master uint32
		want   Link
	}{
		{
			name: "physical", flags: unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_LOWER_UP | unix.IFF_RUNNING, hw: mac,
			want: Link{Kind: "", Up: true, Carrier: true, HardwareAddr: mac},
		},
		{
			// vishvananda drops an all-zero address.
			name: "loopback", flags: unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_LOWER_UP, hw: make(net.HardwareAddr, 6),
			want: Link{Up: true, Carrier: true, Loopback: true},
		},
		{
			name: "veth down, enslaved", kind: "veth", flags: unix.IFF_BROADCAST, hw: mac, master: 7,
			want: Link{Kind: "veth", HardwareAddr: mac, MasterIndex: 7},
		},
		{
			name: "up without carrier", kind: "bridge", flags: unix.IFF_UP, hw: mac,
			want: Link{Kind: "bridge", Up: true, HardwareAddr: mac},
		},
		{
			name: "wireguard has no hardware address", kind: "wireguard", flags: unix.IFF_UP | unix.IFF_POINTOPOINT | unix.IFF_LOWER_UP,
			want: Link{Kind: "wireguard", Up: true, Carrier: true},
		},
		{name: "tun (vishvananda says tuntap)", kind: "tun", want: Link{Kind: "tun"}},
		{name: "kind vishvananda does not know", kind: "batadv", want: Link{Kind: "batadv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := netlink.LinkDeserialize(nil, rawLink(unix.AF_UNSPEC, 4, tt.flags, "if4", tt.kind, tt.hw, tt.master))
			if err != nil {
				t.Fatalf("LinkDeserialize: %v", err)
			}
			want := tt.want
			want.Index, want.Name, want.MTU, want.OperState = 4, "if4", 1420, OperLowerLayerDown
			if diff := cmp.Diff(want, linkFromNetlink(l)); diff != "" {
				t.Errorf("unexpected Link (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLinkEventFromUpdate(t *testing.T) {
	update := func(family uint8, typ uint16) netlink.LinkUpdate {
		data := rawLink(family, 3, unix.IFF_UP, "va", "veth", nil, 0)
		hdr := unix.NlMsghdr{Type: typ}
		l, err := netlink.LinkDeserialize(&hdr, data)
		if err != nil {
			t.Fatalf("LinkDeserialize: %v", err)
		}
		return netlink.LinkUpdate{IfInfomsg: *nl.DeserializeIfInfomsg(data), Header: hdr, Link: l}
	}
	link := Link{Index: 3, Name: "va", Kind: "veth", Up: true, MTU: 1420, OperState: OperLowerLayerDown}
	tests := []struct {
		name   string
		u      netlink.LinkUpdate
		want   LinkEvent
		wantOK bool
	}{
		{name: "new", u: update(unix.AF_UNSPEC, unix.RTM_NEWLINK), want: LinkEvent{Op: OpNew, Link: link}, wantOK: true},
		{name: "del", u: update(unix.AF_UNSPEC, unix.RTM_DELLINK), want: LinkEvent{Op: OpDel, Link: link}, wantOK: true},
		// A port leaving a bridge: not a deletion.
		{name: "bridge port del", u: update(unix.AF_BRIDGE, unix.RTM_DELLINK)},
		{name: "bridge port new", u: update(unix.AF_BRIDGE, unix.RTM_NEWLINK)},
		{name: "other type", u: update(unix.AF_UNSPEC, unix.RTM_GETLINK)},
		{name: "no link", u: netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := linkEventFromUpdate(tt.u)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("unexpected LinkEvent (-want +got):\n%s", diff)
			}
		})
	}
}

func ipnet(t *testing.T, cidr string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.IPNet{IP: ip, Mask: n.Mask}
}

func TestAddrEventFromUpdate(t *testing.T) {
	const infinite = 0xffffffff
	tests := []struct {
		name    string
		u       netlink.AddrUpdate
		want    AddrEvent
		wantErr bool
	}{
		{
			name: "IPv4 permanent",
			u: netlink.AddrUpdate{LinkAddress: ipnet(t, "10.1.2.3/24"), LinkIndex: 2, NewAddr: true,
				Flags: unix.IFA_F_PERMANENT, Scope: unix.RT_SCOPE_UNIVERSE, PreferedLft: infinite, ValidLft: infinite},
			want: AddrEvent{Op: OpNew, Addr: Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.2.3/24"),
				Scope: ScopeUniverse, Flags: AddrPermanent, PreferredLifetime: Forever, ValidLifetime: Forever}},
		},
		{
			name: "IPv4 as 16 bytes (Go's usual form)",
			u: netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(32, 32)}, LinkIndex: 2,
				NewAddr: true, PreferedLft: infinite, ValidLft: infinite},
			want: AddrEvent{Op: OpNew, Addr: Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.2.3/32"),
				PreferredLifetime: Forever, ValidLifetime: Forever}},
		},
		{
			name: "IPv6 tentative with lifetimes",
			u: netlink.AddrUpdate{LinkAddress: ipnet(t, "2001:db8::1/64"), LinkIndex: 3, NewAddr: true,
				Flags: unix.IFA_F_TENTATIVE | unix.IFA_F_MANAGETEMPADDR | unix.IFA_F_NOPREFIXROUTE, PreferedLft: 1800, ValidLft: 3600},
			want: AddrEvent{Op: OpNew, Addr: Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("2001:db8::1/64"),
				Flags: AddrTentative | AddrManageTempAddr | AddrNoPrefixRoute, PreferredLifetime: 30 * time.Minute, ValidLifetime: time.Hour}},
		},
		{
			name: "IPv6 link-local deleted",
			u: netlink.AddrUpdate{LinkAddress: ipnet(t, "fe80::1/64"), LinkIndex: 3, Scope: unix.RT_SCOPE_LINK,
				Flags: unix.IFA_F_PERMANENT | unix.IFA_F_DADFAILED | unix.IFA_F_TENTATIVE, PreferedLft: 0, ValidLft: infinite},
			want: AddrEvent{Op: OpDel, Addr: Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("fe80::1/64"), Scope: ScopeLink,
				Flags: AddrPermanent | AddrDADFailed | AddrTentative, ValidLifetime: Forever}},
		},
		{
			name: "IPv4-mapped IPv6 stays IPv6",
			u: netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.ParseIP("::ffff:10.0.0.1"), Mask: net.CIDRMask(128, 128)},
				LinkIndex: 3, NewAddr: true, PreferedLft: infinite, ValidLft: infinite},
			want: AddrEvent{Op: OpNew, Addr: Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("::ffff:10.0.0.1/128"),
				PreferredLifetime: Forever, ValidLifetime: Forever}},
		},
		{
			name:    "3-byte IP",
			u:       netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.IP{10, 0, 0}, Mask: net.CIDRMask(24, 32)}, NewAddr: true},
			wantErr: true,
		},
		{
			name:    "IPv6 with an IPv4 mask",
			u:       netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(24, 32)}, NewAddr: true},
			wantErr: true,
		},
		{
			name:    "no mask",
			u:       netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.IP{10, 0, 0, 1}}, NewAddr: true},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := addrEventFromUpdate(tt.u)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpNetip); diff != "" {
				t.Errorf("unexpected AddrEvent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddrFromNetlink(t *testing.T) {
	n := ipnet(t, "192.0.2.7/28")
	got, err := addrFromNetlink(netlink.Addr{IPNet: &n, LinkIndex: 9, Flags: unix.IFA_F_SECONDARY | unix.IFA_F_NODAD,
		Scope: unix.RT_SCOPE_HOST, PreferedLft: 0xffffffff, ValidLft: 0xffffffff, Label: "eth0:1"})
	if err != nil {
		t.Fatal(err)
	}
	want := Addr{LinkIndex: 9, Prefix: netip.MustParsePrefix("192.0.2.7/28"), Scope: ScopeHost,
		Flags: AddrSecondary | AddrNoDAD, PreferredLifetime: Forever, ValidLifetime: Forever}
	if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
		t.Errorf("unexpected Addr (-want +got):\n%s", diff)
	}
	if _, err := addrFromNetlink(netlink.Addr{LinkIndex: 9}); err == nil {
		t.Error("address without IPNet: no error")
	}
}

func TestRoutesFromNetlink(t *testing.T) {
	dst := func(cidr string) *net.IPNet { n := ipnet(t, cidr); return &n }
	v4 := func(s string) net.IP { return net.ParseIP(s).To4() }
	unicast := func(r netlink.Route) netlink.Route {
		r.Type = unix.RTN_UNICAST
		if r.Table == 0 {
			r.Table = unix.RT_TABLE_MAIN
		}
		return r
	}
	tests := []struct {
		name    string
		r       netlink.Route
		want    []Route
		wantErr bool
	}{
		{
			name: "IPv4 default via gateway",
			r: unicast(netlink.Route{Family: unix.AF_INET, LinkIndex: 2, Gw: v4("192.0.2.1"), Priority: 100,
				Protocol: unix.RTPROT_DHCP, Scope: unix.RT_SCOPE_UNIVERSE}),
			want: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), LinkIndex: 2,
				Table: unix.RT_TABLE_MAIN, Priority: 100, Protocol: 16}},
		},
		{
			name: "IPv6 default in table 100",
			r: unicast(netlink.Route{Family: unix.AF_INET6, LinkIndex: 3, Gw: net.ParseIP("fe80::1"), Priority: 1024,
				Table: 100, Protocol: unix.RTPROT_RA}),
			want: []Route{{Dst: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("fe80::1"), LinkIndex: 3,
				Table: 100, Priority: 1024, Protocol: 9}},
		},
		{
			name: "connected with source",
			r: unicast(netlink.Route{Family: unix.AF_INET, LinkIndex: 2, Dst: dst("192.0.2.0/24"), Src: v4("192.0.2.7"),
				Protocol: unix.RTPROT_KERNEL, Scope: unix.RT_SCOPE_LINK, Tos: 0x10}),
			want: []Route{{Dst: netip.MustParsePrefix("192.0.2.0/24"), Src: netip.MustParseAddr("192.0.2.7"), LinkIndex: 2,
				Table: unix.RT_TABLE_MAIN, Protocol: 2, Scope: ScopeLink, TOS: 0x10}},
		},
		{
			name: "multipath: one Route per nexthop",
			r: unicast(netlink.Route{Family: unix.AF_INET, Dst: dst("198.51.100.0/24"), MultiPath: []*netlink.NexthopInfo{
				{LinkIndex: 2, Gw: v4("192.0.2.1")}, {LinkIndex: 3, Gw: v4("203.0.113.1")},
			}}),
			want: []Route{
				{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("192.0.2.1"), LinkIndex: 2, Table: unix.RT_TABLE_MAIN},
				{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("203.0.113.1"), LinkIndex: 3, Table: unix.RT_TABLE_MAIN},
			},
		},
		{name: "cloned", r: unicast(netlink.Route{Family: unix.AF_INET6, LinkIndex: 2, Dst: dst("2001:db8::1/128"), Flags: unix.RTM_F_CLONED})},
		{name: "local table", r: unicast(netlink.Route{Family: unix.AF_INET, LinkIndex: 2, Dst: dst("192.0.2.7/32"), Table: unix.RT_TABLE_LOCAL})},
		{name: "blackhole", r: netlink.Route{Family: unix.AF_INET, Dst: dst("10.0.0.0/8"), Table: unix.RT_TABLE_MAIN, Type: unix.RTN_BLACKHOLE}},
		{name: "MPLS", r: unicast(netlink.Route{Family: unix.AF_MPLS, LinkIndex: 2})},
		{name: "IPv6 destination in IPv4 route", r: unicast(netlink.Route{Family: unix.AF_INET, Dst: dst("2001:db8::/32")}), wantErr: true},
		{name: "IPv6 gateway in IPv4 route", r: unicast(netlink.Route{Family: unix.AF_INET, Gw: net.ParseIP("2001:db8::1")}), wantErr: true},
		{name: "bad source", r: unicast(netlink.Route{Family: unix.AF_INET6, Src: net.IP{1, 2, 3}}), wantErr: true},
		{
			name: "bad nexthop gateway",
			r:    unicast(netlink.Route{Family: unix.AF_INET, MultiPath: []*netlink.NexthopInfo{{LinkIndex: 2, Gw: net.IP{1}}}}), wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := routesFromNetlink(tt.r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpNetip); diff != "" {
				t.Errorf("unexpected routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRouteEventsFromUpdate(t *testing.T) {
	r := netlink.Route{Family: unix.AF_INET, LinkIndex: 2, Gw: net.IP{192, 0, 2, 1}, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST}
	want := Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), LinkIndex: 2, Table: unix.RT_TABLE_MAIN}
	tests := []struct {
		name        string
		u           netlink.RouteUpdate
		want        []RouteEvent
		wantReplace bool
	}{
		{name: "new", u: netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, NlFlags: unix.NLM_F_CREATE | unix.NLM_F_EXCL, Route: r},
			want: []RouteEvent{{Op: OpNew, Route: want}}},
		{name: "replace", u: netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, NlFlags: unix.NLM_F_REPLACE, Route: r},
			want: []RouteEvent{{Op: OpNew, Route: want}}, wantReplace: true},
		{name: "del", u: netlink.RouteUpdate{Type: unix.RTM_DELROUTE, Route: r}, want: []RouteEvent{{Op: OpDel, Route: want}}},
		{name: "other type", u: netlink.RouteUpdate{Type: unix.RTM_GETROUTE, Route: r}},
		{name: "filtered", u: netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, replace, err := routeEventsFromUpdate(tt.u)
			if err != nil {
				t.Fatal(err)
			}
			if replace != tt.wantReplace {
				t.Errorf("replace = %v, want %v", replace, tt.wantReplace)
			}
			if diff := cmp.Diff(tt.want, got, cmpNetip); diff != "" {
				t.Errorf("unexpected events (-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := routeEventsFromUpdate(netlink.RouteUpdate{Type: unix.RTM_NEWROUTE,
		Route: netlink.Route{Family: unix.AF_INET, Type: unix.RTN_UNICAST, Gw: net.IP{1}}}); err == nil {
		t.Error("bad gateway: no error")
	}
}
