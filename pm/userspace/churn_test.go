package userspace_test

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm/plugins/sspi"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// churn opens the connections with tokens from..to-1 through the fake
// kernel, up to round at a time, and closes them; sspi opens a second
// subflow on each. Batches stay within the event socket's buffer.
func churn(h *userspacetest.Harness, from, to, round int) {
	const batch = 64
	peer := netip.MustParseAddr("192.0.2.1")
	local := netip.MustParseAddr("10.0.1.2")
	for start := from; start < to; start += round {
		end := min(start+round, to)
		for b := start; b < end; b += batch {
			for tok := b; tok < min(b+batch, end); tok++ {
				h.Open(mptcp.Token(tok), netip.AddrPortFrom(local, uint16(tok)), netip.AddrPortFrom(peer, 443), false)
			}
			h.Settle()
		}
		for b := start; b < end; b += batch {
			for tok := b; tok < min(b+batch, end); tok++ {
				h.Close(mptcp.Token(tok))
			}
			h.Settle()
		}
		h.Kernel.ResetOps() // the fake's log of requests would grow
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Memory follows the connections open, not how many came and went.
func TestChurnMemoryFlat(t *testing.T) {
	const round = 2000 // connections open at once
	total := 100_000
	if testing.Short() || raceEnabled {
		total = 20_000
	}
	h := userspacetest.New(t, userspacetest.Options{Plugin: sspi.Name})
	h.SetNetwork(twoLinks())

	churn(h, 1, 1+round, round) // every structure reaches its size once
	before := heapInUse()
	churn(h, 1+round, 1+total, round)
	after := heapInUse()

	s := h.Engine.Stats()
	if s.Connections != 0 {
		t.Errorf("%d connections left in the table, want 0", s.Connections)
	}
	if got := h.Client.Creates(); got != uint64(total) {
		t.Errorf("%d subflows created for %d connections, want one each", got, total)
	}
	const slack = 2 << 20
	if after > before+slack {
		t.Errorf("heap in use grew from %d to %d bytes over %d connections (allowed: %d)", before, after, total-round, slack)
	}
	t.Logf("%d connections, %d events; heap in use %d -> %d bytes", total, s.Events, before, after)
}
