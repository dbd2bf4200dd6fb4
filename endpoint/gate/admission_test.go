package gate

import (
	"net/netip"
	"testing"
	"time"
)

func TestAdmission(t *testing.T) {
	a1 := netip.MustParseAddr("192.0.2.1")
	a2 := netip.MustParseAddr("192.0.2.2")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	v6a := netip.MustParseAddr("2001:db8:1:1::1")
	v6b := netip.MustParseAddr("2001:db8:1:1:ffff::2") // same /64
	v6c := netip.MustParseAddr("2001:db8:1:2::1")      // another /64
	t0 := time.Unix(1000, 0)

	type step struct {
		src  netip.Addr
		at   time.Duration // after t0
		done bool          // end a session from src instead
		want Refusal
	}
	tests := []struct {
		name                string
		max, per, burst     int
		rate                float64
		steps               []step
		wantActive, sources int
	}{{
		name: "total", max: 2, per: 2, rate: 100, burst: 100,
		steps: []step{
			{src: a1, want: Admitted},
			{src: a2, want: Admitted},
			{src: a2, want: RefusedTotal},
			{src: a1, done: true},
			{src: a2, want: Admitted},
		},
		wantActive: 2, sources: 1,
	}, {
		name: "per source, IPv4-mapped is the same client", max: 10, per: 2, rate: 100, burst: 100,
		steps: []step{
			{src: a1, want: Admitted},
			{src: mapped, want: Admitted},
			{src: a1, want: RefusedPerSource},
			{src: a2, want: Admitted},
		},
		wantActive: 3, sources: 2,
	}, {
		name: "per source, an IPv6 /64 is one client", max: 10, per: 1, rate: 100, burst: 100,
		steps: []step{
			{src: v6a, want: Admitted},
			{src: v6b, want: RefusedPerSource},
			{src: v6c, want: Admitted},
		},
		wantActive: 2, sources: 2,
	}, {
		name: "rate: a burst, then one per 1/rate", max: 10, per: 10, rate: 2, burst: 2,
		steps: []step{
			{src: a1, want: Admitted},
			{src: a1, want: Admitted},
			{src: a1, want: RefusedRate},
			{src: a1, at: 400 * time.Millisecond, want: RefusedRate},
			{src: a1, at: 500 * time.Millisecond, want: Admitted},
			{src: a1, at: 10 * time.Second, want: Admitted}, // refilled to the burst only
			{src: a1, at: 10 * time.Second, want: Admitted},
			{src: a1, at: 10 * time.Second, want: RefusedRate},
		},
		wantActive: 5, sources: 1,
	}, {
		name: "refusals over a limit still spend tokens", max: 1, per: 1, rate: 1, burst: 3,
		steps: []step{
			{src: a1, want: Admitted},
			{src: a2, want: RefusedTotal},
			{src: a2, want: RefusedTotal},
			{src: a1, done: true},
			{src: a2, want: RefusedRate},
		},
		wantActive: 0, sources: 0,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAdmission(tt.max, tt.per, tt.rate, tt.burst)
			for i, s := range tt.steps {
				if s.done {
					a.done(s.src)
					continue
				}
				if got := a.admit(s.src, t0.Add(s.at)); got != s.want {
					t.Errorf("step %d (%s at +%s): %q, want %q", i, s.src, s.at, got, s.want)
				}
			}
			if a.active != tt.wantActive || len(a.bySource) != tt.sources {
				t.Errorf("active %d, sources %d; want %d, %d", a.active, len(a.bySource), tt.wantActive, tt.sources)
			}
		})
	}
}

// TestAdmissionBounded: any sequence of admits and dones keeps the
// per-source table no larger than the sessions running.
func TestAdmissionBounded(t *testing.T) {
	a := newAdmission(5, 2, 1e9, 1<<30)
	var running []netip.Addr
	t0 := time.Unix(0, 0)
	for i := range 10000 {
		src := netip.AddrFrom4([4]byte{10, 0, byte(i % 7), byte(i % 13)})
		if i%3 == 0 && len(running) > 0 {
			a.done(running[0])
			running = running[1:]
		}
		if a.admit(src, t0.Add(time.Duration(i)*time.Millisecond)) == Admitted {
			running = append(running, src)
		}
		if a.active != len(running) || len(a.bySource) > len(running) {
			t.Fatalf("step %d: active %d, %d sources, %d running", i, a.active, len(a.bySource), len(running))
		}
	}
}
