package trace

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

func TestLinkEvents(t *testing.T) {
	wlan := netmon.Link{Index: 2, Name: "wlan0", Up: true, Carrier: true, OperState: netmon.OperUp}
	noCarrier := wlan
	noCarrier.Carrier, noCarrier.OperState = false, netmon.OperLowerLayerDown
	down := noCarrier
	down.Up = false
	mtu := wlan
	mtu.MTU = 1400
	addr := netmon.Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.1.2/24"), PreferredLifetime: netmon.Forever, ValidLifetime: netmon.Forever}
	tentative := addr
	tentative.Flags = netmon.AddrTentative
	route := netmon.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("10.1.1.1"), LinkIndex: 2, Table: 254}

	// initial is the state before each case: wlan0 with its address.
	initial := []netmon.Event{
		netmon.LinkEvent{Op: netmon.OpNew, Link: wlan},
		netmon.AddrEvent{Op: netmon.OpNew, Addr: addr},
		netmon.Synced{},
	}
	ev := func(index int, e Event, detail string) Record {
		r := Record{Time: t0, Kind: KindEvent, IfIndex: index, Event: e, Detail: detail}
		if index == 2 {
			r.Dev = "wlan0"
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		events []netmon.Event
		want   []Record
	}{
		{"duplicates, routes, other link changes: nothing", []netmon.Event{
			netmon.LinkEvent{Op: netmon.OpNew, Link: wlan},
			netmon.AddrEvent{Op: netmon.OpNew, Addr: addr},
			netmon.RouteEvent{Op: netmon.OpNew, Route: route},
			netmon.LinkEvent{Op: netmon.OpNew, Link: mtu},
			netmon.AddrEvent{Op: netmon.OpNew, Addr: tentative},
			netmon.Synced{},
		}, nil},
		{"carrier lost and back", []netmon.Event{
			netmon.LinkEvent{Op: netmon.OpNew, Link: noCarrier},
			netmon.LinkEvent{Op: netmon.OpNew, Link: wlan},
		}, []Record{ev(2, EventNoCarrier, ""), ev(2, EventCarrier, "")}},
		{"down at once, then up", []netmon.Event{
			netmon.LinkEvent{Op: netmon.OpNew, Link: down},
			netmon.LinkEvent{Op: netmon.OpNew, Link: wlan},
		}, []Record{ev(2, EventDown, ""), ev(2, EventNoCarrier, ""), ev(2, EventUp, ""), ev(2, EventCarrier, "")}},
		{"renumbered", []netmon.Event{
			netmon.AddrEvent{Op: netmon.OpDel, Addr: addr},
			netmon.AddrEvent{Op: netmon.OpNew, Addr: netmon.Addr{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.3.2/24")}},
			netmon.AddrEvent{Op: netmon.OpDel, Addr: addr},
		}, []Record{ev(2, EventAddrRemoved, "10.1.1.2/24"), ev(2, EventAddrAdded, "10.1.3.2/24")}},
		{"a link comes and goes, named when it goes", []netmon.Event{
			netmon.LinkEvent{Op: netmon.OpNew, Link: netmon.Link{Index: 7, Name: "usb0"}},
			netmon.AddrEvent{Op: netmon.OpDel, Addr: addr},
			netmon.LinkEvent{Op: netmon.OpDel, Link: netmon.Link{Index: 2}},
			netmon.LinkEvent{Op: netmon.OpDel, Link: netmon.Link{Index: 2}},
		}, []Record{
			{Time: t0, Kind: KindEvent, IfIndex: 7, Dev: "usb0", Event: EventLinkAdded},
			ev(2, EventAddrRemoved, "10.1.1.2/24"),
			ev(2, EventLinkRemoved, ""),
		}},
		{"resync: changes found by the new dump are reported", []netmon.Event{
			netmon.ResyncNeeded{Reason: errors.Join(errors.New("receive\n"), syscall.ENOBUFS)},
			netmon.LinkEvent{Op: netmon.OpNew, Link: noCarrier},
			netmon.AddrEvent{Op: netmon.OpNew, Addr: addr},
			netmon.Synced{},
		}, []Record{
			{Time: t0, Kind: KindEvent, Event: EventResync, Detail: "receive  no buffer space available"},
			ev(2, EventNoCarrier, ""),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := netmon.NewState()
			for _, e := range initial {
				if got := linkEvents(st, e, t0, false); got != nil {
					t.Fatalf("initial dump: %v, want no records", got)
				}
			}
			var got []Record
			for _, e := range tc.events {
				got = append(got, linkEvents(st, e, t0, true)...)
			}
			if diff := cmp.Diff(tc.want, got, cmpAddrs); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
			for _, r := range got {
				if err := r.check(); err != nil {
					t.Errorf("%+v cannot be written: %v", r, err)
				}
			}
		})
	}
}

func TestAddrOwners(t *testing.T) {
	a := func(index int, p string) netmon.Addr {
		return netmon.Addr{LinkIndex: index, Prefix: netip.MustParsePrefix(p)}
	}
	got := addrOwners([]netmon.Addr{
		a(2, "10.1.1.2/24"), a(2, "10.1.1.2/32"), // one link, twice
		a(3, "fe80::1/64"), a(4, "fe80::1/64"), a(5, "fe80::1/64"), // several links
		a(4, "2001:db8::4/64"),
	})
	want := map[netip.Addr]int{
		netip.MustParseAddr("10.1.1.2"):    2,
		netip.MustParseAddr("fe80::1"):     0,
		netip.MustParseAddr("2001:db8::4"): 4,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("addrOwners (-want +got):\n%s", diff)
	}
}
