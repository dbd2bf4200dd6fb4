package daemon

import (
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm"
)

// fakeSockets stands in for sock_diag: the connections, and the subflows
// aborted.
type fakeSockets struct {
	mu      sync.Mutex
	conns   []mptcpdiag.Connection
	filters []mptcpdiag.States
	aborted []netip.AddrPort
}

func (f *fakeSockets) list(states mptcpdiag.States) ([]mptcpdiag.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, states)
	var out []mptcpdiag.Connection
	for _, c := range f.conns {
		c.Subflows = slices.DeleteFunc(slices.Clone(c.Subflows), func(s mptcpdiag.Subflow) bool {
			return !states.Has(s.State) || slices.Contains(f.aborted, s.Local)
		})
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeSockets) destroy(s mptcpdiag.Subflow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborted = append(f.aborted, s.Local)
	return nil
}

func (f *fakeSockets) seen() (filters []mptcpdiag.States, aborted []netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.filters), slices.Clone(f.aborted)
}

func noCarrier(index int, name string) netmon.Event {
	ev := link(index, name).(netmon.LinkEvent)
	ev.Link.Carrier, ev.Link.OperState = false, netmon.OperLowerLayerDown
	return ev
}

// A carrier loss makes the engine abort the closed subflows on the lost
// link, and only those, soon after and at each follow-up.
func TestEngineAbortsStrandedSubflows(t *testing.T) {
	defer func(at []time.Duration) { strandedAt = at }(strandedAt)
	strandedAt = []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond}

	r := newEngineRig(t, testSettings(t, subflowPolicy))
	socks := &fakeSockets{}
	sf := func(local string, st mptcpdiag.State) mptcpdiag.Subflow {
		return mptcpdiag.Subflow{Local: netip.MustParseAddrPort(local), State: st}
	}
	socks.conns = []mptcpdiag.Connection{{Subflows: []mptcpdiag.Subflow{
		sf("192.0.2.1:1000", mptcpdiag.StateFinWait1),
		sf("192.0.2.1:1001", mptcpdiag.StateEstablished),
		sf("198.51.100.1:1002", mptcpdiag.StateFinWait1),
	}}}
	r.e.stranded = newStrandedSweep(socks.list, socks.destroy, slog.New(slog.DiscardHandler))
	l := r.run(t, nil)
	l.twoLinks("test1")
	r.waitFor(t, "at start", hasAddrs("192.0.2.1/subflow", "198.51.100.1/subflow"))
	if filters, _ := socks.seen(); len(filters) != 0 {
		t.Fatalf("swept %d times with no path lost", len(filters))
	}

	l.events <- noCarrier(2, "test0")
	r.waitFor(t, "carrier loss", hasAddrs("198.51.100.1/subflow"))
	waitFor(t, "two follow-ups", func() bool { f, _ := socks.seen(); return len(f) >= 3 })
	time.Sleep(100 * time.Millisecond)
	filters, aborted := socks.seen()
	if want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:1000")}; !slices.Equal(aborted, want) {
		t.Errorf("aborted %v, want %v", aborted, want)
	}
	if len(filters) != 3 || slices.ContainsFunc(filters, func(s mptcpdiag.States) bool { return s != pm.ClosingStates() }) {
		t.Errorf("dumps with filters %x, want 3 of closing states %x", filters, pm.ClosingStates())
	}
}

// A storm of lossy passes does not put the first sweep off: it comes
// strandedAt[0] after the first of them.
func TestStrandedSweepNotPutOff(t *testing.T) {
	defer func(at []time.Duration) { strandedAt = at }(strandedAt)
	strandedAt = []time.Duration{50 * time.Millisecond, time.Hour}
	socks := &fakeSockets{}
	s := newStrandedSweep(socks.list, socks.destroy, slog.New(slog.DiscardHandler))
	defer s.stop()
	start := time.Now()
	storm := time.NewTicker(5 * time.Millisecond)
	defer storm.Stop()
	for time.Since(start) < time.Second {
		select {
		case <-storm.C:
			s.passed(pm.Network{}, true)
		case <-s.due():
			s.followUp()
		}
		if filters, _ := socks.seen(); len(filters) > 0 {
			return
		}
	}
	t.Errorf("no sweep during 1 s of lossy passes every 5 ms; the first is due %v after the first pass", strandedAt[0])
}
