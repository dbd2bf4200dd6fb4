package mptcp

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// receiveStep is what the fake socket delivers on one receive.
type receiveStep struct {
	msgs []genetlink.Message
	err  error
}

// scriptedEvents returns a genltest.Func delivering steps in order.
func scriptedEvents(t *testing.T, steps ...receiveStep) genltest.Func {
	return func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		if len(steps) == 0 {
			t.Fatal("Receive called more often than scripted")
		}
		s := steps[0]
		steps = steps[1:]
		return s.msgs, s.err
	}
}

func evmsg(cmd uint8, data []byte) genetlink.Message {
	return genetlink.Message{Header: genetlink.Header{Command: cmd, Version: MPTCP_PM_VER}, Data: data}
}

func TestEventListenerReceive(t *testing.T) {
	conn := genltest.Dial(genltest.ServeFamily(testFamily, scriptedEvents(t,
		receiveStep{msgs: []genetlink.Message{evmsg(MPTCP_EVENT_CREATED, capturedCreatedClient)}},
		receiveStep{err: unix.ENOBUFS}, // how recvmsg reports an overrun
		receiveStep{msgs: []genetlink.Message{evmsg(MPTCP_EVENT_ANNOUNCED, capturedAnnounced), evmsg(MPTCP_EVENT_CLOSED, capturedClosed)}},
		receiveStep{msgs: []genetlink.Message{evmsg(MPTCP_EVENT_CLOSED, capturedClosed[:6])}},
		receiveStep{msgs: []genetlink.Message{evmsg(MPTCP_EVENT_CLOSED, capturedClosed)}},
		receiveStep{msgs: []genetlink.Message{
			evmsg(MPTCP_EVENT_ANNOUNCED, capturedAnnounced),
			evmsg(MPTCP_EVENT_CLOSED, capturedClosed[:6]),
			evmsg(MPTCP_EVENT_CLOSED, capturedClosed),
		}},
	)))
	l, err := NewEventListener(conn)
	if err != nil {
		t.Fatalf("NewEventListener: %v", err)
	}
	defer l.Close()

	types := func(evs []Event) []EventType {
		var ts []EventType
		for _, e := range evs {
			ts = append(ts, e.Type)
		}
		return ts
	}

	evs, err := l.Receive()
	if err != nil {
		t.Fatalf("first Receive: %v", err)
	}
	want := event(Event{Type: EventCreated, Token: 0x15efa211, Family: unix.AF_INET6,
		Saddr: netip.MustParseAddr("::1"), Daddr: netip.MustParseAddr("::1"), Sport: 57538, Dport: 5000},
		AttrToken, AttrFamily, AttrSaddr6, AttrDaddr6, AttrSport, AttrDport, AttrLocalID, AttrRemoteID)
	if diff := cmp.Diff([]Event{want}, evs, cmpOpts...); diff != "" {
		t.Errorf("unexpected events (-want +got):\n%s", diff)
	}

	_, err = l.Receive()
	if !errors.Is(err, ErrEventsLost) {
		t.Fatalf("Receive after overrun: err = %v, want ErrEventsLost", err)
	}
	var oe *netlink.OpError
	if errors.As(err, &oe) {
		t.Errorf("netlink.OpError leaks through %v", err)
	}

	evs, err = l.Receive()
	if err != nil {
		t.Fatalf("Receive after ErrEventsLost: %v", err)
	}
	if diff := cmp.Diff([]EventType{EventAnnounced, EventClosed}, types(evs)); diff != "" {
		t.Errorf("unexpected event types (-want +got):\n%s", diff)
	}

	if evs, err := l.Receive(); !errors.Is(err, ErrMalformedEvent) || len(evs) != 0 {
		t.Fatalf("Receive of a malformed event: %v, %v; want no events and ErrMalformedEvent", evs, err)
	}
	evs, err = l.Receive()
	if err != nil || len(evs) != 1 || evs[0].Type != EventClosed {
		t.Errorf("Receive after a malformed event: %v, %v; want one CLOSED", evs, err)
	}

	// A bad message between good ones costs only itself.
	evs, err = l.Receive()
	if !errors.Is(err, ErrMalformedEvent) {
		t.Errorf("Receive of a batch with a malformed event: err = %v, want ErrMalformedEvent", err)
	}
	if diff := cmp.Diff([]EventType{EventAnnounced, EventClosed}, types(evs)); diff != "" {
		t.Errorf("unexpected event types around a malformed one (-want +got):\n%s", diff)
	}
}

func TestEventListenerSkipsOtherFamilies(t *testing.T) {
	// nltest lets the test choose the netlink message type, which genltest
	// always leaves 0.
	raw := func(typ uint16, cmd uint8, data []byte) netlink.Message {
		b, err := evmsg(cmd, data).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(typ)}, Data: b}
	}
	batches := [][]netlink.Message{
		{raw(testFamily.ID+1, MPTCP_EVENT_CREATED, capturedCreatedServer)}, // only foreign: read on
		{
			raw(testFamily.ID+1, MPTCP_EVENT_CREATED, capturedCreatedServer),
			raw(testFamily.ID, MPTCP_EVENT_CLOSED, capturedClosed),
			raw(uint16(netlink.Noop), 0, nil),
		},
	}
	conn := genetlink.NewConn(nltest.Dial(func([]netlink.Message) ([]netlink.Message, error) {
		if len(batches) == 0 {
			t.Fatal("Receive called more often than scripted")
		}
		b := batches[0]
		batches = batches[1:]
		return b, nil
	}))
	l := &EventListener{conn: conn, family: testFamily}
	defer l.Close()

	evs, err := l.Receive()
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if diff := cmp.Diff([]Event{event(Event{Type: EventClosed, Token: 0x15efa211}, AttrToken)}, evs, cmpOpts...); diff != "" {
		t.Errorf("unexpected events (-want +got):\n%s", diff)
	}
}

func TestNewEventListenerErrors(t *testing.T) {
	noEvents := testFamily
	noEvents.Groups = noEvents.Groups[:1]
	conn := genltest.Dial(genltest.ServeFamily(noEvents, scriptedEvents(t)))
	defer conn.Close()
	if _, err := NewEventListener(conn); !errors.Is(err, ErrNotSupported) {
		t.Errorf("family without events group: err = %v, want ErrNotSupported", err)
	}

	conn = genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.ENOENT))
	})
	defer conn.Close()
	if _, err := NewEventListener(conn); !errors.Is(err, ErrNotSupported) {
		t.Errorf("missing family: err = %v, want ErrNotSupported", err)
	}
}

// TestEventListenerCloseUnblocksReceive blocks in recvmsg on a real generic
// netlink socket (no privileges needed: nothing is joined, so nothing
// arrives) and checks that Close wakes it.
func TestEventListenerCloseUnblocksReceive(t *testing.T) {
	conn, err := genetlink.Dial(nil)
	if err != nil {
		t.Skipf("no generic netlink: %v", err)
	}
	l := &EventListener{conn: conn, family: testFamily}

	done := make(chan error, 1)
	go func() {
		_, err := l.Receive()
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Receive returned before Close: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Receive: err = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Receive")
	}

	if _, err := l.Receive(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Receive after Close: err = %v, want net.ErrClosed", err)
	}
	if err := l.SetReadBuffer(4096); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetReadBuffer after Close: err = %v, want net.ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
