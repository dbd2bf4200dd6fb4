package netmon

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpIP = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func testLink(index int, name string, up bool) Link {
	return Link{Index: index, Name: name, Kind: "veth", Up: up, Carrier: up, OperState: OperUp, MTU: 1500,
		HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, byte(index)}}
}

func testAddr(index int, prefix string) Addr {
	return Addr{LinkIndex: index, Prefix: netip.MustParsePrefix(prefix), Flags: AddrPermanent,
		PreferredLifetime: Forever, ValidLifetime: Forever}
}

func testRoute(index int, dst, gw string) Route {
	r := Route{Dst: netip.MustParsePrefix(dst), LinkIndex: index, Table: 254, Protocol: 4}
	if gw != "" {
		r.Gateway = netip.MustParseAddr(gw)
	}
	return r
}

func TestStateApply(t *testing.T) {
	va, vb := testLink(2, "va", true), testLink(3, "vb", true)
	a4, a6, b4 := testAddr(2, "10.0.0.1/24"), testAddr(2, "2001:db8::1/64"), testAddr(3, "10.9.0.1/24")
	dflt, conn, other := testRoute(2, "0.0.0.0/0", "10.0.0.254"), testRoute(2, "10.0.0.0/24", ""), testRoute(3, "::/0", "fe80::1")

	with := func(a Addr, f func(*Addr)) Addr { f(&a); return a }
	type step struct {
		ev          Event
		wantChanged bool
	}
	tests := []struct {
		name       string
		steps      []step
		wantLinks  []Link
		wantAddrs  []Addr
		wantRoutes []Route
		wantSynced bool
	}{
		{
			name: "link new, duplicate, change",
			steps: []step{
				{LinkEvent{OpNew, va}, true},
				{LinkEvent{OpNew, va}, false},
				{LinkEvent{OpNew, func() Link { l := va; l.MTU = 9000; return l }()}, true},
				{LinkEvent{OpNew, func() Link { l := va; l.MTU = 9000; l.HardwareAddr = net.HardwareAddr{2, 0, 0, 0, 0, 9}; return l }()}, true},
			},
			wantLinks: []Link{func() Link { l := va; l.MTU = 9000; l.HardwareAddr = net.HardwareAddr{2, 0, 0, 0, 0, 9}; return l }()},
		},
		{
			name: "deleting a link drops its addresses and routes only",
			steps: []step{
				{LinkEvent{OpNew, va}, true}, {LinkEvent{OpNew, vb}, true},
				{AddrEvent{OpNew, a4}, true}, {AddrEvent{OpNew, a6}, true}, {AddrEvent{OpNew, b4}, true},
				{RouteEvent{OpNew, dflt}, true}, {RouteEvent{OpNew, conn}, true}, {RouteEvent{OpNew, other}, true},
				{LinkEvent{OpDel, va}, true},
				{LinkEvent{OpDel, va}, false},
				{AddrEvent{OpDel, a4}, false}, // the kernel's own RTM_DELADDR, after the fact
			},
			wantLinks: []Link{vb}, wantAddrs: []Addr{b4}, wantRoutes: []Route{other},
		},
		{
			name: "address lifetimes alone are no change",
			steps: []step{
				{AddrEvent{OpNew, with(a6, func(a *Addr) { a.PreferredLifetime, a.ValidLifetime = 100*time.Second, 200*time.Second })}, true},
				{AddrEvent{OpNew, with(a6, func(a *Addr) { a.PreferredLifetime, a.ValidLifetime = 99*time.Second, 3000*time.Second })}, false},
				// Turning infinite is reported.
				{AddrEvent{OpNew, with(a6, func(a *Addr) { a.PreferredLifetime = 99 * time.Second })}, true},
				{AddrEvent{OpNew, a6}, true},
			},
			wantAddrs: []Addr{a6},
		},
		{
			name: "address flags, scope, then deletion",
			steps: []step{
				{AddrEvent{OpNew, with(a6, func(a *Addr) { a.Flags |= AddrTentative })}, true},
				{AddrEvent{OpNew, with(a6, func(a *Addr) { a.Flags |= AddrTentative })}, false},
				{AddrEvent{OpNew, a6}, true}, // DAD done
				{AddrEvent{OpNew, with(a6, func(a *Addr) { a.Scope = ScopeLink })}, true},
				{AddrEvent{OpDel, a6}, true},
				{AddrEvent{OpDel, a6}, false},
			},
		},
		{
			name: "same address, two prefix lengths, two links",
			steps: []step{
				{AddrEvent{OpNew, a4}, true},
				{AddrEvent{OpNew, with(a4, func(a *Addr) { a.Prefix = netip.MustParsePrefix("10.0.0.1/16") })}, true},
				{AddrEvent{OpNew, with(a4, func(a *Addr) { a.LinkIndex = 3 })}, true},
			},
			wantAddrs: []Addr{with(a4, func(a *Addr) { a.Prefix = netip.MustParsePrefix("10.0.0.1/16") }), a4, with(a4, func(a *Addr) { a.LinkIndex = 3 })},
		},
		{
			name: "routes keyed by nexthop",
			steps: []step{
				{RouteEvent{OpNew, dflt}, true},
				{RouteEvent{OpNew, dflt}, false},
				{RouteEvent{OpNew, func() Route { r := dflt; r.Protocol = 16; return r }()}, true},
				{RouteEvent{OpNew, testRoute(3, "0.0.0.0/0", "10.9.0.254")}, true}, // appended or multipath
				{RouteEvent{OpDel, func() Route { r := dflt; r.Priority = 5; return r }()}, false},
				{RouteEvent{OpDel, dflt}, true},
			},
			wantRoutes: []Route{testRoute(3, "0.0.0.0/0", "10.9.0.254")},
		},
		{
			name: "resync and synced",
			steps: []step{
				{Synced{}, true}, {Synced{}, false},
				{ResyncNeeded{Reason: errors.New("lost")}, true}, {ResyncNeeded{}, false},
				{AddrEvent{OpNew, a4}, true}, // the state is kept across a resync
				{Synced{}, true},
			},
			wantAddrs: []Addr{a4}, wantSynced: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState()
			for i, st := range tt.steps {
				if got := s.Apply(st.ev); got != st.wantChanged {
					t.Errorf("step %d: Apply(%v) = %v, want %v", i, st.ev, got, st.wantChanged)
				}
			}
			if diff := cmp.Diff(tt.wantLinks, s.Links(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("unexpected links (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantAddrs, s.Addrs(), cmpIP, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("unexpected addresses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRoutes, s.Routes(), cmpIP, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("unexpected routes (-want +got):\n%s", diff)
			}
			if s.Synced() != tt.wantSynced {
				t.Errorf("Synced() = %v, want %v", s.Synced(), tt.wantSynced)
			}
		})
	}
}

func TestStateKeepsNoAliases(t *testing.T) {
	l := testLink(2, "va", true)
	s := NewState()
	s.Apply(LinkEvent{OpNew, l})
	c := s.Clone()
	l.HardwareAddr[0] = 0xff
	got, _ := s.Link(2)
	if got.HardwareAddr[0] != 2 {
		t.Errorf("state shares the event's hardware address: %v", got.HardwareAddr)
	}
	got.HardwareAddr[1] = 0xff
	if cl, _ := c.Link(2); cl.HardwareAddr[1] != 0 {
		t.Errorf("clone shares the state's hardware address: %v", cl.HardwareAddr)
	}
	c.Apply(LinkEvent{OpDel, l})
	if _, ok := s.Link(2); !ok {
		t.Error("deleting from the clone deleted from the state")
	}
}

func TestStateQueries(t *testing.T) {
	s := NewState()
	for _, ev := range []Event{
		LinkEvent{OpNew, testLink(3, "vb", false)}, LinkEvent{OpNew, testLink(2, "va", true)},
		AddrEvent{OpNew, testAddr(3, "10.9.0.1/24")}, AddrEvent{OpNew, testAddr(2, "10.0.0.1/24")},
		RouteEvent{OpNew, testRoute(2, "0.0.0.0/0", "10.0.0.254")}, RouteEvent{OpNew, testRoute(2, "10.0.0.0/24", "")},
		RouteEvent{OpNew, testRoute(3, "::/0", "fe80::1")},
	} {
		s.Apply(ev)
	}
	if l, ok := s.LinkByName("vb"); !ok || l.Index != 3 {
		t.Errorf("LinkByName(vb) = %v, %v", l, ok)
	}
	if _, ok := s.LinkByName("nope"); ok {
		t.Error("LinkByName(nope) found a link")
	}
	if diff := cmp.Diff([]Addr{testAddr(2, "10.0.0.1/24")}, s.LinkAddrs(2), cmpIP); diff != "" {
		t.Errorf("unexpected LinkAddrs(2) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Route{testRoute(2, "0.0.0.0/0", "10.0.0.254"), testRoute(2, "10.0.0.0/24", "")}, s.LinkRoutes(2), cmpIP); diff != "" {
		t.Errorf("unexpected LinkRoutes(2) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Route{testRoute(2, "0.0.0.0/0", "10.0.0.254"), testRoute(3, "::/0", "fe80::1")}, s.DefaultRoutes(), cmpIP); diff != "" {
		t.Errorf("unexpected DefaultRoutes (-want +got):\n%s", diff)
	}
}

func TestResyncEvents(t *testing.T) {
	va, vb := testLink(2, "va", true), testLink(3, "vb", true)
	a4, b4 := testAddr(2, "10.0.0.1/24"), testAddr(3, "10.9.0.1/24")
	r2, r3 := testRoute(2, "0.0.0.0/0", "10.0.0.254"), testRoute(3, "::/0", "fe80::1")
	build := func(evs ...Event) *State {
		s := NewState()
		for _, ev := range evs {
			s.Apply(ev)
		}
		return s
	}
	old := build(LinkEvent{OpNew, va}, LinkEvent{OpNew, vb}, AddrEvent{OpNew, a4}, AddrEvent{OpNew, b4},
		RouteEvent{OpNew, r2}, RouteEvent{OpNew, r3}, Synced{})
	vaDown := testLink(2, "va", false)
	a5 := testAddr(2, "10.0.0.5/24")
	fresh := build(LinkEvent{OpNew, vaDown}, AddrEvent{OpNew, a4}, AddrEvent{OpNew, a5})

	got := resyncEvents(old, fresh)
	want := []Event{
		RouteEvent{OpDel, r2}, RouteEvent{OpDel, r3},
		AddrEvent{OpDel, b4},
		LinkEvent{OpDel, vb},
		LinkEvent{OpNew, vaDown}, AddrEvent{OpNew, a4}, AddrEvent{OpNew, a5},
		Synced{},
	}
	if diff := cmp.Diff(want, got, cmpIP); diff != "" {
		t.Errorf("unexpected resync events (-want +got):\n%s", diff)
	}
	// Both ways of consuming them end at fresh.
	kept, scratch := old.Clone(), NewState()
	kept.Apply(ResyncNeeded{})
	for _, ev := range got {
		kept.Apply(ev)
		scratch.Apply(ev)
	}
	for name, s := range map[string]*State{"applied to old": kept, "applied to empty": scratch} {
		if diff := cmp.Diff(fresh.newEvents(), s.newEvents(), cmpIP); diff != "" || !s.Synced() {
			t.Errorf("%s: synced %v, unexpected state (-want +got):\n%s", name, s.Synced(), diff)
		}
	}
}

func TestRouteSweepEvents(t *testing.T) {
	r2, r3 := testRoute(2, "0.0.0.0/0", "10.0.0.254"), testRoute(3, "::/0", "fe80::1")
	r2b := r2
	r2b.Protocol = 16
	s := NewState()
	s.Apply(RouteEvent{OpNew, r2})
	s.Apply(RouteEvent{OpNew, r3})
	r4 := testRoute(4, "10.4.0.0/16", "")
	got := routeSweepEvents(s, []Route{r2b, r4})
	want := []Event{RouteEvent{OpDel, r3}, RouteEvent{OpNew, r2b}, RouteEvent{OpNew, r4}}
	if diff := cmp.Diff(want, got, cmpIP); diff != "" {
		t.Errorf("unexpected sweep events (-want +got):\n%s", diff)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{testLink(2, "va", true).String(), "2: va kind veth <UP,LOWER_UP> mtu 1500 state UP link 02:00:00:00:00:02"},
		{Link{Index: 1, Name: "lo", Loopback: true, MTU: 65536, MasterIndex: 4}.String(), "1: lo <LOOPBACK> mtu 65536 master 4 state UNKNOWN"},
		{Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("2001:db8::5/64"), Flags: AddrTemporary | AddrTentative | 0x8000,
			PreferredLifetime: 10 * time.Second, ValidLifetime: Forever}.String(),
			"inet6 2001:db8::5/64 dev 2 scope global temporary tentative 0x8000 valid_lft forever preferred_lft 10sec"},
		{testAddr(2, "10.0.0.1/24").String(), "inet 10.0.0.1/24 dev 2 scope global permanent valid_lft forever preferred_lft forever"},
		{(AddrSecondary | AddrNoDAD | AddrStablePrivacy).String(), "secondary|nodad|stable-privacy"},
		{testRoute(2, "0.0.0.0/0", "10.0.0.254").String(), "default via 10.0.0.254 dev 2 table 254 proto static scope global metric 0"},
		{Route{Dst: netip.MustParsePrefix("::/0"), LinkIndex: 3, Table: 100, Protocol: 250, Priority: 1024, TOS: 4,
			Src: netip.MustParseAddr("2001:db8::1")}.String(), "default (inet6) dev 3 table 100 proto 250 scope global src 2001:db8::1 metric 1024 tos 0x04"},
		{Scope(42).String(), "42"},
		{OperState(9).String(), "OPERSTATE(9)"},
		{Op(0).String(), "op(0)"},
		{RouteEvent{OpDel, testRoute(2, "10.0.0.0/24", "")}.String(), "route del 10.0.0.0/24 dev 2 table 254 proto static scope global metric 0"},
		{ResyncNeeded{Reason: errors.New("boom")}.String(), "resync needed: boom"},
		{Synced{}.String(), "synced"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got  %q\nwant %q", tt.got, tt.want)
		}
	}
}
