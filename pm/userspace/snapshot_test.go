package userspace_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// Connections copies the table: what the plugin did shows, changes to the
// copy do not reach the engine, and CLOSED empties it.
func TestConnectionsSnapshot(t *testing.T) {
	h, r := start(t, userspacetest.Options{})
	h.SetNetwork(twoLinks())
	var wlan pm.LocalAddr
	r.onEstablished = func(env pm.Env, c pm.Connection) {
		wlan = localOn(env.State, "wlan0")
		if err := env.Commands.Announce(c.Token(), wlan); err != nil {
			t.Errorf("Announce: %v", err)
		}
	}
	h.Open(2, userspacetest.Addr("10.0.1.2:40001"), userspacetest.Addr(remote), true)
	h.Open(1, userspacetest.Addr(local), userspacetest.Addr(remote), false)
	h.Settle()

	got := h.Engine.Connections()
	want := []userspace.ConnInfo{
		{
			Token: 1, Local: userspacetest.Addr(local), Remote: userspacetest.Addr(remote), Established: true,
			Subflows:  []pm.Subflow{{Local: userspacetest.Addr(local), Remote: userspacetest.Addr(remote), IfIndex: 2}},
			Announced: []pm.LocalAddr{wlan},
		},
		{
			Token: 2, Local: userspacetest.Addr("10.0.1.2:40001"), Remote: userspacetest.Addr(remote), ServerSide: true, Established: true,
			Subflows:  []pm.Subflow{{Local: userspacetest.Addr("10.0.1.2:40001"), Remote: userspacetest.Addr(remote), IfIndex: 2}},
			Announced: []pm.LocalAddr{wlan},
		},
	}
	addrPorts := cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })
	addrs := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	if diff := cmp.Diff(want, got, addrPorts, addrs); diff != "" {
		t.Errorf("Connections (-want +got):\n%s", diff)
	}

	got[0].Subflows[0].Backup = true
	got[0].Announced = nil
	if again := h.Engine.Connections(); again[0].Subflows[0].Backup || len(again[0].Announced) != 1 {
		t.Errorf("changing the copy changed the engine: %+v", again[0])
	}

	h.Close(1)
	h.Close(2)
	h.Settle()
	if got := h.Engine.Connections(); len(got) != 0 {
		t.Errorf("Connections after CLOSED = %+v, want none", got)
	}
}
