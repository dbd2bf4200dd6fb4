package ctl

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/internal/golden"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// The golden files in testdata/ hold what iproute2 6.1 prints. The text and
// -j forms of endpoint show were checked against `ip mptcp endpoint show`
// on a real kernel (TestEndpointShowMatchesIP re-checks them whenever it
// runs as root), limits against `ip mptcp limits show`, and the monitor
// lines against ip 6.1's mptcp_monitor_msg and captured `ip mptcp monitor`
// output (KERNEL.md). After a deliberate change, regenerate them with
//
//	go test ./internal/ctl -run Golden -update
//
// and review the diff.
func goldenFile(t *testing.T, name string, got []byte) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name), got)
}

// goldenEndpoints cover every flag ip 6.1 names, flags it does not
// (implicit, laminar, unknown bits: "rawflags"), ports, IPv6 forms, and
// devices with and without a name in the namespace.
var goldenEndpoints = []mptcp.Endpoint{
	{ID: 1, Addr: netip.MustParseAddr("10.1.2.2"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup, IfIndex: 3},
	{ID: 2, Addr: netip.MustParseAddr("10.1.2.1"), Port: 6000, Flags: mptcp.FlagSignal, IfIndex: 2},
	{ID: 3, Addr: netip.MustParseAddr("10.0.0.3")},
	{ID: 4, Addr: netip.MustParseAddr("10.0.0.4"), Flags: mptcp.FlagSignal | mptcp.FlagBackup},
	{ID: 5, Addr: netip.MustParseAddr("10.0.0.5"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup | mptcp.FlagFullmesh},
	{ID: 6, Addr: netip.MustParseAddr("dead:beef::1"), Flags: mptcp.FlagSubflow | mptcp.FlagFullmesh},
	{ID: 7, Addr: netip.MustParseAddr("2001:db8::7"), Port: 443, Flags: mptcp.FlagSignal | mptcp.FlagBackup},
	{ID: 8, Addr: netip.MustParseAddr("::ffff:1.2.3.4")},
	{ID: 9, Addr: netip.MustParseAddr("::102:304"), Flags: mptcp.FlagSubflow},
	{ID: 10, Addr: netip.MustParseAddr("10.0.0.10"), Flags: mptcp.FlagSubflow | mptcp.FlagImplicit},
	{ID: 11, Addr: netip.MustParseAddr("10.0.0.11"), Flags: mptcp.FlagLaminar},
	{ID: 12, Addr: netip.MustParseAddr("10.0.0.12"), Flags: mptcp.FlagSignal | mptcp.FlagImplicit | mptcp.FlagLaminar | 0x100},
	{ID: 13, Addr: netip.MustParseAddr("10.0.0.13"), Flags: mptcp.FlagSubflow, IfIndex: 99},
	{ID: 14, Addr: netip.MustParseAddr("10.0.0.14"), IfIndex: -1},
	{ID: 255, Addr: netip.MustParseAddr("10.0.0.255"), Port: 65535, Flags: mptcp.FlagSignal},
	{ID: 16, Flags: mptcp.FlagSubflow}, // no address attribute
}

var goldenLinks = fakeLinks{"lo": 1, "s2": 2, "lte": 3, `we"ird\`: 4}

func TestGoldenEndpoints(t *testing.T) {
	tests := []struct {
		name string
		eps  []mptcp.Endpoint
		f    format
	}{
		{"endpoints.txt", goldenEndpoints, format{}},
		{"endpoints.json", goldenEndpoints, format{JSON: true}},
		{"endpoints-pretty.json", goldenEndpoints, format{JSON: true, Pretty: true}},
		{"endpoints-empty.txt", nil, format{}},
		{"endpoints-empty.json", nil, format{JSON: true}},
		{"endpoints-empty-pretty.json", nil, format{JSON: true, Pretty: true}},
		{"endpoint-escaped.json", []mptcp.Endpoint{{ID: 1, Addr: netip.MustParseAddr("10.0.0.1"), IfIndex: 4}}, format{JSON: true}},
		// pretty is ignored by text, as in ip.
		{"endpoints-one.txt", goldenEndpoints[:1], format{Pretty: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			formatEndpoints(&b, tt.eps, tt.f, goldenLinks)
			goldenFile(t, tt.name, b.Bytes())
		})
	}
}

func TestGoldenLimits(t *testing.T) {
	both := mptcp.Limits{Subflows: u32(2), AddAddrAccepted: u32(8)}
	tests := []struct {
		name string
		l    mptcp.Limits
		f    format
	}{
		{"limits.txt", both, format{}},
		{"limits.json", both, format{JSON: true}},
		{"limits-pretty.json", both, format{JSON: true, Pretty: true}},
		// ip prints only what the kernel sent, with %d.
		{"limits-partial.txt", mptcp.Limits{Subflows: u32(0x80000000)}, format{}},
		{"limits-partial.json", mptcp.Limits{Subflows: u32(0x80000000)}, format{JSON: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			formatLimits(&b, tt.l, tt.f)
			goldenFile(t, tt.name, b.Bytes())
		})
	}
}

// event builds a test event, marking each field it sets as sent.
type event struct{ e mptcp.Event }

func newEvent(typ mptcp.EventType, token mptcp.Token) *event {
	ev := &event{e: mptcp.Event{Type: typ, Token: token}}
	ev.e.Set(mptcp.AttrToken)
	return ev
}

func (ev *event) set(a mptcp.EventAttr, apply func(*mptcp.Event)) *event {
	apply(&ev.e)
	ev.e.Set(a)
	return ev
}

func (ev *event) ids(rem, loc mptcp.ID) *event {
	ev.e.RemoteID, ev.e.LocalID = rem, loc
	ev.e.Set(mptcp.AttrRemoteID)
	ev.e.Set(mptcp.AttrLocalID)
	return ev
}

func (ev *event) remid(rem mptcp.ID) *event {
	return ev.set(mptcp.AttrRemoteID, func(e *mptcp.Event) { e.RemoteID = rem })
}

// addrs sets the family and the source and destination address and port;
// an empty source or a zero port is left out.
func (ev *event) addrs(src string, sport uint16, dst string, dport uint16) *event {
	d := netip.MustParseAddr(dst)
	ev.e.Family = 2
	sa, da := mptcp.AttrSaddr4, mptcp.AttrDaddr4
	if d.Is6() {
		ev.e.Family = 10
		sa, da = mptcp.AttrSaddr6, mptcp.AttrDaddr6
	}
	ev.e.Set(mptcp.AttrFamily)
	if src != "" {
		ev.set(sa, func(e *mptcp.Event) { e.Saddr = netip.MustParseAddr(src) })
	}
	ev.set(da, func(e *mptcp.Event) { e.Daddr = d })
	if sport != 0 {
		ev.set(mptcp.AttrSport, func(e *mptcp.Event) { e.Sport = sport })
	}
	if dport != 0 {
		ev.set(mptcp.AttrDport, func(e *mptcp.Event) { e.Dport = dport })
	}
	return ev
}

func (ev *event) backup(v bool) *event {
	return ev.set(mptcp.AttrBackup, func(e *mptcp.Event) { e.Backup = v })
}

func (ev *event) ifindex(i int) *event {
	return ev.set(mptcp.AttrIfIndex, func(e *mptcp.Event) { e.IfIndex = i })
}

// goldenEvents cover every event type the kernel sends, in the shapes it
// sends them (net/mptcp/pm_netlink.c mptcp_event*), plus every optional
// attribute and unknown types.
func goldenEvents() []mptcp.Event {
	const tok = mptcp.Token(0x7ab06eec)
	evs := []*event{
		newEvent(mptcp.EventCreated, tok).ids(0, 0).addrs("10.1.1.2", 51482, "10.1.1.1", 5000).
			set(mptcp.AttrServerSide, func(e *mptcp.Event) { e.ServerSide = false }),
		newEvent(mptcp.EventEstablished, tok).ids(0, 0).addrs("10.1.1.2", 51482, "10.1.1.1", 5000),
		// Linux 6.18 on the server side: FLAGS with server_side, and the
		// deprecated SERVER_SIDE attribute, which ip 6.1 does not print.
		newEvent(mptcp.EventEstablished, 0x1).ids(0, 0).addrs("10.1.1.1", 5000, "10.1.1.2", 51482).
			set(mptcp.AttrFlags, func(e *mptcp.Event) {
				e.Flags = mptcp.MPTCP_PM_EV_FLAG_SERVER_SIDE | mptcp.MPTCP_PM_EV_FLAG_DENY_JOIN_ID0
			}).
			set(mptcp.AttrServerSide, func(e *mptcp.Event) { e.ServerSide = true }),
		newEvent(mptcp.EventAnnounced, tok).remid(1).addrs("", 0, "10.1.2.1", 6000),
		newEvent(mptcp.EventAnnounced, tok).remid(2).addrs("", 0, "2001:db8::2", 0),
		newEvent(mptcp.EventRemoved, tok).remid(1),
		newEvent(mptcp.EventSubEstablished, tok).ids(1, 1).addrs("10.1.2.2", 41331, "10.1.2.1", 6000).backup(false),
		newEvent(mptcp.EventSubEstablished, tok).ids(0, 1).addrs("10.1.2.2", 49737, "10.1.1.1", 5000).backup(false).ifindex(3),
		newEvent(mptcp.EventSubEstablished, 0xdeadbeef).ids(0, 2).addrs("dead:beef::2", 40000, "dead:beef::1", 443).backup(true).ifindex(4),
		newEvent(mptcp.EventSubEstablished, 0xdeadbeef).ids(3, 4).addrs("::ffff:10.0.0.1", 1, "::ffff:10.0.0.2", 2).backup(false),
		newEvent(mptcp.EventSubPriority, tok).ids(1, 1).addrs("10.1.2.2", 41331, "10.1.2.1", 6000).backup(true).ifindex(3),
		newEvent(mptcp.EventSubClosed, tok).ids(1, 1).addrs("10.1.2.2", 41331, "10.1.2.1", 6000).backup(true).ifindex(99).
			set(mptcp.AttrError, func(e *mptcp.Event) { e.Error = 104 }).
			set(mptcp.AttrResetReason, func(e *mptcp.Event) { e.ResetReason = 1 }).
			set(mptcp.AttrResetFlags, func(e *mptcp.Event) { e.ResetFlags = 0x3 }),
		newEvent(mptcp.EventAnnounced, tok).remid(9).addrs("", 0, "10.9.9.9", 0).
			set(mptcp.AttrTimeout, func(e *mptcp.Event) { e.Timeout = 4294967295 }).
			set(mptcp.AttrFlags, func(e *mptcp.Event) { e.Flags = 0xfffc }).
			ifindex(-1),
		newEvent(mptcp.EventClosed, tok),
		// Listener events carry no token; ip 6.1 has no name for them.
		{e: mptcp.Event{Type: mptcp.EventListenerCreated, Family: 2, Saddr: netip.MustParseAddr("10.1.2.1"), Sport: 6000}},
		{e: mptcp.Event{Type: mptcp.EventListenerClosed, Family: 10, Saddr: netip.MustParseAddr("2001:db8::1"), Sport: 443}},
		{e: mptcp.Event{Type: 0}},
		{e: mptcp.Event{Type: 4}},
		{e: mptcp.Event{Type: 99}},
	}
	listener := func(ev *event, a mptcp.EventAttr) {
		ev.e.Set(mptcp.AttrFamily)
		ev.e.Set(a)
		ev.e.Set(mptcp.AttrSport)
	}
	listener(evs[len(evs)-5], mptcp.AttrSaddr4)
	listener(evs[len(evs)-4], mptcp.AttrSaddr6)
	out := make([]mptcp.Event, len(evs))
	for i, ev := range evs {
		out[i] = ev.e
	}
	return out
}

func TestGoldenEvents(t *testing.T) {
	for _, tt := range []struct {
		name string
		f    format
	}{
		{"events.txt", format{}},
		{"events.json", format{JSON: true}},
		{"events-pretty.json", format{JSON: true, Pretty: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			for _, ev := range goldenEvents() {
				formatEvent(&b, &ev, tt.f, goldenLinks)
			}
			goldenFile(t, tt.name, b.Bytes())
		})
	}
}

// TestEventTextCapture checks the monitor lines against the capture of
// `ip mptcp monitor` in KERNEL.md, independently of the golden file.
func TestEventTextCapture(t *testing.T) {
	want := `[       CREATED] token=7ab06eec remid=0 locid=0 saddr4=10.1.1.2 daddr4=10.1.1.1 sport=51482 dport=5000
[   ESTABLISHED] token=7ab06eec remid=0 locid=0 saddr4=10.1.1.2 daddr4=10.1.1.1 sport=51482 dport=5000
[     ANNOUNCED] token=7ab06eec remid=1 daddr4=10.1.2.1 dport=6000
[SF_ESTABLISHED] token=7ab06eec remid=1 locid=1 saddr4=10.1.2.2 daddr4=10.1.2.1 sport=41331 dport=6000 backup=0
[SF_ESTABLISHED] token=7ab06eec remid=0 locid=1 saddr4=10.1.2.2 daddr4=10.1.1.1 sport=49737 dport=5000 backup=0 ifindex=3
[        CLOSED] token=7ab06eec
`
	const tok = mptcp.Token(0x7ab06eec)
	evs := []*event{
		newEvent(mptcp.EventCreated, tok).ids(0, 0).addrs("10.1.1.2", 51482, "10.1.1.1", 5000),
		newEvent(mptcp.EventEstablished, tok).ids(0, 0).addrs("10.1.1.2", 51482, "10.1.1.1", 5000),
		newEvent(mptcp.EventAnnounced, tok).remid(1).addrs("", 0, "10.1.2.1", 6000),
		newEvent(mptcp.EventSubEstablished, tok).ids(1, 1).addrs("10.1.2.2", 41331, "10.1.2.1", 6000).backup(false),
		newEvent(mptcp.EventSubEstablished, tok).ids(0, 1).addrs("10.1.2.2", 49737, "10.1.1.1", 5000).backup(false).ifindex(3),
		newEvent(mptcp.EventClosed, tok),
	}
	var b bytes.Buffer
	for _, ev := range evs {
		formatEvent(&b, &ev.e, format{}, nil)
	}
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("unexpected monitor text (-want +got):\n%s", diff)
	}
}

// TestEndpointTextCapture checks against the captures in KERNEL.md.
func TestEndpointTextCapture(t *testing.T) {
	eps := []mptcp.Endpoint{
		{ID: 1, Addr: netip.MustParseAddr("10.1.2.2"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup, IfIndex: 3},
		{ID: 1, Addr: netip.MustParseAddr("10.1.2.1"), Port: 6000, Flags: mptcp.FlagSignal, IfIndex: 2},
	}
	var b bytes.Buffer
	formatEndpoints(&b, eps, format{}, goldenLinks)
	want := "10.1.2.2 id 1 subflow backup dev lte \n10.1.2.1 port 6000 id 1 signal dev s2 \n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("unexpected endpoint text (-want +got):\n%s", diff)
	}
	b.Reset()
	formatEndpoints(&b, eps[:1], format{JSON: true}, goldenLinks)
	want = `[{"address":"10.1.2.2","id":1,"subflow":true,"backup":true,"dev":"lte"}]` + "\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("unexpected endpoint JSON (-want +got):\n%s", diff)
	}
	b.Reset()
	formatLimits(&b, mptcp.Limits{Subflows: u32(2), AddAddrAccepted: u32(2)}, format{})
	if diff := cmp.Diff("add_addr_accepted 2 subflows 2 \n", b.String()); diff != "" {
		t.Errorf("unexpected limits text (-want +got):\n%s", diff)
	}
}
