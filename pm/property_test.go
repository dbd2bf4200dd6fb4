package pm

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"syscall"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/policy"
)

// The address pool of the random networks: few enough that addresses
// repeat across links and the 8-endpoint limit is often reached.
var poolAddrs = func() []netip.Prefix {
	var out []netip.Prefix
	for i := range 8 {
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("10.0.%d.%d/24", i%3, i+1)))
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("2001:db8:%d::%d/64", i%3, i+1)))
	}
	return append(out, netip.MustParsePrefix("fe80::1/64"), netip.MustParsePrefix("169.254.1.1/16"), netip.MustParsePrefix("127.0.0.1/8"))
}()

func randomNetwork(rng *rand.Rand) Network {
	kinds := []policy.Kind{policy.KindEthernet, policy.KindWiFi, policy.KindWWAN, policy.KindVirtual, policy.KindOther, policy.KindLoopback}
	var n Network
	for i := 1; i <= 1+rng.IntN(6); i++ {
		l := Link{Index: i, Name: fmt.Sprintf("if%d", i), Kind: kinds[rng.IntN(len(kinds))], Usable: rng.IntN(5) > 0,
			DefaultRoute4: rng.IntN(2) == 0, DefaultRoute6: rng.IntN(2) == 0}
		if !l.Usable {
			l.Why = "no carrier"
		}
		if l.DefaultRoute4 && rng.IntN(3) > 0 {
			l.Gateways = append(l.Gateways, netip.AddrFrom4([4]byte{10, 0, byte(i), 254}))
		}
		n.Links = append(n.Links, l)
	}
	flags := []netmon.AddrFlags{0, 0, 0, netmon.AddrTentative, netmon.AddrDeprecated, netmon.AddrTemporary, netmon.AddrDADFailed}
	for _, p := range poolAddrs {
		for range rng.IntN(3) { // 0, 1 or 2 links (duplicates)
			n.Addrs = append(n.Addrs, Address{LinkIndex: 1 + rng.IntN(len(n.Links)), Prefix: p, Flags: flags[rng.IntN(len(flags))]})
		}
	}
	return n
}

func randomPolicy(rng *rand.Rand) *policy.Policy {
	flags := []mptcp.Flags{
		mptcp.FlagSubflow, mptcp.FlagSubflow | mptcp.FlagBackup, mptcp.FlagSubflow | mptcp.FlagFullmesh,
		mptcp.FlagSignal, mptcp.FlagSignal | mptcp.FlagBackup, mptcp.FlagSignal | mptcp.FlagSubflow,
	}
	limits := []policy.Limit{{}, {Mode: policy.LimitAuto}, {Mode: policy.LimitFixed, Value: uint32(rng.IntN(9))}}
	p := &policy.Policy{
		Source: "random",
		Settings: policy.Settings{
			CheckRoute: rng.IntN(2) == 0, SkipLoopback: rng.IntN(2) == 0, SkipLinkLocal: rng.IntN(2) == 0,
			UseTemporary: rng.IntN(2) == 0, UseDeprecated: rng.IntN(2) == 0,
			Subflows: limits[rng.IntN(3)], AddAddrAccepted: limits[rng.IntN(3)],
			RouteTableBase: 100, RulePriority: 1000,
		},
	}
	for i := range rng.IntN(5) {
		r := policy.Rule{
			Pos:           policy.Position{File: "random", Line: i + 1},
			Kinds:         []policy.Kind{policy.Kind(rng.IntN(6))},
			Ignore:        rng.IntN(4) == 0,
			Flags:         flags[rng.IntN(len(flags))],
			Priority:      rng.IntN(3),
			SourceRouting: rng.IntN(2) == 0,
			Adopt:         rng.IntN(3) == 0,
		}
		if rng.IntN(3) == 0 {
			r.Port = uint16(7000 + rng.IntN(2))
		}
		if rng.IntN(3) == 0 {
			r.Families = []int{4 + 2*rng.IntN(2)}
		}
		p.Rules = append(p.Rules, r)
	}
	p.Rules = append(p.Rules, policy.Rule{Flags: flags[rng.IntN(len(flags))]}) // a catch-all
	return p
}

// After any sequence of network and policy changes, restarts and failed
// operations, a clean pass leaves the owned endpoints equal to the plan
// and the next pass writes nothing.
func TestReconcileRandom(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			g := newRig(t)
			for range rng.IntN(4) {
				a := poolAddrs[rng.IntN(len(poolAddrs))].Addr()
				if rng.IntN(2) == 0 {
					g.k.AddImplicitEndpoint(a)
				} else {
					g.c.AddEndpoint(mptcp.Endpoint{Addr: a, Flags: mptcp.FlagSignal})
				}
			}
			n, p := randomNetwork(rng), randomPolicy(rng)
			for step := range 25 {
				switch rng.IntN(4) {
				case 0:
					n = randomNetwork(rng)
				case 1:
					p = randomPolicy(rng)
				case 2:
					n, p = randomNetwork(rng), randomPolicy(rng)
				}
				if rng.IntN(5) == 0 {
					g.restart()
				}
				if rng.IntN(4) == 0 {
					cmds := []uint8{mptcp.MPTCP_PM_CMD_ADD_ADDR, mptcp.MPTCP_PM_CMD_DEL_ADDR, mptcp.MPTCP_PM_CMD_SET_FLAGS, mptcp.MPTCP_PM_CMD_SET_LIMITS}
					cmd := cmds[rng.IntN(len(cmds))]
					g.k.SetFailure(cmd, syscall.ENOMEM)
					g.reconcile(n, p) // some operations fail
					g.k.SetFailure(cmd, 0)
				}
				res := g.converge(n, p)
				checkPlan(t, step, res.Plan)
				if t.Failed() {
					t.Fatalf("step %d: network %+v\npolicy %+v", step, n, p)
				}
			}
		})
	}
}

// checkPlan checks what any plan must satisfy.
func checkPlan(t *testing.T, step int, plan Plan) {
	t.Helper()
	seen := make(map[netip.Addr]bool)
	for _, w := range plan.Endpoints {
		if seen[w.Endpoint.Addr] {
			t.Errorf("step %d: %s wanted twice", step, w.Endpoint.Addr)
		}
		seen[w.Endpoint.Addr] = true
		if w.Endpoint.ID != 0 {
			t.Errorf("step %d: %s wanted with id %d", step, w.Endpoint.Addr, w.Endpoint.ID)
		}
	}
	if len(plan.Endpoints) > MaxEndpoints {
		t.Errorf("step %d: %d endpoints wanted", step, len(plan.Endpoints))
	}
	endpoints := 0
	for _, d := range plan.Decisions {
		if d.Verdict == VerdictEndpoint {
			endpoints++
		}
	}
	if endpoints != len(plan.Endpoints) {
		t.Errorf("step %d: %d decisions say endpoint, %d endpoints", step, endpoints, len(plan.Endpoints))
	}
}
