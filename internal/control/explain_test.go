package control

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

const explainPolicy = `subflows 3
add-addr-accepted keep
match name=eth0
    flags subflow
    priority 5
match name=wlan0
    flags signal
    port 6000
match name=lo
    ignore
`

func explainNetwork() pm.Network {
	addr := func(link int, p string) pm.Address {
		return pm.Address{LinkIndex: link, Prefix: netip.MustParsePrefix(p), Scope: netmon.ScopeUniverse}
	}
	return pm.Network{
		Links: []pm.Link{
			{Index: 1, Name: "lo", Kind: policy.KindLoopback, Usable: true},
			{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true},
			{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Usable: true, DefaultRoute6: true},
			{Index: 4, Name: "wwan0", Kind: policy.KindWWAN, Why: "no carrier"},
			{Index: 5, Name: "tun0", Kind: policy.KindVirtual, Usable: true},
		},
		Addrs: []pm.Address{
			addr(1, "127.0.0.1/8"), addr(2, "10.0.0.2/24"), addr(2, "2001:db8::2/64"),
			addr(3, "10.1.0.2/24"), addr(4, "10.2.0.2/24"), addr(2, "10.9.0.2/24"), addr(5, "10.3.0.2/24"),
		},
	}
}

// ExplainFrom and Plan are inverses for what explain prints: decisions
// with their rules, wanted endpoints, links and limits survive JSON.
func TestExplainRoundTrip(t *testing.T) {
	p, err := policy.Parse("/etc/mptcpd/policy", []byte(explainPolicy), policy.DefaultConfig().BaseSettings())
	if err != nil {
		t.Fatal(err)
	}
	n := explainNetwork()
	plan := pm.Desired(n, p, 2) // one address left out
	x := ExplainFrom(p, n, plan)
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	var back Explain
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	gotP, links, gotPlan, err := back.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(n.Links, links); diff != "" {
		t.Errorf("links (-want +got):\n%s", diff)
	}
	if gotP.Source != p.Source || gotP.Settings.Subflows != p.Settings.Subflows || gotP.Settings.AddAddrAccepted != p.Settings.AddAddrAccepted {
		t.Errorf("policy %+v, want source and limits of %+v", gotP, p)
	}
	// Rules compare by where they were written and their priority: the
	// only parts that cross.
	rules := cmp.Comparer(func(a, b *policy.Rule) bool {
		return a == nil && b == nil || a != nil && b != nil && a.Pos == b.Pos && a.Priority == b.Priority
	})
	plan.SourceRoutes = nil
	if diff := cmp.Diff(plan, gotPlan, rules, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	inPolicy := func(r *policy.Rule) bool {
		for i := range gotP.Rules {
			if &gotP.Rules[i] == r {
				return true
			}
		}
		return r == nil
	}
	for i, d := range gotPlan.Decisions {
		if !inPolicy(d.Rule) {
			t.Errorf("decision %d: rule does not point into the rebuilt policy", i)
		}
	}
	verdicts := map[pm.Verdict]bool{}
	for _, d := range gotPlan.Decisions {
		verdicts[d.Verdict] = true
	}
	for _, v := range []pm.Verdict{pm.VerdictEndpoint, pm.VerdictOverLimit, pm.VerdictLinkUnusable, pm.VerdictNoRule} {
		if !verdicts[v] {
			t.Errorf("the example lacks verdict %v: it tests less than it should", v)
		}
	}
}

func TestExplainPlanErrors(t *testing.T) {
	ok := func() Explain {
		return Explain{Subflows: "auto", AddAddrAccepted: "2", Rules: []Rule{{File: "p", Line: 1}},
			Links:     []Link{{Index: 2, Name: "eth0", Kind: "ethernet"}},
			Decisions: []Decision{{Link: "eth0", LinkIndex: 2, Kind: "ethernet", Rule: 1, Verdict: "endpoint"}},
			Wanted:    []Want{{Endpoint: Endpoint{Flags: []string{"subflow"}}, Rule: 1}}}
	}
	for _, tt := range []struct {
		name string
		edit func(*Explain)
		err  string
	}{
		{"ok", func(*Explain) {}, ""},
		{"limit", func(x *Explain) { x.Subflows = "many" }, `control: explain: subflows: "many" is not auto, keep or a number`},
		{"link kind", func(x *Explain) { x.Links[0].Kind = "modem" }, "control: explain: link eth0: unknown interface kind"},
		{"decision kind", func(x *Explain) { x.Decisions[0].Kind = "" }, "unknown interface kind"},
		{"verdict", func(x *Explain) { x.Decisions[0].Verdict = "maybe" }, `unknown verdict "maybe"`},
		{"rule", func(x *Explain) { x.Decisions[0].Rule = 2 }, "control: explain: rule 2 of 1"},
		{"want rule", func(x *Explain) { x.Wanted[0].Rule = -1 }, "control: explain: rule -1 of 1"},
		{"flag", func(x *Explain) { x.Wanted[0].Flags = []string{"sometimes"} }, `unknown flag "sometimes"`},
	} {
		x := ok()
		tt.edit(&x)
		_, _, _, err := x.Plan()
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.err)
		}
	}
}

// The socket is named like the state file, for the calling thread's
// namespace or an open one.
func TestSocketPath(t *testing.T) {
	state, err := pm.StatePath("/run/x")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(state, ".json") + ".sock"
	own, err := SocketPath("/run/x", 0)
	if err != nil || own != want {
		t.Errorf("SocketPath(own) = %q, %v; want %q", own, err, want)
	}
	f, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if got, err := SocketPath("/run/x", int(f.Fd())); err != nil || got != want {
		t.Errorf("SocketPath(fd) = %q, %v; want %q", got, err, want)
	}
	if filepath.Dir(want) != "/run/x" {
		t.Errorf("socket %q is not in the directory", want)
	}
}
