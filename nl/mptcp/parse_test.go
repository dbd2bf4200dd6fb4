package mptcp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"golang.org/x/sys/unix"
)

func TestParseEndpoints(t *testing.T) {
	a := func(typ uint16, data []byte) attr { return attr{Type: typ, Data: data} }
	fam := func(f uint16) attr { return a(MPTCP_PM_ADDR_ATTR_FAMILY, u16(f)) }
	msg := func(children ...attr) []byte { return encodeAttrs(t, nest(MPTCP_PM_ATTR_ADDR, children...)) }

	tests := []struct {
		name    string
		data    [][]byte
		want    []Endpoint
		wantErr string // substring
	}{
		{
			name: "captured IPv4 and IPv6",
			data: [][]byte{capturedEndpoint4, capturedEndpoint6},
			want: []Endpoint{
				{ID: 1, Addr: netip.MustParseAddr("10.1.2.2"), Flags: FlagSubflow | FlagBackup, IfIndex: 1},
				{ID: 2, Addr: netip.MustParseAddr("2001:db8::1"), Flags: FlagSignal},
			},
		},
		{
			name: "port in host order, unknown flag bits and attributes kept or skipped",
			data: [][]byte{msg(
				fam(unix.AF_INET), a(MPTCP_PM_ADDR_ATTR_ID, u8(7)), a(MPTCP_PM_ADDR_ATTR_PORT, u16(6000)),
				a(MPTCP_PM_ADDR_ATTR_FLAGS, u32(uint32(FlagSignal|FlagLaminar|1<<9))),
				a(MPTCP_PM_ADDR_ATTR_ADDR4, ip("192.0.2.1")), a(99, []byte{1, 2, 3}),
			)},
			want: []Endpoint{{ID: 7, Addr: netip.MustParseAddr("192.0.2.1"), Port: 6000, Flags: FlagSignal | FlagLaminar | 1<<9}},
		},
		{
			name: "IPv4-mapped IPv6 stays IPv6",
			data: [][]byte{msg(fam(unix.AF_INET6), a(MPTCP_PM_ADDR_ATTR_ADDR6, ip("::ffff:10.0.0.1")))},
			want: []Endpoint{{Addr: netip.MustParseAddr("::ffff:10.0.0.1")}},
		},
		{
			name:    "unknown family",
			data:    [][]byte{msg(fam(unix.AF_PACKET), a(MPTCP_PM_ADDR_ATTR_ADDR4, ip("10.0.0.1")))},
			wantErr: "unknown address family 17",
		},
		{
			name:    "short ADDR4",
			data:    [][]byte{msg(fam(unix.AF_INET), a(MPTCP_PM_ADDR_ATTR_ADDR4, []byte{10, 0, 0}))},
			wantErr: "ADDR4 attribute has 3 bytes, want 4",
		},
		{
			name:    "IPv6 family with IPv4 address",
			data:    [][]byte{msg(fam(unix.AF_INET6), a(MPTCP_PM_ADDR_ATTR_ADDR4, ip("10.0.0.1")))},
			wantErr: "missing ADDR6 attribute",
		},
		{
			name:    "no family",
			data:    [][]byte{msg(a(MPTCP_PM_ADDR_ATTR_ADDR4, ip("10.0.0.1")))},
			wantErr: "address without family",
		},
		{
			name:    "no address nest",
			data:    [][]byte{encodeAttrs(t, a(MPTCP_PM_ATTR_TOKEN, u32(1)))},
			wantErr: "missing address attribute",
		},
		{
			name:    "two address nests",
			data:    [][]byte{append(capturedEndpoint4[:len(capturedEndpoint4):len(capturedEndpoint4)], capturedEndpoint4...)},
			wantErr: "more than one address attribute",
		},
		{
			name:    "bad id size",
			data:    [][]byte{msg(fam(unix.AF_INET), a(MPTCP_PM_ADDR_ATTR_ID, u16(1)), a(MPTCP_PM_ADDR_ATTR_ADDR4, ip("10.0.0.1")))},
			wantErr: "not a uint8",
		},
		{
			name:    "second message bad",
			data:    [][]byte{capturedEndpoint4, capturedEndpoint6[:20]},
			wantErr: "endpoint message 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var msgs []genetlink.Message
			for _, d := range tt.data {
				msgs = append(msgs, genetlink.Message{Data: d})
			}
			got, err := parseEndpoints(msgs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEndpoints: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("unexpected endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

// event builds the expected Event with the presence bits of attrs set.
func event(e Event, attrs ...EventAttr) Event {
	for _, a := range attrs {
		e.Set(a)
	}
	return e
}

func TestParseEvent(t *testing.T) {
	a := func(typ uint16, data []byte) attr { return attr{Type: typ, Data: data} }
	be := func(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
	loop6 := netip.MustParseAddr("::1")

	tests := []struct {
		name    string
		cmd     uint8
		data    []byte
		want    Event
		wantErr string
	}{
		{
			name: "captured listener created",
			cmd:  MPTCP_EVENT_LISTENER_CREATED,
			data: capturedListenerCreated,
			want: event(Event{Type: EventListenerCreated, Family: unix.AF_INET6, Saddr: loop6, Sport: 5000},
				AttrFamily, AttrSport, AttrSaddr6),
		},
		{
			name: "captured client created, big-endian ports",
			cmd:  MPTCP_EVENT_CREATED,
			data: capturedCreatedClient,
			want: event(Event{Type: EventCreated, Token: 0x15efa211, Family: unix.AF_INET6, Saddr: loop6, Daddr: loop6, Sport: 57538, Dport: 5000},
				AttrToken, AttrFamily, AttrSaddr6, AttrDaddr6, AttrSport, AttrDport, AttrLocalID, AttrRemoteID),
		},
		{
			name: "captured server created with server_side",
			cmd:  MPTCP_EVENT_CREATED,
			data: capturedCreatedServer,
			want: event(Event{Type: EventCreated, Token: 0x6dc01dd6, Family: unix.AF_INET6, Saddr: loop6, Daddr: loop6, Sport: 5000, Dport: 57538,
				Flags: MPTCP_PM_EV_FLAG_SERVER_SIDE, ServerSide: true},
				AttrToken, AttrServerSide, AttrFlags, AttrFamily, AttrSaddr6, AttrDaddr6, AttrSport, AttrDport, AttrLocalID, AttrRemoteID),
		},
		{
			name: "captured announced",
			cmd:  MPTCP_EVENT_ANNOUNCED,
			data: capturedAnnounced,
			want: event(Event{Type: EventAnnounced, Token: 0x15efa211, RemoteID: 2, Dport: 5000, Daddr: netip.MustParseAddr("2001:db8::1")},
				AttrToken, AttrRemoteID, AttrDport, AttrDaddr6),
		},
		{
			name: "captured closed",
			cmd:  MPTCP_EVENT_CLOSED,
			data: capturedClosed,
			want: event(Event{Type: EventClosed, Token: 0x15efa211}, AttrToken),
		},
		{
			name: "IPv4 subflow with every subflow attribute",
			cmd:  MPTCP_EVENT_SUB_CLOSED,
			data: encodeAttrs(t,
				a(MPTCP_ATTR_TOKEN, u32(0x7ab06eec)), a(MPTCP_ATTR_FAMILY, u16(unix.AF_INET)),
				a(MPTCP_ATTR_SADDR4, ip("10.1.2.2")), a(MPTCP_ATTR_DADDR4, ip("10.1.2.1")),
				a(MPTCP_ATTR_SPORT, be(41331)), a(MPTCP_ATTR_DPORT, be(6000)),
				a(MPTCP_ATTR_LOC_ID, u8(1)), a(MPTCP_ATTR_REM_ID, u8(0)),
				a(MPTCP_ATTR_BACKUP, u8(1)), a(MPTCP_ATTR_IF_IDX, s32(3)), a(MPTCP_ATTR_ERROR, u8(104)),
				a(MPTCP_ATTR_RESET_REASON, u32(1)), a(MPTCP_ATTR_RESET_FLAGS, u32(2)),
				a(MPTCP_ATTR_TIMEOUT, u32(1500)),
			),
			want: event(Event{Type: EventSubClosed, Token: 0x7ab06eec, Family: unix.AF_INET,
				Saddr: netip.MustParseAddr("10.1.2.2"), Daddr: netip.MustParseAddr("10.1.2.1"), Sport: 41331, Dport: 6000,
				LocalID: 1, Backup: true, IfIndex: 3, Error: 104, ResetReason: 1, ResetFlags: 2, Timeout: 1500},
				AttrToken, AttrFamily, AttrSaddr4, AttrDaddr4, AttrSport, AttrDport, AttrLocalID, AttrRemoteID,
				AttrBackup, AttrIfIndex, AttrError, AttrResetReason, AttrResetFlags, AttrTimeout),
		},
		{
			name: "unknown type and attribute",
			cmd:  200,
			data: encodeAttrs(t, a(MPTCP_ATTR_TOKEN, u32(1)), a(31, u32(5)), a(40, u8(1))),
			want: event(Event{Type: 200, Token: 1}, AttrToken),
		},
		{
			name:    "short SADDR4",
			cmd:     MPTCP_EVENT_CREATED,
			data:    encodeAttrs(t, a(MPTCP_ATTR_SADDR4, []byte{10, 0, 0})),
			wantErr: "CREATED event: address attribute 5 has 3 bytes, want 4",
		},
		{
			name:    "DADDR6 of IPv4 size",
			cmd:     MPTCP_EVENT_CREATED,
			data:    encodeAttrs(t, a(MPTCP_ATTR_DADDR6, ip("10.0.0.1"))),
			wantErr: "address attribute 8 has 4 bytes, want 16",
		},
		{
			name:    "source in both families",
			cmd:     MPTCP_EVENT_CREATED,
			data:    encodeAttrs(t, a(MPTCP_ATTR_SADDR4, ip("10.0.0.1")), a(MPTCP_ATTR_SADDR6, ip("fd00::1"))),
			wantErr: "CREATED event: both IPv4 and IPv6 addresses for one side",
		},
		{
			name:    "destination in both families",
			cmd:     MPTCP_EVENT_ANNOUNCED,
			data:    encodeAttrs(t, a(MPTCP_ATTR_DADDR6, ip("fd00::1")), a(MPTCP_ATTR_DADDR4, ip("10.0.0.1"))),
			wantErr: "ANNOUNCED event: both IPv4 and IPv6 addresses for one side",
		},
		{
			name:    "32-bit port",
			cmd:     MPTCP_EVENT_SUB_ESTABLISHED,
			data:    encodeAttrs(t, a(MPTCP_ATTR_SPORT, u32(80))),
			wantErr: "port attribute 9 has 4 bytes, want 2",
		},
		{
			name:    "truncated",
			cmd:     MPTCP_EVENT_CREATED,
			data:    capturedCreatedClient[:len(capturedCreatedClient)-5],
			wantErr: "CREATED event",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEvent(genetlink.Message{Header: genetlink.Header{Command: tt.cmd, Version: 1}, Data: tt.data})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseEvent: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("unexpected event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventHas(t *testing.T) {
	ev, err := parseEvent(genetlink.Message{Header: genetlink.Header{Command: MPTCP_EVENT_ANNOUNCED}, Data: capturedAnnounced})
	if err != nil {
		t.Fatal(err)
	}
	for a := EventAttr(0); a <= mptcpAttrMax+1; a++ {
		want := a == AttrToken || a == AttrRemoteID || a == AttrDport || a == AttrDaddr6
		if got := ev.Has(a); got != want {
			t.Errorf("Has(%d) = %v, want %v", a, got, want)
		}
	}
	// Sent as zero still counts as sent (remid=0 is printed by iproute2).
	ev, err = parseEvent(genetlink.Message{Header: genetlink.Header{Command: MPTCP_EVENT_CREATED}, Data: capturedCreatedClient})
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Has(AttrRemoteID) || ev.RemoteID != 0 {
		t.Errorf("remote id: Has = %v, value %d; want present and 0", ev.Has(AttrRemoteID), ev.RemoteID)
	}
}

func TestParseLimits(t *testing.T) {
	tests := []struct {
		name string
		msgs []genetlink.Message
		want Limits
		ok   bool
	}{
		{"captured", []genetlink.Message{{Data: capturedLimits}}, Limits{AddAddrAccepted: ptr(0), Subflows: ptr(2)}, true},
		{"no reply", nil, Limits{}, false},
		{"two replies", []genetlink.Message{{Data: capturedLimits}, {Data: capturedLimits}}, Limits{}, false},
		{"subflows missing", []genetlink.Message{{Data: capturedLimits[:8]}}, Limits{}, false},
		{"short value", []genetlink.Message{{Data: mustHex("0600020001000000")}}, Limits{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLimits(tt.msgs)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("unexpected limits (-want +got):\n%s", diff)
			}
		})
	}
}
