package control

import (
	"sync"
	"sync/atomic"
	"time"
)

// hub fans the daemon's events out to the clients watching them. Emit
// runs on the daemon's goroutines and never waits for a client: each has
// a bounded buffer, and one that fills it is dropped.
type hub struct {
	watchers atomic.Int32 // len(subs), read without the lock

	mu     sync.Mutex
	seq    uint64
	subs   map[*subscriber]struct{}
	closed bool
}

// subscriber is one watching client. ch is closed when it leaves or is
// dropped; dropped is set before, under the hub's lock.
type subscriber struct {
	ch      chan Event
	dropped bool
}

func (h *hub) subscribe(size int) *subscriber {
	s := &subscriber{ch: make(chan Event, size)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.ch)
		return s
	}
	h.subs[s] = struct{}{}
	h.watchers.Store(int32(len(h.subs)))
	return s
}

// unsubscribe ends s's stream; it may be called again.
func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s)
}

func (h *hub) removeLocked(s *subscriber) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	close(s.ch)
	h.watchers.Store(int32(len(h.subs)))
}

// emit numbers ev and queues it for every subscriber. The numbers are
// consecutive for as long as a subscriber watches: one that would miss
// an event is dropped instead.
func (h *hub) emit(ev Event) {
	if h.watchers.Load() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
	h.seq++
	ev.Seq = h.seq
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			s.dropped = true
			h.removeLocked(s)
		}
	}
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.removeLocked(s)
	}
}
