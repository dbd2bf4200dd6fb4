package userspace_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// diagConn is a connection as mptcp_diag lists it, with its subflows
// ("local", "remote" pairs after the initial one).
func diagConn(tok mptcp.Token, state mptcpdiag.State, local, remote string, joins ...string) mptcpdiag.Connection {
	a := userspacetest.Addr
	c := mptcpdiag.Connection{
		Family: mptcpdiag.AF_INET, Local: a(local), Remote: a(remote), State: state, Info: mptcpdiag.Info{Token: tok},
		Subflows: []mptcpdiag.Subflow{{Local: a(local), Remote: a(remote), LocalToken: tok}},
	}
	for i := 0; i+1 < len(joins); i += 2 {
		c.Subflows = append(c.Subflows, mptcpdiag.Subflow{Local: a(joins[i]), Remote: a(joins[i+1]), LocalToken: tok, LocalID: 3})
	}
	return c
}

func TestResyncAfterLostEvents(t *testing.T) {
	l := &lister{}
	h, r := start(t, userspacetest.Options{Lister: l})
	h.SetNetwork(twoLinks())
	h.Open(1, userspacetest.Addr(local), userspacetest.Addr(remote), false)
	h.Open(2, userspacetest.Addr("10.0.1.2:40002"), userspacetest.Addr(remote), false)
	h.Settle()
	r.takeTrace()

	fallback := diagConn(4, mptcpdiag.StateEstablished, "10.0.1.2:40004", remote)
	fallback.Info.Flags = mptcpdiag.InfoFallback
	l.set([]mptcpdiag.Connection{
		// 2 gained a subflow, 1 is gone, 3 is new (accepted: a listener
		// has its port), 4 fell back to TCP and 5 is closing down.
		diagConn(2, mptcpdiag.StateEstablished, "10.0.1.2:40002", remote, "10.0.2.2:40012", remote),
		diagConn(3, mptcpdiag.StateEstablished, "10.0.1.2:443", "198.51.100.1:50000"),
		fallback,
		diagConn(5, mptcpdiag.StateTimeWait, "10.0.1.2:40005", remote),
		{Family: mptcpdiag.AF_INET, Local: userspacetest.Addr("0.0.0.0:443"), State: mptcpdiag.StateListen},
	}, nil)
	h.Kernel.LoseEvents()
	userspacetest.WaitFor(t, "a resync", func() bool { return h.Engine.Stats().Resyncs == 2 }) // the first when Run started

	want := []string{
		"sub up 00000002 10.0.2.2:40012->192.0.2.1:443 id 3/0 if 3",
		"new 00000003 server 10.0.1.2:443->198.51.100.1:50000",
		"established 00000003",
		"closed 00000001",
	}
	if diff := cmp.Diff(want, r.takeTrace()); diff != "" {
		t.Errorf("callbacks (-want +got):\n%s", diff)
	}
	if s := h.Engine.Stats(); s.Connections != 2 || s.EventsLost != 1 {
		t.Errorf("Stats() = %+v, want 2 connections and 1 loss", s)
	}

	// Events the resync already accounted for are not reported again.
	h.Inject(
		ev(mptcp.EventSubEstablished, 2, "10.0.2.2:40012", remote),
		ev(mptcp.EventCreated, 3, "10.0.1.2:443", "198.51.100.1:50000"),
		ev(mptcp.EventClosed, 1, "", ""),
	)
	h.Settle()
	if got := r.takeTrace(); len(got) != 0 {
		t.Errorf("events after the resync gave callbacks %q, want none", got)
	}
}

// A failed listing leaves the table marked stale; the next batch of
// events tries again.
func TestResyncRetries(t *testing.T) {
	l := &lister{}
	h, r := start(t, userspacetest.Options{Lister: l})
	h.SetNetwork(twoLinks())
	h.Open(1, userspacetest.Addr(local), userspacetest.Addr(remote), false)
	h.Settle()
	r.takeTrace()

	l.set(nil, errors.New("sock_diag: no buffer space"))
	h.Kernel.LoseEvents()
	userspacetest.WaitFor(t, "a listing", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.calls == 2 })
	if s := h.Engine.Stats(); s.Resyncs != 1 || s.Connections != 1 {
		t.Errorf("after a failed listing Stats() = %+v, want 1 resync (at start) and the connection kept", s)
	}

	l.set(nil, nil)
	h.Inject(ev(mptcp.EventListenerCreated, 0, "10.0.1.2:443", ""))
	h.Settle()
	if s := h.Engine.Stats(); s.Resyncs != 2 || s.Connections != 0 {
		t.Errorf("after the next event Stats() = %+v, want 2 resyncs and no connection", s)
	}
	if diff := cmp.Diff([]string{"listener up 10.0.1.2:443", "closed 00000001"}, r.takeTrace()); diff != "" {
		t.Errorf("callbacks (-want +got):\n%s", diff)
	}
}
