package relay

import (
	"container/heap"
	"fmt"
	"sync"
	"time"
)

// Replay refuses headers outside a time window around the relay's clock,
// and headers whose nonce it has seen: a recorded header cannot be sent
// again to open a second connection. A nonce is remembered only while its
// header's time is inside the window, so memory is bounded by the rate of
// connections times the window; past Max nonces the relay refuses new
// connections rather than forget one early.
type Replay struct {
	Window time.Duration // how far a header's time may be from the relay's clock
	Max    int           // nonces remembered at most

	mu     sync.Mutex
	seen   map[[16]byte]struct{}
	expiry expiries
}

// DefaultReplayWindow allows for clocks kept by NTP and a slow first
// flight, not more: a replayed header is refused for this long by its
// nonce, and after it by its time.
const DefaultReplayWindow = 30 * time.Second

// DefaultReplayMax bounds the nonce memory (about 100 bytes each, so
// 6.5 MB): over 2000 new connections a second for a 30 s window.
const DefaultReplayMax = 1 << 16

// Check accepts h once, at now.
func (r *Replay) Check(h Header, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[[16]byte]struct{}{}
	}
	for len(r.expiry) > 0 && !r.expiry[0].at.After(now) {
		delete(r.seen, r.expiry[0].nonce)
		heap.Pop(&r.expiry)
	}
	skew := h.Time.Sub(now)
	if skew.Abs() >= r.Window { // at exactly Window the nonce may be forgotten already
		dir := "behind"
		if skew > 0 {
			dir = "ahead of"
		}
		return headerErr("time", "%v %s the relay's clock, outside the %v window (replayed, or a clock off: check NTP on both ends)",
			skew.Abs().Round(time.Millisecond), dir, r.Window)
	}
	if _, ok := r.seen[h.Nonce]; ok {
		return &HeaderError{Field: "nonce", Err: ErrReplay}
	}
	if len(r.seen) >= r.Max {
		return headerErr("nonce", "%d nonces within the %v window, the most remembered: refused rather than forget one (raise replay-max?)", len(r.seen), r.Window)
	}
	r.seen[h.Nonce] = struct{}{}
	heap.Push(&r.expiry, expiry{at: h.Time.Add(r.Window), nonce: h.Nonce})
	return nil
}

// Len is the number of nonces remembered.
func (r *Replay) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *Replay) String() string {
	return fmt.Sprintf("replay window %v, %d nonces at most", r.Window, r.Max)
}

type expiry struct {
	at    time.Time
	nonce [16]byte
}

// expiries is a min-heap by time: headers arrive roughly in time order
// but not exactly (clocks, slow flights).
type expiries []expiry

func (e expiries) Len() int           { return len(e) }
func (e expiries) Less(i, j int) bool { return e[i].at.Before(e[j].at) }
func (e expiries) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *expiries) Push(x any)        { *e = append(*e, x.(expiry)) }
func (e *expiries) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}
