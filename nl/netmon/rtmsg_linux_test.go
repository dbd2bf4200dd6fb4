package netmon

import (
	"encoding/binary"
	"math"
	"net/netip"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Builders of raw rtnetlink messages as the kernel sends them, for the
// decoder and monitor tests. The encode* functions invert the decoders.

// ifinfomsg is struct ifinfomsg (linux/rtnetlink.h).
type ifinfomsg struct {
	family uint8
	index  int32
	flags  uint32
}

func (h ifinfomsg) bytes() []byte {
	b := make([]byte, unix.SizeofIfInfomsg)
	b[0] = h.family
	binary.NativeEndian.PutUint32(b[4:], uint32(h.index))
	binary.NativeEndian.PutUint32(b[8:], h.flags)
	return b
}

// ifaddrmsg is struct ifaddrmsg (linux/if_addr.h).
type ifaddrmsg struct {
	family, prefixLen, flags, scope uint8
	index                           uint32
}

func (h ifaddrmsg) bytes() []byte {
	b := []byte{h.family, h.prefixLen, h.flags, h.scope, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(b[4:], h.index)
	return b
}

// rtmsg is struct rtmsg (linux/rtnetlink.h); typ 0 means RTN_UNICAST.
type rtmsg struct {
	family, dstLen, srcLen, tos, table, protocol, scope, typ uint8
	flags                                                    uint32
}

func (h rtmsg) bytes() []byte {
	typ := h.typ
	if typ == 0 {
		typ = unix.RTN_UNICAST
	}
	b := []byte{h.family, h.dstLen, h.srcLen, h.tos, h.table, h.protocol, h.scope, typ, 0, 0, 0, 0}
	binary.NativeEndian.PutUint32(b[8:], h.flags)
	return b
}

// withAttrs appends the attributes fn encodes to a fixed header.
func withAttrs(hdr []byte, fn func(ae *netlink.AttributeEncoder)) []byte {
	ae := netlink.NewAttributeEncoder()
	if fn != nil {
		fn(ae)
	}
	b, err := ae.Encode()
	if err != nil {
		panic(err) // a test's encoder is broken
	}
	return append(hdr, b...)
}

func nlmsg(typ, flags uint16, data []byte) syscall.NetlinkMessage {
	return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: typ, Flags: flags}, Data: data}
}

func encodeLink(l Link) []byte {
	flags := uint32(unix.IFF_BROADCAST)
	for _, f := range []struct {
		set  bool
		flag uint32
	}{{l.Up, unix.IFF_UP}, {l.Carrier, unix.IFF_LOWER_UP}, {l.Loopback, unix.IFF_LOOPBACK}} {
		if f.set {
			flags |= f.flag
		}
	}
	return withAttrs(ifinfomsg{family: unix.AF_UNSPEC, index: int32(l.Index), flags: flags}.bytes(), func(ae *netlink.AttributeEncoder) {
		ae.String(unix.IFLA_IFNAME, l.Name)
		ae.Uint32(unix.IFLA_MTU, uint32(l.MTU))
		ae.Uint8(unix.IFLA_OPERSTATE, uint8(l.OperState))
		if l.HardwareAddr != nil {
			ae.Bytes(unix.IFLA_ADDRESS, l.HardwareAddr)
		}
		if l.MasterIndex != 0 {
			ae.Uint32(unix.IFLA_MASTER, uint32(l.MasterIndex))
		}
		if l.Kind != "" {
			ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
				nae.String(unix.IFLA_INFO_KIND, l.Kind)
				return nil
			})
		}
	})
}

func encodeAddr(a Addr) []byte {
	family := uint8(unix.AF_INET6)
	if a.Prefix.Addr().Is4() {
		family = unix.AF_INET
	}
	h := ifaddrmsg{family: family, prefixLen: uint8(a.Prefix.Bits()), flags: uint8(a.Flags), scope: uint8(a.Scope), index: uint32(a.LinkIndex)}
	return withAttrs(h.bytes(), func(ae *netlink.AttributeEncoder) {
		ip := a.Prefix.Addr().AsSlice()
		ae.Bytes(unix.IFA_ADDRESS, ip)
		if family == unix.AF_INET {
			ae.Bytes(unix.IFA_LOCAL, ip)
		}
		ae.Uint32(unix.IFA_FLAGS, uint32(a.Flags))
		ci := make([]byte, unix.SizeofIfaCacheinfo)
		binary.NativeEndian.PutUint32(ci[0:], lifetimeSeconds(a.PreferredLifetime))
		binary.NativeEndian.PutUint32(ci[4:], lifetimeSeconds(a.ValidLifetime))
		ae.Bytes(unix.IFA_CACHEINFO, ci)
	})
}

func lifetimeSeconds(d time.Duration) uint32 {
	if d == Forever {
		return math.MaxUint32
	}
	return uint32(d / time.Second)
}

// encodeRoute encodes r; with nexthops, as a multipath route whose
// nexthops replace r's link and gateway.
func encodeRoute(r Route, nexthops ...nexthop) []byte {
	family := uint8(unix.AF_INET6)
	if r.Dst.Addr().Is4() {
		family = unix.AF_INET
	}
	table := uint8(unix.RT_TABLE_COMPAT) // what the kernel says for tables > 255
	if r.Table <= math.MaxUint8 {
		table = uint8(r.Table)
	}
	h := rtmsg{family: family, dstLen: uint8(r.Dst.Bits()), tos: r.TOS, table: table, protocol: uint8(r.Protocol), scope: uint8(r.Scope)}
	return withAttrs(h.bytes(), func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.RTA_TABLE, uint32(r.Table))
		if r.Dst.Bits() != 0 || !r.Dst.Addr().IsUnspecified() {
			ae.Bytes(unix.RTA_DST, r.Dst.Addr().AsSlice())
		}
		if r.Priority != 0 {
			ae.Uint32(unix.RTA_PRIORITY, uint32(r.Priority))
		}
		if r.Src.IsValid() {
			ae.Bytes(unix.RTA_PREFSRC, r.Src.AsSlice())
		}
		if len(nexthops) > 0 {
			ae.Bytes(unix.RTA_MULTIPATH, encodeNexthops(nexthops))
			return
		}
		if r.Gateway.IsValid() {
			ae.Bytes(unix.RTA_GATEWAY, r.Gateway.AsSlice())
		}
		if r.LinkIndex != 0 {
			ae.Uint32(unix.RTA_OIF, uint32(r.LinkIndex))
		}
	})
}

// encodeNexthops encodes the value of RTA_MULTIPATH.
func encodeNexthops(nhs []nexthop) []byte {
	var b []byte
	for _, nh := range nhs {
		rtnh := make([]byte, unix.SizeofRtNexthop)
		binary.NativeEndian.PutUint32(rtnh[4:], uint32(nh.linkIndex))
		one := withAttrs(rtnh, func(ae *netlink.AttributeEncoder) {
			if nh.gateway.IsValid() {
				ae.Bytes(unix.RTA_GATEWAY, nh.gateway.AsSlice())
			}
		})
		binary.NativeEndian.PutUint16(one[0:], uint16(len(one)))
		b = append(b, one...)
	}
	return b
}

// Shorthands for the tests' objects.

func veth(index int, name string, up bool) Link {
	return Link{Index: index, Name: name, Kind: "veth", OperState: OperUp, Up: up, Carrier: up, MTU: 1500,
		HardwareAddr: []byte{2, 0, 0, 0, 0, byte(index)}}
}

func permanentAddr(index int, prefix string) Addr {
	return Addr{LinkIndex: index, Prefix: netip.MustParsePrefix(prefix), Flags: AddrPermanent,
		PreferredLifetime: Forever, ValidLifetime: Forever}
}

func defaultRoute(index int, gw string) Route {
	return Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr(gw), LinkIndex: index,
		Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC}
}
