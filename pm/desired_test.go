package pm

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/policy"
)

// whys maps each address of a plan to its verdict in words.
func whys(p Plan) map[string]string {
	m := make(map[string]string)
	for _, d := range p.Decisions {
		m[d.Link+" "+d.Address.Addr().String()] = d.Why
	}
	return m
}

func endpointAddrs(p Plan) []string {
	var out []string
	for _, w := range p.Endpoints {
		out = append(out, w.Endpoint.Addr.String())
	}
	return out
}

func TestDesiredVerdicts(t *testing.T) {
	allowAll := func(s *policy.Settings) {
		s.SkipLoopback, s.SkipLinkLocal, s.CheckRoute = false, false, false
		s.UseTemporary, s.UseDeprecated = true, true
	}
	catchAll := func(p *policy.Policy) {
		p.Settings.CheckRoute = false
		p.Rules = []policy.Rule{{Pos: policy.Position{File: testFile, Line: 1}, Flags: mptcp.FlagSubflow}}
	}
	tests := []struct {
		name     string
		edit     func(*policy.Policy)
		capacity int
		want     []string          // endpoint addresses, in plan order
		whys     map[string]string // verdicts that differ from the defaults case
	}{
		{
			name:     "defaults",
			capacity: 8,
			want:     []string{"192.0.2.10", "2001:db8::10", "198.51.100.20"},
		},
		{
			name:     "settings allow everything",
			edit:     func(p *policy.Policy) { allowAll(&p.Settings) },
			capacity: 8,
			want:     []string{"192.0.2.10", "2001:db8::10", "2001:db8::7e", "2001:db8::de", "fe80::10", "198.51.100.20", "2001:db8:3::20"},
			whys: map[string]string{
				"lo 127.0.0.1":         "no rule matched",
				"lo ::1":               "no rule matched",
				"eth0 2001:db8::7e":    "endpoint",
				"eth0 2001:db8::de":    "endpoint",
				"eth0 fe80::10":        "endpoint",
				"wlan0 2001:db8:3::20": "endpoint",
			},
		},
		{
			name:     "priority cut",
			capacity: 2,
			want:     []string{"192.0.2.10", "2001:db8::10"},
			whys: map[string]string{
				"wlan0 198.51.100.20": "over the 8-endpoint limit, 2 left beside foreign endpoints (priority 5)",
			},
		},
		{
			name:     "ties: IPv4 first, then lower ifindex",
			edit:     catchAll,
			capacity: 3,
			want:     []string{"192.0.2.10", "198.51.100.20", "172.17.0.1"},
			whys: map[string]string{
				"eth0 2001:db8::10":    "over the 8-endpoint limit, 3 left beside foreign endpoints (priority 0)",
				"wlan0 2001:db8:3::20": "over the 8-endpoint limit, 3 left beside foreign endpoints (priority 0)",
				"veth0 172.17.0.1":     "endpoint",
				"usb0 10.9.9.9":        "over the 8-endpoint limit, 3 left beside foreign endpoints (priority 0)",
			},
		},
		{
			name: "full table",
			edit: func(p *policy.Policy) {
				catchAll(p)
				allowAll(&p.Settings)
			},
			capacity: 8,
			// Five IPv4 addresses, then IPv6 by link and address.
			want: []string{"127.0.0.1", "::1", "192.0.2.10", "2001:db8::10", "2001:db8::7e", "198.51.100.20", "172.17.0.1", "10.9.9.9"},
			whys: map[string]string{
				"lo 127.0.0.1":         "endpoint",
				"lo ::1":               "endpoint",
				"eth0 2001:db8::7e":    "endpoint",
				"eth0 2001:db8::de":    "over the 8-endpoint limit (priority 0)",
				"eth0 fe80::10":        "over the 8-endpoint limit (priority 0)",
				"wlan0 2001:db8:3::20": "over the 8-endpoint limit (priority 0)",
				"veth0 172.17.0.1":     "endpoint",
				"usb0 10.9.9.9":        "endpoint",
			},
		},
		{
			name:     "built-in ignore rule",
			edit:     func(p *policy.Policy) { p.Rules[0].Pos = policy.Position{} },
			capacity: 8,
			want:     []string{"192.0.2.10", "2001:db8::10", "198.51.100.20"},
			whys:     map[string]string{"veth0 172.17.0.1": "ignored by the built-in rule"},
		},
		{
			name:     "no capacity",
			capacity: 0,
			whys: map[string]string{
				"eth0 192.0.2.10":     "over the 8-endpoint limit, 0 left beside foreign endpoints (priority 10)",
				"eth0 2001:db8::10":   "over the 8-endpoint limit, 0 left beside foreign endpoints (priority 10)",
				"wlan0 198.51.100.20": "over the 8-endpoint limit, 0 left beside foreign endpoints (priority 5)",
			},
		},
	}
	defaults := map[string]string{
		"lo 127.0.0.1":         "loopback",
		"lo ::1":               "loopback",
		"eth0 192.0.2.10":      "endpoint",
		"eth0 2001:db8::10":    "endpoint",
		"eth0 2001:db8::7e":    "temporary",
		"eth0 2001:db8::ad":    "tentative (DAD in progress)",
		"eth0 2001:db8::bad":   "DAD failed",
		"eth0 2001:db8::de":    "deprecated",
		"eth0 fe80::10":        "link-local",
		"wlan0 198.51.100.20":  "endpoint",
		"wlan0 2001:db8:3::20": "no default route (check-route)",
		"wwan0 10.64.0.2":      "link not usable: no carrier",
		"veth0 172.17.0.1":     "ignored by rule at test.conf:3",
		"usb0 10.9.9.9":        "no rule matched",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.edit != nil {
				tt.edit(p)
			}
			plan := Desired(testNetwork(), p, tt.capacity)
			if diff := cmp.Diff(tt.want, endpointAddrs(plan)); diff != "" {
				t.Errorf("unexpected endpoints (-want +got):\n%s", diff)
			}
			want := make(map[string]string)
			for k, v := range defaults {
				want[k] = v
			}
			for k, v := range tt.whys {
				want[k] = v
			}
			if diff := cmp.Diff(want, whys(plan)); diff != "" {
				t.Errorf("unexpected verdicts (-want +got):\n%s", diff)
			}
			for _, d := range plan.Decisions {
				if (d.Verdict == VerdictEndpoint) != (d.Why == "endpoint") {
					t.Errorf("%v: verdict %v does not go with its reason", d, d.Verdict)
				}
			}
		})
	}
}

func TestDesiredEndpointFields(t *testing.T) {
	p := testPolicy()
	p.Rules[1].Flags = mptcp.FlagSignal
	p.Rules[1].Port = 7000
	p.Rules[2].Port = 7000 // subflow and backup: the kernel keeps no port
	plan := Desired(testNetwork(), p, 8)
	want := []Want{
		{Endpoint: mptcp.Endpoint{Addr: ip("192.0.2.10"), Port: 7000, Flags: mptcp.FlagSignal, IfIndex: 2}, Link: "eth0", Priority: 10, Rule: &p.Rules[1]},
		{Endpoint: mptcp.Endpoint{Addr: ip("2001:db8::10"), Port: 7000, Flags: mptcp.FlagSignal, IfIndex: 2}, Link: "eth0", Priority: 10, Rule: &p.Rules[1]},
		{Endpoint: mptcp.Endpoint{Addr: ip("198.51.100.20"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup, IfIndex: 3}, Link: "wlan0", Priority: 5, Rule: &p.Rules[2]},
	}
	if diff := cmp.Diff(want, plan.Endpoints, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("unexpected endpoints (-want +got):\n%s", diff)
	}
	for i, w := range plan.Endpoints {
		if w.Rule != want[i].Rule {
			t.Errorf("%s: rule is not the policy's own (pointer %p, want %p)", w.Endpoint.Addr, w.Rule, want[i].Rule)
		}
	}
}

func TestDesiredDuplicateAddress(t *testing.T) {
	tests := []struct {
		name      string
		eth1Prio  int
		wantLink  string
		loserLink string
	}{
		{"tie goes to the lower ifindex", 10, "eth0", "eth1"},
		{"higher priority wins", 20, "eth1", "eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testNetwork()
			n.Links = append(n.Links, Link{Index: 7, Name: "eth1", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true})
			n.Addrs = append(n.Addrs, addr(7, "192.0.2.10/24", 0))
			p := testPolicy()
			p.Rules = append([]policy.Rule{{Names: []string{"eth1"}, Flags: mptcp.FlagSubflow, Priority: tt.eth1Prio}}, p.Rules...)
			plan := Desired(n, p, 8)
			var got []string
			for _, w := range plan.Endpoints {
				if w.Endpoint.Addr == ip("192.0.2.10") {
					got = append(got, w.Link)
				}
			}
			if diff := cmp.Diff([]string{tt.wantLink}, got); diff != "" {
				t.Errorf("unexpected links with 192.0.2.10 (-want +got):\n%s", diff)
			}
			wantWhy := "same address on " + tt.wantLink + ", which ranks higher (one endpoint per address)"
			if why := whys(plan)[tt.loserLink+" 192.0.2.10"]; why != wantWhy {
				t.Errorf("%s's verdict: %q, want %q", tt.loserLink, why, wantWhy)
			}
		})
	}
}

func TestDesiredIsDeterministic(t *testing.T) {
	p := testPolicy()
	n := testNetwork()
	want := Desired(n, p, 2)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		s := Network{Links: append([]Link(nil), n.Links...), Addrs: append([]Address(nil), n.Addrs...)}
		rng.Shuffle(len(s.Links), func(i, j int) { s.Links[i], s.Links[j] = s.Links[j], s.Links[i] })
		rng.Shuffle(len(s.Addrs), func(i, j int) { s.Addrs[i], s.Addrs[j] = s.Addrs[j], s.Addrs[i] })
		if diff := cmp.Diff(want, Desired(s, p, 2), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Fatalf("plan depends on input order (-sorted +shuffled):\n%s", diff)
		}
	}
}

func TestDesiredSourceRoutes(t *testing.T) {
	tests := []struct {
		name string
		edit func(*policy.Policy, *Network)
		want []SourceRoute
	}{
		{
			name: "ethernet rule asks",
			want: []SourceRoute{{
				LinkIndex: 2, Link: "eth0", Table: 1002, Priority: 100,
				Gateways: []netip.Addr{ip("192.0.2.1"), ip("2001:db8::1")},
				Addrs:    []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("2001:db8::10/64")},
			}},
		},
		{
			name: "a family without default route is left out",
			edit: func(p *policy.Policy, _ *Network) {
				p.Settings.CheckRoute = false
				p.Rules[1].SourceRouting = false
				p.Rules[2].SourceRouting = true
			},
			want: []SourceRoute{{
				LinkIndex: 3, Link: "wlan0", Table: 1003, Priority: 100,
				Gateways: []netip.Addr{ip("198.51.100.1")},
				Addrs:    []netip.Prefix{netip.MustParsePrefix("198.51.100.20/24")},
			}},
		},
		{
			name: "on-link default route, no gateway",
			edit: func(p *policy.Policy, n *Network) {
				n.Links[1].Gateways = nil
				n.Links[1].DefaultRoute6 = false
			},
			want: []SourceRoute{{
				LinkIndex: 2, Link: "eth0", Table: 1002, Priority: 100,
				Addrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/24")},
			}},
		},
		{
			name: "no wanted endpoint, no route",
			edit: func(p *policy.Policy, _ *Network) { p.Rules[1].Ignore = true },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, n := testPolicy(), testNetwork()
			if tt.edit != nil {
				tt.edit(p, &n)
			}
			got := Desired(n, p, 8).SourceRoutes
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("unexpected source routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredLimits(t *testing.T) {
	auto := policy.Limit{Mode: policy.LimitAuto}
	wants := func(flags ...mptcp.Flags) []Want {
		var out []Want
		for _, f := range flags {
			out = append(out, Want{Endpoint: mptcp.Endpoint{Flags: f}})
		}
		return out
	}
	sub, sig := mptcp.FlagSubflow, mptcp.FlagSignal
	u := func(v uint32) *uint32 { return &v }
	tests := []struct {
		name          string
		subflows, add policy.Limit
		wants         []Want
		want          mptcp.Limits
	}{
		{"keep", policy.Limit{}, policy.Limit{}, wants(sub), mptcp.Limits{}},
		{"fixed", policy.Limit{Mode: policy.LimitFixed, Value: 5}, policy.Limit{Mode: policy.LimitFixed}, nil, mptcp.Limits{Subflows: u(5), AddAddrAccepted: u(0)}},
		{"auto, nothing wanted", auto, auto, nil, mptcp.Limits{}},
		{"auto, only signal", auto, auto, wants(sig), mptcp.Limits{Subflows: u(2), AddAddrAccepted: u(1)}},
		{"auto, one subflow", auto, auto, wants(sub, sig), mptcp.Limits{Subflows: u(2), AddAddrAccepted: u(1)}},
		{"auto, three subflows", auto, auto, wants(sub, sub|mptcp.FlagBackup, sub, sig), mptcp.Limits{Subflows: u(3), AddAddrAccepted: u(3)}},
		{"auto, capped at 8", auto, auto, wants(sub, sub, sub, sub, sub, sub, sub, sub, sub), mptcp.Limits{Subflows: u(8), AddAddrAccepted: u(8)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := desiredLimits(policy.Settings{Subflows: tt.subflows, AddAddrAccepted: tt.add}, tt.wants)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("unexpected limits (-want +got):\n%s", diff)
			}
		})
	}
}
