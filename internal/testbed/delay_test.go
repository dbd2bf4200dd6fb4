package testbed

import (
	"slices"
	"testing"
	"time"
)

// TestDelay: a link's Delay shows in a TCP echo over it as twice the
// delay; a link without one stays fast; the LAN and destination stubs
// are built.
func TestDelay(t *testing.T) {
	const d = 15 * time.Millisecond
	tb := New(t, Config{Links: []LinkConfig{{Name: "eth1", Delay: d}, {Name: "eth2"}}, LAN: true, Destination: true})
	median := func(dev string) time.Duration {
		f, err := tb.Interactive(FlowConfig{TCP: true, Dev: dev, Every: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(600 * time.Millisecond)
		r := f.Stop(2 * time.Second)
		if !r.Survived || len(r.RTTs) < 10 {
			t.Fatalf("%s: %v, %d echoes", dev, r.Err, len(r.RTTs))
		}
		rtts := slices.Sorted(slices.Values(r.RTTs))
		return rtts[len(rtts)/2]
	}
	got1 := median("eth1")
	t.Logf("eth1 median echo %v", got1)
	if got := got1; got < 2*d || got > 2*d+10*time.Millisecond {
		t.Errorf("eth1: median echo %v, want about %v", got, 2*d)
	}
	if got := median("eth2"); got > 5*time.Millisecond {
		t.Errorf("eth2 (no delay): median echo %v", got)
	}
	if tb.Client == nil || tb.Destination == nil {
		t.Fatal("no client or destination namespace")
	}
}
