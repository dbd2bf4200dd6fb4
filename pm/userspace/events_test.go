package userspace_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// ev builds an event of connection tok between local and remote
// ("addr:port"; empty for none).
func ev(typ mptcp.EventType, tok mptcp.Token, local, remote string) mptcp.Event {
	e := mptcp.Event{Type: typ, Token: tok}
	if local != "" {
		l := userspacetest.Addr(local)
		e.Saddr, e.Sport = l.Addr(), l.Port()
	}
	if remote != "" {
		r := userspacetest.Addr(remote)
		e.Daddr, e.Dport = r.Addr(), r.Port()
	}
	return e
}

func with(e mptcp.Event, f func(*mptcp.Event)) mptcp.Event {
	f(&e)
	return e
}

const (
	local  = "10.0.1.2:40000"
	remote = "192.0.2.1:443"
)

func TestEventDispatch(t *testing.T) {
	created := ev(mptcp.EventCreated, 1, local, remote)
	established := ev(mptcp.EventEstablished, 1, local, remote)
	closed := ev(mptcp.EventClosed, 1, "", "")
	tests := []struct {
		name      string
		events    []mptcp.Event
		want      []string
		wantConns int
	}{
		{
			name:   "lifecycle",
			events: []mptcp.Event{created, established, closed},
			want: []string{
				"new 00000001 client 10.0.1.2:40000->192.0.2.1:443",
				"established 00000001",
				"closed 00000001",
			},
		},
		{
			name:   "established without created",
			events: []mptcp.Event{established},
			want: []string{
				"new 00000001 client 10.0.1.2:40000->192.0.2.1:443",
				"established 00000001",
			},
			wantConns: 1,
		},
		{
			name:      "repeated events are reported once",
			events:    []mptcp.Event{created, created, established, established},
			want:      []string{"new 00000001 client 10.0.1.2:40000->192.0.2.1:443", "established 00000001"},
			wantConns: 1,
		},
		{
			name:   "token of a new connection",
			events: []mptcp.Event{created, ev(mptcp.EventCreated, 1, "10.0.2.2:40000", remote)},
			want: []string{
				"new 00000001 client 10.0.1.2:40000->192.0.2.1:443",
				"closed 00000001",
				"new 00000001 client 10.0.2.2:40000->192.0.2.1:443",
			},
			wantConns: 1,
		},
		{
			name:      "server side",
			events:    []mptcp.Event{with(created, func(e *mptcp.Event) { e.ServerSide = true })},
			want:      []string{"new 00000001 server 10.0.1.2:40000->192.0.2.1:443"},
			wantConns: 1,
		},
		{
			name: "peer addresses",
			events: []mptcp.Event{
				created,
				with(ev(mptcp.EventAnnounced, 1, "", "192.0.2.7:0"), func(e *mptcp.Event) { e.RemoteID = 5 }),
				with(ev(mptcp.EventAnnounced, 1, "", "192.0.2.8:8080"), func(e *mptcp.Event) { e.RemoteID = 6 }),
				with(ev(mptcp.EventAnnounced, 1, "", "192.0.2.7:0"), func(e *mptcp.Event) { e.RemoteID = 5 }),
				with(ev(mptcp.EventRemoved, 1, "", ""), func(e *mptcp.Event) { e.RemoteID = 5 }),
				with(ev(mptcp.EventRemoved, 1, "", ""), func(e *mptcp.Event) { e.RemoteID = 9 }),
			},
			want: []string{
				"new 00000001 client 10.0.1.2:40000->192.0.2.1:443",
				"announced 00000001 id 5 192.0.2.7:443", // no port: the connection's
				"announced 00000001 id 6 192.0.2.8:8080",
				"removed 00000001 id 5 192.0.2.7:443",
				"removed 00000001 id 9 invalid AddrPort",
			},
			wantConns: 1,
		},
		{
			name: "subflows",
			events: []mptcp.Event{
				created,
				with(ev(mptcp.EventSubEstablished, 1, "10.0.2.2:40001", remote), func(e *mptcp.Event) { e.LocalID = 7 }),
				with(ev(mptcp.EventSubEstablished, 1, "10.0.2.2:40001", remote), func(e *mptcp.Event) { e.LocalID = 7 }),
				with(ev(mptcp.EventSubPriority, 1, "10.0.2.2:40001", remote), func(e *mptcp.Event) { e.LocalID, e.Backup = 7, true }),
				with(ev(mptcp.EventSubEstablished, 1, "10.9.9.9:40002", remote), func(e *mptcp.Event) { e.IfIndex = 9 }),
				with(ev(mptcp.EventSubClosed, 1, "10.0.2.2:40001", remote), func(e *mptcp.Event) { e.LocalID = 7 }),
				ev(mptcp.EventSubClosed, 1, "10.0.2.2:40009", remote), // unknown subflow
			},
			want: []string{
				"new 00000001 client 10.0.1.2:40000->192.0.2.1:443",
				"sub up 00000001 10.0.2.2:40001->192.0.2.1:443 id 7/0 if 3", // interface from the network
				"sub prio 00000001 10.0.2.2:40001->192.0.2.1:443 id 7/0 if 3 backup",
				"sub up 00000001 10.9.9.9:40002->192.0.2.1:443 id 0/0 if 9",          // the kernel's
				"sub down 00000001 10.0.2.2:40001->192.0.2.1:443 id 7/0 if 3 backup", // as last known
			},
			wantConns: 1,
		},
		{
			name: "unknown connection",
			events: []mptcp.Event{
				ev(mptcp.EventSubEstablished, 9, "10.0.2.2:40001", remote),
				with(ev(mptcp.EventAnnounced, 9, "", "192.0.2.7:0"), func(e *mptcp.Event) { e.RemoteID = 5 }),
				ev(mptcp.EventClosed, 9, "", ""),
			},
		},
		{
			name: "listeners",
			events: []mptcp.Event{
				ev(mptcp.EventListenerCreated, 0, "10.0.1.2:443", ""),
				ev(mptcp.EventListenerClosed, 0, "10.0.1.2:443", ""),
			},
			want: []string{"listener up 10.0.1.2:443", "listener down 10.0.1.2:443"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, r := start(t, userspacetest.Options{})
			h.SetNetwork(twoLinks())
			r.takeTrace()
			h.Inject(tt.events...)
			h.Settle()
			if diff := cmp.Diff(tt.want, r.takeTrace()); diff != "" {
				t.Errorf("callbacks (-want +got):\n%s", diff)
			}
			if got := h.Engine.Stats().Connections; got != tt.wantConns {
				t.Errorf("%d connections in the table, want %d", got, tt.wantConns)
			}
		})
	}
}
