package testbed

import (
	"slices"
	"testing"
	"time"
)

// at is a time ms milliseconds after a fixed origin.
func at(ms int) time.Time { return time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond) }

// trace is one read of 1000 bytes at each of ms.
func trace(ms ...int) Trace {
	var t Trace
	for _, m := range ms {
		t = append(t, Sample{At: at(m), Bytes: 1000})
	}
	return t
}

func TestMaxGap(t *testing.T) {
	for _, tc := range []gapCase{
		{"steady", trace(0, 10, 20, 30, 40, 50), 0, 50, 0, 10},
		{"stall inside", trace(0, 10, 20, 300, 310), 5, 305, 20, 280},
		{"stall begun before the window counts whole", trace(0, 10, 250, 260), 100, 200, 10, 240},
		{"stall ending after the window counts whole", trace(0, 10, 400), 0, 100, 10, 390},
		{"open stall lasts until the window's end", trace(0, 10), 0, 500, 10, 490},
		{"nothing at all", nil, 100, 200, 100, 100},
		{"nothing before the first read", trace(150, 160), 100, 200, 100, 50},
		{"gaps wholly outside the window do not count", trace(0, 500, 510, 530, 900), 505, 515, 510, 20},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, "MaxGap", tc.trace.MaxGap) })
	}
}

// gapCase is a window of a trace and the gap wanted in it.
type gapCase struct {
	name              string
	trace             Trace
	from, to          int
	wantStart, wantMs int
}

func (tc gapCase) check(t *testing.T, name string, gap func(from, to time.Time) Gap) {
	g := gap(at(tc.from), at(tc.to))
	if !g.Start.Equal(at(tc.wantStart)) || g.Len != time.Duration(tc.wantMs)*time.Millisecond {
		t.Errorf("%s = %v at +%v, want %vms at +%vms", name, g.Len, g.Start.Sub(at(0)), tc.wantMs, tc.wantStart)
	}
	if !g.End().Equal(g.Start.Add(g.Len)) {
		t.Errorf("End %v, want Start + Len", g.End())
	}
}

func TestMaxGapWithin(t *testing.T) {
	for _, tc := range []gapCase{
		{"steady", trace(0, 10, 20, 30, 40, 50), 0, 50, 0, 10},
		{"stall inside", trace(0, 10, 20, 300, 310), 5, 305, 20, 280},
		{"stall begun before the window counts from its start", trace(0, 10, 250, 260), 100, 300, 100, 150},
		{"stall ending after the window counts up to its end", trace(0, 10, 400), 0, 100, 10, 90},
		{"a stall over the whole window", trace(0, 400), 100, 200, 100, 100},
		{"nothing at all", nil, 100, 200, 100, 100},
		{"reads outside the window do not count", trace(0, 500, 510, 530, 900), 505, 520, 510, 10},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, "MaxGapWithin", tc.trace.MaxGapWithin) })
	}
}

func TestRates(t *testing.T) {
	tr := trace(0, 100, 200, 250, 300, 900)
	if got := tr.Bytes(at(100), at(300)); got != 3000 {
		t.Errorf("Bytes [100, 300) = %d, want 3000", got)
	}
	if got := tr.Total(); got != 6000 {
		t.Errorf("Total = %d, want 6000", got)
	}
	// 1000 bytes in 100 ms: 80 kbit/s.
	if got := tr.Rate(at(0), at(100)); got != 80e3 {
		t.Errorf("Rate [0, 100) = %v, want 80000", got)
	}
	if got := tr.Rate(at(100), at(100)); got != 0 {
		t.Errorf("Rate of an empty interval = %v, want 0", got)
	}
	want := []float64{80e3, 120e3, 0, 0, 40e3}
	if got := tr.Rates(at(0), at(1000), 200*time.Millisecond); !slices.Equal(got, want) {
		t.Errorf("Rates per 200 ms = %v, want %v", got, want)
	}
}

func TestTimeTo(t *testing.T) {
	tr := trace(0, 10, 20, 300, 310, 320)
	for _, tc := range []struct {
		from   int
		n      int64
		want   int
		wantOK bool
	}{
		{0, 1000, 0, true},      // the read at from counts
		{5, 2000, 15, true},     // 10 and 20
		{5, 3000, 295, true},    // across the stall
		{15, 4000, 305, true},   // 20, 300, 310, 320: the fourth
		{15, 5000, 0, false},    // never
		{400, 1, 0, false},      // nothing after
		{-100, 6000, 420, true}, // from before the first read
	} {
		got, ok := tr.TimeTo(at(tc.from), tc.n)
		if ok != tc.wantOK || (ok && got != time.Duration(tc.want)*time.Millisecond) {
			t.Errorf("TimeTo(%d ms, %d): %v %v, want %d ms %v", tc.from, tc.n, got, ok, tc.want, tc.wantOK)
		}
	}
}
