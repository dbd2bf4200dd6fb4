package trace

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRates(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	link := func(ms, index int, dev string, rx, tx uint64) Record {
		return Record{Time: at(ms), Kind: KindLink, IfIndex: index, Dev: dev, RxBytes: rx, TxBytes: tx}
	}
	sub := func(ms int, local string, tx uint64) Record {
		return Record{Time: at(ms), Kind: KindSubflow, IfIndex: 2, Dev: "wlan0", Token: 1,
			Local: ap(local), Remote: ap("10.3.0.1:5000"), TxBytes: tx}
	}
	point := func(from, to int, rx, tx float64) Point { return Point{From: at(from), To: at(to), Rx: rx, Tx: tx} }
	linkKey := func(index int) SeriesKey { return SeriesKey{Kind: KindLink, IfIndex: index} }

	for _, tc := range []struct {
		name string
		recs []Record
		want []Series
	}{
		{name: "none"},
		{
			name: "one round: no rate yet",
			recs: []Record{link(0, 2, "wlan0", 100, 100)},
			want: []Series{{SeriesKey: linkKey(2), Dev: "wlan0"}},
		},
		{
			name: "steady, events between rounds ignored",
			recs: []Record{
				link(0, 2, "wlan0", 0, 1000),
				{Time: at(50), Kind: KindEvent, IfIndex: 2, Event: EventNoCarrier},
				link(100, 2, "wlan0", 125, 126000),
				link(300, 2, "wlan0", 125, 126000),
			},
			want: []Series{{SeriesKey: linkKey(2), Dev: "wlan0", Points: []Point{
				point(0, 100, 10_000, 10_000_000),
				point(100, 300, 0, 0),
			}}},
		},
		{
			name: "a counter reset counts from zero",
			recs: []Record{link(0, 2, "wlan0", 0, 5000), link(100, 2, "wlan0", 0, 1250)},
			want: []Series{{SeriesKey: linkKey(2), Dev: "wlan0", Points: []Point{point(0, 100, 0, 100_000)}}},
		},
		{
			name: "a link missing from a round leaves a gap; renamed, it keeps its series",
			recs: []Record{
				link(0, 2, "wlan0", 0, 0), link(0, 3, "wwan0", 0, 0),
				link(100, 3, "wwan0", 0, 1250),
				link(200, 2, "wlan0", 0, 9999), link(200, 3, "wwan0", 0, 2500),
				link(300, 2, "wifi", 0, 11249), link(300, 3, "wwan0", 0, 2500),
			},
			want: []Series{
				{SeriesKey: linkKey(2), Dev: "wifi", Points: []Point{point(200, 300, 0, 100_000)}},
				{SeriesKey: linkKey(3), Dev: "wwan0", Points: []Point{
					point(0, 100, 0, 100_000), point(100, 200, 0, 100_000), point(200, 300, 0, 0),
				}},
			},
		},
		{
			name: "out of order input; links first, then each connection and its subflows",
			recs: []Record{
				sub(100, "10.1.1.2:2", 2500),
				{Time: at(100), Kind: KindConn, Token: 1, Local: ap("10.1.1.2:1"), Remote: ap("10.3.0.1:5000"), TxBytes: 0},
				sub(0, "10.1.1.2:2", 0),
				sub(0, "10.1.1.2:1", 0),
				link(0, 9, "lo", 0, 0),
				{Time: at(0), Kind: KindConn, Token: 0, Local: ap("10.1.1.2:9"), Remote: ap("10.3.0.1:5000")},
			},
			want: []Series{
				{SeriesKey: linkKey(9), Dev: "lo"},
				{SeriesKey: SeriesKey{Kind: KindConn, Token: 0}},
				{SeriesKey: SeriesKey{Kind: KindConn, Token: 1}},
				{SeriesKey: SeriesKey{Kind: KindSubflow, Token: 1, Local: ap("10.1.1.2:1"), Remote: ap("10.3.0.1:5000")}, Dev: "wlan0"},
				{SeriesKey: SeriesKey{Kind: KindSubflow, Token: 1, Local: ap("10.1.1.2:2"), Remote: ap("10.3.0.1:5000")}, Dev: "wlan0",
					Points: []Point{point(0, 100, 0, 200_000)}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Rates(tc.recs), cmpAddrs); diff != "" {
				t.Errorf("Rates (-want +got):\n%s", diff)
			}
		})
	}
}
