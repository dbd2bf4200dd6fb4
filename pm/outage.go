package pm

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// Keeping endpoints through an outage.
//
// When the last usable path goes (every link lost its carrier), the plan
// is empty and a plain pass would delete every endpoint at once. Their
// RM_ADDRs then go out on dead subflows, and the peer keeps its subflows
// to the old addresses, with the data it had sent on them. When the
// laptop is back on a new address, the peer's kernel resends that data
// only on the old subflow (at its backed-off retransmission timeout) or
// once it has marked it stale (four of the connection's retransmission
// periods), and never on a new subflow that is busy with new data: an
// interactive stream stalls for seconds, after a long outage for good.
//
// So with keeping on (Reconciler.KeepThroughOutage) a pass that finds no
// usable path keeps the endpoints that live connections have subflows on
// (Result.Kept); the others go as usual. When paths come
// back, their endpoints are added beside the kept ones under other ids,
// and a wanted address that a kept endpoint already has waits. Once new
// subflows carry the connections (NextOutageStep), the kept endpoints
// are deleted: their RM_ADDRs now reach the peer over the new subflows
// (the kernel sends an RM_ADDR on a subflow that does not use the
// removed address, since Linux 7.0 and in 6.18.y), which closes its dead
// subflows and sends their data again on the new ones. The waiting
// addresses then get endpoints of their own, with fresh subflows.
//
// Links seldom fail in the same millisecond: Wi-Fi goes, and the 4G link
// that was to carry its data goes a moment later, before the RM_ADDR
// sent over it arrived. An endpoint deleted less than resignalWindow
// before the outage began, while connections live, is therefore in doubt
// (Result.InDoubt): its id
// is not given to another endpoint, and once new subflows carry the
// connections the reconciler tells the peers again. It adds the endpoint
// back as a signal one under its old id and address, which announces it
// on every connection, and deletes it at once, which sends its RM_ADDR
// over the new subflows.

// resignalWindow is how long before an outage a deletion counts as in
// doubt: a one-way trip over a slow, loaded path, with room to spare.
const resignalWindow = time.Second

// ConnUse is what the reconciler needs to know of the connections when
// an outage begins.
type ConnUse struct {
	Live  int                 // connections with a subflow not closed
	Local map[netip.Addr]bool // the local addresses of those subflows
}

// ConnUseOf sums up conns, as the kernel lists them.
func ConnUseOf(conns []mptcpdiag.Connection) ConnUse {
	u := ConnUse{Local: make(map[netip.Addr]bool)}
	for i := range conns {
		alive := false
		for _, s := range conns[i].Subflows {
			if subflowAlive(s) {
				alive = true
				u.Local[s.Local.Addr().Unmap()] = true
			}
		}
		if alive {
			u.Live++
		}
	}
	return u
}

func subflowAlive(s mptcpdiag.Subflow) bool {
	return s.State != mptcpdiag.StateClose && s.State != mptcpdiag.StateTimeWait
}

// OutageStep is what to do next about the endpoints of an outage.
type OutageStep struct {
	ReleaseKept bool   // delete the kept endpoints
	Resignal    bool   // tell the peers again about the endpoints in doubt
	Why         string // for the log
}

// NextOutageStep decides, from the kernel's connections, what to do about
// the endpoints kept through an outage and those in doubt. plan is the
// last pass's; back is how long ago it stopped being empty (0 during the
// outage); grace how long to wait for new subflows at most.
//
//   - Kept endpoints that no connection has a subflow on go at once:
//     there is nothing to tell a peer. Endpoints in doubt with no
//     connection left are resignaled, which is harmless.
//   - During the outage nothing else happens.
//   - When only the kept endpoints' own addresses are back, nothing new
//     will come up beside them: they go (their RM_ADDRs travel on their
//     own subflows, which work again), and the addresses get fresh
//     endpoints and subflows. Endpoints in doubt wait for those.
//   - Otherwise both go when every connection that needs a new subflow
//     has a fully established one (with endpoints in doubt, every
//     connection needs one), or after grace.
func NextOutageStep(kept, inDoubt []mptcp.Endpoint, plan Plan, conns []mptcpdiag.Connection, back, grace time.Duration) OutageStep {
	keptAddr := make(map[netip.Addr]bool, len(kept))
	for _, e := range kept {
		keptAddr[e.Addr.Unmap()] = true
	}
	var live, usingKept, waiting int
	for i := range conns {
		uses, carried, alive := false, false, false
		for _, s := range conns[i].Subflows {
			if !subflowAlive(s) {
				continue
			}
			alive = true
			switch {
			case keptAddr[s.Local.Addr().Unmap()]:
				uses = true
			case s.State == mptcpdiag.StateEstablished && s.Flags&mptcpdiag.SubflowFullyEstablished != 0:
				carried = true
			}
		}
		if alive {
			live++
		}
		if uses {
			usingKept++
		}
		if (uses || alive && len(inDoubt) > 0) && !carried {
			waiting++
		}
	}
	var step OutageStep
	if len(kept) > 0 && usingKept == 0 {
		step = OutageStep{ReleaseKept: true, Why: "no connection has a subflow on them"}
	}
	if len(inDoubt) > 0 && live == 0 {
		step.Resignal = true
		step.Why = "no connection has a subflow on them"
	}
	if len(plan.Endpoints) == 0 || step.ReleaseKept && (step.Resignal || len(inDoubt) == 0) {
		return step
	}
	keptUsed := len(kept) > 0 && usingKept > 0
	switch {
	case keptUsed && !slices.ContainsFunc(plan.Endpoints, func(w Want) bool { return !keptAddr[w.Endpoint.Addr.Unmap()] }):
		return OutageStep{ReleaseKept: true, Why: "only their own addresses are back"}
	case waiting == 0:
		return OutageStep{ReleaseKept: len(kept) > 0, Resignal: len(inDoubt) > 0, Why: "new subflows carry the connections"}
	case back >= grace:
		return OutageStep{ReleaseKept: len(kept) > 0, Resignal: len(inDoubt) > 0,
			Why: fmt.Sprintf("%s still without a new subflow after %s", plural(waiting, "connection"), grace)}
	}
	return step
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// deletion is one of our endpoints deleted while keeping is on.
type deletion struct {
	e  mptcp.Endpoint
	at time.Time
}

// inDoubtAt returns the endpoints deleted within resignalWindow before
// now whose addresses and ids none of ours has: those whose RM_ADDR may
// have died with the last path.
func inDoubtAt(recent []deletion, ours []mptcp.Endpoint, now time.Time) []mptcp.Endpoint {
	var out []mptcp.Endpoint
	for _, d := range recent {
		if now.Sub(d.at) > resignalWindow || slices.ContainsFunc(ours, func(o mptcp.Endpoint) bool { return o.Addr == d.e.Addr || o.ID == d.e.ID }) ||
			slices.ContainsFunc(out, func(o mptcp.Endpoint) bool { return o.ID == d.e.ID }) {
			continue
		}
		out = append(out, d.e)
	}
	return out
}

// keptStill is kept without the endpoints the kernel no longer has.
func keptStill(kept, ours []mptcp.Endpoint) []mptcp.Endpoint {
	return slices.DeleteFunc(kept, func(k mptcp.Endpoint) bool {
		return !slices.ContainsFunc(ours, func(o mptcp.Endpoint) bool { return o.ID == k.ID && o.Addr == k.Addr })
	})
}

// without is eps less those in drop (by id).
func without(eps, drop []mptcp.Endpoint) []mptcp.Endpoint {
	return slices.DeleteFunc(slices.Clone(eps), func(e mptcp.Endpoint) bool {
		return slices.ContainsFunc(drop, func(d mptcp.Endpoint) bool { return d.ID == e.ID })
	})
}

// waitingFor is plan without the endpoints whose address one of held
// has: those wait for it to go.
func waitingFor(plan Plan, held []mptcp.Endpoint) Plan {
	plan.Endpoints = slices.DeleteFunc(slices.Clone(plan.Endpoints), func(w Want) bool {
		return slices.ContainsFunc(held, func(k mptcp.Endpoint) bool { return k.Addr == w.Endpoint.Addr })
	})
	return plan
}

// keptSubflows is how many more subflows the kept endpoints need beyond
// what the plan counts: those on addresses the plan does not want. The
// kernel counts their (dead) subflows against the subflows limit, so an
// auto limit must leave room for the new paths beside them.
func keptSubflows(kept []mptcp.Endpoint, plan Plan) uint32 {
	var n uint32
	for _, k := range kept {
		wanted := slices.ContainsFunc(plan.Endpoints, func(w Want) bool { return w.Endpoint.Addr == k.Addr })
		if k.Flags&mptcp.FlagSubflow != 0 && !wanted {
			n++
		}
	}
	return n
}
