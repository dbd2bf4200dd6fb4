package ctl

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// explanation is what `policy explain` prints: the plan for the namespace
// beside the kernel's endpoint table and limits.
type explanation struct {
	src      policySource
	policy   *policy.Policy
	plan     pm.Plan
	capacity int // endpoints the plan could use
	foreign  int // kernel endpoints on addresses no decision wants
	// plugin is the userspace mode's, from a daemon: the plan is usable
	// addresses, with no kernel table or limits to compare.
	plugin string

	links        []linkExplanation
	unexplained  []mptcp.Endpoint // kernel endpoints on no address of the namespace
	kernelLimits mptcp.Limits
}

// linkExplanation is one interface and its addresses.
type linkExplanation struct {
	link  pm.Link
	addrs []addrExplanation
}

// addrExplanation is one decision and the kernel's endpoint on its address.
type addrExplanation struct {
	pm.Decision
	want   *pm.Want        // the endpoint planned (VerdictEndpoint)
	kernel *mptcp.Endpoint // the kernel's endpoint on the address, if that matters
	status kernelStatus
	winner string // VerdictDuplicate: the link whose copy of the address won
}

// kernelStatus compares the kernel's table with one decision.
type kernelStatus uint8

const (
	kernelNone     kernelStatus = iota // no endpoint wanted, none there
	kernelPresent                      // the wanted endpoint is there
	kernelMissing                      // the wanted endpoint is not there
	kernelDiffers                      // an endpoint is there with other flags, port or device
	kernelUnwanted                     // an endpoint is there, on an address that should have none
)

var kernelStatusNames = [...]string{"none", "present", "missing", "differs", "unwanted"}

func (s kernelStatus) String() string { return kernelStatusNames[s] }

// explain plans the policy for network n and sets the plan beside the
// kernel's endpoints eps and limits.
//
// The daemon counts as foreign the kernel endpoints it does not own, which
// it knows from its state file; mptcpctl does not. It approximates them by
// the endpoints on addresses that no decision wants even with room for
// all: those take slots the plan cannot use, while one on a wanted address
// is the daemon's or is held for it. Stale endpoints of the daemon count
// as foreign too, so the room shown can only be less than the daemon's.
func explain(lp *loadedPolicy, n pm.Network, eps []mptcp.Endpoint, limits mptcp.Limits) *explanation {
	wanted := make(map[netip.Addr]bool)
	for _, d := range pm.Desired(n, lp.policy, pm.MaxEndpoints).Decisions {
		if d.Verdict == pm.VerdictEndpoint || d.Verdict == pm.VerdictOverLimit {
			wanted[d.Address.Addr().Unmap()] = true
		}
	}
	foreign := 0
	for _, e := range eps {
		if !wanted[e.Addr] {
			foreign++
		}
	}
	capacity := max(0, pm.MaxEndpoints-foreign)
	x := &explanation{src: lp.src, policy: lp.policy, plan: pm.Desired(n, lp.policy, capacity),
		capacity: capacity, foreign: foreign, kernelLimits: limits}
	x.compare(n.Links, eps)
	return x
}

// compare sets each decision of x's plan beside the kernel's endpoints
// eps (none in the userspace mode), grouped by links.
func (x *explanation) compare(links []pm.Link, eps []mptcp.Endpoint) {
	planned := make(map[netip.Addr]*pm.Want, len(x.plan.Endpoints))
	for i := range x.plan.Endpoints {
		planned[x.plan.Endpoints[i].Endpoint.Addr] = &x.plan.Endpoints[i]
	}
	seen := make(map[netip.Addr]bool)
	var addrs []addrExplanation
	for _, d := range x.plan.Decisions {
		addr := d.Address.Addr().Unmap()
		seen[addr] = true
		a := addrExplanation{Decision: d}
		w := planned[addr]
		switch {
		case d.Verdict == pm.VerdictEndpoint && x.plugin != "":
			a.want = w
		case d.Verdict == pm.VerdictEndpoint:
			a.want = w
			a.kernel = kernelEndpoint(eps, addr, w.Endpoint.Port)
			switch {
			case a.kernel == nil:
				a.status = kernelMissing
			case sameEndpoint(*a.kernel, w.Endpoint):
				a.status = kernelPresent
			default:
				a.status = kernelDiffers
			}
		case w == nil:
			if a.kernel = kernelEndpoint(eps, addr, 0); a.kernel != nil {
				a.status = kernelUnwanted
			}
		case d.Verdict == pm.VerdictDuplicate:
			a.winner = w.Link
		}
		addrs = append(addrs, a)
	}
	for _, e := range eps {
		if !seen[e.Addr] {
			x.unexplained = append(x.unexplained, e)
		}
	}
	x.links = groupByLink(links, addrs)
}

// kernelEndpoint finds the kernel's endpoint on addr, preferring one with
// port (the kernel allows an address once per port).
func kernelEndpoint(eps []mptcp.Endpoint, addr netip.Addr, port uint16) *mptcp.Endpoint {
	var found *mptcp.Endpoint
	for i := range eps {
		if eps[i].Addr != addr {
			continue
		}
		if eps[i].Port == port {
			return &eps[i]
		}
		if found == nil {
			found = &eps[i]
		}
	}
	return found
}

// sameEndpoint compares what the reconciler would change.
func sameEndpoint(k, w mptcp.Endpoint) bool {
	return k.Flags == w.Flags && k.Port == w.Port && k.IfIndex == w.IfIndex
}

// groupByLink lists every link with its addresses (both come by link
// index); addresses of a link the network does not list get a group of
// their own, after the others.
func groupByLink(links []pm.Link, addrs []addrExplanation) []linkExplanation {
	out := make([]linkExplanation, len(links))
	at := make(map[int]int, len(links))
	for i, l := range links {
		out[i].link = l
		at[l.Index] = i
	}
	for _, a := range addrs {
		i, ok := at[a.LinkIndex]
		if !ok {
			i = len(out)
			at[a.LinkIndex] = i
			out = append(out, linkExplanation{link: pm.Link{Index: a.LinkIndex, Name: a.Link, Kind: a.Kind, Why: "unknown link"}})
		}
		out[i].addrs = append(out[i].addrs, a)
	}
	return out
}

// LinkName resolves the indexes of kernel endpoints with the links of the
// snapshot, so that rendering needs no backend.
func (x *explanation) LinkName(index int) (string, bool) {
	for _, l := range x.links {
		if l.link.Index == index {
			return l.link.Name, true
		}
	}
	return "", false
}

// ruleRef names a rule in text: "line N" (the heading names the policy
// file; -j gives file and line), or "built-in rule N".
func (x *explanation) ruleRef(r *policy.Rule) string {
	if r.Pos.Line == 0 {
		return fmt.Sprintf("built-in rule %d", x.ruleIndex(r))
	}
	if r.Pos.File != x.policy.Source {
		return r.Pos.String()
	}
	return fmt.Sprintf("line %d", r.Pos.Line)
}

// ruleIndex is r's 1-based place in the policy, 0 if it is not there.
func (x *explanation) ruleIndex(r *policy.Rule) int {
	for i := range x.policy.Rules {
		if &x.policy.Rules[i] == r {
			return i + 1
		}
	}
	return 0
}

// formatExplain renders the explanation: text, or with -j one JSON object
// (see writeExplainJSON).
func formatExplain(b *bytes.Buffer, x *explanation, f format) {
	if f.JSON {
		w := newJSONWriter(b, f.Pretty)
		writeExplainJSON(w, x)
		b.WriteByte('\n')
		return
	}
	fmt.Fprintf(b, "policy: %s\nmptcpd.conf: %s\n", x.src.describe(), x.src.configLine())
	if x.plugin != "" {
		fmt.Fprintf(b, "usable addresses: %d, for plugin %s (userspace mode)", len(x.plan.Endpoints), x.plugin)
	} else {
		fmt.Fprintf(b, "endpoints: %d wanted, room for %d of %d", len(x.plan.Endpoints), x.capacity, pm.MaxEndpoints)
	}
	if x.foreign > 0 {
		fmt.Fprintf(b, " (%d in the kernel on addresses not wanted)", x.foreign)
	}
	b.WriteString("\n\n")

	width := 0
	for _, l := range x.links {
		for _, a := range l.addrs {
			width = max(width, len(a.Address.String()))
		}
	}
	for _, l := range x.links {
		b.WriteString(linkText(l.link))
		b.WriteByte('\n')
		for _, a := range l.addrs {
			fmt.Fprintf(b, "  %-*s  %s\n", width, a.Address, x.verdictText(a))
		}
		if len(l.addrs) == 0 {
			b.WriteString("  (no addresses)\n")
		}
	}

	if len(x.unexplained) > 0 {
		b.WriteString("\nkernel endpoints on no address of this namespace:\n")
		for _, e := range x.unexplained {
			var line bytes.Buffer
			writeEndpointText(&line, e, x)
			fmt.Fprintf(b, "  %s\n", strings.TrimRight(line.String(), " \n"))
		}
	}

	if x.plugin != "" {
		return // the userspace path manager has no limits to set
	}
	b.WriteString("\nlimits:\n")
	s := x.policy.Settings
	fmt.Fprintf(b, "  subflows: %s\n", limitText(s.Subflows, x.plan.Limits.Subflows, x.kernelLimits.Subflows))
	fmt.Fprintf(b, "  add_addr_accepted: %s\n", limitText(s.AddAddrAccepted, x.plan.Limits.AddAddrAccepted, x.kernelLimits.AddAddrAccepted))
}

// linkText is an interface's heading: "NAME: KIND, usable[, default route
// IPv4+IPv6]" or "NAME: KIND, not usable: WHY".
func linkText(l pm.Link) string {
	s := l.Name + ": " + l.Kind.String()
	if l.Usable {
		s += ", usable"
	} else {
		s += ", not usable: " + l.Why
	}
	return s + defaultRoutes(l.DefaultRoute4, l.DefaultRoute6)
}

// verdictText is the rest of an address line: the verdict with its rule,
// and what the kernel has.
func (x *explanation) verdictText(a addrExplanation) string {
	var s string
	switch a.Verdict {
	case pm.VerdictEndpoint:
		s = "endpoint " + endpointText(a.want.Endpoint) + " (" + x.ruleRef(a.Rule) + ")"
	case pm.VerdictIgnored:
		s = "ignored (" + x.ruleRef(a.Rule) + ")"
	case pm.VerdictDuplicate:
		s = "duplicate: the endpoint is on " + a.winner + " (" + x.ruleRef(a.Rule) + ")"
	case pm.VerdictOverLimit:
		s = fmt.Sprintf("over limit: priority %d, room for %d (%s)", a.Rule.Priority, x.capacity, x.ruleRef(a.Rule))
	case pm.VerdictNoDefaultRoute:
		s = "no default route, check-route (" + x.ruleRef(a.Rule) + ")"
	default:
		s = a.Why
	}
	switch a.status {
	case kernelPresent:
		s += fmt.Sprintf("; kernel id %d", a.kernel.ID)
	case kernelMissing:
		s += "; not in kernel"
	case kernelDiffers:
		s += fmt.Sprintf("; kernel id %d but %s", a.kernel.ID, x.differences(*a.kernel, a.want.Endpoint))
	case kernelUnwanted:
		s += fmt.Sprintf("; kernel id %d, not wanted", a.kernel.ID)
	}
	return s
}

// endpointText is an endpoint's flags and port: "subflow backup",
// "signal port 6000", "no flags".
func endpointText(e mptcp.Endpoint) string {
	s := e.Flags.String()
	if s == "" {
		s = "no flags"
	}
	if e.Port != 0 {
		s += fmt.Sprintf(" port %d", e.Port)
	}
	return s
}

// differences says what the kernel's endpoint k has where it differs
// from want: its flags, port and device.
func (x *explanation) differences(k, want mptcp.Endpoint) string {
	var parts []string
	if k.Flags != want.Flags {
		parts = append(parts, endpointText(mptcp.Endpoint{Flags: k.Flags}))
	}
	switch {
	case k.Port == want.Port:
	case k.Port == 0:
		parts = append(parts, "no port")
	default:
		parts = append(parts, fmt.Sprintf("port %d", k.Port))
	}
	if k.IfIndex != want.IfIndex {
		if k.IfIndex == 0 {
			parts = append(parts, "no dev")
		} else {
			parts = append(parts, "dev "+devName(k.IfIndex, x))
		}
	}
	return strings.Join(parts, ", ")
}

// limitText compares one limit: the policy's mode, the value it wants and
// the kernel's.
func limitText(l policy.Limit, want, kernel *uint32) string {
	var s string
	switch {
	case l.Mode == policy.LimitKeep:
		s = "keep"
	case want == nil:
		s = "auto, nothing to derive it from"
	case l.Mode == policy.LimitAuto:
		s = fmt.Sprintf("want %d (auto)", *want)
	default:
		s = fmt.Sprintf("want %d", *want)
	}
	if kernel == nil {
		return s + ", kernel unknown"
	}
	s += fmt.Sprintf(", kernel %d", *kernel)
	if want != nil && *want != *kernel {
		s += ", differs"
	}
	return s
}

// writeExplainJSON writes the -j form. Every key is always present, in
// this order; values that do not apply are null.
//
//	{
//	  "policy": {"source": "/etc/mptcpd/policy" | "built-in",
//	             "why": how it was chosen, "config": mptcpd.conf's path,
//	             "config_found": false when it is absent},
//	  "endpoints": {"wanted": N, "capacity": room for N, "max": 8,
//	                "foreign": kernel endpoints on addresses not wanted},
//	  "interfaces": [{"name", "index", "kind" (the policy's word),
//	      "usable", "why" ("" when usable),
//	      "default_route_ipv4", "default_route_ipv6",
//	      "addresses": [{"address": "10.0.0.1/24",
//	          "verdict": pm.Verdict's word ("endpoint", "ignored",
//	                     "no rule matched", "link-local", ...),
//	          "why": the verdict in words,
//	          "rule": {"index": 1-based, "file", "line"} | null
//	                  (file "" and line 0: the built-in policy),
//	          "endpoint": {"flags": [...], "port": N, "dev"} | null,
//	          "kernel": "present" | "missing" | "differs" | "unwanted" | "none",
//	          "kernel_endpoint": as in endpoint show -j | null}]}],
//	  "unexplained": [kernel endpoints on no address, as in endpoint show -j],
//	  "limits": {"subflows" | "add_addr_accepted":
//	      {"policy": "auto" | "keep" | N, "want": N | null, "kernel": N | null}}
//	}
func writeExplainJSON(w *jsonWriter, x *explanation) {
	w.startObject()
	w.name("policy")
	w.startObject()
	w.stringField("source", x.policy.Source)
	w.stringField("why", x.src.Why)
	w.stringField("config", x.src.Config)
	w.boolField("config_found", x.src.ConfigFound)
	w.endObject()

	w.name("endpoints")
	w.startObject()
	w.uintField("wanted", uint64(len(x.plan.Endpoints)))
	w.uintField("capacity", uint64(x.capacity))
	w.uintField("max", pm.MaxEndpoints)
	w.uintField("foreign", uint64(x.foreign))
	w.endObject()

	w.name("interfaces")
	w.startArray()
	for _, l := range x.links {
		w.startObject()
		w.stringField("name", l.link.Name)
		w.intField("index", int64(l.link.Index))
		w.stringField("kind", l.link.Kind.String())
		w.boolField("usable", l.link.Usable)
		w.stringField("why", l.link.Why)
		w.boolField("default_route_ipv4", l.link.DefaultRoute4)
		w.boolField("default_route_ipv6", l.link.DefaultRoute6)
		w.name("addresses")
		w.startArray()
		for _, a := range l.addrs {
			x.writeAddrJSON(w, a)
		}
		w.endArray()
		w.endObject()
	}
	w.endArray()

	w.name("unexplained")
	w.startArray()
	for _, e := range x.unexplained {
		writeEndpointJSON(w, e, x)
	}
	w.endArray()

	w.name("limits")
	w.startObject()
	s := x.policy.Settings
	writeLimitJSON(w, "subflows", s.Subflows, x.plan.Limits.Subflows, x.kernelLimits.Subflows)
	writeLimitJSON(w, "add_addr_accepted", s.AddAddrAccepted, x.plan.Limits.AddAddrAccepted, x.kernelLimits.AddAddrAccepted)
	w.endObject()
	w.endObject()
}

func (x *explanation) writeAddrJSON(w *jsonWriter, a addrExplanation) {
	w.startObject()
	w.stringField("address", a.Address.String())
	w.stringField("verdict", a.Verdict.String())
	w.stringField("why", a.Why)
	if a.Rule != nil {
		w.name("rule")
		w.startObject()
		w.uintField("index", uint64(x.ruleIndex(a.Rule)))
		w.stringField("file", a.Rule.Pos.File)
		w.uintField("line", uint64(a.Rule.Pos.Line))
		w.endObject()
	} else {
		w.nullField("rule")
	}
	if a.want != nil {
		e := a.want.Endpoint
		w.name("endpoint")
		w.startObject()
		writeNamesJSON(w, "flags", e.Flags.Names())
		w.uintField("port", uint64(e.Port))
		w.stringField("dev", devName(e.IfIndex, x))
		w.endObject()
	} else {
		w.nullField("endpoint")
	}
	w.stringField("kernel", a.status.String())
	if a.kernel != nil {
		w.name("kernel_endpoint")
		writeEndpointJSON(w, *a.kernel, x)
	} else {
		w.nullField("kernel_endpoint")
	}
	w.endObject()
}

func writeLimitJSON(w *jsonWriter, key string, l policy.Limit, want, kernel *uint32) {
	w.name(key)
	w.startObject()
	w.stringField("policy", l.String())
	optionalUint := func(key string, v *uint32) {
		if v == nil {
			w.nullField(key)
		} else {
			w.uintField(key, uint64(*v))
		}
	}
	optionalUint("want", want)
	optionalUint("kernel", kernel)
	w.endObject()
}

// defaultRoutes says which families have a default route through a link:
// ", default route IPv4+IPv6", or "" for none.
func defaultRoutes(v4, v6 bool) string {
	var fams []string
	if v4 {
		fams = append(fams, "IPv4")
	}
	if v6 {
		fams = append(fams, "IPv6")
	}
	if len(fams) == 0 {
		return ""
	}
	return ", default route " + strings.Join(fams, "+")
}
