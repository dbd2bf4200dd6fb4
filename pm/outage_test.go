package pm

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/policy"
)

// outageNetwork is testNetwork with every link down: nothing is usable.
func outageNetwork() Network {
	n := testNetwork()
	for i := range n.Links {
		n.Links[i].Usable, n.Links[i].Why = false, "no carrier"
	}
	return n
}

// backOnNewAddress is the end of the outage: eth0 alone is back, with new
// addresses (a new network), wlan0 still down.
func backOnNewAddress() Network {
	n := testNetwork()
	n.Links[2].Usable, n.Links[2].Why = false, "no carrier"
	for i, a := range n.Addrs {
		switch a.Prefix.Addr() {
		case ip("192.0.2.10"):
			n.Addrs[i] = addr(2, "192.0.2.99/24", 0)
		case ip("2001:db8::10"):
			n.Addrs[i] = addr(2, "2001:db8::99/64", 0)
		}
	}
	return n
}

// using is a connection lister for KeepThroughOutage: one connection with
// subflows on addrs (none: no connection at all).
func using(addrs ...string) func() (ConnUse, error) {
	return func() (ConnUse, error) {
		u := ConnUse{Local: make(map[netip.Addr]bool)}
		for _, a := range addrs {
			u.Local[ip(a)] = true
			u.Live = 1
		}
		return u, nil
	}
}

// TestReconcileKeepThroughOutage: with keeping on, the pass that finds no
// usable path deletes nothing; new addresses get endpoints under new ids
// beside the kept ones, a kept address wanted again waits, and the pass
// after ReleaseKept deletes the kept ones and adds what waited.
func TestReconcileKeepThroughOutage(t *testing.T) {
	p := testPolicy()
	p.Settings.Subflows = policy.Limit{Mode: policy.LimitAuto}
	g := newRig(t)
	g.r.KeepThroughOutage(using("192.0.2.10", "2001:db8::10", "198.51.100.20"))
	g.converge(testNetwork(), p)
	before := g.k.Endpoints()

	res := g.reconcile(outageNetwork(), p)
	g.wantOps()
	if len(res.Kept) != 3 || len(res.Plan.Endpoints) != 0 {
		t.Fatalf("outage pass kept %v with plan %v, want the 3 endpoints kept and nothing wanted", res.Kept, res.Plan.Endpoints)
	}
	if !strings.Contains(g.logs.String(), "no usable path: keeping the endpoints live connections use") {
		t.Errorf("keeping is not logged:\n%s", g.logs.String())
	}
	// Another pass of the same outage changes nothing.
	g.reconcile(outageNetwork(), p)
	g.wantOps()

	// Back on new addresses, and wlan0's old address is wanted again but
	// kept: it waits. The subflows limit leaves room beside the 2 kept
	// subflow endpoints the plan no longer wants.
	back := backOnNewAddress()
	back.Links[2].Usable, back.Links[2].Why = true, ""
	res = g.reconcile(back, p)
	g.wantOps(
		"SET_LIMITS subflows 5: ok",
		"ADD_ADDR 192.0.2.99 id 4 subflow ifindex 2: ok",
		"ADD_ADDR 2001:db8::99 id 5 subflow ifindex 2: ok",
	)
	if len(res.Kept) != 3 {
		t.Errorf("kept %v after the paths came back, want the 3 still kept", res.Kept)
	}
	g.reconcile(back, p)
	g.wantOps()

	g.r.Outage(OutageStep{ReleaseKept: true, Why: "new subflows carry the connections"})
	res = g.reconcile(back, p)
	g.wantOps(
		"DEL_ADDR 192.0.2.10 id 1: ok",
		"DEL_ADDR 2001:db8::10 id 2: ok",
		"DEL_ADDR 198.51.100.20 id 3: ok",
		"SET_LIMITS subflows 3: ok", // a full pass lowers it again
		"ADD_ADDR 198.51.100.20 id 1 subflow backup ifindex 3: ok",
	)
	if len(res.Kept) != 0 {
		t.Errorf("kept %v after the release", res.Kept)
	}
	if !strings.Contains(g.logs.String(), `why="new subflows carry the connections"`) {
		t.Errorf("the release is not logged with its reason:\n%s", g.logs.String())
	}
	after := g.converge(back, p)
	if got := len(g.k.Endpoints()); got != len(after.Plan.Endpoints) || len(before) != 3 {
		t.Errorf("%d endpoints in the end, want the plan's %d", got, len(after.Plan.Endpoints))
	}
}

// Only the endpoints live connections have subflows on are kept; the
// others go at once. A release during the outage deletes the kept ones,
// and the outage does not keep anything again.
func TestReconcileKeepOnlyUsed(t *testing.T) {
	g := newRig(t)
	g.r.KeepThroughOutage(using("2001:db8::10", "10.7.7.7"))
	g.converge(testNetwork(), testPolicy())
	res := g.reconcile(outageNetwork(), testPolicy())
	g.wantOps(
		"DEL_ADDR 192.0.2.10 id 1: ok",
		"DEL_ADDR 198.51.100.20 id 3: ok",
	)
	if got := ids(res.Kept); !cmp.Equal(got, []int{2}) {
		t.Errorf("kept %v, want [2]", got)
	}
	g.r.Outage(OutageStep{ReleaseKept: true, Why: "no connection has a subflow on them"})
	res = g.reconcile(outageNetwork(), testPolicy())
	g.wantOps("DEL_ADDR 2001:db8::10 id 2: ok")
	if len(res.Kept) != 0 {
		t.Errorf("kept %v after the release", res.Kept)
	}
	g.reconcile(outageNetwork(), testPolicy())
	g.wantOps()
}

// Without connections an outage empties the table at once, as without
// keeping, and a listing that fails keeps nothing.
func TestReconcileKeepNothingUnused(t *testing.T) {
	for _, use := range []func() (ConnUse, error){
		using(),
		func() (ConnUse, error) { return ConnUse{}, errors.New("no mptcp_diag") },
	} {
		g := newRig(t)
		g.r.KeepThroughOutage(use)
		g.converge(testNetwork(), testPolicy())
		wlanGone := testNetwork() // a deletion just before: not in doubt either
		wlanGone.Links[2].Usable = false
		g.reconcile(wlanGone, testPolicy())
		res := g.reconcile(outageNetwork(), testPolicy())
		if n := len(g.k.Endpoints()); n != 0 || len(res.Kept) != 0 || len(res.InDoubt) != 0 {
			t.Errorf("%d endpoints, kept %v, in doubt %v after an outage without connections", n, res.Kept, res.InDoubt)
		}
	}
}

// A kept endpoint someone else deleted is no longer kept.
func TestReconcileKeptDeletedBehindOurBack(t *testing.T) {
	g := newRig(t)
	g.r.KeepThroughOutage(using("192.0.2.10", "2001:db8::10", "198.51.100.20"))
	g.converge(testNetwork(), testPolicy())
	g.reconcile(outageNetwork(), testPolicy())
	if err := g.c.DeleteEndpoint(1, ip("192.0.2.10")); err != nil {
		t.Fatal(err)
	}
	res := g.reconcile(outageNetwork(), testPolicy())
	if got := ids(res.Kept); !cmp.Equal(got, []int{2, 3}) {
		t.Errorf("kept ids %v, want [2 3]", got)
	}
}

func TestNextOutageStep(t *testing.T) {
	kept := []mptcp.Endpoint{{ID: 1, Addr: ip("10.0.1.2")}, {ID: 2, Addr: ip("10.0.2.2")}}
	doubt := []mptcp.Endpoint{{ID: 3, Addr: ip("10.0.3.2")}}
	newPath := Plan{Endpoints: []Want{{Endpoint: mptcp.Endpoint{Addr: ip("10.0.9.2")}}}}
	keptBack := Plan{Endpoints: []Want{{Endpoint: mptcp.Endpoint{Addr: ip("10.0.2.2")}}}}
	sub := func(local string, st mptcpdiag.State, full bool) mptcpdiag.Subflow {
		s := mptcpdiag.Subflow{Local: netip.AddrPortFrom(ip(local), 40000), State: st}
		if full {
			s.Flags = mptcpdiag.SubflowFullyEstablished
		}
		return s
	}
	conn := func(subs ...mptcpdiag.Subflow) mptcpdiag.Connection { return mptcpdiag.Connection{Subflows: subs} }
	est := mptcpdiag.StateEstablished
	dead := conn(sub("10.0.1.2", est, true))
	carried := conn(sub("10.0.1.2", est, true), sub("10.0.9.2", est, true))
	joining := conn(sub("10.0.2.2", est, true), sub("10.0.9.2", mptcpdiag.StateSynSent, false))
	notFully := conn(sub("10.0.2.2", est, true), sub("10.0.9.2", est, false))
	other := conn(sub("10.0.9.2", est, true))
	stranded := conn(sub("10.0.9.2", mptcpdiag.StateSynSent, false)) // lost its subflows with an endpoint in doubt
	closed := conn(sub("10.0.1.2", mptcpdiag.StateTimeWait, false))
	grace := 2 * time.Second
	none := OutageStep{}
	release := func(why string) OutageStep { return OutageStep{ReleaseKept: true, Why: why} }
	both := func(why string) OutageStep { return OutageStep{ReleaseKept: true, Resignal: true, Why: why} }
	resignal := func(why string) OutageStep { return OutageStep{Resignal: true, Why: why} }

	for _, c := range []struct {
		name    string
		kept    []mptcp.Endpoint
		doubt   []mptcp.Endpoint
		plan    Plan
		conns   []mptcpdiag.Connection
		back    time.Duration
		want    OutageStep
		whyPart string // Why contains it; the rest of want.Why is ignored
	}{
		{"no connections at all", kept, nil, Plan{}, nil, 0, release(""), "no connection"},
		{"connections elsewhere only", kept, nil, Plan{}, []mptcpdiag.Connection{other, closed}, 0, release(""), "no connection"},
		{"outage with a connection on them", kept, nil, Plan{}, []mptcpdiag.Connection{dead}, 0, none, ""},
		{"outage, long", kept, nil, Plan{}, []mptcpdiag.Connection{dead}, time.Hour, none, ""},
		{"back, no new subflow yet", kept, nil, newPath, []mptcpdiag.Connection{dead, joining}, 100 * time.Millisecond, none, ""},
		{"back, join not fully established", kept, nil, newPath, []mptcpdiag.Connection{notFully}, 100 * time.Millisecond, none, ""},
		{"back, carried", kept, nil, newPath, []mptcpdiag.Connection{carried, other}, 100 * time.Millisecond, release(""), "new subflows carry"},
		{"back, one of two carried", kept, nil, newPath, []mptcpdiag.Connection{carried, dead}, time.Second, none, ""},
		{"back, grace over", kept, nil, newPath, []mptcpdiag.Connection{carried, dead}, grace, release(""), "1 connection still without a new subflow after 2s"},
		{"only a kept address back", kept, nil, keptBack, []mptcpdiag.Connection{dead}, 0, release(""), "only their own addresses are back"},

		{"in doubt, no connection", nil, doubt, Plan{}, []mptcpdiag.Connection{closed}, 0, resignal(""), "no connection"},
		{"in doubt, outage", nil, doubt, Plan{}, []mptcpdiag.Connection{stranded}, 0, none, ""},
		{"in doubt, back, not carried", nil, doubt, newPath, []mptcpdiag.Connection{stranded, other}, time.Second, none, ""},
		{"in doubt, back, carried", nil, doubt, newPath, []mptcpdiag.Connection{other}, time.Second, resignal(""), "new subflows carry"},
		{"in doubt, grace over", nil, doubt, newPath, []mptcpdiag.Connection{stranded}, grace, resignal(""), "after 2s"},
		{"kept and in doubt, carried", kept, doubt, newPath, []mptcpdiag.Connection{carried, other}, 0, both(""), "new subflows carry"},
		{"kept and in doubt, one stranded", kept, doubt, newPath, []mptcpdiag.Connection{carried, stranded}, 0, none, ""},
		{"kept unused, in doubt carried", kept, doubt, newPath, []mptcpdiag.Connection{other}, 0, both(""), ""},
		{"kept unused, in doubt waiting", kept, doubt, newPath, []mptcpdiag.Connection{stranded}, 0, release(""), "no connection has a subflow on them"},
		{"only a kept address back, in doubt waits", kept, doubt, keptBack, []mptcpdiag.Connection{dead}, 0, release(""), "only their own addresses"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := NextOutageStep(c.kept, c.doubt, c.plan, c.conns, c.back, grace)
			if got.ReleaseKept != c.want.ReleaseKept || got.Resignal != c.want.Resignal || !strings.Contains(got.Why, c.whyPart) ||
				(got == none) != (got.Why == "") {
				t.Errorf("NextOutageStep = %+v, want %+v with %q", got, c.want, c.whyPart)
			}
		})
	}
}

// Two links fail a moment apart: the first one's endpoint is deleted while
// the second still works, then the second is kept. The first is in doubt:
// its id waits, and the resignal step announces and withdraws it before
// the address it had, back again, gets an endpoint.
func TestReconcileResignalsInDoubt(t *testing.T) {
	clock := time.Unix(1000, 0)
	g := newRig(t)
	g.r.now = func() time.Time { return clock }
	g.r.KeepThroughOutage(using("192.0.2.10", "2001:db8::10"))
	g.converge(testNetwork(), testPolicy())

	wlanGone := testNetwork()
	wlanGone.Links[2].Usable, wlanGone.Links[2].Why = false, "no carrier"
	g.reconcile(wlanGone, testPolicy())
	g.wantOps("DEL_ADDR 198.51.100.20 id 3: ok")
	clock = clock.Add(5 * time.Millisecond)
	res := g.reconcile(outageNetwork(), testPolicy())
	g.wantOps()
	if got := ids(res.InDoubt); !cmp.Equal(got, []int{3}) || len(res.Kept) != 2 {
		t.Fatalf("in doubt %v, kept %v; want wlan0's id 3 in doubt and eth0's 2 kept", got, ids(res.Kept))
	}

	// Back: eth0 on new addresses, wlan0 on its old one. The new ones do
	// not take id 3, and wlan0's address waits.
	back := backOnNewAddress()
	back.Links[2].Usable, back.Links[2].Why = true, ""
	g.reconcile(back, testPolicy())
	g.wantOps(
		"ADD_ADDR 192.0.2.99 id 4 subflow ifindex 2: ok",
		"ADD_ADDR 2001:db8::99 id 5 subflow ifindex 2: ok",
	)
	g.r.Outage(OutageStep{ReleaseKept: true, Resignal: true, Why: "new subflows carry the connections"})
	res = g.reconcile(back, testPolicy())
	g.wantOps(
		"DEL_ADDR 192.0.2.10 id 1: ok",
		"DEL_ADDR 2001:db8::10 id 2: ok",
		"ADD_ADDR 198.51.100.20 id 3 signal: ok",
		"DEL_ADDR 198.51.100.20 id 3: ok",
		"ADD_ADDR 198.51.100.20 id 1 subflow backup ifindex 3: ok",
	)
	if got := ids(res.Resignaled); !cmp.Equal(got, []int{3}) || len(res.InDoubt) != 0 || len(res.Kept) != 0 {
		t.Errorf("resignaled %v, in doubt %v, kept %v; want [3] and nothing left", got, ids(res.InDoubt), ids(res.Kept))
	}
	if !strings.Contains(g.logs.String(), "announcing and withdrawing again") {
		t.Errorf("the resignal is not logged:\n%s", g.logs.String())
	}
	g.converge(back, testPolicy())
}

// A deletion long before the outage is not in doubt: its RM_ADDR went
// over a path that still worked.
func TestReconcileOldDeletionNotInDoubt(t *testing.T) {
	clock := time.Unix(1000, 0)
	g := newRig(t)
	g.r.now = func() time.Time { return clock }
	g.r.KeepThroughOutage(using("192.0.2.10"))
	g.converge(testNetwork(), testPolicy())
	wlanGone := testNetwork()
	wlanGone.Links[2].Usable = false
	g.reconcile(wlanGone, testPolicy())
	clock = clock.Add(resignalWindow + time.Millisecond)
	if res := g.reconcile(outageNetwork(), testPolicy()); len(res.InDoubt) != 0 {
		t.Errorf("in doubt %v after %s", ids(res.InDoubt), resignalWindow)
	}
}

// A second outage before the first one's endpoints went adds to them,
// counting none twice; the endpoints the first outage deleted (no
// connection used them) are not in doubt, and their ids went to others.
func TestReconcileOutageAgainBeforeRelease(t *testing.T) {
	g := newRig(t)
	g.r.KeepThroughOutage(using("192.0.2.10", "192.0.2.99"))
	g.converge(testNetwork(), testPolicy())
	g.reconcile(outageNetwork(), testPolicy())
	back := backOnNewAddress()
	g.reconcile(back, testPolicy()) // 192.0.2.99 and 2001:db8::99 get ids 2 and 3; 1 still kept
	res := g.reconcile(outageNetwork(), testPolicy())
	if got := ids(res.Kept); !cmp.Equal(got, []int{1, 2}) || len(res.InDoubt) != 0 {
		t.Errorf("kept %v, in doubt %v after the second outage, want [1 2] and none", got, ids(res.InDoubt))
	}
}
