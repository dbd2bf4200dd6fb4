package netmon

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func TestDecodeLink(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x2a}
	// link builds an AF_UNSPEC message for index 4 "if4", MTU 1420,
	// LOWERLAYERDOWN, with the given flags and extra attributes.
	link := func(flags uint32, extra func(ae *netlink.AttributeEncoder)) []byte {
		return withAttrs(ifinfomsg{family: unix.AF_UNSPEC, index: 4, flags: flags}.bytes(), func(ae *netlink.AttributeEncoder) {
			ae.String(unix.IFLA_IFNAME, "if4")
			ae.Uint32(unix.IFLA_MTU, 1420)
			ae.Uint8(unix.IFLA_OPERSTATE, uint8(OperLowerLayerDown))
			if extra != nil {
				extra(ae)
			}
		})
	}
	kind := func(k string) func(ae *netlink.AttributeEncoder) {
		return func(ae *netlink.AttributeEncoder) {
			ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
				nae.String(unix.IFLA_INFO_KIND, k)
				nae.Bytes(unix.IFLA_INFO_DATA, []byte{4, 0, 1, 0}) // ignored
				return nil
			})
		}
	}
	tests := []struct {
		name    string
		msg     []byte
		want    Link // Index, Name, MTU and OperState are filled in
		wantOK  bool
		wantErr string
	}{
		{
			name: "physical", wantOK: true,
			msg: link(unix.IFF_UP|unix.IFF_BROADCAST|unix.IFF_LOWER_UP|unix.IFF_RUNNING, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFLA_ADDRESS, mac)
			}),
			want: Link{Up: true, Carrier: true, HardwareAddr: mac},
		},
		{
			name: "loopback: all-zero address dropped", wantOK: true,
			msg: link(unix.IFF_UP|unix.IFF_LOOPBACK|unix.IFF_LOWER_UP, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFLA_ADDRESS, make([]byte, 6))
			}),
			want: Link{Up: true, Carrier: true, Loopback: true},
		},
		{
			name: "veth down, enslaved", wantOK: true,
			msg: link(unix.IFF_BROADCAST, func(ae *netlink.AttributeEncoder) {
				kind("veth")(ae)
				ae.Bytes(unix.IFLA_ADDRESS, mac)
				ae.Uint32(unix.IFLA_MASTER, 7)
			}),
			want: Link{Kind: "veth", HardwareAddr: mac, MasterIndex: 7},
		},
		{name: "tun (tap says tun too)", msg: link(0, kind("tun")), want: Link{Kind: "tun"}, wantOK: true},
		{
			name: "link info without a kind", wantOK: true,
			msg: link(0, func(ae *netlink.AttributeEncoder) {
				ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
					nae.Uint32(unix.IFLA_INFO_SLAVE_KIND, 1)
					return nil
				})
			}),
		},
		{
			name: "unknown attributes ignored", wantOK: true,
			msg: link(0, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFLA_PROP_LIST, []byte{1, 2, 3})
				ae.Uint32(500, 9) // beyond IFLA_MAX
			}),
		},
		{name: "AF_BRIDGE port message", msg: withAttrs(ifinfomsg{family: unix.AF_BRIDGE, index: 4}.bytes(), nil)},
		{name: "short header", msg: make([]byte, 15), wantErr: "ifinfomsg of 15 bytes, want 16"},
		{name: "index 0", msg: ifinfomsg{}.bytes(), wantErr: "ifinfomsg with index 0"},
		{name: "truncated attribute", msg: append(ifinfomsg{index: 4}.bytes(), 8, 0, 3, 0), wantErr: "link 4: invalid attribute"},
		{
			name:    "2-byte MTU",
			msg:     link(0, func(ae *netlink.AttributeEncoder) { ae.Uint16(unix.IFLA_MTU, 1500) }),
			wantErr: "link 4: IFLA_MTU of 2 bytes, want 4",
		},
		{
			name:    "4-byte operstate",
			msg:     link(0, func(ae *netlink.AttributeEncoder) { ae.Uint32(unix.IFLA_OPERSTATE, 6) }),
			wantErr: "link 4: IFLA_OPERSTATE of 4 bytes, want 1",
		},
		{
			name:    "malformed link info",
			msg:     link(0, func(ae *netlink.AttributeEncoder) { ae.Bytes(unix.IFLA_LINKINFO, []byte{9, 0, 1}) }),
			wantErr: "link 4: invalid attribute",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := decodeLink(tt.msg)
			if !errorContains(t, err, tt.wantErr) {
				return
			}
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			want := Link{}
			if tt.wantOK {
				want = tt.want
				want.Index, want.Name, want.MTU, want.OperState = 4, "if4", 1420, OperLowerLayerDown
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("unexpected Link (-want +got):\n%s", diff)
			}
		})
	}
}

// errorContains checks err against want ("" for none) and reports whether
// the test should go on to check the result.
func errorContains(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want it to contain %q", err, want)
	}
	return err == nil
}

func TestDecodeAddr(t *testing.T) {
	const infinite = 0xffffffff
	cacheinfo := func(preferred, valid uint32) []byte {
		b := make([]byte, unix.SizeofIfaCacheinfo)
		binary.NativeEndian.PutUint32(b[0:], preferred)
		binary.NativeEndian.PutUint32(b[4:], valid)
		return b
	}
	v4 := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	tests := []struct {
		name    string
		msg     []byte
		want    Addr
		wantOK  bool
		wantErr string
	}{
		{
			name: "IPv4 permanent", wantOK: true,
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET, prefixLen: 24, flags: unix.IFA_F_PERMANENT, index: 2}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, v4("10.1.2.3"))
				ae.Bytes(unix.IFA_LOCAL, v4("10.1.2.3"))
				ae.Bytes(unix.IFA_LABEL, []byte("eth0:1\x00"))
				ae.Uint32(unix.IFA_FLAGS, unix.IFA_F_PERMANENT)
				ae.Bytes(unix.IFA_CACHEINFO, cacheinfo(infinite, infinite))
			}),
			want: Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.2.3/24"), Flags: AddrPermanent,
				PreferredLifetime: Forever, ValidLifetime: Forever},
		},
		{
			// The prefix is the peer's: the local address is a host.
			name: "IPv4 point-to-point", wantOK: true,
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET, prefixLen: 24, index: 2}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, v4("10.9.0.2"))
				ae.Bytes(unix.IFA_LOCAL, v4("10.1.2.3"))
			}),
			want: Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.2.3/32")},
		},
		{
			name: "IPv6 tentative with lifetimes; IFA_FLAGS overrides ifa_flags", wantOK: true,
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET6, prefixLen: 64, flags: unix.IFA_F_TENTATIVE, index: 3}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, netip.MustParseAddr("2001:db8::1").AsSlice())
				ae.Uint32(unix.IFA_FLAGS, unix.IFA_F_TENTATIVE|unix.IFA_F_MANAGETEMPADDR|unix.IFA_F_NOPREFIXROUTE)
				ae.Bytes(unix.IFA_CACHEINFO, cacheinfo(1800, 3600))
			}),
			want: Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("2001:db8::1/64"),
				Flags: AddrTentative | AddrManageTempAddr | AddrNoPrefixRoute, PreferredLifetime: 30 * time.Minute, ValidLifetime: time.Hour},
		},
		{
			name: "IPv6 point-to-point", wantOK: true,
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET6, prefixLen: 64, index: 3}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, netip.MustParseAddr("fd00::2").AsSlice())
				ae.Bytes(unix.IFA_LOCAL, netip.MustParseAddr("fd00::1").AsSlice())
			}),
			want: Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("fd00::1/128")},
		},
		{
			name: "without IFA_FLAGS: ifa_flags", wantOK: true,
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET6, prefixLen: 64, flags: unix.IFA_F_DADFAILED, scope: unix.RT_SCOPE_LINK, index: 3}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, netip.MustParseAddr("fe80::1").AsSlice())
				ae.Bytes(unix.IFA_CACHEINFO, cacheinfo(0, infinite))
			}),
			want: Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("fe80::1/64"), Scope: ScopeLink, Flags: AddrDADFailed, ValidLifetime: Forever},
		},
		{
			name: "IPv4-mapped IPv6 stays IPv6", wantOK: true,
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET6, prefixLen: 128, index: 3}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice())
			}),
			want: Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("::ffff:10.0.0.1/128")},
		},
		{name: "other family", msg: withAttrs(ifaddrmsg{family: unix.AF_DECnet, index: 3}.bytes(), nil)},
		{name: "short header", msg: []byte{2, 24, 0, 0}, wantErr: "ifaddrmsg of 4 bytes, want 8"},
		{
			name: "3-byte IPv4 address",
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET, prefixLen: 24, index: 2}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, []byte{10, 0, 0})
			}),
			wantErr: "address on link 2: IFA_ADDRESS of 3 bytes, want 4",
		},
		{
			name: "IPv4 local in an IPv6 message",
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET6, prefixLen: 64, index: 2}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_LOCAL, v4("10.0.0.1"))
			}),
			wantErr: "IFA_LOCAL of 4 bytes, want 16",
		},
		{
			name: "prefix length too long",
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET, prefixLen: 33, index: 2}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, v4("10.0.0.1"))
			}),
			wantErr: "address on link 2: prefix length 33 > 32",
		},
		{name: "no address", msg: ifaddrmsg{family: unix.AF_INET, prefixLen: 24, index: 2}.bytes(), wantErr: "address on link 2: no IFA_LOCAL or IFA_ADDRESS"},
		{
			name: "short cache info",
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET, prefixLen: 24, index: 2}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.IFA_ADDRESS, v4("10.0.0.1"))
				ae.Bytes(unix.IFA_CACHEINFO, make([]byte, 8))
			}),
			wantErr: "IFA_CACHEINFO of 8 bytes, want 16",
		},
		{
			name: "short IFA_FLAGS",
			msg: withAttrs(ifaddrmsg{family: unix.AF_INET, prefixLen: 24, index: 2}.bytes(), func(ae *netlink.AttributeEncoder) {
				ae.Uint16(unix.IFA_FLAGS, 1)
			}),
			wantErr: "IFA_FLAGS of 2 bytes, want 4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := decodeAddr(tt.msg)
			if !errorContains(t, err, tt.wantErr) {
				return
			}
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got, cmpNetip); diff != "" {
				t.Errorf("unexpected Addr (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRoute(t *testing.T) {
	v4 := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	main := rtmsg{family: unix.AF_INET, table: unix.RT_TABLE_MAIN}
	route := func(h rtmsg, fn func(ae *netlink.AttributeEncoder)) []byte { return withAttrs(h.bytes(), fn) }
	tests := []struct {
		name    string
		msg     []byte
		want    []Route
		wantErr string
	}{
		{
			name: "IPv4 default via gateway",
			msg: route(rtmsg{family: unix.AF_INET, table: unix.RT_TABLE_MAIN, protocol: unix.RTPROT_DHCP}, func(ae *netlink.AttributeEncoder) {
				ae.Uint32(unix.RTA_TABLE, unix.RT_TABLE_MAIN)
				ae.Uint32(unix.RTA_PRIORITY, 100)
				ae.Bytes(unix.RTA_GATEWAY, v4("192.0.2.1"))
				ae.Uint32(unix.RTA_OIF, 2)
			}),
			want: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1"), LinkIndex: 2,
				Table: unix.RT_TABLE_MAIN, Priority: 100, Protocol: 16}},
		},
		{
			name: "IPv6 default in table 1000 (RTA_TABLE over rtm_table)",
			msg: route(rtmsg{family: unix.AF_INET6, table: unix.RT_TABLE_COMPAT, protocol: unix.RTPROT_RA}, func(ae *netlink.AttributeEncoder) {
				ae.Uint32(unix.RTA_TABLE, 1000)
				ae.Uint32(unix.RTA_PRIORITY, 1024)
				ae.Bytes(unix.RTA_GATEWAY, netip.MustParseAddr("fe80::1").AsSlice())
				ae.Uint32(unix.RTA_OIF, 3)
			}),
			want: []Route{{Dst: netip.MustParsePrefix("::/0"), Gateway: netip.MustParseAddr("fe80::1"), LinkIndex: 3,
				Table: 1000, Priority: 1024, Protocol: 9}},
		},
		{
			name: "connected with preferred source",
			msg: route(rtmsg{family: unix.AF_INET, dstLen: 24, tos: 0x10, table: unix.RT_TABLE_MAIN, protocol: unix.RTPROT_KERNEL, scope: unix.RT_SCOPE_LINK}, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.RTA_DST, v4("192.0.2.0"))
				ae.Bytes(unix.RTA_PREFSRC, v4("192.0.2.7"))
				ae.Uint32(unix.RTA_OIF, 2)
			}),
			want: []Route{{Dst: netip.MustParsePrefix("192.0.2.0/24"), Src: netip.MustParseAddr("192.0.2.7"), LinkIndex: 2,
				Table: unix.RT_TABLE_MAIN, Protocol: 2, Scope: ScopeLink, TOS: 0x10}},
		},
		{
			name: "multipath: one Route per nexthop",
			msg: route(rtmsg{family: unix.AF_INET, dstLen: 24, table: unix.RT_TABLE_MAIN}, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.RTA_DST, v4("198.51.100.0"))
				ae.Bytes(unix.RTA_MULTIPATH, encodeNexthops([]nexthop{
					{linkIndex: 2, gateway: netip.MustParseAddr("192.0.2.1")},
					{linkIndex: 3, gateway: netip.MustParseAddr("203.0.113.1")},
					{linkIndex: 4},
				}))
			}),
			want: []Route{
				{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("192.0.2.1"), LinkIndex: 2, Table: unix.RT_TABLE_MAIN},
				{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("203.0.113.1"), LinkIndex: 3, Table: unix.RT_TABLE_MAIN},
				{Dst: netip.MustParsePrefix("198.51.100.0/24"), LinkIndex: 4, Table: unix.RT_TABLE_MAIN},
			},
		},
		{
			name: "empty multipath: the route itself",
			msg: route(main, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.RTA_MULTIPATH, nil)
				ae.Uint32(unix.RTA_OIF, 2)
			}),
			want: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), LinkIndex: 2, Table: unix.RT_TABLE_MAIN}},
		},
		{name: "cloned", msg: route(rtmsg{family: unix.AF_INET6, dstLen: 128, table: unix.RT_TABLE_MAIN, flags: unix.RTM_F_CLONED}, nil)},
		{name: "local table", msg: route(rtmsg{family: unix.AF_INET, table: unix.RT_TABLE_LOCAL}, nil)},
		{
			name: "local table in RTA_TABLE",
			msg:  route(main, func(ae *netlink.AttributeEncoder) { ae.Uint32(unix.RTA_TABLE, unix.RT_TABLE_LOCAL) }),
		},
		{name: "blackhole", msg: route(rtmsg{family: unix.AF_INET, table: unix.RT_TABLE_MAIN, typ: unix.RTN_BLACKHOLE}, nil)},
		{name: "MPLS", msg: route(rtmsg{family: unix.AF_MPLS, table: unix.RT_TABLE_MAIN}, func(ae *netlink.AttributeEncoder) { ae.Bytes(unix.RTA_DST, []byte{0, 1, 1}) })},
		{name: "short header", msg: make([]byte, 11), wantErr: "rtmsg of 11 bytes, want 12"},
		{name: "destination length too long", msg: route(rtmsg{family: unix.AF_INET, dstLen: 33}, nil), wantErr: "destination length 33 > 32"},
		{
			name: "IPv6 destination in an IPv4 route",
			msg: route(main, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.RTA_DST, netip.MustParseAddr("2001:db8::").AsSlice())
			}),
			wantErr: "route: RTA_DST of 16 bytes, want 4",
		},
		{
			name: "IPv6 gateway in an IPv4 route",
			msg: route(main, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.RTA_GATEWAY, netip.MustParseAddr("2001:db8::1").AsSlice())
			}),
			wantErr: "route: RTA_GATEWAY of 16 bytes, want 4",
		},
		{
			name:    "bad preferred source",
			msg:     route(rtmsg{family: unix.AF_INET6}, func(ae *netlink.AttributeEncoder) { ae.Bytes(unix.RTA_PREFSRC, []byte{1, 2, 3}) }),
			wantErr: "route: RTA_PREFSRC of 3 bytes, want 16",
		},
		{
			name:    "short RTA_OIF",
			msg:     route(main, func(ae *netlink.AttributeEncoder) { ae.Uint8(unix.RTA_OIF, 2) }),
			wantErr: "route: RTA_OIF of 1 bytes, want 4",
		},
		{
			name: "bad nexthop gateway",
			msg: route(main, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.RTA_MULTIPATH, encodeNexthops([]nexthop{{linkIndex: 2, gateway: netip.MustParseAddr("2001:db8::1")}}))
			}),
			wantErr: "RTA_MULTIPATH: nexthop RTA_GATEWAY of 16 bytes, want 4",
		},
		{
			name:    "nexthop longer than the attribute",
			msg:     route(main, func(ae *netlink.AttributeEncoder) { ae.Bytes(unix.RTA_MULTIPATH, []byte{16, 0, 0, 0, 2, 0, 0, 0}) }),
			wantErr: "RTA_MULTIPATH: rtnh_len 16 with 8 bytes left",
		},
		{
			name:    "truncated rtnexthop",
			msg:     route(main, func(ae *netlink.AttributeEncoder) { ae.Bytes(unix.RTA_MULTIPATH, []byte{8, 0, 0, 0}) }),
			wantErr: "RTA_MULTIPATH: 4 bytes left, too short for a rtnexthop",
		},
		{
			name: "malformed nexthop attributes",
			msg: route(main, func(ae *netlink.AttributeEncoder) {
				ae.Bytes(unix.RTA_MULTIPATH, []byte{12, 0, 0, 0, 2, 0, 0, 0, 9, 0, 5, 0})
			}),
			wantErr: "RTA_MULTIPATH: invalid attribute",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRoute(tt.msg)
			if !errorContains(t, err, tt.wantErr) {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmpNetip); diff != "" {
				t.Errorf("unexpected routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeMessage(t *testing.T) {
	link := veth(3, "va", true)
	addr := permanentAddr(3, "10.0.0.1/24")
	route := defaultRoute(3, "10.0.0.254")
	tests := []struct {
		name        string
		msg         syscall.NetlinkMessage
		want        []Event
		wantReplace bool
		wantErr     string
	}{
		{name: "new link", msg: nlmsg(unix.RTM_NEWLINK, 0, encodeLink(link)), want: []Event{LinkEvent{OpNew, link}}},
		{name: "deleted link", msg: nlmsg(unix.RTM_DELLINK, 0, encodeLink(link)), want: []Event{LinkEvent{OpDel, link}}},
		{name: "bridge port left", msg: nlmsg(unix.RTM_DELLINK, 0, withAttrs(ifinfomsg{family: unix.AF_BRIDGE, index: 3}.bytes(), nil))},
		{name: "new address", msg: nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(addr)), want: []Event{AddrEvent{OpNew, addr}}},
		{name: "deleted address", msg: nlmsg(unix.RTM_DELADDR, 0, encodeAddr(addr)), want: []Event{AddrEvent{OpDel, addr}}},
		{
			name: "new route", msg: nlmsg(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, encodeRoute(route)),
			want: []Event{RouteEvent{OpNew, route}},
		},
		{
			name: "replaced route", msg: nlmsg(unix.RTM_NEWROUTE, unix.NLM_F_REPLACE, encodeRoute(route)),
			want: []Event{RouteEvent{OpNew, route}}, wantReplace: true,
		},
		{
			// The kernel still dropped what it replaced.
			name: "replaced route of the local table", wantReplace: true,
			msg: nlmsg(unix.RTM_NEWROUTE, unix.NLM_F_REPLACE, rtmsg{family: unix.AF_INET, table: unix.RT_TABLE_LOCAL, typ: unix.RTN_LOCAL}.bytes()),
		},
		{name: "deleted route", msg: nlmsg(unix.RTM_DELROUTE, unix.NLM_F_REPLACE, encodeRoute(route)), want: []Event{RouteEvent{OpDel, route}}},
		{
			name: "multipath route",
			msg: nlmsg(unix.RTM_NEWROUTE, 0, encodeRoute(route, nexthop{linkIndex: 3, gateway: route.Gateway},
				nexthop{linkIndex: 4, gateway: netip.MustParseAddr("10.0.1.254")})),
			want: []Event{RouteEvent{OpNew, route}, RouteEvent{OpNew, Route{Dst: route.Dst, Gateway: netip.MustParseAddr("10.0.1.254"),
				LinkIndex: 4, Table: route.Table, Protocol: route.Protocol}}},
		},
		{name: "other type", msg: nlmsg(unix.RTM_NEWNEIGH, 0, []byte{1})},
		{name: "NLMSG_DONE", msg: nlmsg(unix.NLMSG_DONE, 0, nil)},
		{name: "malformed link", msg: nlmsg(unix.RTM_DELLINK, 0, nil), wantErr: "RTM_DELLINK: ifinfomsg of 0 bytes"},
		{name: "malformed address", msg: nlmsg(unix.RTM_NEWADDR, 0, ifaddrmsg{family: unix.AF_INET, index: 3}.bytes()), wantErr: "RTM_NEWADDR: address on link 3: no IFA_LOCAL"},
		{name: "malformed route", msg: nlmsg(unix.RTM_DELROUTE, 0, []byte{2}), wantErr: "RTM_DELROUTE: rtmsg of 1 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, replace, err := decodeMessage(tt.msg.Header.Type, tt.msg.Header.Flags, tt.msg.Data)
			if !errorContains(t, err, tt.wantErr) {
				return
			}
			if replace != tt.wantReplace {
				t.Errorf("replace = %v, want %v", replace, tt.wantReplace)
			}
			if diff := cmp.Diff(tt.want, got, cmpNetip, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("unexpected events (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzDecodeMessage feeds the decoders arbitrary messages: they must not
// panic, and what they accept must survive encoding and decoding again.
func FuzzDecodeMessage(f *testing.F) {
	route := defaultRoute(3, "10.0.0.254")
	for _, m := range []syscall.NetlinkMessage{
		nlmsg(unix.RTM_NEWLINK, 0, encodeLink(veth(3, "va", true))),
		nlmsg(unix.RTM_DELLINK, 0, encodeLink(Link{Index: 1, Name: "lo", Kind: "", Loopback: true})),
		nlmsg(unix.RTM_NEWADDR, 0, encodeAddr(permanentAddr(3, "10.0.0.1/24"))),
		nlmsg(unix.RTM_DELADDR, 0, encodeAddr(Addr{LinkIndex: 3, Prefix: netip.MustParsePrefix("2001:db8::1/64"), ValidLifetime: time.Hour})),
		nlmsg(unix.RTM_NEWROUTE, unix.NLM_F_REPLACE, encodeRoute(route)),
		nlmsg(unix.RTM_DELROUTE, 0, encodeRoute(route, nexthop{linkIndex: 3, gateway: route.Gateway}, nexthop{linkIndex: 4})),
	} {
		f.Add(m.Header.Type, m.Header.Flags, m.Data)
	}
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		evs, _, err := decodeMessage(typ, flags, data)
		if err != nil {
			return
		}
		for _, ev := range evs {
			var again []byte
			switch ev := ev.(type) {
			case LinkEvent:
				again = encodeLink(ev.Link)
			case AddrEvent:
				if !ev.Addr.Prefix.IsValid() {
					t.Fatalf("decoded an invalid prefix: %v", ev)
				}
				again = encodeAddr(ev.Addr)
			case RouteEvent:
				if !ev.Route.Dst.IsValid() {
					t.Fatalf("decoded an invalid destination: %v", ev)
				}
				again = encodeRoute(ev.Route)
			}
			got, _, err := decodeMessage(typ, 0, again)
			if err != nil {
				t.Fatalf("%v encoded again does not decode: %v", ev, err)
			}
			if diff := cmp.Diff([]Event{ev}, got, cmpNetip); diff != "" {
				t.Fatalf("round trip (-first +second):\n%s", diff)
			}
		}
	})
}
