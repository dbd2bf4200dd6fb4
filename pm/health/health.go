// Package health judges whether each path (a link and its addresses)
// still delivers, from the kernel's own view of the MPTCP subflows that
// leave through it (sock_diag: tcp_info of every subflow), so that the
// daemon can take a path that died silently out of the endpoint table:
// the kernel then closes its subflows and sends what they held over the
// paths that work, at once, instead of retrying into the void with an
// exponentially growing timer.
//
// # Verdicts and hysteresis
//
// A path is Healthy until one of its subflows is stuck and none of them
// shows life, while another path is not stuck: then it is Failed. A
// subflow is stuck when it has data (or its SYN) out, its own
// retransmission timer has fired, and no ACK came for a further Grace
// (at least two smoothed round trips) after that: a lossy but living path
// answers the retransmission within a round trip, so one lost window does
// not fail it. A subflow shows life when an ACK came within its base
// retransmission timeout. With no other path to go to (a black zone),
// nothing is failed: removing the last path only loses more.
//
// A Failed path is held down for Hold, then put back on Probation: the
// daemon adds its endpoints again and the kernel joins its connections
// to it. Probation ends Healthy on proof, an ACK on the path after it
// began, and Failed again when a subflow on the path (a new join's SYN
// too) is stuck; with no subflow at all it waits. Each failure doubles
// the next hold, up to MaxHold, and Forgive of continuous health resets
// it, so a path that keeps dying is tried less and less often and never
// flaps faster than once per Hold.
//
// A path whose addresses change (a new access point, renumbering) or
// whose link goes is forgotten: a new network starts Healthy.
package health

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// Config tunes the tracker; zero fields take the defaults.
type Config struct {
	Hold    time.Duration // first hold-down of a failed path; default 1s
	MaxHold time.Duration // the hold doubles with each failure up to this; default 30s
	Forgive time.Duration // healthy this long resets the hold; default 60s
	// Grace is how long a subflow may stay without an ACK after its
	// retransmission timer fired before it counts as stuck; default 50ms,
	// and never less than two of its smoothed round trips.
	Grace time.Duration
}

// Defaults.
const (
	DefaultHold    = time.Second
	DefaultMaxHold = 30 * time.Second
	DefaultForgive = time.Minute
	DefaultGrace   = 50 * time.Millisecond
)

func (c Config) withDefaults() Config {
	c.Hold = cmpOr(c.Hold, DefaultHold)
	c.MaxHold = max(cmpOr(c.MaxHold, DefaultMaxHold), c.Hold)
	c.Forgive = cmpOr(c.Forgive, DefaultForgive)
	c.Grace = cmpOr(c.Grace, DefaultGrace)
	return c
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Path is one link whose addresses carry endpoints.
type Path struct {
	Link  int
	Name  string
	Addrs []netip.Addr // unmapped
}

// State is a path's verdict.
type State uint8

const (
	Healthy   State = iota // its endpoints stay
	Failed                 // held down: its endpoints go
	Probation              // its endpoints are back, awaiting proof
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Failed:
		return "failed"
	case Probation:
		return "probation"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Verdict is what the tracker holds of one path.
type Verdict struct {
	Link  int
	Name  string
	State State
	Why   string    // the evidence, in words
	Since time.Time // when State began
	Until time.Time // Failed: when probation begins
	Hold  time.Duration
}

// Tracker keeps the verdicts between samples. It is not safe for
// concurrent use: the daemon's event loop owns it.
type Tracker struct {
	cfg   Config
	paths map[int]*path
}

type path struct {
	Verdict
	addrs    []netip.Addr
	nextHold time.Duration
}

// NewTracker returns a tracker that knows no path yet.
func NewTracker(cfg Config) *Tracker {
	return &Tracker{cfg: cfg.withDefaults(), paths: make(map[int]*path)}
}

// evidence is what one sample says of one path.
type evidence struct {
	subflows int
	stuck    int
	synLost  int           // of stuck: joins whose SYN went unanswered
	alive    int           // an ACK within the base RTO
	proof    bool          // an ACK since probation began
	silence  time.Duration // the longest stuck subflow's time without an ACK
	fired    uint8         // its retransmission timer firings
}

func (e evidence) ok() bool { return e.alive > 0 || e.stuck == 0 }

// Track takes the paths that carry endpoints now (a path whose addresses
// changed starts over at once) and returns the failed ones. Observe
// judges these paths until the next Track.
func (t *Tracker) Track(now time.Time, paths []Path) []Verdict {
	t.sync(now, paths)
	return t.Failed()
}

// Observe takes one sample at now, the namespace's MPTCP connections, and
// judges the paths of the last Track. It returns the verdicts that
// changed, by link index.
func (t *Tracker) Observe(now time.Time, conns []mptcpdiag.Connection) []Verdict {
	moved := make(map[int]bool)
	for l, p := range t.paths {
		if p.State == Failed && !now.Before(p.Until) {
			p.set(now, Probation, fmt.Sprintf("held down for %s; endpoints back until a subflow proves the path", p.Hold))
			moved[l] = true
		}
	}

	ev := t.gather(now, conns)
	// Every decision reads the sample as it came: two paths stuck at
	// once each see the other stuck, and both stay.
	okElsewhere := func(link int) bool {
		for l, p := range t.paths {
			if l != link && p.State != Failed && ev[l].ok() {
				return true
			}
		}
		return false
	}
	var fail, prove []int
	for l, p := range t.paths {
		e := ev[l]
		switch p.State {
		case Healthy:
			if now.Sub(p.Since) >= t.cfg.Forgive {
				p.nextHold = t.cfg.Hold
			}
			if e.stuck > 0 && e.alive == 0 && okElsewhere(l) {
				fail = append(fail, l)
			}
		case Probation:
			switch {
			case e.proof:
				prove = append(prove, l)
			case e.stuck > 0 && okElsewhere(l):
				fail = append(fail, l)
			}
		}
	}
	for _, l := range fail {
		t.fail(now, t.paths[l], ev[l])
		moved[l] = true
	}
	for _, l := range prove {
		t.paths[l].set(now, Healthy, fmt.Sprintf("an ACK came on the path %s after its endpoints came back", now.Sub(t.paths[l].Since).Round(time.Millisecond)))
		moved[l] = true
	}
	var changed []Verdict
	for l := range moved {
		changed = append(changed, t.paths[l].Verdict)
	}
	slices.SortFunc(changed, func(a, b Verdict) int { return a.Link - b.Link })
	return changed
}

func (t *Tracker) fail(now time.Time, p *path, e evidence) {
	hold := p.nextHold
	p.nextHold = min(2*hold, t.cfg.MaxHold)
	var why []string
	if n := e.stuck - e.synLost; n > 0 {
		why = append(why, fmt.Sprintf("no ACK for %s on %d of %d subflows, after %d retransmission %s",
			e.silence.Round(time.Millisecond), n, e.subflows, e.fired, plural(int(e.fired), "timeout")))
	}
	if e.synLost > 0 {
		why = append(why, fmt.Sprintf("%d %s unanswered", e.synLost, plural(e.synLost, "join's SYN", "joins' SYNs")))
	}
	p.set(now, Failed, strings.Join(why, "; "))
	p.Hold, p.Until = hold, now.Add(hold)
}

// plural is word for n == 1, else its plural: word+"s" or the given one.
func plural(n int, word string, pl ...string) string {
	switch {
	case n == 1:
		return word
	case len(pl) > 0:
		return pl[0]
	}
	return word + "s"
}

func (p *path) set(now time.Time, s State, why string) {
	p.State, p.Why, p.Since, p.Until = s, why, now, time.Time{}
}

// sync forgets paths that went and restarts those whose addresses
// changed.
func (t *Tracker) sync(now time.Time, paths []Path) {
	seen := make(map[int]bool, len(paths))
	for _, np := range paths {
		seen[np.Link] = true
		addrs := slices.Clone(np.Addrs)
		slices.SortFunc(addrs, netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		if p, ok := t.paths[np.Link]; ok && slices.Equal(p.addrs, addrs) {
			p.Name = np.Name
			continue
		}
		t.paths[np.Link] = &path{
			Verdict:  Verdict{Link: np.Link, Name: np.Name, State: Healthy, Why: "new path", Since: now},
			addrs:    addrs,
			nextHold: t.cfg.Hold,
		}
	}
	for l := range t.paths {
		if !seen[l] {
			delete(t.paths, l)
		}
	}
}

// gather sorts the sample's subflows by path.
func (t *Tracker) gather(now time.Time, conns []mptcpdiag.Connection) map[int]evidence {
	byAddr := make(map[netip.Addr]*path)
	for _, p := range t.paths {
		for _, a := range p.addrs {
			byAddr[a] = p
		}
	}
	ev := make(map[int]evidence, len(t.paths))
	for i := range conns {
		for j := range conns[i].Subflows {
			s := &conns[i].Subflows[j]
			p := byAddr[s.Local.Addr().Unmap()]
			if p == nil {
				continue
			}
			e := ev[p.Link]
			j := judge(&s.TCP, t.cfg.Grace)
			switch j {
			case subflowStuck:
				e.stuck++
				if s.TCP.State == mptcpdiag.StateSynSent {
					e.synLost++
				} else if s.TCP.LastAckRecv >= e.silence {
					e.silence, e.fired = s.TCP.LastAckRecv, s.TCP.Retransmits
				}
			case subflowAlive:
				e.alive++
			}
			if s.TCP.State == mptcpdiag.StateEstablished {
				e.subflows++
				if p.State == Probation && j != subflowStuck && s.TCP.LastAckRecv < now.Sub(p.Since) {
					e.proof = true
				}
			} else if s.TCP.State == mptcpdiag.StateSynSent {
				e.subflows++
			}
			ev[p.Link] = e
		}
	}
	return ev
}

// SubflowStates are the TCP states of the subflows the tracker reads: a
// sampler dumps only those, which leaves out a busy host's TIME_WAIT and
// closing sockets.
func SubflowStates() mptcpdiag.States {
	return mptcpdiag.StatesOf(mptcpdiag.StateEstablished, mptcpdiag.StateSynSent)
}

type subflowJudgement uint8

const (
	subflowIdle subflowJudgement = iota // no evidence either way
	subflowAlive
	subflowStuck
)

// minRTO is TCP_RTO_MIN: a base timeout the kernel reports below it is a
// route's rto_min, which the grace below still covers.
const minRTO = 200 * time.Millisecond

// judge reads one subflow's tcp_info.
func judge(ti *mptcpdiag.TCPInfo, grace time.Duration) subflowJudgement {
	base := baseRTO(ti)
	switch ti.State {
	case mptcpdiag.StateSynSent:
		// A SYN retransmitted (after the initial 1 s timeout) is a path
		// that did not answer a handshake.
		if ti.Retransmits > 0 {
			return subflowStuck
		}
	case mptcpdiag.StateEstablished:
		if ti.LastAckRecv < base {
			return subflowAlive
		}
		if ti.Unacked > 0 && ti.Retransmits > 0 && ti.LastAckRecv >= stuckAfter(ti, grace) {
			return subflowStuck
		}
	}
	return subflowIdle
}

// Due returns how long until the first subflow of conns that is on its
// way to being stuck (data out, no ACK since) can be judged so, or 0 when
// none is: a sampler that looks again then, rather than at its next
// period, decides as early as the evidence allows at no cost the rest of
// the time.
//
// Only the tracker's configuration is read: Due may run beside Observe.
func (t *Tracker) Due(conns []mptcpdiag.Connection) time.Duration {
	grace := t.cfg.Grace
	var due time.Duration
	for i := range conns {
		for j := range conns[i].Subflows {
			ti := &conns[i].Subflows[j].TCP
			if ti.State != mptcpdiag.StateEstablished || ti.Unacked == 0 {
				continue
			}
			if d := stuckAfter(ti, grace) - ti.LastAckRecv; d > 0 && (due == 0 || d < due) {
				due = d
			}
		}
	}
	return due
}

// stuckAfter is how long after its last ACK an established subflow with
// data out counts as stuck, once its retransmission timer has fired.
func stuckAfter(ti *mptcpdiag.TCPInfo, grace time.Duration) time.Duration {
	return baseRTO(ti) + max(grace, 2*ti.RTT)
}

// baseRTO is the subflow's retransmission timeout before backoff.
func baseRTO(ti *mptcpdiag.TCPInfo) time.Duration {
	if base := ti.RTO >> min(ti.Backoff, 30); base > 0 {
		return base
	}
	return minRTO
}

// Verdicts returns every known path's verdict, by link index.
func (t *Tracker) Verdicts() []Verdict {
	out := make([]Verdict, 0, len(t.paths))
	for _, p := range t.paths {
		out = append(out, p.Verdict)
	}
	slices.SortFunc(out, func(a, b Verdict) int { return a.Link - b.Link })
	return out
}

// Failed returns the failed paths' verdicts, by link index: the links
// whose endpoints should go.
func (t *Tracker) Failed() []Verdict {
	var out []Verdict
	for _, v := range t.Verdicts() {
		if v.State == Failed {
			out = append(out, v)
		}
	}
	return out
}

// AnyFailed reports whether some path is failed; when none is, Track
// returns none.
func (t *Tracker) AnyFailed() bool {
	for _, p := range t.paths {
		if p.State == Failed {
			return true
		}
	}
	return false
}

// Active reports whether sampling can change anything: some path is
// failed or on probation, or two or more paths exist to choose between.
func (t *Tracker) Active() bool {
	if len(t.paths) >= 2 {
		return true
	}
	for _, p := range t.paths {
		if p.State != Healthy {
			return true
		}
	}
	return false
}
