package userspace_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm/plugins/sspi"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// BenchmarkChurnSSPI pushes connections through the engine and the sspi
// plugin on the fake kernel: CREATED and ESTABLISHED, the SUBFLOW_CREATE
// sspi answers with (and the SUB_ESTABLISHED that follows), then CLOSED,
// with up to window connections under way: one at a time for the latency
// of an idle daemon, 32 for its throughput (where latency includes the
// wait behind other connections). One op is one connection. It reports
// events handled per second and the latency from injecting
// CREATED+ESTABLISHED to sending SUBFLOW_CREATE (p50, p99), which covers
// the kernel-to-daemon path: netlink encoding, the socket, decoding,
// dispatch and the plugin.
func BenchmarkChurnSSPI(b *testing.B) {
	for _, window := range []int{1, 32} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) { benchChurn(b, window) })
	}
}

func benchChurn(b *testing.B, window int) {
	h := userspacetest.New(b, userspacetest.Options{Plugin: sspi.Name})
	h.SetNetwork(twoLinks())
	peer := netip.MustParseAddrPort("192.0.2.1:443")
	local := netip.MustParseAddr("10.0.1.2")

	n := b.N
	began := make([]time.Time, n+1)
	latency := make([]time.Duration, n+1)
	created := make(chan mptcp.Token, window)
	// Set before the first event is injected, which orders it before the
	// engine reads it.
	h.Client.OnCreate = func(tok mptcp.Token, sent time.Time, _ error) {
		latency[tok] = sent.Sub(began[tok])
		created <- tok
	}
	slots := make(chan struct{}, window)
	closer := make(chan struct{})
	go func() {
		defer close(closer)
		for range n {
			h.Close(<-created)
			<-slots
		}
	}()

	b.ResetTimer()
	for i := 1; i <= n; i++ {
		slots <- struct{}{}
		began[i] = time.Now()
		h.Open(mptcp.Token(i), netip.AddrPortFrom(local, uint16(i)), peer, false)
	}
	<-closer
	h.Settle()
	b.StopTimer()

	s := h.Engine.Stats()
	if s.Connections != 0 || h.Client.Creates() != uint64(n) {
		b.Fatalf("after %d connections: %+v, %d subflows created", n, s, h.Client.Creates())
	}
	lat := latency[1:]
	slices.Sort(lat)
	b.ReportMetric(float64(s.Events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "conns/s")
	b.ReportMetric(float64(lat[len(lat)*50/100].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
