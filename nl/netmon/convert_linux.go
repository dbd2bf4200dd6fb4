package netmon

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkFromNetlink converts a link of a dump or notification.
func linkFromNetlink(l netlink.Link) Link {
	a := l.Attrs()
	var hw net.HardwareAddr
	if len(a.HardwareAddr) > 0 {
		hw = bytes.Clone(a.HardwareAddr)
	}
	return Link{
		Index:        a.Index,
		Name:         a.Name,
		Kind:         linkKind(l),
		OperState:    OperState(a.OperState),
		Up:           a.RawFlags&unix.IFF_UP != 0,
		Carrier:      a.RawFlags&unix.IFF_LOWER_UP != 0,
		Loopback:     a.RawFlags&unix.IFF_LOOPBACK != 0,
		HardwareAddr: hw,
		MTU:          a.MTU,
		MasterIndex:  a.MasterIndex,
	}
}

// linkKind recovers IFLA_INFO_KIND from the Go type vishvananda chose:
// Type() is the kind except for links without IFLA_LINKINFO (physical
// ones and lo, "device") and tun/tap ("tuntap").
func linkKind(l netlink.Link) string {
	switch l.(type) {
	case *netlink.Device:
		return ""
	case *netlink.Tuntap:
		return "tun"
	}
	return l.Type()
}

// linkEventFromUpdate converts a link notification; ok is false for
// messages that are not about a link of the namespace.
func linkEventFromUpdate(u netlink.LinkUpdate) (ev LinkEvent, ok bool) {
	// Bridge port changes arrive as AF_BRIDGE RTM_NEWLINK/RTM_DELLINK on
	// the same group; an AF_BRIDGE RTM_DELLINK means "left the bridge",
	// not "deleted".
	if u.Link == nil || u.IfInfomsg.Family == unix.AF_BRIDGE {
		return LinkEvent{}, false
	}
	switch u.Header.Type {
	case unix.RTM_NEWLINK:
		ev.Op = OpNew
	case unix.RTM_DELLINK:
		ev.Op = OpDel
	default:
		return LinkEvent{}, false
	}
	ev.Link = linkFromNetlink(u.Link)
	return ev, true
}

// addrFromNetlink converts an address of a dump.
func addrFromNetlink(a netlink.Addr) (Addr, error) {
	return newAddr(a.IPNet, a.LinkIndex, a.Flags, a.Scope, a.PreferedLft, a.ValidLft)
}

// addrEventFromUpdate converts an address notification.
func addrEventFromUpdate(u netlink.AddrUpdate) (AddrEvent, error) {
	a, err := newAddr(&u.LinkAddress, u.LinkIndex, u.Flags, u.Scope, u.PreferedLft, u.ValidLft)
	if err != nil {
		return AddrEvent{}, err
	}
	op := OpDel
	if u.NewAddr {
		op = OpNew
	}
	return AddrEvent{Op: op, Addr: a}, nil
}

func newAddr(ipnet *net.IPNet, linkIndex, flags, scope, preferred, valid int) (Addr, error) {
	if ipnet == nil {
		return Addr{}, fmt.Errorf("address on link %d: no IFA_LOCAL or IFA_ADDRESS", linkIndex)
	}
	p, err := prefixFromIPNet(*ipnet)
	if err != nil {
		return Addr{}, fmt.Errorf("address on link %d: %w", linkIndex, err)
	}
	return Addr{
		LinkIndex:         linkIndex,
		Prefix:            p,
		Scope:             Scope(scope),
		Flags:             AddrFlags(uint32(flags)),
		PreferredLifetime: lifetimeFromSeconds(preferred),
		ValidLifetime:     lifetimeFromSeconds(valid),
	}, nil
}

// lifetimeFromSeconds converts ifa_cacheinfo seconds; all ones means
// forever (INFINITY_LIFE_TIME).
func lifetimeFromSeconds(s int) time.Duration {
	if uint32(s) == math.MaxUint32 {
		return Forever
	}
	return time.Duration(uint32(s)) * time.Second
}

// prefixFromIPNet converts an address or destination; the mask's size
// gives the family, so a 16-byte IPv4 (Go's usual form) is unmapped but an
// IPv6 ::ffff:a.b.c.d/128 stays IPv6.
func prefixFromIPNet(n net.IPNet) (netip.Prefix, error) {
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, fmt.Errorf("invalid mask %v for %v", n.Mask, n.IP)
	}
	ip, err := addrFromBytes(n.IP, bits, "IP")
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(ip, ones), nil
}

// addrFromBytes converts an IP attribute of a family of bits (32 or 128);
// empty is the zero Addr.
func addrFromBytes(b net.IP, bits int, what string) (netip.Addr, error) {
	if len(b) == 0 {
		return netip.Addr{}, nil
	}
	a, ok := netip.AddrFromSlice(b)
	if bits == 32 {
		a = a.Unmap()
	}
	if !ok || a.BitLen() != bits {
		return netip.Addr{}, fmt.Errorf("invalid %s %v (%d bytes) for a %d-bit family", what, b, len(b), bits)
	}
	return a, nil
}

// routesFromNetlink converts a route of a dump or notification into one
// Route per nexthop; it returns none for routes the monitor does not
// report: cloned (cache) entries, the local table, and types other than
// unicast.
func routesFromNetlink(r netlink.Route) ([]Route, error) {
	if r.Flags&unix.RTM_F_CLONED != 0 || r.Table == unix.RT_TABLE_LOCAL || r.Type != unix.RTN_UNICAST {
		return nil, nil
	}
	var unspecified netip.Addr
	switch r.Family {
	case unix.AF_INET:
		unspecified = netip.IPv4Unspecified()
	case unix.AF_INET6:
		unspecified = netip.IPv6Unspecified()
	default:
		return nil, nil
	}
	base := Route{
		Dst:      netip.PrefixFrom(unspecified, 0), // no RTA_DST: default route
		Table:    r.Table,
		Priority: r.Priority,
		TOS:      uint8(r.Tos),
		Protocol: RouteProtocol(r.Protocol),
		Scope:    Scope(r.Scope),
	}
	var err error
	if r.Dst != nil {
		if base.Dst, err = prefixFromIPNet(*r.Dst); err != nil {
			return nil, fmt.Errorf("route destination: %w", err)
		}
	}
	bits := unspecified.BitLen()
	if base.Dst.Addr().BitLen() != bits {
		return nil, fmt.Errorf("route destination %s in a family %d route", base.Dst, r.Family)
	}
	if base.Src, err = addrFromBytes(r.Src, bits, "route source"); err != nil {
		return nil, err
	}
	if len(r.MultiPath) == 0 {
		base.LinkIndex = r.LinkIndex
		if base.Gateway, err = addrFromBytes(r.Gw, bits, "route gateway"); err != nil {
			return nil, err
		}
		return []Route{base}, nil
	}
	routes := make([]Route, 0, len(r.MultiPath))
	for _, nh := range r.MultiPath {
		rt := base
		rt.LinkIndex = nh.LinkIndex
		if rt.Gateway, err = addrFromBytes(nh.Gw, bits, "nexthop gateway"); err != nil {
			return nil, err
		}
		routes = append(routes, rt)
	}
	return routes, nil
}

// routeEventsFromUpdate converts a route notification; replace tells that
// it replaced an existing route (NLM_F_REPLACE), which the notification
// does not name.
func routeEventsFromUpdate(u netlink.RouteUpdate) (evs []RouteEvent, replace bool, err error) {
	var op Op
	switch u.Type {
	case unix.RTM_NEWROUTE:
		op = OpNew
	case unix.RTM_DELROUTE:
		op = OpDel
	default:
		return nil, false, nil
	}
	routes, err := routesFromNetlink(u.Route)
	if err != nil {
		return nil, false, err
	}
	for _, r := range routes {
		evs = append(evs, RouteEvent{Op: op, Route: r})
	}
	return evs, op == OpNew && u.NlFlags&unix.NLM_F_REPLACE != 0, nil
}
