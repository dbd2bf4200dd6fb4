package srcroute

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// requestTimeout bounds each rtnetlink request, dumps included.
	requestTimeout = 5 * time.Second
	// maxDumpAttempts bounds retries of a dump the kernel flagged as
	// interrupted (NLM_F_DUMP_INTR: the table changed while it was read).
	maxDumpAttempts = 5
)

// rtnl is the kernel through vishvananda/netlink, in one namespace.
type rtnl struct {
	h *netlink.Handle
	// What the last dump read, by the value it was read as. A removal
	// sends back the kernel's own description (metric, selectors this
	// package does not model), so that it deletes exactly that object.
	routes map[Route][]netlink.Route
	rules  map[Rule][]netlink.Rule
}

var _ kernel = (*rtnl)(nil)

func newKernel(nsFD int) (kernel, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if nsFD == 0 {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		// The library opens the socket on a locked thread moved into the
		// namespace and back; the socket stays in the namespace.
		h, err = netlink.NewHandleAt(netns.NsHandle(nsFD), unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("srcroute: opening rtnetlink in network namespace fd %d: %w", nsFD, err)
	}
	if err := h.SetSocketTimeout(requestTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("srcroute: rtnetlink socket timeout: %w", err)
	}
	return &rtnl{h: h}, nil
}

func (k *rtnl) close() error {
	k.h.Close()
	return nil
}

func (k *rtnl) dump() (installed, error) {
	var err error
	for range maxDumpAttempts {
		var have installed
		if have, err = k.dumpOnce(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return have, err
		}
	}
	return installed{}, fmt.Errorf("%w (%d attempts)", err, maxDumpAttempts)
}

func (k *rtnl) dumpOnce() (installed, error) {
	var (
		have   installed
		routes = map[Route][]netlink.Route{}
		rules  = map[Rule][]netlink.Rule{}
	)
	// RT_FILTER_TABLE with RT_TABLE_UNSPEC keeps every table (the library
	// keeps only main otherwise).
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: netlink.RouteProtocol(Protocol)}
	err := k.h.RouteListFilteredIter(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL,
		func(nr netlink.Route) bool {
			if r, ok := routeFromNetlink(nr); ok {
				have.routes = append(have.routes, r)
				routes[r] = append(routes[r], nr)
			}
			return true
		})
	if err != nil {
		return installed{}, fmt.Errorf("srcroute: dumping routes: %w", err)
	}
	nrules, err := k.h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return installed{}, fmt.Errorf("srcroute: dumping rules: %w", err)
	}
	for _, nr := range nrules {
		if r, ok := ruleFromNetlink(nr); ok {
			have.rules = append(have.rules, r)
			rules[r] = append(rules[r], nr)
		}
	}
	k.routes, k.rules = routes, rules
	return have, nil
}

func (k *rtnl) addRoute(r Route) error { return k.h.RouteAdd(routeToNetlink(r)) }

func (k *rtnl) addRule(r Rule) error { return k.h.RuleAdd(ruleToNetlink(r)) }

func (k *rtnl) delRoute(r Route) error {
	req := routeToNetlink(r)
	if nr, ok := pop(k.routes, r); ok {
		req = routeDelRequest(nr)
	}
	return gone(k.h.RouteDel(req))
}

func (k *rtnl) delRule(r Rule) error {
	req := ruleToNetlink(r)
	if nr, ok := pop(k.rules, r); ok {
		req = &nr
	}
	return gone(k.h.RuleDel(req))
}

// pop takes one of the kernel objects read as v.
func pop[K comparable, V any](m map[K][]V, v K) (V, bool) {
	list := m[v]
	if len(list) == 0 {
		var zero V
		return zero, false
	}
	m[v] = list[:len(list)-1]
	return list[len(list)-1], true
}

// gone maps "no such route" (ESRCH) and "no such rule" (ENOENT) to errGone.
func gone(err error) error {
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", errGone, err)
	}
	return err
}

// routeFromNetlink converts a marked route; ok is false for one that is
// not ours whatever its marker (kernel tables, non-IP families).
func routeFromNetlink(nr netlink.Route) (Route, bool) {
	if !ownTable(nr.Table) || (nr.Family != unix.AF_INET && nr.Family != unix.AF_INET6) {
		return Route{}, false
	}
	return Route{
		Table:     nr.Table,
		Dst:       prefixFromIPNet(nr.Dst, nr.Family),
		Gateway:   addrFromIP(nr.Gw, nr.Family),
		LinkIndex: nr.LinkIndex,
		Src:       addrFromIP(nr.Src, nr.Family),
		Scope:     Scope(nr.Scope),
	}, true
}

func routeToNetlink(r Route) *netlink.Route {
	nr := &netlink.Route{
		Family:    familyOf(r.Dst.Addr()),
		Dst:       ipNet(r.Dst),
		LinkIndex: r.LinkIndex,
		Table:     r.Table,
		Scope:     netlink.Scope(r.Scope),
		Protocol:  netlink.RouteProtocol(Protocol),
	}
	if r.Gateway.IsValid() {
		nr.Gw = r.Gateway.AsSlice()
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	return nr
}

// routeDelRequest is what identifies a dumped route to RTM_DELROUTE: its
// key fields, metric and marker, but not state the kernel reports and
// compares on removal (rtm_flags such as linkdown, cache info).
func routeDelRequest(nr netlink.Route) *netlink.Route {
	return &netlink.Route{
		Family: nr.Family, Dst: nr.Dst, Gw: nr.Gw, LinkIndex: nr.LinkIndex, Src: nr.Src,
		Scope: nr.Scope, Table: nr.Table, Protocol: nr.Protocol, Priority: nr.Priority,
		Tos: nr.Tos, Type: nr.Type,
	}
}

// ruleFromNetlink converts a rule if it carries the marker and points to
// a table of its own.
func ruleFromNetlink(nr netlink.Rule) (Rule, bool) {
	if nr.Protocol != Protocol || !ownTable(nr.Table) || (nr.Family != unix.AF_INET && nr.Family != unix.AF_INET6) {
		return Rule{}, false
	}
	r := Rule{Priority: nr.Priority, Table: nr.Table, other: otherSelectors(nr)}
	if nr.Src != nil {
		r.Src = prefixFromIPNet(nr.Src, nr.Family)
	}
	return r, true
}

func ruleToNetlink(r Rule) *netlink.Rule {
	nr := netlink.NewRule() // "unset" is -1 for several fields, not 0
	nr.Family = familyOf(r.Src.Addr())
	nr.Priority = r.Priority
	nr.Src = ipNet(r.Src)
	nr.Table = r.Table
	nr.Protocol = Protocol
	return nr
}

// otherSelectors names, in ip-rule words, what nr has beyond priority,
// source and table.
func otherSelectors(nr netlink.Rule) string {
	var o []string
	add := func(set bool, word string) {
		if set {
			o = append(o, word)
		}
	}
	add(nr.Invert, "not")
	add(nr.Dst != nil, "to "+fmt.Sprint(nr.Dst))
	add(nr.Tos != 0, "tos "+strconv.FormatUint(uint64(nr.Tos), 10))
	add(nr.Mark != 0 || nr.Mask != nil, "fwmark "+strconv.FormatUint(uint64(nr.Mark), 10))
	add(nr.IifName != "", "iif "+nr.IifName)
	add(nr.OifName != "", "oif "+nr.OifName)
	add(nr.TunID != 0, "tun_id "+strconv.FormatUint(uint64(nr.TunID), 10))
	add(nr.IPProto != 0, "ipproto "+strconv.Itoa(nr.IPProto))
	add(nr.Sport != nil, "sport")
	add(nr.Dport != nil, "dport")
	add(nr.UIDRange != nil, "uidrange")
	add(nr.Goto >= 0, "goto "+strconv.Itoa(nr.Goto))
	add(nr.Flow >= 0, "realms "+strconv.Itoa(nr.Flow))
	add(nr.SuppressPrefixlen >= 0, "suppress_prefixlength "+strconv.Itoa(nr.SuppressPrefixlen))
	add(nr.SuppressIfgroup >= 0, "suppress_ifgroup "+strconv.Itoa(nr.SuppressIfgroup))
	return strings.Join(o, " ")
}

// addrFromIP converts ip of the given family; nil gives the zero Addr.
func addrFromIP(ip net.IP, family int) netip.Addr {
	if family == unix.AF_INET {
		ip = ip.To4()
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// prefixFromIPNet converts n, masked; nil is the family's default
// destination.
func prefixFromIPNet(n *net.IPNet, family int) netip.Prefix {
	if n == nil {
		if family == unix.AF_INET {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(addrFromIP(n.IP, family), bits).Masked()
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
