package mptcptest

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// eventCmp compares events including which attributes were sent.
var eventCmp = []cmp.Option{addrCmp, cmp.AllowUnexported(mptcp.Event{})}

// received is one Receive result.
type received struct {
	evs []mptcp.Event
	err error
}

// listener is an event listener of k whose batches arrive on a channel.
type listener struct {
	l  *mptcp.EventListener
	ch chan received
}

func listen(t *testing.T, k *Kernel) *listener {
	t.Helper()
	l, err := k.ListenEvents()
	if err != nil {
		t.Fatalf("ListenEvents: %v", err)
	}
	ln := &listener{l: l, ch: make(chan received, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, err := l.Receive()
			ln.ch <- received{evs, err}
			if errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
	})
	return ln
}

// next waits for the next Receive result.
func (ln *listener) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-ln.ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for events")
	}
	return received{}
}

// receiveN collects n events, failing on any error.
func receiveN(t *testing.T, ln *listener, n int) []mptcp.Event {
	t.Helper()
	var out []mptcp.Event
	for len(out) < n {
		r := ln.next(t)
		if r.err != nil {
			t.Fatalf("Receive after %d events: %v", len(out), r.err)
		}
		out = append(out, r.evs...)
	}
	return out
}

// quiet checks that nothing more arrives for a moment.
func (ln *listener) quiet(t *testing.T) {
	t.Helper()
	select {
	case r := <-ln.ch:
		t.Errorf("unexpected Receive result: %+v", r)
	case <-time.After(20 * time.Millisecond):
	}
}

func TestInjectDelivers(t *testing.T) {
	partial := mptcp.Event{Type: mptcp.EventSubPriority, Token: 7, Backup: true}
	partial.Set(mptcp.AttrToken)
	partial.Set(mptcp.AttrBackup)
	events := []mptcp.Event{
		{Type: mptcp.EventCreated, Token: 0x7ab06eec, Saddr: ip("10.1.1.2"), Daddr: ip("10.1.1.1"), Sport: 51482, Dport: 5000, ServerSide: true},
		{Type: mptcp.EventEstablished, Token: 0x7ab06eec, Saddr: ip("10.1.1.2"), Daddr: ip("10.1.1.1"), Sport: 51482, Dport: 5000, Flags: mptcp.MPTCP_PM_EV_FLAG_DENY_JOIN_ID0},
		{Type: mptcp.EventAnnounced, Token: 0x7ab06eec, RemoteID: 1, Daddr: ip("2001:db8::1"), Dport: 6000},
		{Type: mptcp.EventSubEstablished, Token: 0x7ab06eec, LocalID: 1, RemoteID: 0, Saddr: ip("2001:db8::2"), Daddr: ip("2001:db8::1"), Sport: 49737, Dport: 5000, IfIndex: 3},
		{Type: mptcp.EventSubClosed, Token: 0x7ab06eec, LocalID: 1, Saddr: ip("10.1.2.2"), Daddr: ip("10.1.1.1"), Sport: 1, Dport: 2, Error: 104, ResetReason: 1, ResetFlags: 2},
		{Type: mptcp.EventRemoved, Token: 0x7ab06eec, RemoteID: 1},
		{Type: mptcp.EventClosed, Token: 0x7ab06eec},
		{Type: mptcp.EventListenerCreated, Saddr: ip("10.0.0.1"), Sport: 7000},
		{Type: 99, Token: 1},
		partial,
	}
	k := NewKernel()
	ln1, ln2 := listen(t, k), listen(t, k)
	k.Inject(events...)
	want := make([]mptcp.Event, len(events))
	for i, ev := range events {
		want[i] = ev
		if i < len(events)-1 {
			want[i] = Complete(ev)
		}
	}
	for _, ln := range []*listener{ln1, ln2} {
		if diff := cmp.Diff(want, receiveN(t, ln, len(want)), eventCmp...); diff != "" {
			t.Errorf("unexpected events (-want +got):\n%s", diff)
		}
	}
}

func TestComplete(t *testing.T) {
	const (
		tok, fam, s4, s6, d4, d6 = mptcp.AttrToken, mptcp.AttrFamily, mptcp.AttrSaddr4, mptcp.AttrSaddr6, mptcp.AttrDaddr4, mptcp.AttrDaddr6
		sp, dp, lid, rid, bk     = mptcp.AttrSport, mptcp.AttrDport, mptcp.AttrLocalID, mptcp.AttrRemoteID, mptcp.AttrBackup
	)
	v4 := mptcp.Event{Saddr: ip("10.0.0.1"), Daddr: ip("10.0.0.2")}
	v6 := mptcp.Event{Saddr: ip("2001:db8::1"), Daddr: ip("2001:db8::2")}
	with := func(base mptcp.Event, f func(*mptcp.Event)) mptcp.Event { f(&base); return base }
	tests := []struct {
		name string
		ev   mptcp.Event
		want []mptcp.EventAttr
	}{
		{"created client side", with(v4, func(e *mptcp.Event) { e.Type = mptcp.EventCreated }),
			[]mptcp.EventAttr{tok, fam, s4, d4, sp, dp, lid, rid}},
		{"created server side", with(v6, func(e *mptcp.Event) { e.Type = mptcp.EventCreated; e.ServerSide = true }),
			[]mptcp.EventAttr{tok, fam, s6, d6, sp, dp, lid, rid, mptcp.AttrFlags, mptcp.AttrServerSide}},
		{"closed", mptcp.Event{Type: mptcp.EventClosed}, []mptcp.EventAttr{tok}},
		{"announced", with(v6, func(e *mptcp.Event) { e.Type = mptcp.EventAnnounced }), []mptcp.EventAttr{tok, rid, dp, d6}},
		{"removed", mptcp.Event{Type: mptcp.EventRemoved}, []mptcp.EventAttr{tok, rid}},
		{"subflow", with(v4, func(e *mptcp.Event) { e.Type = mptcp.EventSubEstablished }),
			[]mptcp.EventAttr{tok, fam, s4, d4, sp, dp, lid, rid, bk}},
		{"subflow with device and error", with(v4, func(e *mptcp.Event) {
			e.Type = mptcp.EventSubPriority
			e.IfIndex, e.Error = 2, 110
		}), []mptcp.EventAttr{tok, fam, s4, d4, sp, dp, lid, rid, bk, mptcp.AttrIfIndex, mptcp.AttrError}},
		{"subflow closed by reset", with(v4, func(e *mptcp.Event) { e.Type = mptcp.EventSubClosed; e.ResetReason = 3 }),
			[]mptcp.EventAttr{tok, fam, s4, d4, sp, dp, lid, rid, bk, mptcp.AttrResetReason, mptcp.AttrResetFlags}},
		{"listener", with(v6, func(e *mptcp.Event) { e.Type = mptcp.EventListenerClosed }), []mptcp.EventAttr{fam, sp, s6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Complete(tt.ev)
			var want mptcp.Event
			for _, a := range tt.want {
				want.Set(a)
			}
			for a := mptcp.EventAttr(1); a < 32; a++ {
				if got.Has(a) != want.Has(a) {
					t.Errorf("attribute %d: Has = %v, want %v", a, got.Has(a), want.Has(a))
				}
			}
		})
	}
}

// TestEventPortsBigEndian checks the raw bytes: event ports are be16,
// unlike endpoint ports.
func TestEventPortsBigEndian(t *testing.T) {
	m := encodeEvent(familyID, Complete(mptcp.Event{Type: mptcp.EventSubEstablished, Token: 1,
		Saddr: ip("10.0.0.1"), Daddr: ip("10.0.0.2"), Sport: 0x1234, Dport: 0x5678}))
	attrs := parseAttrs(m.Data[genlHdrLen:], 0)
	for typ, want := range map[uint16]uint16{mptcp.MPTCP_ATTR_SPORT: 0x1234, mptcp.MPTCP_ATTR_DPORT: 0x5678} {
		a, ok := attrs[typ]
		if !ok || len(a.data) != 2 || binary.BigEndian.Uint16(a.data) != want {
			t.Errorf("attribute %d = %x, want be16 %#x", typ, a.data, want)
		}
	}
	if m.Header.Sequence != 0 || m.Header.PID != 0 || m.Header.Type != familyID || m.Data[0] != mptcp.MPTCP_EVENT_SUB_ESTABLISHED {
		t.Errorf("unexpected event header %+v, command %d", m.Header, m.Data[0])
	}
}

func TestLoseEvents(t *testing.T) {
	k := NewKernel()
	ln := listen(t, k)
	ev := func(tok mptcp.Token) mptcp.Event { return mptcp.Event{Type: mptcp.EventClosed, Token: tok} }
	k.Inject(ev(1))
	k.LoseEvents()
	k.Inject(ev(2))
	// Like recvmsg, the pending ENOBUFS comes before queued messages.
	if r := ln.next(t); !errors.Is(r.err, mptcp.ErrEventsLost) {
		t.Fatalf("Receive = %+v, want ErrEventsLost", r)
	}
	want := []mptcp.Event{Complete(ev(1)), Complete(ev(2))}
	if diff := cmp.Diff(want, receiveN(t, ln, 2), eventCmp...); diff != "" {
		t.Errorf("unexpected events after the loss (-want +got):\n%s", diff)
	}
	ln.quiet(t)
}

func TestEventBufferOverrun(t *testing.T) {
	k := NewKernel()
	l, err := k.ListenEvents()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetReadBuffer(1); err != nil {
		t.Fatalf("SetReadBuffer: %v", err)
	}
	// The smallest buffer (SOCK_MIN_RCVBUF) holds two events; the next
	// ones are lost, even once there is room again, until the queue is
	// drained.
	for tok := range mptcp.Token(4) {
		k.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: tok})
	}
	if _, err := l.Receive(); !errors.Is(err, mptcp.ErrEventsLost) {
		t.Fatalf("first Receive error %v, want ErrEventsLost", err)
	}
	evs, err := l.Receive()
	if err != nil || len(evs) != 1 || evs[0].Token != 0 {
		t.Fatalf("second Receive = %+v, %v; want the first event", evs, err)
	}
	k.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: 8}) // still congested: lost
	evs, err = l.Receive()
	if err != nil || len(evs) != 1 || evs[0].Token != 1 {
		t.Fatalf("third Receive = %+v, %v; want the second event", evs, err)
	}
	// Drained: events flow again.
	k.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: 9})
	if evs, err := l.Receive(); err != nil || len(evs) != 1 || evs[0].Token != 9 {
		t.Fatalf("Receive after draining = %+v, %v; want token 9", evs, err)
	}
}

func TestCloseUnblocksReceive(t *testing.T) {
	k := NewKernel()
	l, err := k.ListenEvents()
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := l.Receive()
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Receive block
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive error %v is not net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Receive")
	}
	// A closed listener no longer gets events.
	k.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: 1})
	k.mu.Lock()
	n := len(k.sockets)
	k.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sockets still registered after Close", n)
	}
}

// TestSocketErrors checks the raw socket's errors against a real
// socket's: EBADF after close, and the poller's closing error for a read
// blocked across Close.
func TestSocketErrors(t *testing.T) {
	k := NewKernel()
	s := newSocket(k, 1)
	k.sockets[s] = true
	errc := make(chan error, 1)
	go func() {
		_, err := s.Receive()
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil || err.Error() != "use of closed file" {
		t.Errorf("blocked Receive error %v, want the poller's \"use of closed file\"", err)
	}
	if _, err := s.Receive(); err == nil || err.Error() != "recvmsg: bad file descriptor" {
		t.Errorf("Receive after Close error %v, want recvmsg: EBADF", err)
	}
	if err := s.Send(netlink.Message{Header: netlink.Header{Type: familyID, Flags: netlink.Request}, Data: []byte{6, 1, 0, 0}}); err == nil || err.Error() != "sendmsg: bad file descriptor" {
		t.Errorf("Send after Close error %v, want sendmsg: EBADF", err)
	}
	if err := s.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestReadDeadline(t *testing.T) {
	k := NewKernel()
	conn := k.Conn()
	defer conn.Close()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err := conn.Receive()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Receive error %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Receive returned after %v", d)
	}
}

func TestSubflowEventsUpdateConnections(t *testing.T) {
	k := NewKernel()
	tok := mptcp.Token(5)
	local, remote := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:80")
	k.Inject(mptcp.Event{Type: mptcp.EventCreated, Token: tok, Saddr: local.Addr(), Sport: local.Port(), Daddr: remote.Addr(), Dport: remote.Port()})
	sf := mptcp.Event{Type: mptcp.EventSubEstablished, Token: tok, LocalID: 2, RemoteID: 1,
		Saddr: ip("10.0.1.1"), Sport: 40001, Daddr: remote.Addr(), Dport: remote.Port()}
	k.Inject(sf)
	sf.Type, sf.Backup = mptcp.EventSubPriority, true
	k.Inject(sf)
	want := []Subflow{
		{Local: local, Remote: remote},
		{Local: netip.MustParseAddrPort("10.0.1.1:40001"), Remote: remote, LocalID: 2, RemoteID: 1, Backup: true},
	}
	if diff := cmp.Diff(want, k.Subflows(tok), addrCmp, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("unexpected subflows (-want +got):\n%s", diff)
	}
	sf.Type = mptcp.EventSubClosed
	k.Inject(sf)
	if got := len(k.Subflows(tok)); got != 1 {
		t.Errorf("%d subflows after SUB_CLOSED, want 1", got)
	}
	k.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: tok})
	if got := k.Subflows(tok); got != nil {
		t.Errorf("subflows %v after CLOSED, want none", got)
	}
}
