package relay

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DestPolicy decides which destinations a relay may dial. An explicit Deny
// wins, then an explicit Allow; what neither names is refused when it is
// one of the ranges no relay should reach for a stranger — loopback,
// link-local, multicast, private (RFC 1918, CGNAT, ULA), unspecified, and
// the relay's own addresses and the networks they are on — and allowed
// otherwise. Without this a relay is a door into its own host and LAN for
// anyone who has a key, or has stolen one.
type DestPolicy struct {
	Allow []netip.Prefix
	Deny  []netip.Prefix
	// Own lists the relay's own networks; nil reads the host's
	// interfaces (cached for a few seconds).
	Own func() ([]netip.Prefix, error)

	mu      sync.Mutex
	own     []netip.Prefix
	ownRead time.Time
}

// unsafeRanges are refused unless allowed explicitly.
var unsafeRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/3"), // multicast, reserved, broadcast
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// ownCacheFor is how long the relay's own networks are reused: a
// renumbered relay is protected again within this.
const ownCacheFor = 5 * time.Second

// Check says whether a may be dialed, and if not, why.
func (p *DestPolicy) Check(a netip.Addr) error {
	a = a.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	if i := slices.IndexFunc(p.Deny, func(q netip.Prefix) bool { return q.Contains(a) }); i >= 0 {
		return fmt.Errorf("destination %s: denied by deny-destinations %s", a, p.Deny[i])
	}
	if slices.ContainsFunc(p.Allow, func(q netip.Prefix) bool { return q.Contains(a) }) {
		return nil
	}
	if i := slices.IndexFunc(unsafeRanges, func(q netip.Prefix) bool { return q.Contains(a) }); i >= 0 {
		return fmt.Errorf("destination %s: in %s, refused unless allow-destinations names it", a, unsafeRanges[i])
	}
	own, err := p.ownNetworks()
	if err != nil {
		return fmt.Errorf("destination %s: cannot read the relay's own networks to check it: %w", a, err)
	}
	if i := slices.IndexFunc(own, func(q netip.Prefix) bool { return q.Contains(a) }); i >= 0 {
		return fmt.Errorf("destination %s: on the relay's own network %s, refused unless allow-destinations names it", a, own[i])
	}
	return nil
}

func (p *DestPolicy) ownNetworks() ([]netip.Prefix, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.own != nil && time.Since(p.ownRead) < ownCacheFor {
		return p.own, nil
	}
	read := p.Own
	if read == nil {
		read = interfaceNetworks
	}
	own, err := read()
	if err != nil {
		return nil, err
	}
	p.own, p.ownRead = own, time.Now()
	return own, nil
}

// interfaceNetworks are the prefixes of the host's addresses.
func interfaceNetworks() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var own []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		own = append(own, netip.PrefixFrom(ip.Unmap(), ones).Masked())
	}
	return own, nil
}
