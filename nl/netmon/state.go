package netmon

import (
	"bytes"
	"cmp"
	"maps"
	"net/netip"
	"slices"
)

// State is the links, addresses and routes of a namespace, built by
// applying events in order. It is pure data (no netlink) and not safe for
// concurrent use.
type State struct {
	links  map[int]Link
	addrs  map[AddrKey]Addr
	routes map[RouteKey]Route
	synced bool
}

// NewState returns an empty, unsynced State.
func NewState() *State {
	return &State{
		links:  make(map[int]Link),
		addrs:  make(map[AddrKey]Addr),
		routes: make(map[RouteKey]Route),
	}
}

// Apply changes the state by one event and reports whether anything
// changed, which makes it the monitor's duplicate filter too:
//
//   - OpNew stores the object, unless an equal one is there already; for
//     an address "equal" ignores the lifetimes' values (see the package
//     documentation).
//   - OpDel removes the object with the same key; deleting a link also
//     removes its addresses and routes, as the kernel does.
//   - ResyncNeeded marks the state stale but keeps it, Synced marks it
//     current.
func (s *State) Apply(ev Event) bool {
	switch ev := ev.(type) {
	case LinkEvent:
		return s.applyLink(ev)
	case AddrEvent:
		key := ev.Addr.Key()
		old, ok := s.addrs[key]
		if ev.Op == OpDel {
			delete(s.addrs, key)
			return ok
		}
		if ok && old.sameIgnoringLifetimes(ev.Addr) {
			return false
		}
		s.addrs[key] = ev.Addr
		return true
	case RouteEvent:
		key := ev.Route.Key()
		old, ok := s.routes[key]
		if ev.Op == OpDel {
			delete(s.routes, key)
			return ok
		}
		if ok && old == ev.Route {
			return false
		}
		s.routes[key] = ev.Route
		return true
	case ResyncNeeded:
		changed := s.synced
		s.synced = false
		return changed
	case Synced:
		changed := !s.synced
		s.synced = true
		return changed
	}
	return false
}

func (s *State) applyLink(ev LinkEvent) bool {
	index := ev.Link.Index
	old, ok := s.links[index]
	if ev.Op == OpDel {
		if !ok {
			return false
		}
		delete(s.links, index)
		maps.DeleteFunc(s.addrs, func(_ AddrKey, a Addr) bool { return a.LinkIndex == index })
		maps.DeleteFunc(s.routes, func(_ RouteKey, r Route) bool { return r.LinkIndex == index })
		return true
	}
	if ok && old.Equal(ev.Link) {
		return false
	}
	l := ev.Link
	l.HardwareAddr = bytes.Clone(l.HardwareAddr) // the event's slice stays the sender's
	s.links[index] = l
	return true
}

// Synced reports whether the state is complete: a Synced event was applied
// and no ResyncNeeded since.
func (s *State) Synced() bool { return s.synced }

// Link returns the link with this index.
func (s *State) Link(index int) (Link, bool) {
	l, ok := s.links[index]
	return l, ok
}

// LinkByName returns the link with this name.
func (s *State) LinkByName(name string) (Link, bool) {
	for _, l := range s.links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// Links returns all links by index.
func (s *State) Links() []Link {
	return slices.SortedFunc(maps.Values(s.links), func(a, b Link) int { return cmp.Compare(a.Index, b.Index) })
}

// Addrs returns all addresses by link, then address.
func (s *State) Addrs() []Addr {
	return slices.SortedFunc(maps.Values(s.addrs), compareAddrs)
}

// Routes returns all routes by table, destination, metric and nexthop.
func (s *State) Routes() []Route {
	return slices.SortedFunc(maps.Values(s.routes), compareRoutes)
}

// LinkAddrs returns the addresses of one link.
func (s *State) LinkAddrs(index int) []Addr {
	return sortedWhere(s.addrs, func(a Addr) bool { return a.LinkIndex == index }, compareAddrs)
}

// LinkRoutes returns the routes through one link.
func (s *State) LinkRoutes(index int) []Route {
	return sortedWhere(s.routes, func(r Route) bool { return r.LinkIndex == index }, compareRoutes)
}

// DefaultRoutes returns the default routes of every table, IPv4 and IPv6.
func (s *State) DefaultRoutes() []Route {
	return sortedWhere(s.routes, Route.Default, compareRoutes)
}

// sortedWhere returns the values of m that keep, sorted: filtering first
// spares sorting every route of the namespace on each daemon pass.
func sortedWhere[K comparable, V any](m map[K]V, keep func(V) bool, cmp func(a, b V) int) []V {
	var out []V
	for _, v := range m {
		if keep(v) {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, cmp)
	return out
}

// Clone returns an independent copy.
func (s *State) Clone() *State {
	c := &State{
		links:  maps.Clone(s.links),
		addrs:  maps.Clone(s.addrs),
		routes: maps.Clone(s.routes),
		synced: s.synced,
	}
	for i, l := range c.links {
		l.HardwareAddr = bytes.Clone(l.HardwareAddr)
		c.links[i] = l
	}
	return c
}

// newEvents returns OpNew events that build s from nothing: links, then
// addresses, then routes, each sorted.
func (s *State) newEvents() []Event {
	evs := make([]Event, 0, len(s.links)+len(s.addrs)+len(s.routes))
	for _, l := range s.Links() {
		evs = append(evs, LinkEvent{Op: OpNew, Link: l})
	}
	for _, a := range s.Addrs() {
		evs = append(evs, AddrEvent{Op: OpNew, Addr: a})
	}
	for _, r := range s.Routes() {
		evs = append(evs, RouteEvent{Op: OpNew, Route: r})
	}
	return evs
}

// resyncEvents returns what follows ResyncNeeded (or starts the stream,
// with old empty): OpDel for every object of old missing from fresh
// (routes, addresses, then links, so nothing is deleted before what
// depends on it), OpNew for every object of fresh, and Synced. Applied to
// old, or to an empty State, they give fresh.
func resyncEvents(old, fresh *State) []Event {
	var evs []Event
	for _, r := range old.Routes() {
		if _, ok := fresh.routes[r.Key()]; !ok {
			evs = append(evs, RouteEvent{Op: OpDel, Route: r})
		}
	}
	for _, a := range old.Addrs() {
		if _, ok := fresh.addrs[a.Key()]; !ok {
			evs = append(evs, AddrEvent{Op: OpDel, Addr: a})
		}
	}
	for _, l := range old.Links() {
		if _, ok := fresh.links[l.Index]; !ok {
			evs = append(evs, LinkEvent{Op: OpDel, Link: l})
		}
	}
	evs = append(evs, fresh.newEvents()...)
	return append(evs, Synced{})
}

// routeSweepEvents compares the routes of s with a fresh route dump: OpDel
// for routes the kernel no longer has (it drops some silently), OpNew for
// each dumped route. Applying them only changes what differs.
func routeSweepEvents(s *State, dumped []Route) []Event {
	seen := make(map[RouteKey]bool, len(dumped))
	var evs []Event
	for _, r := range dumped {
		seen[r.Key()] = true
	}
	for _, r := range s.Routes() {
		if !seen[r.Key()] {
			evs = append(evs, RouteEvent{Op: OpDel, Route: r})
		}
	}
	for _, r := range dumped {
		evs = append(evs, RouteEvent{Op: OpNew, Route: r})
	}
	return evs
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func compareAddrs(a, b Addr) int {
	if c := cmp.Compare(a.LinkIndex, b.LinkIndex); c != 0 {
		return c
	}
	return comparePrefixes(a.Prefix, b.Prefix)
}

func compareRoutes(a, b Route) int {
	return cmp.Or(
		cmp.Compare(a.Table, b.Table),
		comparePrefixes(a.Dst, b.Dst),
		cmp.Compare(a.Priority, b.Priority),
		cmp.Compare(a.TOS, b.TOS),
		cmp.Compare(a.LinkIndex, b.LinkIndex),
		a.Gateway.Compare(b.Gateway),
	)
}
