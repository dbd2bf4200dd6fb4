package pm

import (
	"iter"
	"net/netip"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// localOnly is a Connection of which only Local is known.
type localOnly struct{ local netip.AddrPort }

func (c localOnly) Token() mptcp.Token             { return 1 }
func (c localOnly) Local() netip.AddrPort          { return c.local }
func (c localOnly) Remote() netip.AddrPort         { return netip.AddrPort{} }
func (c localOnly) IfIndex() int                   { return 0 }
func (c localOnly) ServerSide() bool               { return false }
func (c localOnly) Established() bool              { return true }
func (c localOnly) PeerAddrs() iter.Seq[PeerAddr]  { return func(func(PeerAddr) bool) {} }
func (c localOnly) Subflows() iter.Seq[Subflow]    { return func(func(Subflow) bool) {} }
func (c localOnly) Announced() iter.Seq[LocalAddr] { return func(func(LocalAddr) bool) {} }

func TestFamiliesMatch(t *testing.T) {
	tests := []struct {
		conn, local, remote string
		want                bool
	}{
		{"10.0.0.1:1", "10.0.0.2", "192.0.2.1", true},
		{"10.0.0.1:1", "2001:db8::2", "2001:db8::1", false}, // an IPv4 socket takes IPv4 only
		{"10.0.0.1:1", "10.0.0.2", "2001:db8::1", false},
		{"[2001:db8::1]:1", "2001:db8::2", "2001:db8::9", true},
		{"[2001:db8::1]:1", "10.0.0.2", "192.0.2.1", true}, // an IPv6 socket takes IPv4 too
		{"[2001:db8::1]:1", "10.0.0.2", "::ffff:192.0.2.1", true},
		{"[::ffff:10.0.0.1]:1", "10.0.0.2", "192.0.2.1", true},
		{"[2001:db8::1]:1", "10.0.0.2", "2001:db8::9", false},
	}
	for _, tt := range tests {
		c := localOnly{netip.MustParseAddrPort(tt.conn)}
		if got := FamiliesMatch(c, netip.MustParseAddr(tt.local), netip.MustParseAddr(tt.remote)); got != tt.want {
			t.Errorf("FamiliesMatch(connection %s, %s, %s) = %v, want %v", tt.conn, tt.local, tt.remote, got, tt.want)
		}
	}
}
