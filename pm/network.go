package pm

import (
	"net/netip"
	"slices"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/policy"
)

// mainTable is RT_TABLE_MAIN.
const mainTable = 254

// Network is the part of a namespace's state that endpoints depend on.
type Network struct {
	Links []Link    // by index
	Addrs []Address // by link index, then address
}

// Link is one interface as the path manager sees it.
type Link struct {
	Index  int
	Name   string
	Kind   policy.Kind
	Usable bool
	Why    string // why the link is not usable: "down", "no carrier", ...

	// Default routes of the main table through this link. Only the main
	// table counts: it is what unmarked traffic without a source rule
	// uses, and the source-routing tables this daemon installs elsewhere
	// must not feed back into the decision to install them.
	DefaultRoute4 bool
	DefaultRoute6 bool
	Gateways      []netip.Addr // next hops of those routes: IPv4 first, each family by metric
}

// Address is one address of a link.
type Address struct {
	LinkIndex int
	Prefix    netip.Prefix // the address with its prefix length, not masked
	Scope     netmon.Scope
	Flags     netmon.AddrFlags
}

// Addr returns the address itself, unmapped.
func (a Address) Addr() netip.Addr { return a.Prefix.Addr().Unmap() }

// Equal reports whether n and o are the same network. Every field
// counts, so a pass can be skipped when they are equal.
func (n Network) Equal(o Network) bool {
	return slices.EqualFunc(n.Links, o.Links, Link.Equal) && slices.Equal(n.Addrs, o.Addrs)
}

// Equal reports whether l and o are the same in every field.
func (l Link) Equal(o Link) bool {
	return l.Index == o.Index && l.Name == o.Name && l.Kind == o.Kind && l.Usable == o.Usable && l.Why == o.Why &&
		l.DefaultRoute4 == o.DefaultRoute4 && l.DefaultRoute6 == o.DefaultRoute6 && slices.Equal(l.Gateways, o.Gateways)
}

// Link returns the link with this index.
func (n Network) Link(index int) (Link, bool) {
	i := slices.IndexFunc(n.Links, func(l Link) bool { return l.Index == index })
	if i < 0 {
		return Link{}, false
	}
	return n.Links[i], true
}

// NetworkFrom reduces s to a Network, classifying every link with
// classify (nil: by name alone).
func NetworkFrom(s *netmon.State, classify Classifier) Network {
	if classify == nil {
		classify = func(l netmon.Link) policy.Kind { return kindByName(l.Name) }
	}
	links := s.Links()
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Index] = l.Name
	}

	// Routes come by table, destination, metric and nexthop, which puts
	// Gateways in family, then metric order.
	type defaults struct {
		v4, v6 bool
		gws    []netip.Addr
	}
	byLink := make(map[int]*defaults)
	for _, r := range s.DefaultRoutes() {
		if r.Table != mainTable || r.LinkIndex == 0 {
			continue
		}
		d := byLink[r.LinkIndex]
		if d == nil {
			d = &defaults{}
			byLink[r.LinkIndex] = d
		}
		if r.Dst.Addr().Is4() {
			d.v4 = true
		} else {
			d.v6 = true
		}
		if gw := r.Gateway.Unmap(); gw.IsValid() && !slices.Contains(d.gws, gw) {
			d.gws = append(d.gws, gw)
		}
	}

	var n Network
	for _, l := range links {
		pl := Link{Index: l.Index, Name: l.Name, Kind: classify(l)}
		pl.Why = unusable(l, names)
		pl.Usable = pl.Why == ""
		if d := byLink[l.Index]; d != nil {
			pl.DefaultRoute4, pl.DefaultRoute6, pl.Gateways = d.v4, d.v6, d.gws
		}
		n.Links = append(n.Links, pl)
	}
	for _, a := range s.Addrs() {
		if _, ok := names[a.LinkIndex]; !ok {
			continue // an address event raced ahead of its link's
		}
		n.Addrs = append(n.Addrs, Address{LinkIndex: a.LinkIndex, Prefix: a.Prefix, Scope: a.Scope, Flags: a.Flags})
	}
	return n
}

// unusable says why no endpoint should live on l, or "" when it may.
func unusable(l netmon.Link, names map[int]string) string {
	switch {
	case !l.Up:
		return "down"
	case !l.Carrier:
		return "no carrier"
	}
	switch l.OperState {
	case netmon.OperDown, netmon.OperLowerLayerDown, netmon.OperNotPresent, netmon.OperDormant:
		return "operstate " + l.OperState.String()
	}
	if l.MasterIndex != 0 {
		// A port of a bridge or bond carries no traffic of its own; its
		// master does.
		if m, ok := names[l.MasterIndex]; ok {
			return "enslaved to " + m
		}
		return "enslaved"
	}
	return ""
}

// Regained lists the links that before had but could not use and after
// can: a carrier back, a link set up again. A link new in after is not
// among them.
func Regained(before, after Network) []int {
	var out []int
	for _, l := range after.Links {
		if old, ok := before.Link(l.Index); ok && l.Usable && !old.Usable {
			out = append(out, l.Index)
		}
	}
	return out
}
