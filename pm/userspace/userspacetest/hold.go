package userspacetest

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
)

// The fake kernel completes a join the moment SUBFLOW_CREATE asks for it
// (SUB_ESTABLISHED is queued before the command returns). A real join
// takes a round trip or more, and may fail; with Options.HoldJoins the
// harness stands between the kernel and the engine and keeps every
// SUB_ESTABLISHED back until the test says how the joins end.

// errGateClosed is what Receive returns once the engine's event source
// is closed.
var errGateClosed = errors.New("userspacetest: event source closed")

// gate passes events from the kernel to the engine, holding back
// SUB_ESTABLISHED ones. A goroutine reads the kernel's events so that
// Receive can also wake up when the test releases held ones.
type gate struct {
	events  userspace.Events
	batches chan batch
	wake    chan struct{} // held events were released
	done    chan struct{}
	close   sync.Once

	mu       sync.Mutex
	held     []mptcp.Event
	released []mptcp.Event
	// withheld counts the events the engine has not seen and may never
	// see: held now, or dropped by FailJoins. Settle discounts them.
	withheld atomic.Uint64
}

type batch struct {
	evs []mptcp.Event
	err error
}

func newGate(events userspace.Events) *gate {
	g := &gate{
		events:  events,
		batches: make(chan batch),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go g.pump()
	return g
}

func (g *gate) pump() {
	for {
		evs, err := g.events.Receive()
		select {
		case g.batches <- batch{evs, err}:
		case <-g.done:
			return
		}
	}
}

// Receive returns released events first, then the kernel's next batch
// without its SUB_ESTABLISHED events.
func (g *gate) Receive() ([]mptcp.Event, error) {
	for {
		g.mu.Lock()
		evs := g.released
		g.released = nil
		g.mu.Unlock()
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case b := <-g.batches:
			if evs := g.hold(b.evs); len(evs) > 0 || b.err != nil {
				return evs, b.err
			}
		case <-g.wake:
		case <-g.done:
			return nil, errGateClosed
		}
	}
}

// hold keeps the SUB_ESTABLISHED events of evs and returns the others.
func (g *gate) hold(evs []mptcp.Event) []mptcp.Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	pass := evs[:0:0]
	for _, ev := range evs {
		if ev.Type == mptcp.EventSubEstablished {
			g.held = append(g.held, ev)
			g.withheld.Add(1)
			continue
		}
		pass = append(pass, ev)
	}
	return pass
}

// Close stops the gate and closes the kernel's event source; it may be
// called more than once.
func (g *gate) Close() error {
	var err error
	g.close.Do(func() {
		close(g.done)
		err = g.events.Close()
	})
	return err
}

// release hands the held events to the engine.
func (g *gate) release() {
	g.mu.Lock()
	n := len(g.held)
	g.released = append(g.released, g.held...)
	g.held = nil
	g.withheld.Add(-uint64(n))
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// drop forgets the held events, which stay counted as withheld, and
// returns them.
func (g *gate) drop() []mptcp.Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	evs := g.held
	g.held = nil
	return evs
}

// Held returns the number of joins held back now.
func (h *Harness) Held() int {
	h.tb.Helper()
	g := h.holding()
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// Release completes the joins held back so far: the engine sees their
// SUB_ESTABLISHED. Later joins are held again.
func (h *Harness) Release() {
	h.tb.Helper()
	h.holding().release()
}

// FailJoins makes the joins held back so far fail: the kernel closes
// their subflows (SUB_CLOSED) before they were ever established.
func (h *Harness) FailJoins() {
	h.tb.Helper()
	for _, ev := range h.holding().drop() {
		ev.Type = mptcp.EventSubClosed
		h.Inject(ev)
	}
}

func (h *Harness) holding() *gate {
	h.tb.Helper()
	if h.gate == nil {
		h.tb.Fatal("userspacetest: joins are held only with Options.HoldJoins")
	}
	return h.gate
}
