package trace

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// SeriesKey identifies what a series of counters belongs to: a link by
// its index, a connection by its token, a subflow by its token and
// addresses.
type SeriesKey struct {
	Kind    Kind
	IfIndex int // link
	Token   mptcp.Token
	Local   netip.AddrPort
	Remote  netip.AddrPort
}

// keyOf is the series of a sample record.
func keyOf(r *Record) SeriesKey {
	switch r.Kind {
	case KindLink:
		return SeriesKey{Kind: KindLink, IfIndex: r.IfIndex}
	case KindConn:
		return SeriesKey{Kind: KindConn, Token: r.Token}
	}
	return SeriesKey{Kind: r.Kind, Token: r.Token, Local: r.Local, Remote: r.Remote}
}

// Point is the rate over one interval between two rounds.
type Point struct {
	From, To time.Time
	Rx, Tx   float64 // bits per second
}

// Series is the rate of one link, connection or subflow, round by round.
type Series struct {
	SeriesKey
	// Dev is the link's name (a subflow's link) in the series' last
	// record.
	Dev    string
	Points []Point
}

// Rates computes the bit rates of every link, connection and subflow of
// recs, whose sample records of one round share their time. A point
// spans two consecutive rounds that both have the series; a point's From
// after the previous point's To marks a gap. Series come links first (by
// index), then connections and subflows (by token and addresses).
func Rates(recs []Record) []Series {
	var times []time.Time
	for i := range recs {
		if recs[i].Kind.sample() {
			times = append(times, recs[i].Time)
		}
	}
	slices.SortFunc(times, time.Time.Compare)
	times = slices.CompactFunc(times, time.Time.Equal)
	round := func(t time.Time) int {
		i, _ := slices.BinarySearchFunc(times, t, time.Time.Compare)
		return i
	}

	type last struct {
		round  int
		at     time.Time
		rx, tx uint64
	}
	seen := map[SeriesKey]last{}
	index := map[SeriesKey]int{}
	var out []Series
	for _, r := range sortedSamples(recs) {
		k := keyOf(&r)
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, Series{SeriesKey: k})
		}
		out[i].Dev = r.Dev
		n := round(r.Time)
		prev, had := seen[k]
		seen[k] = last{round: n, at: r.Time, rx: r.RxBytes, tx: r.TxBytes}
		if !had || prev.round != n-1 {
			continue
		}
		secs := r.Time.Sub(prev.at).Seconds()
		out[i].Points = append(out[i].Points, Point{
			From: prev.at, To: r.Time,
			Rx: 8 * float64(delta(prev.rx, r.RxBytes)) / secs,
			Tx: 8 * float64(delta(prev.tx, r.TxBytes)) / secs,
		})
	}
	slices.SortFunc(out, func(a, b Series) int { return compareKeys(a.SeriesKey, b.SeriesKey) })
	return out
}

// sortedSamples are the sample records of recs in time order, stably.
func sortedSamples(recs []Record) []Record {
	var s []Record
	for _, r := range recs {
		if r.Kind.sample() {
			s = append(s, r)
		}
	}
	slices.SortStableFunc(s, func(a, b Record) int { return a.Time.Compare(b.Time) })
	return s
}

// delta is how much a counter grew from was to now. A counter that went
// down was reset (its socket or link made anew) and counts from zero.
func delta(was, now uint64) uint64 {
	if now < was {
		return now
	}
	return now - was
}

// kindRank orders the kinds of series.
var kindRank = map[Kind]int{KindLink: 0, KindConn: 1, KindSubflow: 2}

// compareKeys orders links by index, then connections by token, each
// followed by its subflows by addresses.
func compareKeys(a, b SeriesKey) int {
	ra, rb := kindRank[a.Kind], kindRank[b.Kind]
	return cmp.Or(
		cmp.Compare(min(ra, 1), min(rb, 1)),
		cmp.Compare(a.IfIndex, b.IfIndex),
		cmp.Compare(a.Token, b.Token),
		cmp.Compare(ra, rb),
		a.Local.Compare(b.Local),
		a.Remote.Compare(b.Remote),
	)
}
