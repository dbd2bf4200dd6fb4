package relay

import (
	"net/netip"
	"strings"
	"testing"
)

func TestDestPolicy(t *testing.T) {
	p := &DestPolicy{
		Allow: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("10.9.9.0/24"), netip.MustParsePrefix("198.51.100.0/24")},
		Own: func() ([]netip.Prefix, error) {
			return []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:1::/64")}, nil
		},
	}
	for _, tc := range []struct {
		addr string
		want string // "" allowed, else a part of the error
	}{
		{"93.184.216.34", ""},
		{"2606:2800:220:1::1", ""},
		{"10.9.1.1", ""},                         // allowed explicitly
		{"10.9.9.1", "deny-destinations"},        // deny wins over allow
		{"198.51.100.7", "deny-destinations"},    // denied explicitly
		{"10.1.1.1", "in 10.0.0.0/8"},            // private
		{"192.168.1.1", "in 192.168.0.0/16"},     // private
		{"127.0.0.1", "in 127.0.0.0/8"},          // loopback
		{"::ffff:127.0.0.1", "in 127.0.0.0/8"},   // mapped loopback
		{"::1", "in ::1/128"},                    // loopback
		{"169.254.169.254", "in 169.254.0.0/16"}, // cloud metadata
		{"fe80::1", "in fe80::/10"},              // link-local
		{"fd00::1", "in fc00::/7"},               // ULA
		{"0.0.0.0", "in 0.0.0.0/8"},              // unspecified
		{"255.255.255.255", "in 224.0.0.0/3"},    // broadcast
		{"203.0.113.9", "relay's own network"},   // a neighbour of the relay
		{"2001:db8:1::9", "relay's own network"}, // the same in IPv6
		{"100.64.0.1", "in 100.64.0.0/10"},       // CGNAT
		{"2001:db8:2::9", ""},                    // another network
	} {
		err := p.Check(netip.MustParseAddr(tc.addr))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want allowed", tc.addr, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.addr, err, tc.want)
		}
	}
}
