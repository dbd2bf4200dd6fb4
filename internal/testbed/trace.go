package testbed

import (
	"sort"
	"time"
)

// Sample is one read on the receiving side of a flow.
type Sample struct {
	At    time.Time
	Bytes int
}

// Trace is a flow's receive log, in time order.
type Trace []Sample

// Gap is a time during which nothing arrived.
type Gap struct {
	Start time.Time // the last read before it (or the window's start)
	Len   time.Duration
}

// End is when the gap ended.
func (g Gap) End() time.Time { return g.Start.Add(g.Len) }

// MaxGap is the longest gap between reads among those that overlap
// [from, to], each measured whole: one that began before from counts
// from the read before it, one that ended after to up to the read after
// it. A gap still open (no read after it) lasts until to; so does the
// gap before the first read. A stall in the window is its MaxGap.
func (t Trace) MaxGap(from, to time.Time) Gap {
	i := t.index(from) // first read at or after from
	prev := from
	if i > 0 {
		prev = t[i-1].At
	}
	var best Gap
	for ; i < len(t); i++ {
		if g := (Gap{prev, t[i].At.Sub(prev)}); g.Len > best.Len {
			best = g
		}
		prev = t[i].At
		if prev.After(to) {
			return best
		}
	}
	if g := (Gap{prev, to.Sub(prev)}); g.Len > best.Len {
		best = g
	}
	return best
}

// MaxGapWithin is the longest time without a read inside [from, to]: a
// gap that began before from counts from from, one that ends after to
// (or never) up to to. Back-to-back windows thus share a long gap out,
// each its own part: a walk's steps.
func (t Trace) MaxGapWithin(from, to time.Time) Gap {
	best := Gap{Start: from}
	prev := from
	for _, s := range t[t.index(from):] {
		if s.At.After(to) {
			break
		}
		if g := (Gap{prev, s.At.Sub(prev)}); g.Len > best.Len {
			best = g
		}
		prev = s.At
	}
	if g := (Gap{prev, to.Sub(prev)}); g.Len > best.Len {
		best = g
	}
	return best
}

// Bytes is the total read in [from, to).
func (t Trace) Bytes(from, to time.Time) int64 {
	var n int64
	for _, s := range t[t.index(from):t.index(to)] {
		n += int64(s.Bytes)
	}
	return n
}

// Rate is the throughput over [from, to) in bits per second.
func (t Trace) Rate(from, to time.Time) float64 {
	d := to.Sub(from).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(t.Bytes(from, to)) * 8 / d
}

// Rates is the throughput in bits per second of each interval from
// from on, up to to: an I/O graph.
func (t Trace) Rates(from, to time.Time, interval time.Duration) []float64 {
	var out []float64
	for s := from; s.Before(to); s = s.Add(interval) {
		out = append(out, t.Rate(s, s.Add(interval)))
	}
	return out
}

// TimeTo is how long after from the flow had read n more bytes, and
// whether it did at all.
func (t Trace) TimeTo(from time.Time, n int64) (time.Duration, bool) {
	var got int64
	for _, s := range t[t.index(from):] {
		if got += int64(s.Bytes); got >= n {
			return s.At.Sub(from), true
		}
	}
	return 0, false
}

// Total is every byte read.
func (t Trace) Total() int64 {
	var n int64
	for _, s := range t {
		n += int64(s.Bytes)
	}
	return n
}

// index is the position of the first read at or after at.
func (t Trace) index(at time.Time) int {
	return sort.Search(len(t), func(i int) bool { return !t[i].At.Before(at) })
}
