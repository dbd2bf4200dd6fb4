package health

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

var (
	wlan = Path{Link: 2, Name: "wlan0", Addrs: []netip.Addr{netip.MustParseAddr("10.1.1.2")}}
	wwan = Path{Link: 3, Name: "wwan0", Addrs: []netip.Addr{netip.MustParseAddr("10.1.2.2")}}
	both = []Path{wlan, wwan}
	t0   = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
)

// Subflow tcp_info as the kernel reports it in the three situations the
// tracker tells apart.
var (
	// A bulk subflow getting ACKs.
	busy = mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 204 * time.Millisecond, RTT: 2 * time.Millisecond,
		Unacked: 40, LastAckRecv: time.Millisecond}
	// A subflow with nothing in flight for a while.
	idle = mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 204 * time.Millisecond, RTT: 2 * time.Millisecond,
		LastAckRecv: 5 * time.Second}
	// Data out, the RTO fired twice (the reported RTO is backed off), no
	// ACK for 700 ms.
	dead = mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 816 * time.Millisecond, Backoff: 2, Retransmits: 2,
		RTT: 2 * time.Millisecond, Unacked: 3, LastAckRecv: 700 * time.Millisecond}
	// A join whose SYN went unanswered and was sent again.
	synLost = mptcpdiag.TCPInfo{State: mptcpdiag.StateSynSent, RTO: 2 * time.Second, Backoff: 1, Retransmits: 1,
		LastAckRecv: 1000 * time.Hour}
)

type sub struct {
	path Path
	ti   mptcpdiag.TCPInfo
}

// conn is one connection with the given subflows.
func conn(subs ...sub) mptcpdiag.Connection {
	c := mptcpdiag.Connection{State: mptcpdiag.StateEstablished}
	for i, s := range subs {
		c.Subflows = append(c.Subflows, mptcpdiag.Subflow{
			Local: netip.AddrPortFrom(s.path.Addrs[0], uint16(40000+i)), State: s.ti.State, TCP: s.ti,
		})
	}
	return c
}

// observe is one pass and one sample: the paths now, then the subflows.
func observe(tr *Tracker, now time.Time, paths []Path, conns []mptcpdiag.Connection) []Verdict {
	tr.Track(now, paths)
	return tr.Observe(now, conns)
}

func states(tr *Tracker) string {
	var b strings.Builder
	for _, v := range tr.Verdicts() {
		b.WriteString(v.Name + "=" + v.State.String() + " ")
	}
	return strings.TrimSpace(b.String())
}

func TestJudge(t *testing.T) {
	grace := DefaultGrace
	for _, tt := range []struct {
		name string
		ti   mptcpdiag.TCPInfo
		want subflowJudgement
	}{
		{"busy", busy, subflowAlive},
		{"idle", idle, subflowIdle},
		{"dead", dead, subflowStuck},
		{"join SYN resent", synLost, subflowStuck},
		{"join SYN in flight", mptcpdiag.TCPInfo{State: mptcpdiag.StateSynSent, RTO: time.Second, LastAckRecv: time.Hour}, subflowIdle},
		// The RTO fired 220 ms after the last ACK; its retransmission is
		// answered within a round trip on a living path, so 30 ms later
		// nothing is decided yet.
		{"lossy, retransmission in flight", mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 440 * time.Millisecond, Backoff: 1,
			Retransmits: 1, RTT: 20 * time.Millisecond, Unacked: 10, LastAckRecv: 250 * time.Millisecond}, subflowIdle},
		// A long round trip stretches the grace: 2 x 300 ms.
		{"slow path within 2 RTT", mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 2 * time.Second, Backoff: 1,
			Retransmits: 1, RTT: 300 * time.Millisecond, Unacked: 10, LastAckRecv: 1500 * time.Millisecond}, subflowIdle},
		{"slow path past 2 RTT", mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 2 * time.Second, Backoff: 1,
			Retransmits: 1, RTT: 300 * time.Millisecond, Unacked: 10, LastAckRecv: 1700 * time.Millisecond}, subflowStuck},
		// Nothing out: a silent peer is not a dead path.
		{"no data out", mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 816 * time.Millisecond, Backoff: 2, Retransmits: 2,
			LastAckRecv: 700 * time.Millisecond}, subflowIdle},
		{"closing", mptcpdiag.TCPInfo{State: mptcpdiag.StateFinWait1, RTO: 816 * time.Millisecond, Retransmits: 2, Unacked: 1,
			LastAckRecv: 10 * time.Second}, subflowIdle},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := judge(&tt.ti, grace); got != tt.want {
				t.Errorf("judge = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestFailAndRecover(t *testing.T) {
	tr := NewTracker(Config{})
	if ch := observe(tr, t0, both, []mptcpdiag.Connection{conn(sub{wlan, busy}, sub{wwan, idle})}); len(ch) != 0 {
		t.Fatalf("a working sample changed %v", ch)
	}
	now := t0.Add(100 * time.Millisecond)
	ch := observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wlan, dead}, sub{wwan, idle})})
	if len(ch) != 1 || ch[0].Name != "wlan0" || ch[0].State != Failed {
		t.Fatalf("changed %+v, want wlan0 failed", ch)
	}
	if got := tr.Failed(); len(got) != 1 || got[0].Link != wlan.Link || got[0].Hold != time.Second || !got[0].Until.Equal(now.Add(time.Second)) {
		t.Fatalf("Failed() = %+v", got)
	}
	if !tr.AnyFailed() {
		t.Fatal("AnyFailed() = false with wlan0 failed")
	}
	if want := "no ACK for 700ms on 1 of 1 subflows, after 2 retransmission timeouts"; ch[0].Why != want {
		t.Errorf("why %q, want %q", ch[0].Why, want)
	}

	// Held down: the endpoint is gone, so are its subflows.
	now = now.Add(500 * time.Millisecond)
	if ch := observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wwan, busy})}); len(ch) != 0 {
		t.Fatalf("during the hold: changed %+v", ch)
	}
	now = now.Add(500 * time.Millisecond)
	ch = observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wwan, busy})})
	if len(ch) != 1 || ch[0].State != Probation {
		t.Fatalf("after the hold: changed %+v, want wlan0 on probation", ch)
	}
	if tr.AnyFailed() {
		t.Fatal("AnyFailed() = true with wlan0 on probation")
	}
	// No subflow yet: no verdict.
	if ch := observe(tr, now.Add(100*time.Millisecond), both, []mptcpdiag.Connection{conn(sub{wwan, busy})}); len(ch) != 0 {
		t.Fatalf("probation without subflows: changed %+v", ch)
	}
	// The join's SYN is resent: failed again, for twice as long.
	now = now.Add(1100 * time.Millisecond)
	ch = observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wwan, busy}, sub{wlan, synLost})})
	if len(ch) != 1 || ch[0].State != Failed || ch[0].Hold != 2*time.Second || ch[0].Why != "1 join's SYN unanswered" {
		t.Fatalf("lost join: changed %+v, want failed for 2s", ch)
	}
	now = now.Add(2 * time.Second)
	if ch := observe(tr, now, both, nil); len(ch) != 1 || ch[0].State != Probation {
		t.Fatalf("after the second hold: %+v", ch)
	}
	// An ACK from before probation proves nothing; one after it does.
	stale := idle
	stale.LastAckRecv = 300 * time.Millisecond
	if ch := observe(tr, now.Add(200*time.Millisecond), both, []mptcpdiag.Connection{conn(sub{wwan, busy}, sub{wlan, stale})}); len(ch) != 0 {
		t.Fatalf("an old ACK: changed %+v", ch)
	}
	ch = observe(tr, now.Add(300*time.Millisecond), both, []mptcpdiag.Connection{conn(sub{wwan, busy}, sub{wlan, busy})})
	if len(ch) != 1 || ch[0].State != Healthy {
		t.Fatalf("joined: changed %+v, want wlan0 healthy", ch)
	}
	if got := states(tr); got != "wlan0=healthy wwan0=healthy" {
		t.Errorf("states %s", got)
	}
}

func TestNoFailWithoutAlternative(t *testing.T) {
	for _, tt := range []struct {
		name  string
		paths []Path
		conns []mptcpdiag.Connection
	}{
		{"single path", []Path{wlan}, []mptcpdiag.Connection{conn(sub{wlan, dead})}},
		{"black zone", both, []mptcpdiag.Connection{conn(sub{wlan, dead}, sub{wwan, dead})}},
		// The path works for another connection: one stuck subflow is
		// that connection's trouble, not the path's.
		{"alive for another connection", both, []mptcpdiag.Connection{conn(sub{wlan, dead}, sub{wwan, idle}), conn(sub{wlan, busy})}},
		{"lossy", both, []mptcpdiag.Connection{conn(sub{wlan, mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 440 * time.Millisecond,
			Backoff: 1, Retransmits: 1, RTT: 20 * time.Millisecond, Unacked: 10, LastAckRecv: 250 * time.Millisecond}}, sub{wwan, busy})}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(Config{})
			for i := range 5 {
				if ch := observe(tr, t0.Add(time.Duration(i)*100*time.Millisecond), tt.paths, tt.conns); len(ch) != 0 {
					t.Fatalf("sample %d changed %+v", i, ch)
				}
			}
		})
	}
}

// A stuck path fails when the other one merely carries no subflow of
// this connection: a backup path has no traffic to show.
func TestFailOverToIdleBackup(t *testing.T) {
	tr := NewTracker(Config{})
	ch := observe(tr, t0, both, []mptcpdiag.Connection{conn(sub{wlan, dead})})
	if len(ch) != 1 || ch[0].Name != "wlan0" || ch[0].State != Failed {
		t.Fatalf("changed %+v", ch)
	}
	// The data moved to wwan0, which is now stuck too (a black zone that
	// grew): wwan0 stays, it is the last path.
	ch = observe(tr, t0.Add(100*time.Millisecond), both, []mptcpdiag.Connection{conn(sub{wwan, dead})})
	if len(ch) != 0 || states(tr) != "wlan0=failed wwan0=healthy" {
		t.Fatalf("changed %+v, states %s", ch, states(tr))
	}
}

func TestHoldDoublesAndIsForgiven(t *testing.T) {
	tr := NewTracker(Config{Hold: time.Second, MaxHold: 4 * time.Second, Forgive: 10 * time.Second})
	now := t0
	var holds []time.Duration
	for range 5 {
		ch := observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wlan, dead}, sub{wwan, busy})})
		if len(ch) != 1 || ch[0].State != Failed {
			t.Fatalf("changed %+v, want a failure", ch)
		}
		holds = append(holds, ch[0].Hold)
		now = ch[0].Until
		if ch := observe(tr, now, both, nil); len(ch) != 1 || ch[0].State != Probation {
			t.Fatalf("changed %+v, want probation", ch)
		}
		now = now.Add(time.Second)
	}
	if want := []time.Duration{1, 2, 4, 4, 4}; !equalSeconds(holds, want) {
		t.Fatalf("holds %v, want %v s", holds, want)
	}
	// Proven, then healthy for Forgive: the next failure holds 1 s.
	ch := observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wlan, busy}, sub{wwan, busy})})
	if len(ch) != 1 || ch[0].State != Healthy {
		t.Fatalf("changed %+v", ch)
	}
	now = now.Add(5 * time.Second)
	if ch := observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wlan, dead}, sub{wwan, busy})}); ch[0].Hold != 4*time.Second {
		t.Fatalf("failed 5 s after recovering: hold %v, want 4s (not yet forgiven)", ch[0].Hold)
	}
	now = tr.Failed()[0].Until
	observe(tr, now, both, nil)
	observe(tr, now.Add(time.Second), both, []mptcpdiag.Connection{conn(sub{wlan, busy})})
	now = now.Add(11 * time.Second)
	observe(tr, now, both, []mptcpdiag.Connection{conn(sub{wlan, busy})})
	if ch := observe(tr, now.Add(time.Second), both, []mptcpdiag.Connection{conn(sub{wlan, dead}, sub{wwan, busy})}); ch[0].Hold != time.Second {
		t.Fatalf("failed after 11 s of health: hold %v, want 1s", ch[0].Hold)
	}
}

func equalSeconds(got []time.Duration, want []time.Duration) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i]*time.Second {
			return false
		}
	}
	return true
}

// A new network on the link (renumbered, another access point) starts
// healthy, and a link that goes is forgotten.
func TestNewNetworkForgets(t *testing.T) {
	tr := NewTracker(Config{})
	observe(tr, t0, both, []mptcpdiag.Connection{conn(sub{wlan, dead}, sub{wwan, idle})})
	if len(tr.Failed()) != 1 {
		t.Fatalf("states %s", states(tr))
	}
	renumbered := wlan
	renumbered.Addrs = []netip.Addr{netip.MustParseAddr("10.1.3.2")}
	observe(tr, t0.Add(100*time.Millisecond), []Path{renumbered, wwan}, nil)
	if got := states(tr); got != "wlan0=healthy wwan0=healthy" {
		t.Fatalf("after renumbering: %s", got)
	}
	observe(tr, t0.Add(200*time.Millisecond), []Path{wwan}, nil)
	if got := states(tr); got != "wwan0=healthy" || tr.Active() {
		t.Fatalf("after wlan0 went: %s, active %v", got, tr.Active())
	}
}

func TestDue(t *testing.T) {
	// dead is judged already; busy could be in RTO 204 ms + grace 50 ms
	// - its last ACK's age 1 ms, if its timer fired meanwhile.
	almost := busy
	almost.Retransmits, almost.LastAckRecv = 1, 230*time.Millisecond
	for _, tt := range []struct {
		name  string
		conns []mptcpdiag.Connection
		want  time.Duration
	}{
		{"none", nil, 0},
		{"idle and judged", []mptcpdiag.Connection{conn(sub{wlan, idle}, sub{wwan, dead})}, 0},
		{"busy", []mptcpdiag.Connection{conn(sub{wlan, busy})}, 253 * time.Millisecond},
		{"the nearest", []mptcpdiag.Connection{conn(sub{wlan, busy}), conn(sub{wwan, almost})}, 24 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewTracker(Config{}).Due(tt.conns); got != tt.want {
				t.Errorf("Due = %v, want %v", got, tt.want)
			}
		})
	}
}

// The sampler's dump filter keeps every state judge reads.
func TestSubflowStates(t *testing.T) {
	s := SubflowStates()
	for _, st := range []mptcpdiag.State{mptcpdiag.StateEstablished, mptcpdiag.StateSynSent} {
		if !s.Has(st) {
			t.Errorf("SubflowStates leaves out %v", st)
		}
	}
	if s.Has(mptcpdiag.StateTimeWait) || s.Has(mptcpdiag.StateFinWait1) {
		t.Errorf("SubflowStates %#x dumps closed subflows", uint32(s))
	}
}
