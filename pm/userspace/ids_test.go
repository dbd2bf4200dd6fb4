package userspace

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

func TestIDs(t *testing.T) {
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	type op struct {
		release bool
		addr    int
		want    mptcp.ID // 0: acquire fails
	}
	// fill acquires addresses from..to-1, which get ids from..to-1.
	fill := func(from, to int) []op {
		var ops []op
		for i := from; i < to; i++ {
			ops = append(ops, op{addr: i, want: mptcp.ID(i)})
		}
		return ops
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{
			name: "stable and remembered",
			ops: []op{
				{addr: 1, want: 1}, {addr: 2, want: 2}, {addr: 1, want: 1},
				{release: true, addr: 2},
				{addr: 3, want: 3}, // a never-used id first
				{addr: 2, want: 2}, // 2 kept its id
			},
		},
		{
			name: "a freed id goes last",
			ops: append(fill(1, 256),
				op{release: true, addr: 100},
				op{release: true, addr: 50},
				op{addr: 1000, want: 50}, // round-robin from the start: 50 comes first
				op{addr: 100, want: 100}, // still remembered
				op{addr: 1001, want: 0},  // all 255 in use
				op{release: true, addr: 7},
				op{addr: 1001, want: 7}, // taken from 7's address
				op{release: true, addr: 1001},
				op{addr: 7, want: 7}, // 1001 gave it back; 7 gets it anew
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newIDs()
			for i, o := range tt.ops {
				if o.release {
					x.release(addr(o.addr))
					continue
				}
				id, ok := x.acquire(addr(o.addr))
				if got := fmt.Sprint(id, ok); got != fmt.Sprint(o.want, o.want != 0) {
					t.Fatalf("op %d: acquire(%v) = %s, want %d", i, addr(o.addr), got, o.want)
				}
			}
		})
	}
}
