package pm

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/policy"
)

// MaxEndpoints is the kernel's limit of endpoints per namespace.
const MaxEndpoints = mptcp.MPTCP_PM_ADDR_MAX_PERNS

// Plan is what the kernel should hold: the endpoints, why each address
// got one or not, the source routes that go with them and the limits.
type Plan struct {
	Endpoints    []Want        // by link index, then address
	Decisions    []Decision    // one per address, by link index, then address
	SourceRoutes []SourceRoute // by link index
	Limits       mptcp.Limits  // nil fields: leave the kernel's value alone
}

// Want is one endpoint the policy asks for. Endpoint.ID is 0: the
// reconciler chooses ids.
type Want struct {
	Endpoint mptcp.Endpoint
	Link     string
	Priority int
	Rule     *policy.Rule
}

// SourceRoute asks for a routing table of one link and a rule sending
// traffic from its endpoint addresses there, so that a subflow bound to
// an address leaves through that address's link.
type SourceRoute struct {
	LinkIndex int
	Link      string
	Table     int // Settings.RouteTableBase + LinkIndex
	Priority  int // of the "from ADDR lookup Table" rules
	// Gateways are the link's default next hops (Link.Gateways). A family
	// of Addrs with no gateway here has an on-link default route (point
	// to point, raw-IP modems): the table gets "default dev LINK".
	Gateways []netip.Addr
	// Addrs are the endpoint addresses with their on-link prefix length:
	// the rules match the address, the table routes the masked prefix on
	// link.
	Addrs []netip.Prefix
}

// Verdict is what became of one address.
type Verdict uint8

const (
	VerdictEndpoint       Verdict = iota // an endpoint is wanted
	VerdictLoopback                      // skip-loopback
	VerdictLinkLocal                     // skip-link-local
	VerdictTentative                     // IPv6 DAD still running
	VerdictDADFailed                     // IPv6 DAD found a duplicate
	VerdictDeprecated                    // preferred lifetime over, use-deprecated off
	VerdictTemporary                     // IPv6 privacy address, use-temporary off
	VerdictLinkUnusable                  // link down, no carrier, enslaved...
	VerdictNoRule                        // no rule matched
	VerdictIgnored                       // the matching rule says ignore
	VerdictNoDefaultRoute                // check-route and no default route of the family
	VerdictDuplicate                     // the same address won on another link
	VerdictOverLimit                     // more endpoints wanted than fit
)

var verdictNames = [...]string{
	"endpoint", "loopback", "link-local", "tentative", "DAD failed", "deprecated", "temporary",
	"link not usable", "no rule matched", "ignored", "no default route", "duplicate", "over limit",
}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", v)
}

// Decision says what became of one address and why.
type Decision struct {
	Link      string
	LinkIndex int
	Address   netip.Prefix
	Kind      policy.Kind
	Rule      *policy.Rule // the matching rule, nil when none was consulted or none matched
	Verdict   Verdict
	Why       string // the verdict in words, e.g. "link not usable: no carrier"
}

func (d Decision) String() string {
	return fmt.Sprintf("%s %s (%s): %s", d.Link, d.Address, d.Kind, d.Why)
}

// Desired computes the plan for network n under policy p when capacity
// endpoints may be created. It is a pure function: same inputs, same plan,
// in the same order.
//
// Each address goes through these checks, the first failing one giving
// its verdict: loopback and link-local (when the settings skip them),
// tentative and DAD failed (never used until the kernel clears the flag),
// deprecated and IPv6 temporary (unless the settings use them), a usable
// link, a matching rule that does not ignore it, and with check-route a
// default route of its family on its link. An address on two links yields
// one endpoint (the kernel refuses duplicates), and beyond capacity the
// lowest ranked are left out. Ranking: higher Rule.Priority, then IPv4
// before IPv6, then lower link index, then lower address.
func Desired(n Network, p *policy.Policy, capacity int) Plan {
	addrs := slices.Clone(n.Addrs)
	slices.SortFunc(addrs, func(a, b Address) int {
		return cmp.Or(cmp.Compare(a.LinkIndex, b.LinkIndex), a.Addr().Compare(b.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})

	var plan Plan
	var cands []candidate
	for _, a := range addrs {
		link, ok := n.Link(a.LinkIndex)
		if !ok {
			link = Link{Index: a.LinkIndex, Name: fmt.Sprintf("ifindex %d", a.LinkIndex), Why: "unknown link"}
		}
		d := Decision{Link: link.Name, LinkIndex: link.Index, Address: a.Prefix, Kind: link.Kind}
		d.Verdict, d.Why, d.Rule = judge(a, link, p)
		plan.Decisions = append(plan.Decisions, d)
		if d.Verdict == VerdictEndpoint {
			cands = append(cands, candidate{addr: a, link: link, rule: d.Rule, decision: len(plan.Decisions) - 1})
		}
	}

	slices.SortFunc(cands, func(a, b candidate) int {
		return cmp.Or(
			cmp.Compare(b.rule.Priority, a.rule.Priority),
			cmp.Compare(a.addr.Addr().BitLen(), b.addr.Addr().BitLen()), // IPv4 first
			cmp.Compare(a.link.Index, b.link.Index),
			a.addr.Addr().Compare(b.addr.Addr()),
		)
	})
	winner := make(map[netip.Addr]candidate)
	kept := 0
	for _, c := range cands {
		d := &plan.Decisions[c.decision]
		if w, dup := winner[c.addr.Addr()]; dup {
			d.Verdict = VerdictDuplicate
			d.Why = "same address on " + w.link.Name + ", which ranks higher (one endpoint per address)"
			continue
		}
		winner[c.addr.Addr()] = c
		if kept >= capacity {
			d.Verdict = VerdictOverLimit
			d.Why = overLimit(capacity, c.rule.Priority)
			continue
		}
		kept++
		plan.Endpoints = append(plan.Endpoints, c.want())
	}
	slices.SortFunc(plan.Endpoints, func(a, b Want) int {
		return cmp.Or(cmp.Compare(a.Endpoint.IfIndex, b.Endpoint.IfIndex), a.Endpoint.Addr.Compare(b.Endpoint.Addr))
	})

	plan.SourceRoutes = sourceRoutes(n, p.Settings, plan.Endpoints, winner)
	plan.Limits = desiredLimits(p.Settings, plan.Endpoints)
	return plan
}

// candidate is an address that passed every check, before duplicates and
// capacity are dealt with.
type candidate struct {
	addr     Address
	link     Link
	rule     *policy.Rule
	decision int // index in Plan.Decisions
}

func (c candidate) want() Want {
	port := c.rule.Port
	if c.rule.Flags&(mptcp.FlagSignal|mptcp.FlagSubflow) != mptcp.FlagSignal {
		port = 0 // the kernel keeps a port only on signal-only endpoints
	}
	return Want{
		Endpoint: mptcp.Endpoint{Addr: c.addr.Addr(), Port: port, Flags: c.rule.Flags, IfIndex: c.link.Index},
		Link:     c.link.Name,
		Priority: c.rule.Priority,
		Rule:     c.rule,
	}
}

// judge runs one address through the checks of Desired, except
// duplicates and capacity.
func judge(a Address, link Link, p *policy.Policy) (Verdict, string, *policy.Rule) {
	s := p.Settings
	ip := a.Addr()
	v6 := ip.Is6()
	switch {
	case s.SkipLoopback && (ip.IsLoopback() || link.Kind == policy.KindLoopback):
		return VerdictLoopback, "loopback", nil
	case s.SkipLinkLocal && ip.IsLinkLocalUnicast():
		return VerdictLinkLocal, "link-local", nil
	case a.Flags&netmon.AddrDADFailed != 0:
		return VerdictDADFailed, "DAD failed", nil
	case a.Flags&netmon.AddrTentative != 0:
		return VerdictTentative, "tentative (DAD in progress)", nil
	case !s.UseDeprecated && a.Flags&netmon.AddrDeprecated != 0:
		return VerdictDeprecated, "deprecated", nil
	case !s.UseTemporary && v6 && a.Flags&netmon.AddrTemporary != 0:
		// For IPv4 the same bit means "secondary", which is no reason.
		return VerdictTemporary, "temporary", nil
	case !link.Usable:
		return VerdictLinkUnusable, "link not usable: " + link.Why, nil
	}
	subj := policy.Subject{
		Interface:    link.Name,
		Kind:         link.Kind,
		Addr:         ip,
		DefaultRoute: link.DefaultRoute4 || link.DefaultRoute6,
	}
	r, ok := p.Match(subj)
	switch {
	case !ok:
		return VerdictNoRule, "no rule matched", nil
	case r.Ignore:
		if r.Pos.Line == 0 {
			return VerdictIgnored, "ignored by the built-in rule", r
		}
		return VerdictIgnored, "ignored by rule at " + r.Pos.String(), r
	case s.CheckRoute && !hasDefault(link, ip):
		return VerdictNoDefaultRoute, "no default route (check-route)", r
	}
	return VerdictEndpoint, "endpoint", r
}

func hasDefault(l Link, ip netip.Addr) bool {
	if ip.Is4() {
		return l.DefaultRoute4
	}
	return l.DefaultRoute6
}

func overLimit(capacity, priority int) string {
	if capacity == MaxEndpoints {
		return fmt.Sprintf("over the %d-endpoint limit (priority %d)", MaxEndpoints, priority)
	}
	return fmt.Sprintf("over the %d-endpoint limit, %d left beside foreign endpoints (priority %d)", MaxEndpoints, capacity, priority)
}

// sourceRoutes lists, for each link with wanted endpoints whose rule asks
// for source routing, the table and rules to install. Only addresses of a
// family the link has a default route for are included: without one the
// table would have nothing to route them with.
func sourceRoutes(n Network, s policy.Settings, wants []Want, winner map[netip.Addr]candidate) []SourceRoute {
	var out []SourceRoute
	for _, w := range wants { // by link index, so one link's wants are adjacent
		if !w.Rule.SourceRouting {
			continue
		}
		link, _ := n.Link(w.Endpoint.IfIndex)
		if !hasDefault(link, w.Endpoint.Addr) {
			continue
		}
		if len(out) == 0 || out[len(out)-1].LinkIndex != link.Index {
			out = append(out, SourceRoute{
				LinkIndex: link.Index,
				Link:      link.Name,
				Table:     s.RouteTableBase + link.Index,
				Priority:  s.RulePriority,
				Gateways:  slices.Clone(link.Gateways),
			})
		}
		sr := &out[len(out)-1]
		sr.Addrs = append(sr.Addrs, winner[w.Endpoint.Addr].addr.Prefix)
	}
	return out
}

// desiredLimits applies the limit settings. LimitAuto derives both limits
// from n, the number of wanted endpoints with the subflow flag: subflows
// max(2, min(8, n)), so that every such endpoint can open a subflow while
// never going under the kernel's default; add_addr_accepted max(1,
// min(8, n)), so that the peer's announcements are used at least once and
// about as much as our own paths allow. With no endpoint wanted at all
// auto limits are left alone: a namespace that lost every link keeps the
// limits it had until there is something to decide on.
func desiredLimits(s policy.Settings, wants []Want) mptcp.Limits {
	n := 0
	for _, w := range wants {
		if w.Endpoint.Flags&mptcp.FlagSubflow != 0 {
			n++
		}
	}
	limit := func(l policy.Limit, floor uint32) *uint32 {
		var v uint32
		switch l.Mode {
		case policy.LimitFixed:
			v = l.Value
		case policy.LimitAuto:
			if len(wants) == 0 {
				return nil
			}
			v = max(floor, min(mptcp.MPTCP_PM_LIMITS_MAX, uint32(n)))
		default:
			return nil
		}
		return &v
	}
	return mptcp.Limits{
		Subflows:        limit(s.Subflows, 2),
		AddAddrAccepted: limit(s.AddAddrAccepted, 1),
	}
}
