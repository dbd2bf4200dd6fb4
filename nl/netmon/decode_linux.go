package netmon

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file turns raw rtnetlink messages (linux/rtnetlink.h,
// linux/if_link.h, linux/if_addr.h) into Link, Addr and Route. The same
// decoders serve notifications and dumps. A malformed message gives an
// error that names the message and the field; it never panics.

// msgTypeNames spells the message types the decoders handle.
var msgTypeNames = map[uint16]string{
	unix.RTM_NEWLINK: "RTM_NEWLINK", unix.RTM_DELLINK: "RTM_DELLINK",
	unix.RTM_NEWADDR: "RTM_NEWADDR", unix.RTM_DELADDR: "RTM_DELADDR",
	unix.RTM_NEWROUTE: "RTM_NEWROUTE", unix.RTM_DELROUTE: "RTM_DELROUTE",
}

// decodeMessage decodes one message of a notification or dump into
// LinkEvent, AddrEvent or RouteEvent values (none for messages the monitor
// does not report; several for a multipath route). replace tells that a
// RTM_NEWROUTE replaced a route (NLM_F_REPLACE), which it does not name.
func decodeMessage(typ, flags uint16, b []byte) (evs []Event, replace bool, err error) {
	op := OpNew
	switch typ {
	case unix.RTM_DELLINK, unix.RTM_DELADDR, unix.RTM_DELROUTE:
		op = OpDel
	}
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		l, ok, err := decodeLink(b)
		if err != nil || !ok {
			return nil, false, msgError(typ, err)
		}
		return []Event{LinkEvent{Op: op, Link: l}}, false, nil
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		a, ok, err := decodeAddr(b)
		if err != nil || !ok {
			return nil, false, msgError(typ, err)
		}
		return []Event{AddrEvent{Op: op, Addr: a}}, false, nil
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		routes, err := decodeRoute(b)
		if err != nil {
			return nil, false, msgError(typ, err)
		}
		evs = make([]Event, 0, len(routes))
		for _, r := range routes {
			evs = append(evs, RouteEvent{Op: op, Route: r})
		}
		return evs, op == OpNew && flags&unix.NLM_F_REPLACE != 0, nil
	}
	return nil, false, nil
}

func msgError(typ uint16, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", msgTypeNames[typ], err)
}

// decodeLink decodes an ifinfomsg and its attributes; ok is false for
// AF_BRIDGE messages, which are about bridge ports (an AF_BRIDGE
// RTM_DELLINK means "left the bridge", not "deleted").
func decodeLink(b []byte) (l Link, ok bool, err error) {
	if len(b) < unix.SizeofIfInfomsg {
		return Link{}, false, fmt.Errorf("ifinfomsg of %d bytes, want %d", len(b), unix.SizeofIfInfomsg)
	}
	if b[0] == unix.AF_BRIDGE {
		return Link{}, false, nil
	}
	index := int32(binary.NativeEndian.Uint32(b[4:8]))
	if index <= 0 {
		return Link{}, false, fmt.Errorf("ifinfomsg with index %d", index)
	}
	flags := binary.NativeEndian.Uint32(b[8:12])
	l = Link{
		Index:    int(index),
		Up:       flags&unix.IFF_UP != 0,
		Carrier:  flags&unix.IFF_LOWER_UP != 0,
		Loopback: flags&unix.IFF_LOOPBACK != 0,
	}
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofIfInfomsg:])
	if err != nil {
		return Link{}, false, fmt.Errorf("link %d: %w", index, err)
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_IFNAME:
			l.Name = ad.String()
		case unix.IFLA_MTU:
			l.MTU = int(attrUint32(ad, "IFLA_MTU"))
		case unix.IFLA_OPERSTATE:
			l.OperState = OperState(attrUint8(ad, "IFLA_OPERSTATE"))
		case unix.IFLA_ADDRESS:
			l.HardwareAddr = hardwareAddr(ad)
		case unix.IFLA_MASTER:
			l.MasterIndex = int(attrUint32(ad, "IFLA_MASTER"))
		case unix.IFLA_LINKINFO:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.IFLA_INFO_KIND {
						l.Kind = nad.String() // "tun" for tun and tap alike
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return Link{}, false, fmt.Errorf("link %d: %w", index, err)
	}
	return l, true, nil
}

// hardwareAddr returns a copy of IFLA_ADDRESS, nil when all zeros (lo).
func hardwareAddr(ad *netlink.AttributeDecoder) net.HardwareAddr {
	var hw net.HardwareAddr
	ad.Do(func(b []byte) error {
		for _, c := range b {
			if c != 0 {
				hw = net.HardwareAddr(append([]byte(nil), b...))
				break
			}
		}
		return nil
	})
	return hw
}

// decodeAddr decodes an ifaddrmsg and its attributes; ok is false for
// families other than IPv4 and IPv6.
func decodeAddr(b []byte) (a Addr, ok bool, err error) {
	if len(b) < unix.SizeofIfAddrmsg {
		return Addr{}, false, fmt.Errorf("ifaddrmsg of %d bytes, want %d", len(b), unix.SizeofIfAddrmsg)
	}
	family, prefixLen := b[0], int(b[1])
	bits := familyBits(family)
	if bits == 0 {
		return Addr{}, false, nil
	}
	a = Addr{
		LinkIndex: int(binary.NativeEndian.Uint32(b[4:8])),
		Scope:     Scope(b[3]),
		Flags:     AddrFlags(b[2]), // IFA_FLAGS, when present, has all 32 bits
	}
	if prefixLen > bits {
		return Addr{}, false, fmt.Errorf("address on link %d: prefix length %d > %d", a.LinkIndex, prefixLen, bits)
	}
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofIfAddrmsg:])
	if err != nil {
		return Addr{}, false, fmt.Errorf("address on link %d: %w", a.LinkIndex, err)
	}
	var local, address netip.Addr
	for ad.Next() {
		switch ad.Type() {
		case unix.IFA_LOCAL:
			local = attrIP(ad, bits, "IFA_LOCAL")
		case unix.IFA_ADDRESS:
			address = attrIP(ad, bits, "IFA_ADDRESS")
		case unix.IFA_FLAGS:
			a.Flags = AddrFlags(attrUint32(ad, "IFA_FLAGS"))
		case unix.IFA_CACHEINFO:
			ad.Do(func(b []byte) error {
				if len(b) != unix.SizeofIfaCacheinfo {
					return fmt.Errorf("IFA_CACHEINFO of %d bytes, want %d", len(b), unix.SizeofIfaCacheinfo)
				}
				a.PreferredLifetime = lifetimeFromSeconds(binary.NativeEndian.Uint32(b[0:4]))
				a.ValidLifetime = lifetimeFromSeconds(binary.NativeEndian.Uint32(b[4:8]))
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return Addr{}, false, fmt.Errorf("address on link %d: %w", a.LinkIndex, err)
	}
	// IPv4 sends the address as IFA_LOCAL and the prefix (or the peer of
	// a point-to-point address) as IFA_ADDRESS; IPv6 sends IFA_LOCAL only
	// with a peer. With a peer the prefix length is the peer's, so the
	// local address is reported as a host address.
	switch {
	case local.IsValid() && family == unix.AF_INET && local == address:
		a.Prefix = netip.PrefixFrom(local, prefixLen)
	case local.IsValid():
		a.Prefix = netip.PrefixFrom(local, bits)
	case address.IsValid():
		a.Prefix = netip.PrefixFrom(address, prefixLen)
	default:
		return Addr{}, false, fmt.Errorf("address on link %d: no IFA_LOCAL or IFA_ADDRESS", a.LinkIndex)
	}
	return a, true, nil
}

// lifetimeFromSeconds converts ifa_cacheinfo seconds; all ones means
// forever (INFINITY_LIFE_TIME).
func lifetimeFromSeconds(s uint32) time.Duration {
	if s == math.MaxUint32 {
		return Forever
	}
	return time.Duration(s) * time.Second
}

// decodeRoute decodes an rtmsg and its attributes into one Route per
// nexthop. It returns none for routes the monitor does not report: cloned
// (cache) entries, the local table, types other than unicast, and
// families other than IPv4 and IPv6.
func decodeRoute(b []byte) ([]Route, error) {
	if len(b) < unix.SizeofRtMsg {
		return nil, fmt.Errorf("rtmsg of %d bytes, want %d", len(b), unix.SizeofRtMsg)
	}
	family, dstLen := b[0], int(b[1])
	typ, flags := b[7], binary.NativeEndian.Uint32(b[8:12])
	bits := familyBits(family)
	if flags&unix.RTM_F_CLONED != 0 || typ != unix.RTN_UNICAST || bits == 0 {
		return nil, nil
	}
	if dstLen > bits {
		return nil, fmt.Errorf("route: destination length %d > %d", dstLen, bits)
	}
	unspecified := netip.IPv4Unspecified()
	if bits == 128 {
		unspecified = netip.IPv6Unspecified()
	}
	base := Route{
		Dst:      netip.PrefixFrom(unspecified, 0), // no RTA_DST: default route
		TOS:      b[3],
		Table:    int(b[4]), // RTA_TABLE, when present, has all 32 bits
		Protocol: RouteProtocol(b[5]),
		Scope:    Scope(b[6]),
	}
	ad, err := netlink.NewAttributeDecoder(b[unix.SizeofRtMsg:])
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	var nexthops []nexthop
	for ad.Next() {
		switch ad.Type() {
		case unix.RTA_TABLE:
			base.Table = int(attrUint32(ad, "RTA_TABLE"))
		case unix.RTA_DST:
			base.Dst = netip.PrefixFrom(attrIP(ad, bits, "RTA_DST"), dstLen)
		case unix.RTA_PREFSRC:
			base.Src = attrIP(ad, bits, "RTA_PREFSRC")
		case unix.RTA_GATEWAY:
			base.Gateway = attrIP(ad, bits, "RTA_GATEWAY")
		case unix.RTA_OIF:
			base.LinkIndex = int(attrUint32(ad, "RTA_OIF"))
		case unix.RTA_PRIORITY:
			base.Priority = int(attrUint32(ad, "RTA_PRIORITY"))
		case unix.RTA_MULTIPATH:
			ad.Do(func(b []byte) (err error) {
				nexthops, err = decodeNexthops(b, bits)
				return err
			})
		}
	}
	if err := ad.Err(); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	if base.Table == unix.RT_TABLE_LOCAL {
		return nil, nil
	}
	if len(nexthops) == 0 {
		return []Route{base}, nil
	}
	routes := make([]Route, 0, len(nexthops))
	for _, nh := range nexthops {
		r := base
		r.LinkIndex, r.Gateway = nh.linkIndex, nh.gateway
		routes = append(routes, r)
	}
	return routes, nil
}

type nexthop struct {
	linkIndex int
	gateway   netip.Addr
}

// decodeNexthops decodes RTA_MULTIPATH: struct rtnexthop, each followed
// by its attributes, rtnh_len bytes in all, aligned to 4.
func decodeNexthops(b []byte, bits int) ([]nexthop, error) {
	var nhs []nexthop
	for len(b) > 0 {
		if len(b) < unix.SizeofRtNexthop {
			return nil, fmt.Errorf("RTA_MULTIPATH: %d bytes left, too short for a rtnexthop", len(b))
		}
		n := int(binary.NativeEndian.Uint16(b[0:2]))
		if n < unix.SizeofRtNexthop || n > len(b) {
			return nil, fmt.Errorf("RTA_MULTIPATH: rtnh_len %d with %d bytes left", n, len(b))
		}
		nh := nexthop{linkIndex: int(binary.NativeEndian.Uint32(b[4:8]))}
		ad, err := netlink.NewAttributeDecoder(b[unix.SizeofRtNexthop:n])
		if err != nil {
			return nil, fmt.Errorf("RTA_MULTIPATH nexthop: %w", err)
		}
		for ad.Next() {
			if ad.Type() == unix.RTA_GATEWAY {
				nh.gateway = attrIP(ad, bits, "nexthop RTA_GATEWAY")
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("RTA_MULTIPATH: %w", err)
		}
		nhs = append(nhs, nh)
		b = b[min(len(b), (n+3)&^3):] // RTNH_ALIGN
	}
	return nhs, nil
}

// familyBits returns the address size of an IP family, 0 for others.
func familyBits(family uint8) int {
	switch family {
	case unix.AF_INET:
		return 32
	case unix.AF_INET6:
		return 128
	}
	return 0
}

// attrIP decodes an address attribute of a family of bits; the IPv4 form
// of an IPv4 route or address, the IPv6 form (even ::ffff:a.b.c.d) of an
// IPv6 one.
func attrIP(ad *netlink.AttributeDecoder, bits int, name string) (ip netip.Addr) {
	ad.Do(func(b []byte) error {
		if len(b)*8 != bits {
			return fmt.Errorf("%s of %d bytes, want %d", name, len(b), bits/8)
		}
		ip, _ = netip.AddrFromSlice(b)
		return nil
	})
	return ip
}

func attrUint32(ad *netlink.AttributeDecoder, name string) (v uint32) {
	ad.Do(func(b []byte) error {
		if len(b) != 4 {
			return fmt.Errorf("%s of %d bytes, want 4", name, len(b))
		}
		v = binary.NativeEndian.Uint32(b)
		return nil
	})
	return v
}

func attrUint8(ad *netlink.AttributeDecoder, name string) (v uint8) {
	ad.Do(func(b []byte) error {
		if len(b) != 1 {
			return fmt.Errorf("%s of %d bytes, want 1", name, len(b))
		}
		v = b[0]
		return nil
	})
	return v
}
