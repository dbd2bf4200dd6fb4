package userspace

import (
	"net/netip"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// usableAddrs lists the local addresses connections may use under p: the
// addresses pm.Desired gives an endpoint, with the flags and port of
// their rule, by interface index, then address. IDs are left 0.
//
// The userspace PM has no table of 8 endpoints: every address that passes
// the policy's checks is usable, up to the 255 ids there are.
func usableAddrs(n pm.Network, p *policy.Policy) []pm.LocalAddr {
	plan := pm.Desired(n, p, mptcp.MPTCP_PM_MAX_ADDR_ID)
	out := make([]pm.LocalAddr, 0, len(plan.Endpoints))
	for _, w := range plan.Endpoints {
		l, _ := n.Link(w.Endpoint.IfIndex)
		out = append(out, pm.LocalAddr{
			Addr:    w.Endpoint.Addr,
			Port:    w.Endpoint.Port,
			Flags:   w.Endpoint.Flags,
			IfIndex: w.Endpoint.IfIndex,
			Link:    w.Link,
			Kind:    l.Kind,
		})
	}
	return out
}

// netChanges is what changed between two views, in the order plugins
// hear of it: addresses that go before their link, links that come
// before their addresses.
type netChanges struct {
	addrsRemoved []pm.LocalAddr
	linksRemoved []pm.Link
	linksAdded   []pm.Link
	linksChanged []pm.Link
	addrsChanged []pm.LocalAddr
	addrsAdded   []pm.LocalAddr
}

// diffNetwork compares links by index and addresses by address; an
// address whose flags, port or link changed is changed.
func diffNetwork(oldLinks, newLinks []pm.Link, oldAddrs, newAddrs []pm.LocalAddr) netChanges {
	var ch netChanges
	oldL := make(map[int]pm.Link, len(oldLinks))
	for _, l := range oldLinks {
		oldL[l.Index] = l
	}
	for _, l := range newLinks {
		o, ok := oldL[l.Index]
		switch {
		case !ok:
			ch.linksAdded = append(ch.linksAdded, l)
		case !o.Equal(l):
			ch.linksChanged = append(ch.linksChanged, l)
		}
		delete(oldL, l.Index)
	}
	for _, l := range oldLinks {
		if _, gone := oldL[l.Index]; gone {
			ch.linksRemoved = append(ch.linksRemoved, l)
		}
	}

	oldA := make(map[netip.Addr]pm.LocalAddr, len(oldAddrs))
	for _, a := range oldAddrs {
		oldA[a.Addr] = a
	}
	for _, a := range newAddrs {
		o, ok := oldA[a.Addr]
		switch {
		case !ok:
			ch.addrsAdded = append(ch.addrsAdded, a)
		case o != a:
			ch.addrsChanged = append(ch.addrsChanged, a)
		}
		delete(oldA, a.Addr)
	}
	for _, a := range oldAddrs {
		if _, gone := oldA[a.Addr]; gone {
			ch.addrsRemoved = append(ch.addrsRemoved, a)
		}
	}
	return ch
}

// notify tells p about ch, in netChanges' order.
func (ch *netChanges) notify(p pm.Plugin) {
	for _, a := range ch.addrsRemoved {
		p.LocalAddressRemoved(a)
	}
	for _, l := range ch.linksRemoved {
		p.LinkRemoved(l)
	}
	for _, l := range ch.linksAdded {
		p.LinkAdded(l)
	}
	for _, l := range ch.linksChanged {
		p.LinkChanged(l)
	}
	for _, a := range ch.addrsChanged {
		p.LocalAddressChanged(a)
	}
	for _, a := range ch.addrsAdded {
		p.LocalAddressAdded(a)
	}
}
