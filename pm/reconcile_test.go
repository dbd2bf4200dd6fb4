package pm

import (
	"bytes"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
	"github.com/mptcpd-go/mptcpd/policy"
)

// rig is a reconciler on the fake kernel with its store in a temporary
// file.
type rig struct {
	t    *testing.T
	k    *mptcptest.Kernel
	c    *mptcp.Client
	path string
	st   *Store
	r    *Reconciler
	logs bytes.Buffer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	k := mptcptest.NewKernel()
	c, err := k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	g := &rig{t: t, k: k, c: c, path: filepath.Join(stateDir(t), "state.json")}
	g.restart()
	return g
}

// stateDir is a temporary directory on tmpfs when there is one, like the
// daemon's /run: there fsync costs nothing, on a disk it makes the
// randomized test slow.
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pm-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// restart is a new daemon: the store read back from its file, a new
// reconciler.
func (g *rig) restart() {
	g.t.Helper()
	st, err := OpenStore(g.path)
	if err != nil {
		g.t.Fatal(err)
	}
	g.st = st
	g.logs.Reset()
	g.r = NewReconciler(g.c, st, slog.New(slog.NewTextHandler(&g.logs, nil)))
}

func (g *rig) reconcile(n Network, p *policy.Policy) Result {
	g.t.Helper()
	res, err := g.r.Reconcile(n, p)
	if err != nil {
		g.t.Fatalf("Reconcile: %v", err)
	}
	return res
}

// ops returns the kernel writes since the last call.
func (g *rig) ops() []string {
	var out []string
	for _, op := range g.k.Ops() {
		out = append(out, op.String())
	}
	g.k.ResetOps()
	return out
}

func (g *rig) wantOps(want ...string) {
	g.t.Helper()
	if diff := cmp.Diff(want, g.ops()); diff != "" {
		g.t.Errorf("unexpected kernel writes (-want +got):\n%s", diff)
	}
}

// converge reconciles, checks that the endpoints the store owns are
// exactly the plan's (less those foreign endpoints hold) and that a
// second pass writes nothing.
func (g *rig) converge(n Network, p *policy.Policy) Result {
	g.t.Helper()
	res := g.reconcile(n, p)
	if len(res.Failed) != 0 {
		g.t.Fatalf("pass failed: %v", res.Err())
	}
	g.ops()
	foreign := g.foreign()
	want := wantedSet(res.Plan)
	for _, h := range res.Held {
		delete(want, h.Want.Endpoint.Addr)
	}
	got := make(map[netip.Addr]mptcp.Endpoint)
	for _, e := range g.k.Endpoints() {
		if _, ok := foreign[e.ID]; ok {
			continue
		}
		e.ID = 0
		got[e.Addr] = e
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		g.t.Errorf("kernel table is not the plan (-plan +kernel):\n%s", diff)
	}
	again := g.reconcile(n, p)
	if ops := g.ops(); len(ops) != 0 || again.Changed || again.Retry {
		g.t.Errorf("second pass wrote %v (changed %v, retry %v), want nothing", ops, again.Changed, again.Retry)
	}
	return res
}

// foreign returns the kernel's endpoints the store does not own, by id.
func (g *rig) foreign() map[mptcp.ID]mptcp.Endpoint {
	m := make(map[mptcp.ID]mptcp.Endpoint)
	for _, e := range g.k.Endpoints() {
		if !g.st.owns(e) {
			m[e.ID] = e
		}
	}
	return m
}

// addForeign adds an endpoint as an administrator would.
func (g *rig) addForeign(e mptcp.Endpoint) {
	g.t.Helper()
	if err := g.c.AddEndpoint(e); err != nil {
		g.t.Fatalf("adding foreign endpoint %v: %v", e, err)
	}
	g.k.ResetOps()
}

func TestReconcileFromScratch(t *testing.T) {
	g := newRig(t)
	res := g.converge(testNetwork(), testPolicy())
	if !res.Changed || res.Retry || len(res.Added) != 3 {
		t.Errorf("result %+v: want 3 endpoints added", res)
	}
	g.k.ResetOps()
	g.reconcile(testNetwork(), testPolicy())
	g.wantOps()

	g = newRig(t)
	g.reconcile(testNetwork(), testPolicy())
	g.wantOps(
		"ADD_ADDR 192.0.2.10 id 1 subflow ifindex 2: ok",
		"ADD_ADDR 2001:db8::10 id 2 subflow ifindex 2: ok",
		"ADD_ADDR 198.51.100.20 id 3 subflow backup ifindex 3: ok",
	)
	want := []Owned{{ID: 1, Addr: ip("192.0.2.10")}, {ID: 2, Addr: ip("2001:db8::10")}, {ID: 3, Addr: ip("198.51.100.20")}}
	if diff := cmp.Diff(want, g.st.Endpoints(), cmp.Comparer(func(a, b Owned) bool { return a == b })); diff != "" {
		t.Errorf("unexpected store (-want +got):\n%s", diff)
	}
}

func TestReconcileChanges(t *testing.T) {
	tests := []struct {
		name string
		edit func(*policy.Policy, *Network)
		ops  []string
	}{
		{
			name: "address gone",
			edit: func(_ *policy.Policy, n *Network) {
				n.Addrs = slices.DeleteFunc(n.Addrs, func(a Address) bool { return a.Addr() == ip("2001:db8::10") })
			},
			ops: []string{"DEL_ADDR 2001:db8::10 id 2: ok"},
		},
		{
			name: "link loses carrier",
			edit: func(_ *policy.Policy, n *Network) { n.Links[2].Usable, n.Links[2].Why = false, "no carrier" },
			ops:  []string{"DEL_ADDR 198.51.100.20 id 3: ok"},
		},
		{
			name: "backup on: SET_FLAGS, same id",
			edit: func(p *policy.Policy, _ *Network) { p.Rules[1].Flags |= mptcp.FlagBackup },
			ops: []string{
				"SET_FLAGS 192.0.2.10 id 1 backup: ok",
				"SET_FLAGS 2001:db8::10 id 2 backup: ok",
			},
		},
		{
			name: "backup off, fullmesh on",
			edit: func(p *policy.Policy, _ *Network) { p.Rules[2].Flags = mptcp.FlagSubflow | mptcp.FlagFullmesh },
			ops:  []string{"SET_FLAGS 198.51.100.20 id 3 fullmesh: ok"},
		},
		{
			name: "signal instead of subflow: delete, then add",
			edit: func(p *policy.Policy, _ *Network) { p.Rules[2].Flags = mptcp.FlagSignal },
			ops: []string{
				"DEL_ADDR 198.51.100.20 id 3: ok",
				"ADD_ADDR 198.51.100.20 id 3 signal ifindex 3: ok",
			},
		},
		{
			name: "port: delete, then add",
			edit: func(p *policy.Policy, _ *Network) { p.Rules[2].Flags, p.Rules[2].Port = mptcp.FlagSignal, 7000 },
			ops: []string{
				"DEL_ADDR 198.51.100.20 id 3: ok",
				"ADD_ADDR 198.51.100.20 port 7000 id 3 signal ifindex 3: ok",
			},
		},
		{
			name: "address moves to another link",
			edit: func(_ *policy.Policy, n *Network) {
				n.Links = append(n.Links, Link{Index: 9, Name: "eth9", Kind: policy.KindEthernet, Usable: true, DefaultRoute4: true})
				n.Addrs[slices.IndexFunc(n.Addrs, func(a Address) bool { return a.Addr() == ip("198.51.100.20") })].LinkIndex = 9
			},
			ops: []string{
				"DEL_ADDR 198.51.100.20 id 3: ok",
				"ADD_ADDR 198.51.100.20 id 3 subflow ifindex 9: ok",
			},
		},
		{
			name: "new address, lowest free id",
			edit: func(_ *policy.Policy, n *Network) {
				n.Addrs = append(n.Addrs, addr(2, "192.0.2.11/24", 0))
				n.Addrs = slices.DeleteFunc(n.Addrs, func(a Address) bool { return a.Addr() == ip("2001:db8::10") })
			},
			ops: []string{
				"DEL_ADDR 2001:db8::10 id 2: ok",
				"ADD_ADDR 192.0.2.11 id 2 subflow ifindex 2: ok",
			},
		},
		{
			name: "policy ignores everything",
			edit: func(p *policy.Policy, _ *Network) { p.Rules = []policy.Rule{{Ignore: true}} },
			ops: []string{
				"DEL_ADDR 192.0.2.10 id 1: ok",
				"DEL_ADDR 2001:db8::10 id 2: ok",
				"DEL_ADDR 198.51.100.20 id 3: ok",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newRig(t)
			g.converge(testNetwork(), testPolicy())
			p, n := testPolicy(), testNetwork()
			tt.edit(p, &n)
			res := g.reconcile(n, p)
			if diff := cmp.Diff(tt.ops, g.ops()); diff != "" {
				t.Errorf("unexpected kernel writes (-want +got):\n%s", diff)
			}
			if !res.Changed || len(res.Failed) != 0 {
				t.Errorf("changed %v, failed %v: want a clean change", res.Changed, res.Err())
			}
			g.converge(n, p)
		})
	}
}

func TestReconcileForeign(t *testing.T) {
	other := mptcp.Endpoint{Addr: ip("203.0.113.1"), Flags: mptcp.FlagSignal}
	t.Run("left alone", func(t *testing.T) {
		g := newRig(t)
		g.addForeign(other)
		g.converge(testNetwork(), testPolicy())
		p := testPolicy()
		p.Rules = nil
		g.converge(testNetwork(), p)
		if got := g.k.Endpoints(); len(got) != 1 || got[0].Addr != other.Addr {
			t.Errorf("table %v: want only the foreign endpoint", got)
		}
	})
	t.Run("holds a wanted address", func(t *testing.T) {
		g := newRig(t)
		g.addForeign(mptcp.Endpoint{ID: 9, Addr: ip("192.0.2.10"), Flags: mptcp.FlagSignal})
		res := g.converge(testNetwork(), testPolicy())
		if len(res.Held) != 1 || res.Held[0].String() != "192.0.2.10 held by foreign endpoint id 9" {
			t.Errorf("held %v: want 192.0.2.10 by id 9", res.Held)
		}
		if e := g.k.Endpoints(); e[len(e)-1] != (mptcp.Endpoint{ID: 9, Addr: ip("192.0.2.10"), Flags: mptcp.FlagSignal}) {
			t.Errorf("foreign endpoint changed: %v", e)
		}
	})
	t.Run("six foreign leave two places", func(t *testing.T) {
		g := newRig(t)
		for i := range 6 {
			g.addForeign(mptcp.Endpoint{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), Flags: mptcp.FlagSubflow})
		}
		res := g.converge(testNetwork(), testPolicy())
		if diff := cmp.Diff([]string{"192.0.2.10", "2001:db8::10"}, endpointAddrs(res.Plan)); diff != "" {
			t.Errorf("unexpected plan (-want +got):\n%s", diff)
		}
		if why := whys(res.Plan)["wlan0 198.51.100.20"]; why != "over the 8-endpoint limit, 2 left beside foreign endpoints (priority 5)" {
			t.Errorf("wlan0's verdict: %q", why)
		}
	})
	t.Run("a held address takes no place", func(t *testing.T) {
		g := newRig(t)
		for i := range 6 {
			g.addForeign(mptcp.Endpoint{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i + 1)}), Flags: mptcp.FlagSubflow})
		}
		g.addForeign(mptcp.Endpoint{Addr: ip("192.0.2.10"), Flags: mptcp.FlagSubflow})
		res := g.converge(testNetwork(), testPolicy())
		if diff := cmp.Diff([]string{"192.0.2.10", "2001:db8::10"}, endpointAddrs(res.Plan)); diff != "" {
			t.Errorf("unexpected plan (-want +got):\n%s", diff)
		}
		if len(res.Added) != 1 || len(g.k.Endpoints()) != MaxEndpoints {
			t.Errorf("added %v, table %v: want 2001:db8::10 added into the last place", res.Added, g.k.Endpoints())
		}
	})
}

func TestReconcileAdopt(t *testing.T) {
	g := newRig(t)
	g.addForeign(mptcp.Endpoint{ID: 7, Addr: ip("192.0.2.10"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup, IfIndex: 2})
	g.addForeign(mptcp.Endpoint{ID: 8, Addr: ip("198.51.100.20"), Flags: mptcp.FlagSubflow, IfIndex: 3})
	g.addForeign(mptcp.Endpoint{ID: 9, Addr: ip("10.64.0.2"), Flags: mptcp.FlagSubflow, IfIndex: 4})
	p := testPolicy()
	p.Rules[1].Adopt = true                // eth*
	p.Rules = append(p.Rules, policy.Rule{ // wwan0: not usable, so not wanted
		Kinds: []policy.Kind{policy.KindWWAN}, Flags: mptcp.FlagSubflow, Adopt: true,
	})
	res := g.reconcile(testNetwork(), p)
	g.wantOps(
		"DEL_ADDR 10.64.0.2 id 9: ok",
		"SET_FLAGS 192.0.2.10 id 7: ok",
		"ADD_ADDR 2001:db8::10 id 1 subflow ifindex 2: ok",
	)
	var adopted []mptcp.ID
	for _, e := range res.Adopted {
		adopted = append(adopted, e.ID)
	}
	if diff := cmp.Diff([]mptcp.ID{7, 9}, adopted); diff != "" {
		t.Errorf("unexpected adoptions (-want +got):\n%s", diff)
	}
	if len(res.Held) != 1 || res.Held[0].Foreign.ID != 8 {
		t.Errorf("held %v: want wlan0's address by id 8 (its rule does not adopt)", res.Held)
	}
	if n := strings.Count(g.logs.String(), "adopting endpoint"); n != 2 {
		t.Errorf("logged %d adoptions, want 2:\n%s", n, g.logs.String())
	}
	g.converge(testNetwork(), p)
	if n := strings.Count(g.logs.String(), "adopting endpoint"); n != 2 {
		t.Errorf("adoptions logged again: %d", n)
	}
}

func TestReconcileRestart(t *testing.T) {
	g := newRig(t)
	g.addForeign(mptcp.Endpoint{Addr: ip("203.0.113.1"), Flags: mptcp.FlagSignal})
	g.converge(testNetwork(), testPolicy())
	g.restart()
	res := g.reconcile(testNetwork(), testPolicy())
	g.wantOps()
	if res.Changed || len(res.Adopted) != 0 {
		t.Errorf("restart: changed %v, adopted %v; want the store to say what is ours", res.Changed, res.Adopted)
	}

	// After a restart only the difference is applied, and the foreign
	// endpoint is still not ours.
	g.restart()
	n := testNetwork()
	n.Links[2].Usable = false
	g.reconcile(n, testPolicy())
	g.wantOps("DEL_ADDR 198.51.100.20 id 4: ok")
}

// crashingKernel dies in AddEndpoint, after passing the add on (after) or
// before (!after), like a daemon killed with SIGKILL at that point.
type crashingKernel struct {
	Kernel
	after bool
}

type crash struct{}

func (c crashingKernel) AddEndpoint(e mptcp.Endpoint) error {
	if c.after {
		if err := c.Kernel.AddEndpoint(e); err != nil {
			return err
		}
	}
	panic(crash{})
}

func TestReconcileCrashDuringAdd(t *testing.T) {
	for _, after := range []bool{false, true} {
		name := map[bool]string{false: "before the add", true: "after the add"}[after]
		t.Run(name, func(t *testing.T) {
			g := newRig(t)
			st, _ := OpenStore(g.path)
			func() {
				defer func() {
					if _, ok := recover().(crash); !ok {
						t.Fatal("the daemon did not crash")
					}
				}()
				NewReconciler(crashingKernel{g.c, after}, st, nil).Reconcile(testNetwork(), testPolicy())
			}()
			g.k.ResetOps()
			g.restart()
			res := g.reconcile(testNetwork(), testPolicy())
			var added []string
			for _, e := range res.Added {
				added = append(added, e.Addr.String())
			}
			want := []string{"192.0.2.10", "2001:db8::10", "198.51.100.20"}
			if after {
				want = want[1:] // the first add went through: it is ours, not added again
			}
			if diff := cmp.Diff(want, added); diff != "" {
				t.Errorf("unexpected adds after the restart (-want +got):\n%s", diff)
			}
			if len(res.Failed) != 0 || len(res.Held) != 0 {
				t.Errorf("after the restart: failed %v, held %v", res.Err(), res.Held)
			}
			g.converge(testNetwork(), testPolicy())
		})
	}
}

func TestReconcileLimits(t *testing.T) {
	p := testPolicy()
	p.Settings.Subflows = policy.Limit{Mode: policy.LimitFixed, Value: 4}
	p.Settings.AddAddrAccepted = policy.Limit{Mode: policy.LimitAuto}
	u := func(v uint32) *uint32 { return &v }
	setLimits := func(g *rig, l mptcp.Limits) {
		if err := g.c.SetLimits(l); err != nil {
			t.Fatal(err)
		}
		g.k.ResetOps()
	}

	g := newRig(t)
	res := g.reconcile(testNetwork(), p)
	g.wantOps(
		"SET_LIMITS subflows 4 add_addr_accepted 3: ok",
		"ADD_ADDR 192.0.2.10 id 1 subflow ifindex 2: ok",
		"ADD_ADDR 2001:db8::10 id 2 subflow ifindex 2: ok",
		"ADD_ADDR 198.51.100.20 id 3 subflow backup ifindex 3: ok",
	)
	if diff := cmp.Diff(mptcp.Limits{Subflows: u(4), AddAddrAccepted: u(3)}, res.LimitsSet); diff != "" {
		t.Errorf("unexpected limits set (-want +got):\n%s", diff)
	}
	g.converge(testNetwork(), p)

	// An administrator raises subflows: it is left alone, logged once,
	// while add_addr_accepted is still managed.
	setLimits(g, mptcp.Limits{Subflows: u(6)})
	n := testNetwork()
	n.Links[2].Usable = false
	res = g.reconcile(n, p)
	g.wantOps("DEL_ADDR 198.51.100.20 id 3: ok", "SET_LIMITS add_addr_accepted 2: ok")
	if diff := cmp.Diff([]string{"subflows"}, res.AdminLimits); diff != "" {
		t.Errorf("unexpected admin limits (-want +got):\n%s", diff)
	}
	g.converge(n, p)
	g.restart() // the store still says 4: the 6 is still the administrator's
	g.reconcile(n, p)
	g.reconcile(n, p)
	g.wantOps()
	if c := strings.Count(g.logs.String(), "limit set by someone else"); c != 1 {
		t.Errorf("logged the administrator's limit %d times, want once:\n%s", c, g.logs.String())
	}

	// Back to our value: managed again.
	setLimits(g, mptcp.Limits{Subflows: u(4)})
	p.Settings.Subflows.Value = 5
	res = g.reconcile(n, p)
	g.wantOps("SET_LIMITS subflows 5: ok")
	if len(res.AdminLimits) != 0 {
		t.Errorf("admin limits %v, want none", res.AdminLimits)
	}

	// First run on a namespace whose administrator set a limit already.
	g = newRig(t)
	setLimits(g, mptcp.Limits{Subflows: u(3)})
	g.reconcile(testNetwork(), p)
	if l := g.k.Limits(); *l.Subflows != 3 || *l.AddAddrAccepted != 3 {
		t.Errorf("limits %d/%d, want the administrator's 3 subflows and our 3", *l.Subflows, *l.AddAddrAccepted)
	}

	// First run with default values that happen to be the wanted ones:
	// nothing to write, but now they are ours.
	g = newRig(t)
	q := testPolicy()
	q.Settings.Subflows = policy.Limit{Mode: policy.LimitFixed, Value: 2}
	q.Settings.AddAddrAccepted = policy.Limit{Mode: policy.LimitFixed, Value: 0}
	g.reconcile(Network{}, q)
	g.wantOps()
	if l := g.st.Limits(); l.Subflows == nil || l.AddAddrAccepted == nil {
		t.Errorf("recorded limits %+v, want both", l)
	}
}

// hookKernel runs a hook after the dump, as if someone changed the table
// right after we read it.
type hookKernel struct {
	Kernel
	afterDump func()
}

func (h *hookKernel) Endpoints() ([]mptcp.Endpoint, error) {
	eps, err := h.Kernel.Endpoints()
	if h.afterDump != nil {
		h.afterDump()
		h.afterDump = nil
	}
	return eps, err
}

func TestReconcileFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(g *rig, n *Network, p *policy.Policy) // after converging on the test network
		failed int                                        // 0 means 1
		retry  bool
		ops    []string
	}{
		{
			name: "add fails",
			setup: func(g *rig, n *Network, _ *policy.Policy) {
				n.Addrs = append(n.Addrs, addr(2, "192.0.2.11/24", 0), addr(2, "192.0.2.12/24", 0))
				g.k.FailNext(mptcp.MPTCP_PM_CMD_ADD_ADDR, syscall.ENOMEM)
			},
			ops: []string{
				"ADD_ADDR 192.0.2.11 id 4 subflow ifindex 2: ENOMEM",
				"ADD_ADDR 192.0.2.12 id 5 subflow ifindex 2: ok",
			},
		},
		{
			name: "delete fails: its replacement waits",
			setup: func(g *rig, _ *Network, p *policy.Policy) {
				p.Rules[2].Flags = mptcp.FlagSignal
				p.Rules[1].Flags |= mptcp.FlagBackup
				g.k.FailNext(mptcp.MPTCP_PM_CMD_DEL_ADDR, syscall.EPERM)
			},
			failed: 2, // the delete and its add
			ops: []string{
				"DEL_ADDR 198.51.100.20 id 3: EPERM",
				"SET_FLAGS 192.0.2.10 id 1 backup: ok",
				"SET_FLAGS 2001:db8::10 id 2 backup: ok",
			},
		},
		{
			name: "set flags fails",
			setup: func(g *rig, _ *Network, p *policy.Policy) {
				p.Rules[1].Flags |= mptcp.FlagBackup
				g.k.FailNext(mptcp.MPTCP_PM_CMD_SET_FLAGS, syscall.EINVAL)
			},
			ops: []string{
				"SET_FLAGS 192.0.2.10 id 1 backup: EINVAL",
				"SET_FLAGS 2001:db8::10 id 2 backup: ok",
			},
		},
		{
			name: "set limits fails",
			setup: func(g *rig, _ *Network, p *policy.Policy) {
				p.Settings.Subflows = policy.Limit{Mode: policy.LimitFixed, Value: 3}
				g.k.FailNext(mptcp.MPTCP_PM_CMD_SET_LIMITS, syscall.EINVAL)
			},
			ops: []string{"SET_LIMITS subflows 3: EINVAL"},
		},
		{
			name: "table full: someone raced us",
			setup: func(g *rig, n *Network, _ *policy.Policy) {
				n.Addrs = append(n.Addrs, addr(2, "192.0.2.11/24", 0))
				g.k.FailNext(mptcp.MPTCP_PM_CMD_ADD_ADDR, syscall.ERANGE)
			},
			retry: true,
			ops:   []string{"ADD_ADDR 192.0.2.11 id 4 subflow ifindex 2: ERANGE"},
		},
		{
			name: "our endpoint deleted behind our back",
			setup: func(g *rig, n *Network, _ *policy.Policy) {
				n.Links[2].Usable = false
				g.r.k = &hookKernel{Kernel: g.c, afterDump: func() { g.c.DeleteEndpoint(3, netip.Addr{}) }}
			},
			retry: true,
			ops:   []string{"DEL_ADDR id 3: ok", "DEL_ADDR 198.51.100.20 id 3: EINVAL"},
		},
		{
			name: "someone adds our address first",
			setup: func(g *rig, n *Network, _ *policy.Policy) {
				n.Addrs = append(n.Addrs, addr(2, "192.0.2.11/24", 0))
				g.r.k = &hookKernel{Kernel: g.c, afterDump: func() {
					g.c.AddEndpoint(mptcp.Endpoint{ID: 9, Addr: ip("192.0.2.11"), Flags: mptcp.FlagSignal})
				}}
			},
			retry: true,
			ops: []string{
				"ADD_ADDR 192.0.2.11 id 9 signal: ok",
				"ADD_ADDR 192.0.2.11 id 4 subflow ifindex 2: EEXIST",
			},
		},
		{
			name: "someone takes the id we chose",
			setup: func(g *rig, n *Network, _ *policy.Policy) {
				n.Addrs = append(n.Addrs, addr(2, "192.0.2.11/24", 0))
				g.r.k = &hookKernel{Kernel: g.c, afterDump: func() {
					g.c.AddEndpoint(mptcp.Endpoint{Addr: ip("203.0.113.1"), Flags: mptcp.FlagSignal})
				}}
			},
			retry: true,
			ops: []string{
				"ADD_ADDR 203.0.113.1 id 0 signal: ok",
				"ADD_ADDR 192.0.2.11 id 4 subflow ifindex 2: EBUSY",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newRig(t)
			g.converge(testNetwork(), testPolicy())
			p, n := testPolicy(), testNetwork()
			tt.setup(g, &n, p)
			res := g.reconcile(n, p)
			if diff := cmp.Diff(tt.ops, g.ops()); diff != "" {
				t.Errorf("unexpected kernel writes (-want +got):\n%s", diff)
			}
			if wantFailed := max(1, tt.failed); len(res.Failed) != wantFailed || res.Retry != tt.retry {
				t.Errorf("failed %v, retry %v: want %d failures, retry %v", res.Err(), res.Retry, wantFailed, tt.retry)
			}
			for _, o := range g.st.Endpoints() {
				if !slices.ContainsFunc(g.k.Endpoints(), func(e mptcp.Endpoint) bool { return e.ID == o.ID && e.Addr == o.Addr }) {
					t.Errorf("store records %v, which the kernel does not have", o)
				}
			}
			g.r.k = g.c
			g.converge(n, p)
		})
	}
}

func TestReconcileDumpFails(t *testing.T) {
	g := newRig(t)
	g.k.FailNext(mptcp.MPTCP_PM_CMD_GET_ADDR, syscall.EPERM)
	if _, err := g.r.Reconcile(testNetwork(), testPolicy()); !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "dump endpoints") {
		t.Errorf("Reconcile: %v, want the dump's EPERM", err)
	}
	g.wantOps()
	g.converge(testNetwork(), testPolicy())
}

func TestReconcileSaveFails(t *testing.T) {
	g := newRig(t)
	g.path = filepath.Join(g.path, "not-a-dir", "state.json") // under a file that does not exist yet...
	g.restart()
	g.converge(testNetwork(), testPolicy()) // ...is created
	bad := newRig(t)
	// The state directory is replaced by a file: no save can succeed.
	dir := filepath.Dir(bad.path)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res := bad.reconcile(testNetwork(), testPolicy())
	bad.wantOps()
	if len(res.Added) != 0 || len(res.Failed) != 4 { // 3 adds and the final save
		t.Errorf("added %v, failed %v: without the write-ahead record nothing may be added", res.Added, res.Err())
	}
}

func TestReconcileImplicit(t *testing.T) {
	g := newRig(t)
	id, err := g.k.AddImplicitEndpoint(ip("198.51.100.20"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.k.AddImplicitEndpoint(ip("203.0.113.1")); err != nil {
		t.Fatal(err)
	}
	res := g.reconcile(testNetwork(), testPolicy())
	g.wantOps(
		"ADD_ADDR 192.0.2.10 id 3 subflow ifindex 2: ok",
		"ADD_ADDR 2001:db8::10 id 4 subflow ifindex 2: ok",
		"ADD_ADDR 198.51.100.20 id 0 subflow backup ifindex 3: ok",
	)
	got := make(map[netip.Addr]mptcp.ID)
	for _, e := range res.Added {
		got[e.Addr] = e.ID
	}
	if got[ip("198.51.100.20")] != id {
		t.Errorf("replacement of the implicit endpoint has id %d, want its %d", got[ip("198.51.100.20")], id)
	}
	g.converge(testNetwork(), testPolicy())
	implicit := slices.Collect(maps.Keys(g.foreign()))
	if len(implicit) != 1 {
		t.Errorf("foreign endpoints %v: want the other implicit one left alone", implicit)
	}
}

// countingKernel counts the table dumps a reconciler makes.
type countingKernel struct {
	Kernel
	dumps int
}

func (k *countingKernel) Endpoints() ([]mptcp.Endpoint, error) {
	k.dumps++
	return k.Kernel.Endpoints()
}

func TestReconcileCached(t *testing.T) {
	g := newRig(t)
	ck := &countingKernel{Kernel: g.c}
	g.r = NewReconciler(ck, g.st, nil)
	cached := func(n Network) Result {
		t.Helper()
		res, err := g.r.ReconcileCached(n, testPolicy())
		if err != nil {
			t.Fatalf("ReconcileCached: %v", err)
		}
		return res
	}
	n := testNetwork()
	// Without a clean pass behind it, a cached pass dumps.
	cached(n)
	if ck.dumps != 1 {
		t.Fatalf("first pass: %d dumps, want 1", ck.dumps)
	}
	g.ops()

	// An address goes: one delete, no reads (the wanted limits stay).
	gone := slices.DeleteFunc(slices.Clone(n.Addrs), func(a Address) bool { return a.Addr() == ip("2001:db8::10") })
	smaller := n
	smaller.Addrs = gone
	cached(smaller)
	g.wantOps("DEL_ADDR 2001:db8::10 id 2: ok")
	if ck.dumps != 1 {
		t.Errorf("event pass dumped the table (%d dumps)", ck.dumps)
	}
	// It comes back: one add with the id the cache knows is free.
	cached(n)
	g.wantOps("ADD_ADDR 2001:db8::10 id 2 subflow ifindex 2: ok")
	if ck.dumps != 1 {
		t.Errorf("event pass dumped the table (%d dumps)", ck.dumps)
	}

	// Someone takes the next id behind our back: the add is refused, the
	// pass asks for a retry, and the next pass dumps and gets it right.
	g.addForeign(mptcp.Endpoint{ID: 4, Addr: ip("203.0.113.99"), Flags: mptcp.FlagSignal})
	g.k.ResetOps()
	bigger := n
	bigger.Addrs = append(slices.Clone(n.Addrs), addr(2, "192.0.2.11/24", 0))
	if res := cached(bigger); !res.Retry || len(res.Failed) != 1 {
		t.Fatalf("pass into a taken id: retry %v, failed %v; want a refused add and a retry", res.Retry, res.Err())
	}
	g.ops()
	before := ck.dumps
	res := cached(bigger)
	if len(res.Failed) != 0 {
		t.Fatalf("retry pass failed: %v", res.Err())
	}
	if ck.dumps != before+1 {
		t.Errorf("retry pass after a refused write did not dump")
	}
	if _, ok := wantedSet(res.Plan)[ip("192.0.2.11")]; !ok {
		t.Fatalf("plan lacks 192.0.2.11: %v", res.Plan.Endpoints)
	}
	if !slices.ContainsFunc(g.k.Endpoints(), func(e mptcp.Endpoint) bool { return e.Addr == ip("192.0.2.11") }) {
		t.Errorf("192.0.2.11 has no endpoint after the retry: %v", g.k.Endpoints())
	}

	// A change behind our back that no write runs into is left to the
	// full pass: it dumps, sees our endpoint gone, and puts it back.
	if err := g.c.DeleteEndpoint(1, ip("192.0.2.10")); err != nil {
		t.Fatal(err)
	}
	g.k.ResetOps()
	cached(bigger)
	g.wantOps()
	g.reconcile(bigger, testPolicy())
	if ops := g.ops(); len(ops) != 1 || !strings.HasPrefix(ops[0], "ADD_ADDR 192.0.2.10 ") {
		t.Errorf("full pass after a foreign delete wrote %v, want the endpoint re-added", ops)
	}
}

// Event passes raise auto limits at once, before the adds (the kernel
// opens subflows for a new endpoint only within the limit of the moment),
// and leave lowering them to the next full pass.
func TestReconcileCachedLimitsRiseAtOnce(t *testing.T) {
	p := testPolicy()
	p.Settings.AddAddrAccepted = policy.Limit{Mode: policy.LimitAuto}
	g := newRig(t)
	cached := func(n Network) {
		t.Helper()
		if _, err := g.r.ReconcileCached(n, p); err != nil {
			t.Fatalf("ReconcileCached: %v", err)
		}
	}
	full := testNetwork()
	cached(full)
	g.wantOps(
		"SET_LIMITS add_addr_accepted 3: ok",
		"ADD_ADDR 192.0.2.10 id 1 subflow ifindex 2: ok",
		"ADD_ADDR 2001:db8::10 id 2 subflow ifindex 2: ok",
		"ADD_ADDR 198.51.100.20 id 3 subflow backup ifindex 3: ok",
	)
	less := testNetwork()
	less.Links[2].Usable = false
	cached(less)
	g.wantOps("DEL_ADDR 198.51.100.20 id 3: ok")
	cached(full)
	g.wantOps("ADD_ADDR 198.51.100.20 id 3 subflow backup ifindex 3: ok")
	cached(less)
	g.wantOps("DEL_ADDR 198.51.100.20 id 3: ok")
	g.reconcile(less, p)
	g.wantOps("SET_LIMITS add_addr_accepted 2: ok")
	cached(full)
	g.wantOps("SET_LIMITS add_addr_accepted 3: ok", "ADD_ADDR 198.51.100.20 id 3 subflow backup ifindex 3: ok")
}
