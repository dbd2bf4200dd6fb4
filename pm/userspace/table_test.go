package userspace

import (
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// A table that held many connections is rebuilt once most have gone: its
// peak, which bounds the map's size, comes down.
func TestTableShrinks(t *testing.T) {
	tests := []struct {
		name             string
		fill, keep       int
		minPeak, maxPeak int
	}{
		{name: "small tables stay", fill: minRebuild - 1, minPeak: minRebuild - 1, maxPeak: minRebuild - 1},
		{name: "emptied", fill: 10 * minRebuild, maxPeak: minRebuild - 1},
		{name: "mostly emptied", fill: 4 * minRebuild, keep: 100, minPeak: 100, maxPeak: minRebuild - 1},
		{name: "half full stays", fill: 4 * minRebuild, keep: 2 * minRebuild, minPeak: 4 * minRebuild, maxPeak: 4 * minRebuild},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable()
			for i := range tt.fill {
				tb.put(&conn{token: mptcp.Token(i)})
			}
			for i := tt.keep; i < tt.fill; i++ {
				tb.remove(mptcp.Token(i))
			}
			if len(tb.m) != tt.keep || tb.peak < tt.minPeak || tb.peak > tt.maxPeak {
				t.Errorf("%d entries, peak %d; want %d, peak in [%d, %d]", len(tb.m), tb.peak, tt.keep, tt.minPeak, tt.maxPeak)
			}
			for i := range tt.keep {
				if tb.get(mptcp.Token(i)) == nil {
					t.Fatalf("token %d lost in a rebuild", i)
				}
			}
		})
	}
}
