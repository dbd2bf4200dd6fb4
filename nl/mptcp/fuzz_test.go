package mptcp

import (
	"net/netip"
	"testing"

	"github.com/mdlayher/genetlink"
)

// The decoders read kernel bytes: whatever arrives, they must return an
// error or a value, never panic. Run with e.g.
// go test ./nl/mptcp -run '^$' -fuzz FuzzParseEvent -fuzztime 30s

func FuzzParseEndpoints(f *testing.F) {
	f.Add(capturedEndpoint4)
	f.Add(capturedEndpoint6)
	f.Add(capturedLimits)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		eps, err := parseEndpoints([]genetlink.Message{{Data: data}})
		if err == nil && len(eps) != 1 {
			t.Fatalf("no error but %d endpoints from one message", len(eps))
		}
		if err == nil && !eps[0].Addr.IsValid() {
			t.Fatalf("no error but invalid address: %+v", eps[0])
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	for _, seed := range []struct {
		cmd  uint8
		data []byte
	}{
		{MPTCP_EVENT_LISTENER_CREATED, capturedListenerCreated},
		{MPTCP_EVENT_CREATED, capturedCreatedClient},
		{MPTCP_EVENT_CREATED, capturedCreatedServer},
		{MPTCP_EVENT_ANNOUNCED, capturedAnnounced},
		{MPTCP_EVENT_CLOSED, capturedClosed},
		{0, nil},
	} {
		f.Add(seed.cmd, seed.data)
	}
	f.Fuzz(func(t *testing.T, cmd uint8, data []byte) {
		ev, err := parseEvent(genetlink.Message{Header: genetlink.Header{Command: cmd}, Data: data})
		if err != nil {
			return
		}
		if ev.Type != EventType(cmd) {
			t.Fatalf("type %d, want %d", ev.Type, cmd)
		}
		for _, c := range []struct {
			attr EventAttr
			addr netip.Addr
			is4  bool
		}{
			{AttrSaddr4, ev.Saddr, true}, {AttrSaddr6, ev.Saddr, false},
			{AttrDaddr4, ev.Daddr, true}, {AttrDaddr6, ev.Daddr, false},
		} {
			if ev.Has(c.attr) && c.addr.Is4() != c.is4 {
				t.Fatalf("attribute %d present but address = %v", c.attr, c.addr)
			}
		}
		_ = ev.Type.String()
	})
}

func FuzzParseLimits(f *testing.F) {
	f.Add(capturedLimits)
	f.Add(capturedEndpoint4)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseLimits([]genetlink.Message{{Data: data}})
		if err == nil && (l.Subflows == nil || l.AddAddrAccepted == nil) {
			t.Fatalf("no error but incomplete limits %+v", l)
		}
	})
}
