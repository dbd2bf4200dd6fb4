package srcroute

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
)

func defaultRoute(table, link int, gw string) Route {
	g := addr(gw)
	return Route{Table: table, Dst: netip.PrefixFrom(unspecified(g), 0), Gateway: g, LinkIndex: link}
}

func connected(table, link int, dst, src string) Route {
	d := prefix(dst)
	scope := ScopeLink
	if d.Addr().Is6() {
		scope = ScopeUniverse
	}
	return Route{Table: table, Dst: d, LinkIndex: link, Src: addr(src), Scope: scope}
}

func rule(prio int, src string, table int) Rule {
	return Rule{Priority: prio, Src: prefix(src), Table: table}
}

// Two uplinks, dual-stack.
var (
	spec1 = Spec{
		LinkIndex: 2, Table: 101, Priority: 1001,
		Gateways: []netip.Addr{addr("10.1.0.1"), addr("2001:db8:1::1")},
		Addrs:    []netip.Prefix{prefix("10.1.0.20/24"), prefix("2001:db8:1::20/64")},
	}
	spec1Routes = []Route{
		connected(101, 2, "10.1.0.0/24", "10.1.0.20"),
		connected(101, 2, "2001:db8:1::/64", "2001:db8:1::20"),
		defaultRoute(101, 2, "10.1.0.1"),
		defaultRoute(101, 2, "2001:db8:1::1"),
	}
	spec1Rules = []Rule{rule(1001, "10.1.0.20/32", 101), rule(1001, "2001:db8:1::20/128", 101)}

	spec2 = Spec{
		LinkIndex: 3, Table: 102, Priority: 1002,
		Gateways: []netip.Addr{addr("10.2.0.1")},
		Addrs:    []netip.Prefix{prefix("10.2.0.2/24")},
	}
	spec2Routes = []Route{connected(102, 3, "10.2.0.0/24", "10.2.0.2"), defaultRoute(102, 3, "10.2.0.1")}
	spec2Rules  = []Rule{rule(1002, "10.2.0.2/32", 102)}
)

// with returns a copy of s changed by f, leaving the fixtures alone.
func with(s Spec, f func(*Spec)) Spec {
	s.Gateways = slices.Clone(s.Gateways)
	s.Addrs = slices.Clone(s.Addrs)
	f(&s)
	return s
}

func TestDiff(t *testing.T) {
	both := installed{routes: slices.Concat(spec1Routes, spec2Routes), rules: slices.Concat(spec1Rules, spec2Rules)}
	reversed := installed{routes: slices.Clone(both.routes), rules: slices.Clone(both.rules)}
	slices.Reverse(reversed.routes)
	slices.Reverse(reversed.rules)

	tests := []struct {
		name string
		have installed
		want []Spec
		out  Changes
	}{
		{name: "nothing wanted, nothing there"},
		{
			name: "install from scratch: connected routes before defaults",
			want: []Spec{spec1},
			out:  Changes{RoutesAdded: spec1Routes, RulesAdded: spec1Rules},
		},
		{
			name: "the same spec twice installs it once",
			want: []Spec{spec1, spec1},
			out:  Changes{RoutesAdded: spec1Routes, RulesAdded: spec1Rules},
		},
		{
			name: "everything in place, in any order",
			have: reversed,
			want: []Spec{spec2, spec1},
		},
		{
			name: "a gateway changes",
			have: both,
			want: []Spec{with(spec1, func(s *Spec) { s.Gateways[0] = addr("10.1.0.254") }), spec2},
			out: Changes{
				RoutesRemoved: []Route{defaultRoute(101, 2, "10.1.0.1")},
				RoutesAdded:   []Route{defaultRoute(101, 2, "10.1.0.254")},
			},
		},
		{
			name: "an IPv6 gateway goes away, its addresses stay: the default turns on-link",
			have: both,
			want: []Spec{with(spec1, func(s *Spec) { s.Gateways = s.Gateways[:1] }), spec2},
			out: Changes{
				RoutesRemoved: []Route{defaultRoute(101, 2, "2001:db8:1::1")},
				RoutesAdded:   []Route{{Table: 101, Dst: prefix("::/0"), LinkIndex: 2, Scope: ScopeUniverse}},
			},
		},
		{
			name: "IPv6 leaves the link: its default, prefix and rule go",
			have: both,
			want: []Spec{with(spec1, func(s *Spec) { s.Gateways, s.Addrs = s.Gateways[:1], s.Addrs[:1] }), spec2},
			out: Changes{
				RulesRemoved:  []Rule{rule(1001, "2001:db8:1::20/128", 101)},
				RoutesRemoved: []Route{connected(101, 2, "2001:db8:1::/64", "2001:db8:1::20"), defaultRoute(101, 2, "2001:db8:1::1")},
			},
		},
		{
			name: "a point-to-point uplink without gateway",
			want: []Spec{{LinkIndex: 4, Table: 104, Priority: 1004, Addrs: []netip.Prefix{prefix("100.64.0.7/32")}}},
			out: Changes{
				RoutesAdded: []Route{
					{Table: 104, Dst: prefix("0.0.0.0/0"), LinkIndex: 4, Scope: ScopeLink},
					connected(104, 4, "100.64.0.7/32", "100.64.0.7"),
				},
				RulesAdded: []Rule{rule(1004, "100.64.0.7/32", 104)},
			},
		},
		{
			name: "a higher address in the same prefix adds only a rule",
			have: both,
			want: []Spec{with(spec1, func(s *Spec) { s.Addrs = append(s.Addrs, prefix("10.1.0.30/24")) }), spec2},
			out:  Changes{RulesAdded: []Rule{rule(1001, "10.1.0.30/32", 101)}},
		},
		{
			name: "a lower address in the same prefix becomes the connected route's src",
			have: both,
			want: []Spec{with(spec1, func(s *Spec) { s.Addrs = append(s.Addrs, prefix("10.1.0.3/24")) }), spec2},
			out: Changes{
				RoutesRemoved: []Route{connected(101, 2, "10.1.0.0/24", "10.1.0.20")},
				RoutesAdded:   []Route{connected(101, 2, "10.1.0.0/24", "10.1.0.3")},
				RulesAdded:    []Rule{rule(1001, "10.1.0.3/32", 101)},
			},
		},
		{
			name: "an address in a new prefix",
			have: both,
			want: []Spec{spec1, with(spec2, func(s *Spec) { s.Addrs = append(s.Addrs, prefix("10.22.0.2/16")) })},
			out: Changes{
				RoutesAdded: []Route{connected(102, 3, "10.22.0.0/16", "10.22.0.2")},
				RulesAdded:  []Rule{rule(1002, "10.22.0.2/32", 102)},
			},
		},
		{
			name: "the priority changes",
			have: both,
			want: []Spec{spec1, with(spec2, func(s *Spec) { s.Priority = 900 })},
			out: Changes{
				RulesRemoved: spec2Rules,
				RulesAdded:   []Rule{rule(900, "10.2.0.2/32", 102)},
			},
		},
		{
			name: "a spec goes away",
			have: both,
			want: []Spec{spec2},
			out:  Changes{RoutesRemoved: spec1Routes, RulesRemoved: spec1Rules},
		},
		{
			name: "nil wants nothing: clear",
			have: both,
			out: Changes{
				RoutesRemoved: []Route{spec1Routes[0], spec1Routes[1], spec2Routes[0], spec1Routes[2], spec1Routes[3], spec2Routes[1]},
				RulesRemoved:  slices.Concat(spec1Rules, spec2Rules),
			},
		},
		{
			name: "a duplicate in the kernel is removed, the original kept",
			have: installed{routes: slices.Concat(spec2Routes, spec2Routes[1:]), rules: spec2Rules},
			want: []Spec{spec2},
			out:  Changes{RoutesRemoved: spec2Routes[1:]},
		},
		{
			name: "a marked rule selecting more than ours is replaced",
			have: installed{routes: spec2Routes, rules: []Rule{{Priority: 1002, Src: prefix("10.2.0.2/32"), Table: 102, other: "iif u2"}}},
			want: []Spec{spec2},
			out: Changes{
				RulesRemoved: []Rule{{Priority: 1002, Src: prefix("10.2.0.2/32"), Table: 102, other: "iif u2"}},
				RulesAdded:   spec2Rules,
			},
		},
		{
			name: "two links share a table, one family each",
			want: []Spec{
				{LinkIndex: 2, Table: 100, Priority: 1000, Gateways: []netip.Addr{addr("10.1.0.1")}},
				{LinkIndex: 3, Table: 100, Priority: 1000, Gateways: []netip.Addr{addr("fe80::1%u2")}},
			},
			out: Changes{RoutesAdded: []Route{defaultRoute(100, 2, "10.1.0.1"), defaultRoute(100, 3, "fe80::1")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := diff(tt.have, tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.out, out, cmpOpts...); d != "" {
				t.Errorf("unexpected changes (-want +got):\n%s", d)
			}
		})
	}
}

// cmpOpts compare Changes: addresses by value, empty lists as nil.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.AllowUnexported(Rule{}),
	cmpopts.EquateEmpty(),
}

func TestDiffRejectsInvalidSpecs(t *testing.T) {
	tests := []struct {
		name  string
		want  []Spec
		wants []string // substrings of the error
	}{
		{"no link", []Spec{with(spec2, func(s *Spec) { s.LinkIndex = 0 })}, []string{"spec 0 (ifindex 0, table 102): link index 0 is not positive"}},
		{"main table", []Spec{with(spec2, func(s *Spec) { s.Table = 254 })}, []string{"table 254 is not a table of its own"}},
		{"local table", []Spec{with(spec2, func(s *Spec) { s.Table = 255 })}, []string{"table 255 is not"}},
		{"default table", []Spec{with(spec2, func(s *Spec) { s.Table = 253 })}, []string{"table 253 is not"}},
		{"table 0", []Spec{with(spec2, func(s *Spec) { s.Table = 0 })}, []string{"table 0 is not"}},
		{"table beyond 32 bits", []Spec{with(spec2, func(s *Spec) { s.Table = 1 << 32 })}, []string{"table 4294967296 is not"}},
		{"priority 0", []Spec{with(spec2, func(s *Spec) { s.Priority = 0 })}, []string{"rule priority 0 is outside 1..32765"}},
		{"priority after main", []Spec{with(spec2, func(s *Spec) { s.Priority = 32766 })}, []string{"rule priority 32766 is outside"}},
		{"two IPv4 gateways", []Spec{with(spec2, func(s *Spec) { s.Gateways = append(s.Gateways, addr("10.2.0.254")) })}, []string{"two IPv4 gateways, 10.2.0.1 and 10.2.0.254"}},
		{"mapped gateway", []Spec{with(spec2, func(s *Spec) { s.Gateways[0] = addr("::ffff:10.2.0.1") })}, []string{"gateway: ::ffff:10.2.0.1 is IPv4-mapped IPv6"}},
		{"zero gateway", []Spec{with(spec2, func(s *Spec) { s.Gateways[0] = netip.Addr{} })}, []string{"gateway: missing address"}},
		{"multicast gateway", []Spec{with(spec2, func(s *Spec) { s.Gateways[0] = addr("224.0.0.1") })}, []string{"224.0.0.1 is not a unicast address"}},
		{"invalid address", []Spec{with(spec2, func(s *Spec) { s.Addrs[0] = netip.Prefix{} })}, []string{"address invalid Prefix: not a valid prefix"}},
		{"unspecified address", []Spec{with(spec2, func(s *Spec) { s.Addrs[0] = prefix("0.0.0.0/8") })}, []string{"address: 0.0.0.0 is not a unicast address"}},
		{
			"two IPv4 defaults in one table",
			[]Spec{spec2, with(spec1, func(s *Spec) { s.Table = 102 })},
			[]string{"table 102 gets two routes to 0.0.0.0/0: default via 10.1.0.1 ifindex 2 table 102 and default via 10.2.0.1 ifindex 3 table 102"},
		},
		{
			"one prefix on two links in one table",
			[]Spec{spec2, {LinkIndex: 4, Table: 102, Priority: 1002, Addrs: []netip.Prefix{prefix("10.2.0.9/24")}}},
			[]string{"table 102 gets two routes to 10.2.0.0/24"},
		},
		{
			"an address in two specs",
			[]Spec{spec2, with(spec1, func(s *Spec) { s.Addrs = append(s.Addrs, prefix("10.2.0.2/24")) })},
			[]string{"address 10.2.0.2 is in two specs: priority 1001 from 10.2.0.2/32 lookup 101 and priority 1002 from 10.2.0.2/32 lookup 102"},
		},
		{
			"every bad spec is named",
			[]Spec{with(spec1, func(s *Spec) { s.Priority = -1 }), spec2, with(spec2, func(s *Spec) { s.Table = 254 })},
			[]string{"spec 0 (ifindex 2, table 101): rule priority -1", "spec 2 (ifindex 3, table 254): table 254"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := diff(installed{routes: spec1Routes}, tt.want)
			if err == nil {
				t.Fatalf("diff = %+v, want an error", out)
			}
			if !out.Empty() {
				t.Errorf("an invalid input planned changes: %+v", out)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		v    interface{ String() string }
		want string
	}{
		{defaultRoute(101, 2, "10.1.0.1"), "default via 10.1.0.1 ifindex 2 table 101"},
		{defaultRoute(101, 2, "2001:db8:1::1"), "default via 2001:db8:1::1 ifindex 2 table 101"},
		{connected(101, 2, "10.1.0.0/24", "10.1.0.20"), "10.1.0.0/24 ifindex 2 scope link src 10.1.0.20 table 101"},
		{connected(101, 2, "2001:db8:1::/64", "2001:db8:1::20"), "2001:db8:1::/64 ifindex 2 src 2001:db8:1::20 table 101"},
		{rule(1001, "10.1.0.20/32", 101), "priority 1001 from 10.1.0.20/32 lookup 101"},
		{Rule{Priority: 7, Src: prefix("2001:db8::1/128"), Table: 9, other: "iif u2"}, "priority 7 from 2001:db8::1/128 iif u2 lookup 9"},
		{Scope(254), "254"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}
