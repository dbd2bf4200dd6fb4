package gate

import (
	"net/netip"
	"time"
)

// Refusal says why a connection was not handed to sshd; "" admits it.
type Refusal string

const (
	Admitted         Refusal = ""
	RefusedTotal     Refusal = "max-connections"
	RefusedPerSource Refusal = "max-per-source"
	RefusedRate      Refusal = "rate"
)

// admission keeps the counts behind the limits. It is not safe for
// concurrent use; the Server holds its lock around it.
type admission struct {
	max, perSource int
	rate, burst    float64 // tokens per second, bucket size
	tokens         float64
	last           time.Time
	active         int
	bySource       map[netip.Prefix]int
}

func newAdmission(maxConns, perSource int, rate float64, burst int) *admission {
	return &admission{
		max:       maxConns,
		perSource: perSource,
		rate:      rate,
		burst:     float64(burst),
		tokens:    float64(burst),
		bySource:  map[netip.Prefix]int{},
	}
}

// sourceKey groups the addresses of one client: an IPv4 address alone,
// an IPv6 address by its /64, which one host or home network usually gets
// whole (counting single IPv6 addresses would let one client past the
// limit by taking new addresses from its prefix).
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// admit decides on a new connection from src at now and, when admitted,
// counts it until done(src).
func (a *admission) admit(src netip.Addr, now time.Time) Refusal {
	// The bucket refills before the other checks, and a refused
	// connection still spends its token: a flood is paced by the rate
	// however it is refused.
	if !a.last.IsZero() {
		a.tokens = min(a.burst, a.tokens+now.Sub(a.last).Seconds()*a.rate)
	}
	a.last = now
	if a.tokens < 1 {
		return RefusedRate
	}
	a.tokens--
	if a.active >= a.max {
		return RefusedTotal
	}
	key := sourceKey(src)
	if a.bySource[key] >= a.perSource {
		return RefusedPerSource
	}
	a.active++
	a.bySource[key]++
	return Admitted
}

// done forgets an admitted connection from src whose session ended.
func (a *admission) done(src netip.Addr) {
	key := sourceKey(src)
	a.active--
	if a.bySource[key]--; a.bySource[key] <= 0 {
		delete(a.bySource, key)
	}
}
