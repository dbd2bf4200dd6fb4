package ctl

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// explainPolicy is testdata/policy-good.policy as the daemon would read
// it from /etc/mptcpd/policy.
func explainPolicy(t *testing.T) *loadedPolicy {
	t.Helper()
	data, err := os.ReadFile("testdata/policy-good.policy")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("/etc/mptcpd/policy", data, policy.DefaultConfig().BaseSettings())
	if err != nil {
		t.Fatal(err)
	}
	return &loadedPolicy{
		src:    policySource{Config: policy.DefaultConfigFile, ConfigFound: true, Policy: p.Source, Why: "policy-file in " + policy.DefaultConfigFile},
		policy: p,
	}
}

func addr(link int, prefix string, flags netmon.AddrFlags) pm.Address {
	return pm.Address{LinkIndex: link, Prefix: netip.MustParsePrefix(prefix), Flags: flags}
}

func ep(id mptcp.ID, a string, flags mptcp.Flags, ifindex int) mptcp.Endpoint {
	return mptcp.Endpoint{ID: id, Addr: netip.MustParseAddr(a), Flags: flags, IfIndex: ifindex}
}

// explainNetwork has an address for every verdict, under explainPolicy.
var explainNetwork = pm.Network{
	Links: []pm.Link{
		{Index: 1, Name: "lo", Kind: policy.KindLoopback, Usable: true},
		{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true,
			Gateways: []netip.Addr{netip.MustParseAddr("10.1.0.1")}},
		{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Usable: true},
		{Index: 4, Name: "usb0", Kind: policy.KindWWAN, Why: "no carrier"},
		{Index: 5, Name: "veth0", Kind: policy.KindVirtual, Usable: true},
		{Index: 6, Name: "eth1", Kind: policy.KindEthernet, Usable: true},
		{Index: 7, Name: "usb1", Kind: policy.KindWWAN, Usable: true, DefaultRoute4: true, DefaultRoute6: true},
		{Index: 8, Name: "wlan1", Kind: policy.KindWiFi, Why: "down"},
	},
	Addrs: []pm.Address{
		addr(1, "127.0.0.1/8", 0),
		addr(1, "::1/128", 0),
		addr(2, "10.1.0.2/24", 0),                          // present
		addr(2, "10.99.1.2/24", 0),                         // ignored, and the kernel has it
		addr(2, "2001:db8:1::2/64", 0),                     // missing
		addr(2, "2001:db8:1::99/64", netmon.AddrTentative), // DAD running
		addr(2, "fe80::2/64", 0),
		addr(3, "10.2.0.2/24", 0), // the kernel's differs
		addr(3, "2001:db8:2::2/64", netmon.AddrDeprecated),
		addr(4, "10.3.0.2/24", 0),
		addr(5, "10.4.0.2/24", 0), // no rule
		addr(6, "10.1.0.2/24", 0), // eth0 has it
		addr(6, "10.5.0.2/24", 0), // missing
		addr(7, "10.6.0.2/24", 0), // lowest priority: over the limit
		addr(9, "10.7.0.2/24", 0), // on a link the snapshot lacks
	},
}

// explainKernel: one present, two different, one on an ignored address
// and three on no address here; those four leave room for 4.
var explainKernel = []mptcp.Endpoint{
	ep(1, "10.1.0.2", mptcp.FlagSubflow, 2),
	{ID: 2, Addr: netip.MustParseAddr("10.2.0.2"), Port: 6000, Flags: mptcp.FlagSignal},
	ep(3, "10.5.0.2", mptcp.FlagSubflow|mptcp.FlagBackup, 6),
	ep(5, "10.9.9.9", mptcp.FlagSignal, 0),
	ep(6, "10.9.9.10", mptcp.FlagSubflow, 42),
	ep(7, "2001:db8:9::9", mptcp.FlagSubflow|mptcp.FlagFullmesh, 0),
	ep(9, "10.99.1.2", mptcp.FlagSubflow, 2),
}

func u32p(v uint32) *uint32 { return &v }

func explainGolden(t *testing.T) *explanation {
	return explain(explainPolicy(t), explainNetwork, explainKernel, mptcp.Limits{Subflows: u32p(2), AddAddrAccepted: u32p(0)})
}

func TestGoldenExplain(t *testing.T) {
	x := explainGolden(t)
	for _, tt := range []struct {
		name string
		f    format
	}{
		{"explain.txt", format{}},
		{"explain.json", format{JSON: true}},
		{"explain-pretty.json", format{JSON: true, Pretty: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			formatExplain(&b, x, tt.f)
			goldenFile(t, tt.name, b.Bytes())
		})
	}
}

func TestExplainTextFits80Columns(t *testing.T) {
	var b bytes.Buffer
	formatExplain(&b, explainGolden(t), format{})
	for _, line := range strings.Split(b.String(), "\n") {
		if len(line) > 80 {
			t.Errorf("line of %d columns: %q", len(line), line)
		}
	}
}

// explainJSON is the -j object, as a consumer would decode it.
type explainJSON struct {
	Policy struct {
		Source      string `json:"source"`
		ConfigFound bool   `json:"config_found"`
	} `json:"policy"`
	Endpoints struct {
		Wanted, Capacity, Max, Foreign int
	} `json:"endpoints"`
	Interfaces []struct {
		Name      string `json:"name"`
		Kind      string `json:"kind"`
		Usable    bool   `json:"usable"`
		Addresses []struct {
			Address string `json:"address"`
			Verdict string `json:"verdict"`
			Rule    *struct {
				Index int    `json:"index"`
				File  string `json:"file"`
				Line  int    `json:"line"`
			} `json:"rule"`
			Endpoint *struct {
				Flags []string `json:"flags"`
				Port  int      `json:"port"`
				Dev   string   `json:"dev"`
			} `json:"endpoint"`
			Kernel         string         `json:"kernel"`
			KernelEndpoint map[string]any `json:"kernel_endpoint"`
		} `json:"addresses"`
	} `json:"interfaces"`
	Unexplained []map[string]any `json:"unexplained"`
	Limits      map[string]struct {
		Policy string  `json:"policy"`
		Want   *uint32 `json:"want"`
		Kernel *uint32 `json:"kernel"`
	} `json:"limits"`
}

// verdictLine is one address as the tests compare it.
type verdictLine struct {
	Link, Address, Verdict, Kernel string
	Line                           int // of the rule; 0 for none
}

func (x explainJSON) verdicts() []verdictLine {
	var out []verdictLine
	for _, i := range x.Interfaces {
		for _, a := range i.Addresses {
			v := verdictLine{Link: i.Name, Address: a.Address, Verdict: a.Verdict, Kernel: a.Kernel}
			if a.Rule != nil {
				v.Line = a.Rule.Line
			}
			out = append(out, v)
		}
	}
	return out
}

func TestExplainJSONDecodes(t *testing.T) {
	for _, pretty := range []bool{false, true} {
		var b bytes.Buffer
		formatExplain(&b, explainGolden(t), format{JSON: true, Pretty: pretty})
		var got explainJSON
		if err := json.Unmarshal(b.Bytes(), &got); err != nil {
			t.Fatalf("pretty=%v: %v\n%s", pretty, err, b.String())
		}
		want := []verdictLine{
			{"lo", "127.0.0.1/8", "loopback", "none", 0},
			{"lo", "::1/128", "loopback", "none", 0},
			{"eth0", "10.1.0.2/24", "endpoint", "present", 11},
			{"eth0", "10.99.1.2/24", "ignored", "unwanted", 8},
			{"eth0", "2001:db8:1::2/64", "endpoint", "missing", 11},
			{"eth0", "2001:db8:1::99/64", "tentative", "none", 0},
			{"eth0", "fe80::2/64", "link-local", "none", 0},
			{"wlan0", "10.2.0.2/24", "endpoint", "differs", 15},
			{"wlan0", "2001:db8:2::2/64", "deprecated", "none", 0},
			{"usb0", "10.3.0.2/24", "link not usable", "none", 0},
			{"veth0", "10.4.0.2/24", "no rule matched", "none", 0},
			{"eth1", "10.1.0.2/24", "duplicate", "none", 11},
			{"eth1", "10.5.0.2/24", "endpoint", "differs", 11},
			{"usb1", "10.6.0.2/24", "over limit", "none", 24},
			{"ifindex 9", "10.7.0.2/24", "link not usable", "none", 0},
		}
		if diff := cmp.Diff(want, got.verdicts()); diff != "" {
			t.Errorf("pretty=%v: unexpected verdicts (-want +got):\n%s", pretty, diff)
		}
		if e := got.Endpoints; e.Wanted != 4 || e.Capacity != 4 || e.Max != 8 || e.Foreign != 4 {
			t.Errorf("endpoints %+v, want 4 wanted, capacity 4 of 8, 4 foreign", e)
		}
		if len(got.Unexplained) != 3 {
			t.Errorf("unexplained %v, want the 3 endpoints on no address", got.Unexplained)
		}
		if l := got.Limits["subflows"]; l.Policy != "auto" || l.Want == nil || *l.Want != 3 || l.Kernel == nil || *l.Kernel != 2 {
			t.Errorf("subflows limit %+v, want auto 3, kernel 2", l)
		}
		if l := got.Limits["add_addr_accepted"]; l.Policy != "keep" || l.Want != nil {
			t.Errorf("add_addr_accepted limit %+v, want keep, nothing wanted", l)
		}
	}
}

// TestExplainCapacity: kernel endpoints on wanted addresses leave the
// room alone; those on other addresses take from it.
func TestExplainCapacity(t *testing.T) {
	lp := explainPolicy(t)
	n := pm.Network{
		Links: []pm.Link{{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Usable: true}},
		Addrs: []pm.Address{addr(2, "10.1.0.2/24", 0), addr(2, "10.1.0.3/24", 0)},
	}
	tests := []struct {
		name      string
		kernel    []mptcp.Endpoint
		capacity  int
		overLimit int
	}{
		{"empty kernel", nil, 8, 0},
		{"on wanted addresses", []mptcp.Endpoint{ep(1, "10.1.0.2", mptcp.FlagSignal, 0), ep(2, "10.1.0.3", mptcp.FlagSubflow, 2)}, 8, 0},
		{"seven foreign", []mptcp.Endpoint{
			ep(1, "10.9.0.1", 0, 0), ep(2, "10.9.0.2", 0, 0), ep(3, "10.9.0.3", 0, 0), ep(4, "10.9.0.4", 0, 0),
			ep(5, "10.9.0.5", 0, 0), ep(6, "10.9.0.6", 0, 0), ep(7, "10.9.0.7", 0, 0),
		}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := explain(lp, n, tt.kernel, mptcp.Limits{})
			over := 0
			for _, d := range x.plan.Decisions {
				if d.Verdict == pm.VerdictOverLimit {
					over++
				}
			}
			if x.capacity != tt.capacity || over != tt.overLimit {
				t.Errorf("capacity %d with %d over the limit, want %d and %d", x.capacity, over, tt.capacity, tt.overLimit)
			}
		})
	}
}

// TestPolicyExplainFakeKernel runs `policy explain` end to end without
// root: a netmon state for the namespace, the real nl/mptcp client on
// the fake kernel.
func TestPolicyExplainFakeKernel(t *testing.T) {
	st := netmon.NewState()
	for _, l := range []netmon.Link{
		{Index: 1, Name: "lo", Up: true, Carrier: true, Loopback: true, OperState: netmon.OperUnknown},
		{Index: 2, Name: "eth0", Kind: "veth", Up: true, Carrier: true, OperState: netmon.OperUp},
		{Index: 3, Name: "wlan0", Kind: "veth", Up: true, Carrier: true, OperState: netmon.OperUp},
	} {
		st.Apply(netmon.LinkEvent{Op: netmon.OpNew, Link: l})
	}
	for _, a := range []netmon.Addr{
		{LinkIndex: 1, Prefix: netip.MustParsePrefix("127.0.0.1/8"), Scope: netmon.Scope(254)},
		{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.0.2/24")},
		{LinkIndex: 2, Prefix: netip.MustParsePrefix("fe80::2/64"), Scope: netmon.Scope(253)},
		{LinkIndex: 3, Prefix: netip.MustParsePrefix("10.2.0.2/24")},
	} {
		st.Apply(netmon.AddrEvent{Op: netmon.OpNew, Addr: a})
	}
	st.Apply(netmon.RouteEvent{Op: netmon.OpNew, Route: netmon.Route{
		Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.1.0.1"), LinkIndex: 2, Table: 254,
	}})
	k := mptcptest.NewKernel()
	c, err := k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddEndpoint(ep(0, "10.1.0.2", mptcp.FlagSubflow, 2)); err != nil {
		t.Fatal(err)
	}
	b := &fakeKernelBackend{fakeLinks: fakeLinks{"lo": 1, "eth0": 2, "wlan0": 3}, fakeNetwork: fakeNetwork{st}, k: k}

	var o, e bytes.Buffer
	env := policyEnv(t.TempDir(), b, &o, &e)
	if code := Main(strings.Fields("-j policy explain --policy testdata/policy-good.policy"), env); code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, e.String())
	}
	var got explainJSON
	if err := json.Unmarshal(o.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, o.String())
	}
	want := []verdictLine{
		{"lo", "127.0.0.1/8", "loopback", "none", 0},
		{"eth0", "10.1.0.2/24", "endpoint", "present", 11},
		{"eth0", "fe80::2/64", "link-local", "none", 0},
		{"wlan0", "10.2.0.2/24", "endpoint", "missing", 15},
	}
	if diff := cmp.Diff(want, got.verdicts()); diff != "" {
		t.Errorf("unexpected verdicts (-want +got):\n%s", diff)
	}

	// The text form names the same rules.
	o.Reset()
	if code := Main(strings.Fields("policy e --policy testdata/policy-good.policy"), env); code != ExitOK {
		t.Fatalf("exit %d, stderr %q", code, e.String())
	}
	for _, want := range []string{
		"eth0: ethernet, usable, default route IPv4\n  10.1.0.2/24  endpoint subflow (line 11); kernel id 1\n",
		"  10.2.0.2/24  endpoint signal port 6000 (line 15); not in kernel\n",
	} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, o.String())
		}
	}
}

// TestExplainBuiltinRules: rules of the built-in policy have no line, so
// the text names them by their place.
func TestExplainBuiltinRules(t *testing.T) {
	base := policy.DefaultConfig().BaseSettings()
	base.CheckRoute = true
	lp := &loadedPolicy{src: policySource{Why: "test"}, policy: policy.Default(base, 0)}
	n := pm.Network{
		Links: []pm.Link{
			{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true},
			{Index: 3, Name: "docker0", Kind: policy.KindVirtual, Usable: true},
		},
		Addrs: []pm.Address{addr(2, "10.1.0.2/24", 0), addr(2, "2001:db8::2/64", 0), addr(3, "172.17.0.1/16", 0)},
	}
	var b bytes.Buffer
	formatExplain(&b, explain(lp, n, nil, mptcp.Limits{}), format{})
	for _, want := range []string{
		"policy: built-in (test)\n",
		"  10.1.0.2/24     endpoint subflow (built-in rule 4); not in kernel\n",
		"  2001:db8::2/64  no default route, check-route (built-in rule 4)\n",
		"  172.17.0.1/16   ignored (built-in rule 2)\n",
		"  subflows: want 2 (auto), kernel unknown\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}
