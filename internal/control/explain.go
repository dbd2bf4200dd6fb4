package control

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Explain is the reply to "explain": the plan of the daemon's last pass,
// address by address, with the rule behind each decision; the data
// `mptcpctl policy explain` computes from the files, here as the running
// daemon has it.
type Explain struct {
	Mode   string `json:"mode"`
	Plugin string `json:"plugin,omitempty"`
	// PolicySource is the policy file, or "built-in"; Why says how the
	// daemon chose it.
	PolicySource string `json:"policy"`
	Why          string `json:"why"`
	Config       string `json:"config"`       // mptcpd.conf
	ConfigFound  bool   `json:"config_found"` // false: absent, defaults
	// Subflows and AddAddrAccepted are the policy's limit settings: auto,
	// keep or a number.
	Subflows        string `json:"subflows"`
	AddAddrAccepted string `json:"add_addr_accepted"`
	// Rules are the policy's rules in order; decisions refer to them by
	// 1-based index.
	Rules     []Rule     `json:"rules"`
	Capacity  int        `json:"capacity"` // endpoints the plan could use
	Foreign   int        `json:"foreign"`  // foreign kernel endpoints taking room
	Links     []Link     `json:"links"`
	Decisions []Decision `json:"decisions"` // by link index, then address
	Wanted    []Want     `json:"wanted"`
	// Kernel is the endpoint table as the last pass saw it; null in the
	// userspace mode, which has none.
	Kernel       []Endpoint `json:"kernel"`
	KernelLimits Limits     `json:"kernel_limits"`
	WantedLimits Limits     `json:"wanted_limits"`
}

// Rule is where a rule was written and its priority.
type Rule struct {
	File     string `json:"file"` // "" with line 0: the built-in policy
	Line     int    `json:"line"`
	Priority int    `json:"priority"`
}

// Decision is pm.Decision on the wire.
type Decision struct {
	Link      string       `json:"link"`
	LinkIndex int          `json:"link_index"`
	Address   netip.Prefix `json:"address"`
	Kind      string       `json:"kind"`
	Rule      int          `json:"rule"`    // 1-based index into Explain.Rules, 0 for none
	Verdict   string       `json:"verdict"` // pm.Verdict's word
	Why       string       `json:"why"`
}

// Want is pm.Want on the wire; Dev is its link.
type Want struct {
	Endpoint
	Priority int `json:"priority"`
	Rule     int `json:"rule"`
}

// ExplainFrom describes plan, which p made for the links of n: rules,
// links, decisions, wanted endpoints and limits. The caller fills in the
// mode, the sources, the capacity and the kernel's side.
func ExplainFrom(p *policy.Policy, n pm.Network, plan pm.Plan) Explain {
	x := Explain{
		PolicySource:    p.Source,
		Subflows:        p.Settings.Subflows.String(),
		AddAddrAccepted: p.Settings.AddAddrAccepted.String(),
		Rules:           make([]Rule, len(p.Rules)),
		Links:           make([]Link, len(n.Links)),
		Decisions:       make([]Decision, len(plan.Decisions)),
		Wanted:          make([]Want, len(plan.Endpoints)),
		WantedLimits:    LimitsFrom(plan.Limits),
	}
	index := make(map[*policy.Rule]int, len(p.Rules))
	for i := range p.Rules {
		r := &p.Rules[i]
		x.Rules[i] = Rule{File: r.Pos.File, Line: r.Pos.Line, Priority: r.Priority}
		index[r] = i + 1
	}
	for i, l := range n.Links {
		x.Links[i] = LinkFrom(l)
	}
	for i, d := range plan.Decisions {
		x.Decisions[i] = Decision{Link: d.Link, LinkIndex: d.LinkIndex, Address: d.Address, Kind: d.Kind.String(),
			Rule: index[d.Rule], Verdict: d.Verdict.String(), Why: d.Why}
	}
	for i, w := range plan.Endpoints {
		x.Wanted[i] = Want{Endpoint: EndpointFrom(w.Endpoint, w.Link), Priority: w.Priority, Rule: index[w.Rule]}
	}
	return x
}

// Plan rebuilds what ExplainFrom described: a policy holding the source,
// the limit settings and the rules' positions and priorities (nothing
// else of them), the links, and the plan whose decisions and wanted
// endpoints point into that policy's rules.
func (x *Explain) Plan() (*policy.Policy, []pm.Link, pm.Plan, error) {
	p := &policy.Policy{Source: x.PolicySource, Rules: make([]policy.Rule, len(x.Rules))}
	var err error
	if p.Settings.Subflows, err = parseLimit(x.Subflows); err != nil {
		return nil, nil, pm.Plan{}, fmt.Errorf("control: explain: subflows: %w", err)
	}
	if p.Settings.AddAddrAccepted, err = parseLimit(x.AddAddrAccepted); err != nil {
		return nil, nil, pm.Plan{}, fmt.Errorf("control: explain: add_addr_accepted: %w", err)
	}
	for i, r := range x.Rules {
		p.Rules[i] = policy.Rule{Pos: policy.Position{File: r.File, Line: r.Line}, Priority: r.Priority}
	}
	rule := func(i int) (*policy.Rule, error) {
		switch {
		case i == 0:
			return nil, nil
		case i < 0 || i > len(p.Rules):
			return nil, fmt.Errorf("control: explain: rule %d of %d", i, len(p.Rules))
		}
		return &p.Rules[i-1], nil
	}
	links := make([]pm.Link, len(x.Links))
	for i, l := range x.Links {
		kind, err := policy.ParseKind(l.Kind)
		if err != nil {
			return nil, nil, pm.Plan{}, fmt.Errorf("control: explain: link %s: %w", l.Name, err)
		}
		links[i] = pm.Link{Index: l.Index, Name: l.Name, Kind: kind, Usable: l.Usable, Why: l.Why,
			DefaultRoute4: l.DefaultRoute4, DefaultRoute6: l.DefaultRoute6}
	}
	plan := pm.Plan{Limits: x.WantedLimits.Kernel()}
	for _, d := range x.Decisions {
		kind, err := policy.ParseKind(d.Kind)
		if err != nil {
			return nil, nil, pm.Plan{}, fmt.Errorf("control: explain: %s: %w", d.Address, err)
		}
		v, ok := parseVerdict(d.Verdict)
		if !ok {
			return nil, nil, pm.Plan{}, fmt.Errorf("control: explain: %s: unknown verdict %q", d.Address, d.Verdict)
		}
		r, err := rule(d.Rule)
		if err != nil {
			return nil, nil, pm.Plan{}, err
		}
		plan.Decisions = append(plan.Decisions, pm.Decision{Link: d.Link, LinkIndex: d.LinkIndex, Address: d.Address,
			Kind: kind, Rule: r, Verdict: v, Why: d.Why})
	}
	for _, w := range x.Wanted {
		e, err := w.Endpoint.Kernel()
		if err != nil {
			return nil, nil, pm.Plan{}, err
		}
		r, err := rule(w.Rule)
		if err != nil {
			return nil, nil, pm.Plan{}, err
		}
		plan.Endpoints = append(plan.Endpoints, pm.Want{Endpoint: e, Link: w.Dev, Priority: w.Priority, Rule: r})
	}
	return p, links, plan, nil
}

// parseLimit reads policy.Limit's words back.
func parseLimit(s string) (policy.Limit, error) {
	switch s {
	case "auto":
		return policy.Limit{Mode: policy.LimitAuto}, nil
	case "keep":
		return policy.Limit{Mode: policy.LimitKeep}, nil
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return policy.Limit{}, fmt.Errorf("%q is not auto, keep or a number", s)
	}
	return policy.Limit{Mode: policy.LimitFixed, Value: uint32(v)}, nil
}

// parseVerdict reads pm.Verdict's words back.
func parseVerdict(s string) (pm.Verdict, bool) {
	for v := pm.VerdictEndpoint; v <= pm.VerdictOverLimit; v++ {
		if v.String() == s {
			return v, true
		}
	}
	return 0, false
}
