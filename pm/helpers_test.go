package pm

import (
	"net/netip"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/policy"
)

// The test network: one link of each sort, with addresses that exercise
// every verdict under testPolicy.
//
//	1 lo      loopback
//	2 eth0    ethernet, default routes v4 and v6
//	3 wlan0   wifi, default route v4 only
//	4 wwan0   wwan, no carrier
//	5 veth0   virtual (ignored by rule)
//	6 usb0    other (no rule)
func testNetwork() Network {
	return Network{
		Links: []Link{
			{Index: 1, Name: "lo", Kind: policy.KindLoopback, Usable: true},
			{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true, DefaultRoute6: true,
				Gateways: []netip.Addr{ip("192.0.2.1"), ip("2001:db8::1")}},
			{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Usable: true, DefaultRoute4: true, Gateways: []netip.Addr{ip("198.51.100.1")}},
			{Index: 4, Name: "wwan0", Kind: policy.KindWWAN, Why: "no carrier"},
			{Index: 5, Name: "veth0", Kind: policy.KindVirtual, Usable: true},
			{Index: 6, Name: "usb0", Kind: policy.KindOther, Usable: true},
		},
		Addrs: []Address{
			addr(1, "127.0.0.1/8", 0),
			addr(1, "::1/128", 0),
			addr(2, "192.0.2.10/24", 0),
			addr(2, "2001:db8::10/64", 0),
			addr(2, "2001:db8::7e/64", netmon.AddrTemporary),
			addr(2, "2001:db8::ad/64", netmon.AddrTentative),
			addr(2, "2001:db8::bad/64", netmon.AddrDADFailed|netmon.AddrTentative),
			addr(2, "2001:db8::de/64", netmon.AddrDeprecated),
			addr(2, "fe80::10/64", 0),
			addr(3, "198.51.100.20/24", 0),
			addr(3, "2001:db8:3::20/64", 0),
			addr(4, "10.64.0.2/30", 0),
			addr(5, "172.17.0.1/16", 0),
			addr(6, "10.9.9.9/24", 0),
		},
	}
}

const testFile = "test.conf"

// testPolicy ignores virtual links (line 3), gives ethernet subflow
// endpoints with source routing (line 5) and wifi backup ones (line 8).
func testPolicy() *policy.Policy {
	return &policy.Policy{
		Source: testFile,
		Settings: policy.Settings{
			CheckRoute:     true,
			SkipLoopback:   true,
			SkipLinkLocal:  true,
			RouteTableBase: 1000,
			RulePriority:   100,
		},
		Rules: []policy.Rule{
			{Pos: policy.Position{File: testFile, Line: 3}, Kinds: []policy.Kind{policy.KindVirtual}, Ignore: true},
			{Pos: policy.Position{File: testFile, Line: 5}, Names: []string{"eth*"}, Flags: mptcp.FlagSubflow, Priority: 10, SourceRouting: true},
			{Pos: policy.Position{File: testFile, Line: 8}, Kinds: []policy.Kind{policy.KindWiFi}, Flags: mptcp.FlagSubflow | mptcp.FlagBackup, Priority: 5},
		},
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func addr(link int, prefix string, flags netmon.AddrFlags) Address {
	return Address{LinkIndex: link, Prefix: netip.MustParsePrefix(prefix), Flags: flags}
}

// wantedSet reduces a plan to the endpoints as the kernel would list them
// (address, port, flags, ifindex), without ids.
func wantedSet(p Plan) map[netip.Addr]mptcp.Endpoint {
	m := make(map[netip.Addr]mptcp.Endpoint)
	for _, w := range p.Endpoints {
		m[w.Endpoint.Addr] = w.Endpoint
	}
	return m
}
