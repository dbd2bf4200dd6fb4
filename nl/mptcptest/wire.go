package mptcptest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Wire format helpers: request attribute parsing as the kernel's liberal
// validation does it (GENL_DONT_VALIDATE_STRICT), reply encoding as
// net/mptcp/pm_netlink.c does it, and netlink acks and errors as
// net/netlink/af_netlink.c:netlink_ack builds them.

const (
	nlmsgHdrLen = 16 // sizeof(struct nlmsghdr)
	genlHdrLen  = 4  // sizeof(struct genlmsghdr)
	nlaHdrLen   = 4  // sizeof(struct nlattr)
	nlaTypeMask = 0x3fff

	// The flags mask of Linux 6.18.x (MPTCP_PM_ADDR_FLAGS_MASK): unknown
	// endpoint flag bits are dropped when parsed.
	addrFlagsMask = mptcp.Flags(0x3f)

	afInet  = unix.AF_INET
	afInet6 = unix.AF_INET6

	// NLMSGERR_ATTR_MISS_TYPE (include/uapi/linux/netlink.h, Linux 6.0),
	// which x/sys/unix lacks.
	nlmsgerrAttrMissType = 5
)

// attr is one request attribute and its offset from the start of the
// netlink message, which extended acks report (NLMSGERR_ATTR_OFFS).
type attr struct {
	typ  uint16
	off  int
	data []byte
}

// parseAttrs splits b, which starts base bytes into the netlink message,
// into attributes. Like nla_parse in liberal mode it stops at the first
// malformed header and ignores what follows; a repeated type keeps the last
// one. It never fails.
func parseAttrs(b []byte, base int) map[uint16]attr {
	attrs := make(map[uint16]attr)
	off := 0
	for len(b)-off >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(b[off:]))
		if l < nlaHdrLen || l > len(b)-off {
			break
		}
		t := binary.NativeEndian.Uint16(b[off+2:]) & nlaTypeMask
		attrs[t] = attr{typ: t, off: base + off, data: b[off+nlaHdrLen : off+l]}
		off += nlaAlign(l)
	}
	return attrs
}

func nlaAlign(n int) int { return (n + 3) &^ 3 }

// kerr is a kernel error with its extended ack: errno, message and either
// the offending attribute's offset or a missing attribute's type.
type kerr struct {
	errno    syscall.Errno
	msg      string
	badOff   int    // NLMSGERR_ATTR_OFFS when > 0
	missType uint16 // NLMSGERR_ATTR_MISS_TYPE when missing is set
	missing  bool
}

// errMsg is GENL_SET_ERR_MSG: a message without attribute.
func errMsg(errno syscall.Errno, format string, args ...any) *kerr {
	return &kerr{errno: errno, msg: fmt.Sprintf(format, args...)}
}

// errAttr is NL_SET_ERR_MSG_ATTR: a message pointing at attribute a.
func errAttr(errno syscall.Errno, a attr, msg string) *kerr {
	return &kerr{errno: errno, msg: msg, badOff: a.off}
}

// errMissing is GENL_REQ_ATTR_CHECK failing: EINVAL naming the missing
// top-level attribute, with no message.
func errMissing(typ uint16) *kerr {
	return &kerr{errno: unix.EINVAL, missType: typ, missing: true}
}

// Values of the kernel's nla_policy checks. The liberal policy accepts an
// attribute longer than its type and reads its head; a shorter one fails.
func policyU8(a attr) (uint8, *kerr) {
	if len(a.data) < 1 {
		return 0, errPolicy(a)
	}
	return a.data[0], nil
}

func policyU16(a attr) (uint16, *kerr) {
	if len(a.data) < 2 {
		return 0, errPolicy(a)
	}
	return binary.NativeEndian.Uint16(a.data), nil
}

func policyU32(a attr) (uint32, *kerr) {
	if len(a.data) < 4 {
		return 0, errPolicy(a)
	}
	return binary.NativeEndian.Uint32(a.data), nil
}

// errPolicy is validate_nla's answer to an attribute too short for its
// type.
func errPolicy(a attr) *kerr {
	return errAttr(unix.ERANGE, a, "Attribute failed policy validation")
}

// addrInfo is a parsed address nest: struct mptcp_pm_addr_entry.
type addrInfo struct {
	family  uint16 // 0: AF_UNSPEC (no family attribute)
	id      mptcp.ID
	addr    netip.Addr // 4 bytes for AF_INET, 16 for AF_INET6
	port    uint16
	flags   mptcp.Flags
	ifindex int32
}

func (a addrInfo) addrPort() netip.AddrPort { return netip.AddrPortFrom(a.addr, a.port) }

// validateAddrNest checks the nest against mptcp_pm_address_nl_policy,
// as genetlink does before any handler runs.
func validateAddrNest(nest attr) *kerr {
	for _, a := range parseAttrs(nest.data, nest.off+nlaHdrLen) {
		var err *kerr
		switch a.typ {
		case mptcp.MPTCP_PM_ADDR_ATTR_FAMILY, mptcp.MPTCP_PM_ADDR_ATTR_PORT:
			_, err = policyU16(a)
		case mptcp.MPTCP_PM_ADDR_ATTR_ID:
			_, err = policyU8(a)
		case mptcp.MPTCP_PM_ADDR_ATTR_ADDR4, mptcp.MPTCP_PM_ADDR_ATTR_FLAGS, mptcp.MPTCP_PM_ADDR_ATTR_IF_IDX:
			_, err = policyU32(a)
		case mptcp.MPTCP_PM_ADDR_ATTR_ADDR6:
			if len(a.data) != 16 {
				err = errAttr(unix.EINVAL, a, "binary attribute size out of range")
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseAddr is mptcp_pm_parse_pm_addr_attr followed, when entry is set, by
// the rest of mptcp_pm_parse_entry (ifindex, flags, port). The nest has
// passed validateAddrNest.
func parseAddr(nest attr, requireFamily, entry bool) (addrInfo, *kerr) {
	var a addrInfo
	tb := parseAttrs(nest.data, nest.off+nlaHdrLen)
	if t, ok := tb[mptcp.MPTCP_PM_ADDR_ATTR_ID]; ok {
		v, _ := policyU8(t)
		a.id = mptcp.ID(v)
	}
	if err := parseFamilyAddr(nest, tb, requireFamily, &a); err != nil {
		return addrInfo{}, err
	}
	if t, ok := tb[mptcp.MPTCP_PM_ADDR_ATTR_PORT]; ok && (a.family != 0 || entry) {
		a.port, _ = policyU16(t)
	}
	if !entry {
		return a, nil
	}
	if t, ok := tb[mptcp.MPTCP_PM_ADDR_ATTR_IF_IDX]; ok {
		v, _ := policyU32(t)
		a.ifindex = int32(v)
	}
	if t, ok := tb[mptcp.MPTCP_PM_ADDR_ATTR_FLAGS]; ok {
		v, _ := policyU32(t)
		a.flags = mptcp.Flags(v) & addrFlagsMask
	}
	return a, nil
}

// parseFamilyAddr reads the family and the matching address attribute.
// Without a family attribute the address stays unset, which is an error
// only when requireFamily.
func parseFamilyAddr(nest attr, tb map[uint16]attr, requireFamily bool, a *addrInfo) *kerr {
	f, ok := tb[mptcp.MPTCP_PM_ADDR_ATTR_FAMILY]
	if !ok {
		if !requireFamily {
			return nil
		}
		return errAttr(unix.EINVAL, nest, "missing family")
	}
	a.family, _ = policyU16(f)
	want := uint16(mptcp.MPTCP_PM_ADDR_ATTR_ADDR4)
	switch a.family {
	case afInet:
	case afInet6:
		want = mptcp.MPTCP_PM_ADDR_ATTR_ADDR6
	default:
		return errAttr(unix.EINVAL, nest, "unknown address family")
	}
	t, ok := tb[want]
	if !ok {
		return errAttr(unix.EINVAL, nest, "missing address data")
	}
	// validateAddrNest has checked the lengths; check again so that no
	// caller can make this panic.
	switch {
	case a.family == afInet && len(t.data) >= 4:
		a.addr = netip.AddrFrom4([4]byte(t.data[:4]))
	case a.family == afInet6 && len(t.data) == 16:
		a.addr = netip.AddrFrom16([16]byte(t.data))
	default:
		return errPolicy(t)
	}
	return nil
}

// sameAddr is mptcp_addresses_equal without ports: IPv4 equals its
// v4-mapped IPv6 form.
func sameAddr(a, b netip.Addr) bool { return a.Unmap() == b.Unmap() }

// encodeAddrNest is mptcp_nl_fill_addr: FAMILY, PORT (always, host
// order), ID, FLAGS, IF_IDX (when set), ADDR4/ADDR6, in a nest flagged
// NLA_F_NESTED.
func encodeAddrNest(ae *netlink.AttributeEncoder, e *entry) {
	ae.Nested(mptcp.MPTCP_PM_ATTR_ADDR, func(n *netlink.AttributeEncoder) error {
		n.Uint16(mptcp.MPTCP_PM_ADDR_ATTR_FAMILY, e.family())
		n.Uint16(mptcp.MPTCP_PM_ADDR_ATTR_PORT, e.port)
		n.Uint8(mptcp.MPTCP_PM_ADDR_ATTR_ID, uint8(e.id))
		n.Uint32(mptcp.MPTCP_PM_ADDR_ATTR_FLAGS, uint32(e.flags))
		if e.ifindex != 0 {
			n.Int32(mptcp.MPTCP_PM_ADDR_ATTR_IF_IDX, e.ifindex)
		}
		if e.addr.Is4() {
			b := e.addr.As4()
			n.Bytes(mptcp.MPTCP_PM_ADDR_ATTR_ADDR4, b[:])
		} else {
			b := e.addr.As16()
			n.Bytes(mptcp.MPTCP_PM_ADDR_ATTR_ADDR6, b[:])
		}
		return nil
	})
}

// genlPayload prefixes attributes with a generic netlink header of
// version MPTCP_PM_VER.
func genlPayload(cmd uint8, attrs []byte) []byte {
	b := make([]byte, genlHdrLen, genlHdrLen+len(attrs))
	b[0] = cmd
	b[1] = mptcp.MPTCP_PM_VER
	return append(b, attrs...)
}

// encodeAttrs runs fn on a fresh encoder. The encoders used here cannot
// fail (fixed-size values, no user callbacks that error).
func encodeAttrs(fn func(ae *netlink.AttributeEncoder)) []byte {
	ae := netlink.NewAttributeEncoder()
	fn(ae)
	b, err := ae.Encode()
	if err != nil {
		panic(fmt.Sprintf("mptcptest: encoding attributes: %v", err))
	}
	return b
}

// message builds a netlink message of the given type and flags answering
// req (same sequence number and port id).
func message(req netlink.Header, typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Length:   uint32(nlmsgHdrLen + len(data)),
			Type:     typ,
			Flags:    flags,
			Sequence: req.Sequence,
			PID:      req.PID,
		},
		Data: data,
	}
}

// ackOptions are the socket options that shape acks (NETLINK_EXT_ACK,
// NETLINK_CAP_ACK).
type ackOptions struct {
	extAck bool
	capAck bool
}

// ack is netlink_ack: an NLMSG_ERROR message carrying err (nil: 0) and the
// request's header, the whole request on error unless capped, then the
// extended-ack TLVs when the socket asked for them.
func ack(req netlink.Message, err *kerr, opts ackOptions) netlink.Message {
	var errno syscall.Errno
	if err != nil {
		errno = err.errno
	}
	var flags netlink.HeaderFlags
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	data = appendHeader(data, req.Header)
	if errno != 0 && !opts.capAck {
		data = append(data, req.Data...)
	} else {
		flags |= netlink.Capped
	}
	if tlvs := ackTLVs(err, opts, len(req.Data)); len(tlvs) > 0 {
		flags |= netlink.AcknowledgeTLVs
		data = append(data, tlvs...)
	}
	return message(req.Header, netlink.Error, flags, data)
}

// ackTLVs encodes NLMSGERR_ATTR_MSG, _OFFS and _MISS_TYPE as the kernel
// orders them. payloadLen bounds the offset: the kernel only reports an
// attribute that lies inside the request.
func ackTLVs(err *kerr, opts ackOptions, payloadLen int) []byte {
	if err == nil || !opts.extAck {
		return nil
	}
	return encodeAttrs(func(ae *netlink.AttributeEncoder) {
		if err.msg != "" {
			ae.String(unix.NLMSGERR_ATTR_MSG, err.msg)
		}
		if err.errno != 0 && err.badOff > 0 && err.badOff < nlmsgHdrLen+payloadLen {
			ae.Uint32(unix.NLMSGERR_ATTR_OFFS, uint32(err.badOff))
		}
		if err.missing {
			ae.Uint32(nlmsgerrAttrMissType, uint32(err.missType))
		}
	})
}

// dumpDone is netlink_dump_done: NLMSG_DONE with the dump's errno and,
// for a failed dump, the extended-ack TLVs (no request echo).
func dumpDone(req netlink.Message, err *kerr, opts ackOptions) netlink.Message {
	var errno syscall.Errno
	if err != nil {
		errno = err.errno
	}
	flags := netlink.Multi
	data := binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
	if tlvs := ackTLVs(err, opts, len(req.Data)); len(tlvs) > 0 {
		flags |= netlink.AcknowledgeTLVs
		data = append(data, tlvs...)
	}
	return message(req.Header, netlink.Done, flags, data)
}

// appendHeader appends h in struct nlmsghdr layout.
func appendHeader(b []byte, h netlink.Header) []byte {
	b = binary.NativeEndian.AppendUint32(b, h.Length)
	b = binary.NativeEndian.AppendUint16(b, uint16(h.Type))
	b = binary.NativeEndian.AppendUint16(b, uint16(h.Flags))
	b = binary.NativeEndian.AppendUint32(b, h.Sequence)
	return binary.NativeEndian.AppendUint32(b, h.PID)
}
