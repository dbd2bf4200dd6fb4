package relay

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReplay(t *testing.T) {
	r := &Replay{Window: 30 * time.Second, Max: 3}
	h := NewHeader(dest("203.0.113.5:443"), t0)
	if err := r.Check(h, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(h, t0.Add(2*time.Second)); !errors.Is(err, ErrReplay) {
		t.Errorf("replayed: %v", err)
	}
	// At the window's edge it is refused by time: its nonce goes then.
	if err := r.Check(h, t0.Add(30*time.Second)); err == nil {
		t.Error("replayed at the window's edge")
	}
	// After the window the time refuses it, and the nonce is forgotten.
	if err := r.Check(h, t0.Add(31*time.Second)); err == nil || !strings.Contains(err.Error(), "behind the relay's clock") {
		t.Errorf("stale: %v", err)
	}
	if r.Len() != 0 {
		t.Errorf("%d nonces remembered after their window", r.Len())
	}
	ahead := NewHeader(dest("203.0.113.5:443"), t0.Add(time.Minute))
	if err := r.Check(ahead, t0); err == nil || !strings.Contains(err.Error(), "ahead of") {
		t.Errorf("from the future: %v", err)
	}
	// Full: refused, not forgotten early.
	for i := range 3 {
		if err := r.Check(NewHeader(dest("203.0.113.5:443"), t0), t0); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
	}
	if err := r.Check(NewHeader(dest("203.0.113.5:443"), t0), t0); err == nil {
		t.Error("accepted past Max")
	}
}

// TestReplayBounded: endless headers over time keep memory at what the
// window holds.
func TestReplayBounded(t *testing.T) {
	r := &Replay{Window: time.Second, Max: 1 << 20}
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if err := r.Check(NewHeader(dest("203.0.113.5:443"), now), now); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Len(); n > 1001 {
		t.Errorf("%d nonces remembered for a 1 s window at 1000/s", n)
	}
}
