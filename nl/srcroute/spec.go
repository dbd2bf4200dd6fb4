package srcroute

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Protocol marks every route (rtm_protocol) and rule (FRA_PROTOCOL, which
// vishvananda/netlink v1.3.1 sends and parses as Rule.Protocol) this package
// installs; it is how a restarted daemon recognises its own. Removals carry
// it too, and the kernel then deletes only a route or rule that has it.
//
// The kernel passes values from RTPROT_STATIC (4) up through untouched. 113
// is neither in linux/rtnetlink.h nor in iproute2's rt_protos, and no
// routing software we know of uses it. Not 109, the first idea: the
// Tungsten Fabric (OpenContrail) vrouter agent marks its routes with it.
// Nor 77: the multi-WAN manager mwan4 uses that. A shared marker would make
// Apply take their routes, outside the kernel's tables, for its own stale
// ones. ip(8) shows it by name after
//
//	echo "113 mptcpd" >/etc/iproute2/rt_protos.d/mptcpd.conf
const Protocol uint8 = 113

// Spec is the source routing one interface needs.
type Spec struct {
	// LinkIndex is the interface's index.
	LinkIndex int
	// Table is the routing table of the interface, its own: not 253
	// (default), 254 (main) or 255 (local).
	Table int
	// Priority is the priority of the interface's rules, 1..32765: they
	// must come before the main table's rule (32766) to matter.
	Priority int
	// Gateways are the default route's next hops, at most one per family.
	// A family of Addrs without a gateway gets "default dev LINK".
	Gateways []netip.Addr
	// Addrs are the interface's local addresses with their prefix length.
	Addrs []netip.Prefix
}

// Scope is a route's scope (rtm_scope).
type Scope uint8

// The scopes of the routes this package installs (RT_SCOPE_* in
// linux/rtnetlink.h).
const (
	ScopeUniverse Scope = 0
	ScopeLink     Scope = 253
)

func (s Scope) String() string {
	switch s {
	case ScopeUniverse:
		return "global"
	case ScopeLink:
		return "link"
	}
	return strconv.Itoa(int(s))
}

// Route is one route of a source-routing table, as installed and as read
// back from the kernel.
type Route struct {
	Table int
	// Dst is masked; 0.0.0.0/0 or ::/0 for a default route.
	Dst netip.Prefix
	// Gateway is the next hop of a default route, the zero Addr for a
	// connected route.
	Gateway   netip.Addr
	LinkIndex int
	// Src is the preferred source address, the zero Addr for none.
	Src   netip.Addr
	Scope Scope
}

// String describes r in ip-route words, naming the link by its index.
func (r Route) String() string {
	var b strings.Builder
	if r.Dst.IsValid() && r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gateway)
	}
	fmt.Fprintf(&b, " ifindex %d", r.LinkIndex)
	if r.Scope != ScopeUniverse {
		fmt.Fprintf(&b, " scope %s", r.Scope)
	}
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	fmt.Fprintf(&b, " table %d", r.Table)
	return b.String()
}

// Rule is one policy rule sending an address's traffic to its table.
type Rule struct {
	Priority int
	// Src is the one address the rule matches: a /32 or /128.
	Src   netip.Prefix
	Table int
	// other lists what a marked rule read back from the kernel selects or
	// does beyond the fields above (iif, fwmark, ...). Such a rule is never
	// one this package wants, so it is removed rather than kept.
	other string
}

// String describes r in ip-rule words.
func (r Rule) String() string {
	s := fmt.Sprintf("priority %d from %s", r.Priority, r.Src)
	if r.other != "" {
		s += " " + r.other
	}
	return s + " lookup " + strconv.Itoa(r.Table)
}

// Changes lists what Apply or Clear did, in the order it did it.
type Changes struct {
	RulesRemoved  []Rule
	RoutesRemoved []Route
	RoutesAdded   []Route
	RulesAdded    []Rule
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.RulesRemoved)+len(c.RoutesRemoved)+len(c.RoutesAdded)+len(c.RulesAdded) == 0
}

// ownTable reports whether table can belong to a Spec. Marked routes and
// rules in the kernel's own tables are not ours whatever their marker.
func ownTable(table int) bool {
	switch table {
	case 0, 253, 254, 255:
		return false
	}
	return table > 0 && uint64(table) <= math.MaxUint32
}

// lastPriority is the last rule priority before the main table's rule.
const lastPriority = 32765

// desired returns the routes and rules that want needs, without
// duplicates and in the order they are to be added, or every way in which
// want is invalid or contradicts itself.
func desired(want []Spec) ([]Route, []Rule, error) {
	var (
		errs   []error
		routes = map[Route]bool{}
		rules  = map[Rule]bool{}
	)
	for i, s := range want {
		rs, ls, err := s.objects()
		if err != nil {
			errs = append(errs, fmt.Errorf("srcroute: spec %d (ifindex %d, table %d): %w", i, s.LinkIndex, s.Table, err))
			continue
		}
		for _, r := range rs {
			routes[r] = true
		}
		for _, l := range ls {
			rules[l] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	rs := sortedKeys(routes, compareRoutes)
	ls := sortedKeys(rules, compareRules)
	return rs, ls, errors.Join(conflictingRoutes(rs), conflictingRules(ls))
}

// objects returns the routes and rules of one Spec.
func (s Spec) objects() ([]Route, []Rule, error) {
	if s.LinkIndex <= 0 {
		return nil, nil, fmt.Errorf("link index %d is not positive", s.LinkIndex)
	}
	if !ownTable(s.Table) {
		return nil, nil, fmt.Errorf("table %d is not a table of its own (1..%d without 253 default, 254 main, 255 local)", s.Table, uint32(math.MaxUint32))
	}
	if s.Priority < 1 || s.Priority > lastPriority {
		return nil, nil, fmt.Errorf("rule priority %d is outside 1..%d: the rules must come before the main table's", s.Priority, lastPriority)
	}
	var (
		routes []Route
		errs   []error
		gwOf   = map[int]netip.Addr{} // by bit length, for "one per family"
	)
	for _, gw := range s.Gateways {
		gw = gw.WithZone("") // the link is given; a zone would only repeat it
		if err := checkUnicast(gw); err != nil {
			errs = append(errs, fmt.Errorf("gateway: %w", err))
			continue
		}
		if other, dup := gwOf[gw.BitLen()]; dup {
			errs = append(errs, fmt.Errorf("two %s gateways, %s and %s", family(gw), other, gw))
			continue
		}
		gwOf[gw.BitLen()] = gw
		routes = append(routes, Route{
			Table: s.Table, Dst: netip.PrefixFrom(unspecified(gw), 0),
			Gateway: gw, LinkIndex: s.LinkIndex, Scope: ScopeUniverse,
		})
	}
	var (
		rules []Rule
		srcOf = map[netip.Prefix]netip.Addr{} // connected prefix -> lowest address
	)
	for _, p := range s.Addrs {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("address %s: not a valid prefix", p))
			continue
		}
		if err := checkUnicast(p.Addr()); err != nil {
			errs = append(errs, fmt.Errorf("address: %w", err))
			continue
		}
		a := p.Addr()
		if prev, ok := srcOf[p.Masked()]; !ok || a.Less(prev) {
			srcOf[p.Masked()] = a
		}
		rules = append(rules, Rule{Priority: s.Priority, Src: netip.PrefixFrom(a, a.BitLen()), Table: s.Table})
	}
	// A family with addresses but no gateway has an on-link default
	// route (point to point links, raw-IP modems): "default dev LINK".
	for _, bits := range []int{32, 128} {
		if _, ok := gwOf[bits]; ok || !hasFamily(s.Addrs, bits) {
			continue
		}
		unspec := netip.IPv4Unspecified()
		scope := ScopeLink
		if bits == 128 {
			unspec, scope = netip.IPv6Unspecified(), ScopeUniverse
		}
		routes = append(routes, Route{Table: s.Table, Dst: netip.PrefixFrom(unspec, 0), LinkIndex: s.LinkIndex, Scope: scope})
	}
	for dst, src := range srcOf {
		scope := ScopeLink
		if dst.Addr().Is6() {
			scope = ScopeUniverse // IPv6 routes have no scope
		}
		routes = append(routes, Route{Table: s.Table, Dst: dst, LinkIndex: s.LinkIndex, Src: src, Scope: scope})
	}
	return routes, rules, errors.Join(errs...)
}

// hasFamily reports whether some valid prefix has an address of bits
// length (32 or 128).
func hasFamily(addrs []netip.Prefix, bits int) bool {
	for _, p := range addrs {
		if p.IsValid() && p.Addr().BitLen() == bits {
			return true
		}
	}
	return false
}

// checkUnicast accepts the addresses a route or rule can be about.
func checkUnicast(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("missing address")
	case a.Is4In6():
		return fmt.Errorf("%s is IPv4-mapped IPv6: give the IPv4 address", a)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s is not a unicast address", a)
	}
	return nil
}

// conflictingRoutes finds wanted routes that the kernel cannot hold side
// by side: one table has one route per destination.
func conflictingRoutes(routes []Route) error {
	type key struct {
		table int
		dst   netip.Prefix
	}
	seen := map[key]Route{}
	var errs []error
	for _, r := range routes {
		k := key{r.Table, r.Dst}
		if prev, dup := seen[k]; dup {
			errs = append(errs, fmt.Errorf("srcroute: table %d gets two routes to %s: %s and %s", r.Table, r.Dst, prev, r))
			continue
		}
		seen[k] = r
	}
	return errors.Join(errs...)
}

// conflictingRules finds an address that two specs send to different
// tables: only the first rule would ever match.
func conflictingRules(rules []Rule) error {
	seen := map[netip.Prefix]Rule{}
	var errs []error
	for _, r := range rules {
		if prev, dup := seen[r.Src]; dup {
			errs = append(errs, fmt.Errorf("srcroute: address %s is in two specs: %s and %s", r.Src.Addr(), prev, r))
			continue
		}
		seen[r.Src] = r
	}
	return errors.Join(errs...)
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// compareRoutes orders connected routes before default routes (a gateway
// must be reachable when its route is added), then by table and
// destination.
func compareRoutes(a, b Route) int {
	return cmp.Or(
		cmpBool(a.Gateway.IsValid(), b.Gateway.IsValid()),
		cmp.Compare(a.Table, b.Table),
		comparePrefixes(a.Dst, b.Dst),
		cmp.Compare(a.LinkIndex, b.LinkIndex),
		a.Gateway.Compare(b.Gateway),
		a.Src.Compare(b.Src),
		cmp.Compare(a.Scope, b.Scope),
	)
}

func compareRules(a, b Rule) int {
	return cmp.Or(
		cmp.Compare(a.Priority, b.Priority),
		cmp.Compare(a.Table, b.Table),
		comparePrefixes(a.Src, b.Src),
		strings.Compare(a.other, b.other),
	)
}

func comparePrefixes(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
