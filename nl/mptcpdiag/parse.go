package mptcpdiag

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/netlink"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Request encoding and reply decoding. The decoders are pure functions over
// kernel bytes (fuzzed in fuzz_test.go): they never panic, reject what they
// cannot represent, skip attributes they do not know, and read the info
// structs by length, so that older and newer kernels both work.

// encodeRequest is a dump request for every socket of protocol in family
// whose state is in states: struct inet_diag_req_v2, and
// INET_DIAG_REQ_PROTOCOL for a protocol that does not fit its u8 field
// (MPTCP). INET_DIAG_INFO is asked for.
func encodeRequest(family uint8, protocol uint32, states States) []byte {
	b := make([]byte, sizeofInetDiagReqV2, sizeofInetDiagReqV2+8)
	b[0] = family
	if protocol <= 0xff {
		b[1] = uint8(protocol)
	} else {
		// The kernel ignores sdiag_protocol when the attribute is
		// there; TCP is what its own selftest and ss put in it.
		b[1] = IPPROTO_TCP
	}
	b[2] = inetDiagInfoExtFlag
	binary.NativeEndian.PutUint32(b[4:8], uint32(states))
	// id: ports, addresses and interface 0 match all in a dump; no cookie.
	binary.NativeEndian.PutUint32(b[48:52], INET_DIAG_NOCOOKIE)
	binary.NativeEndian.PutUint32(b[52:56], INET_DIAG_NOCOOKIE)
	if protocol > 0xff {
		attr, _ := netlink.MarshalAttributes([]netlink.Attribute{{
			Type: INET_DIAG_REQ_PROTOCOL,
			Data: binary.NativeEndian.AppendUint32(nil, protocol),
		}})
		b = append(b, attr...)
	}
	return b
}

// encodeExact is a request for the one TCP socket s names: its family,
// both ends, the device it is bound to and its cookie, which the kernel
// checks (net/ipv4/inet_diag.c, inet_diag_find_one_icsk), so that a
// socket that took the same ports since the dump is never the one hit.
func encodeExact(s Subflow) ([]byte, error) {
	b := make([]byte, sizeofInetDiagReqV2)
	if s.Family != AF_INET && s.Family != AF_INET6 {
		return nil, fmt.Errorf("unknown address family %d", s.Family)
	}
	b[0], b[1] = s.Family, IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:8], uint32(AllStates))
	// struct inet_diag_sockid starts at 8: the layout parseSockMsg reads
	// at 4 in a reply.
	binary.BigEndian.PutUint16(b[8:10], s.Local.Port())
	binary.BigEndian.PutUint16(b[10:12], s.Remote.Port())
	if s.Family == AF_INET {
		src, dst := s.Local.Addr().Unmap(), s.Remote.Addr().Unmap()
		if !src.Is4() || !dst.Is4() {
			return nil, fmt.Errorf("%v -> %v is no IPv4 socket", s.Local, s.Remote)
		}
		a, d := src.As4(), dst.As4()
		copy(b[12:16], a[:])
		copy(b[28:32], d[:])
	} else {
		a, d := s.Local.Addr().As16(), s.Remote.Addr().As16()
		copy(b[12:28], a[:])
		copy(b[28:44], d[:])
	}
	binary.NativeEndian.PutUint32(b[44:48], uint32(s.IfIndex))
	binary.NativeEndian.PutUint32(b[48:52], uint32(s.Cookie))
	binary.NativeEndian.PutUint32(b[52:56], uint32(s.Cookie>>32))
	return b, nil
}

// sockMsg is struct inet_diag_msg, the fixed part of every reply.
type sockMsg struct {
	family        uint8
	state         State
	local, remote netip.AddrPort
	ifindex       int
	cookie        uint64
	uid, inode    uint32
	attrs         []byte // the attributes after it
}

// parseSockMsg decodes struct inet_diag_msg (include/uapi/linux/inet_diag.h):
//
//	0 family, 1 state, 2 timer, 3 retrans,
//	4 id: 4 sport be16, 6 dport be16, 8 src[16], 24 dst[16], 40 if u32,
//	      44 cookie[2] u32 (low word first),
//	52 expires, 56 rqueue, 60 wqueue, 64 uid, 68 inode.
func parseSockMsg(b []byte) (sockMsg, error) {
	if len(b) < sizeofInetDiagMsg {
		return sockMsg{}, fmt.Errorf("inet_diag_msg of %d bytes, want %d", len(b), sizeofInetDiagMsg)
	}
	m := sockMsg{
		family:  b[0],
		state:   State(b[1]),
		ifindex: int(binary.NativeEndian.Uint32(b[40:44])),
		cookie:  uint64(binary.NativeEndian.Uint32(b[44:48])) | uint64(binary.NativeEndian.Uint32(b[48:52]))<<32,
		uid:     binary.NativeEndian.Uint32(b[64:68]),
		inode:   binary.NativeEndian.Uint32(b[68:72]),
		attrs:   b[sizeofInetDiagMsg:],
	}
	var src, dst netip.Addr
	switch m.family {
	case AF_INET:
		src, dst = netip.AddrFrom4([4]byte(b[8:12])), netip.AddrFrom4([4]byte(b[24:28]))
	case AF_INET6:
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	default:
		return sockMsg{}, fmt.Errorf("unknown address family %d", m.family)
	}
	m.local = netip.AddrPortFrom(src, binary.BigEndian.Uint16(b[4:6]))
	m.remote = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(b[6:8]))
	return m, nil
}

// parseConnection decodes one reply of an MPTCP dump.
func parseConnection(b []byte) (Connection, error) {
	m, err := parseSockMsg(b)
	if err != nil {
		return Connection{}, err
	}
	c := Connection{
		Family: m.family, Local: m.local, Remote: m.remote, State: m.state,
		IfIndex: m.ifindex, UID: m.uid, Inode: m.inode, Cookie: m.cookie,
	}
	ad, err := netlink.NewAttributeDecoder(m.attrs)
	if err != nil {
		return Connection{}, err
	}
	for ad.Next() {
		if ad.Type() == INET_DIAG_INFO {
			c.Info, err = parseMPTCPInfo(ad.Bytes())
			if err != nil {
				return Connection{}, err
			}
		}
	}
	if err := ad.Err(); err != nil {
		return Connection{}, err
	}
	return c, nil
}

// structBytes reads the fields of a kernel struct that may be shorter than the
// layout this package knows: a field past the end reads as zero.
type structBytes []byte

func (b structBytes) u8(off int) uint8 {
	if off+1 > len(b) {
		return 0
	}
	return b[off]
}

func (b structBytes) u32(off int) uint32 {
	if off+4 > len(b) {
		return 0
	}
	return binary.NativeEndian.Uint32(b[off:])
}

func (b structBytes) u64(off int) uint64 {
	if off+8 > len(b) {
		return 0
	}
	return binary.NativeEndian.Uint64(b[off:])
}

// Offsets in struct mptcp_info: where the token ends (without it a
// connection cannot be told from another), and where subflows_total is.
const (
	minMPTCPInfo        = 16
	offsetSubflowsTotal = 80
)

// parseMPTCPInfo decodes struct mptcp_info (include/uapi/linux/mptcp.h, as
// of Linux 6.18: 96 bytes; 5.7 sent 40, 5.16 44, 6.7 80).
func parseMPTCPInfo(data []byte) (Info, error) {
	if len(data) < minMPTCPInfo {
		return Info{}, fmt.Errorf("mptcp_info of %d bytes, want at least %d", len(data), minMPTCPInfo)
	}
	b := structBytes(data)
	return Info{
		Size:               len(data),
		Subflows:           b.u8(0),
		AddAddrSignal:      b.u8(1),
		AddAddrAccepted:    b.u8(2),
		SubflowsMax:        b.u8(3),
		AddAddrSignalMax:   b.u8(4),
		AddAddrAcceptedMax: b.u8(5),
		// 6, 7: a hole
		Flags:         InfoFlags(b.u32(8)),
		Token:         mptcp.Token(b.u32(12)),
		WriteSeq:      b.u64(16),
		SndUna:        b.u64(24),
		RcvNxt:        b.u64(32),
		LocalAddrUsed: b.u8(40),
		LocalAddrMax:  b.u8(41),
		CsumEnabled:   b.u8(42) != 0,
		// 43: a hole
		Retransmits:     b.u32(44),
		BytesRetrans:    b.u64(48),
		BytesSent:       b.u64(56),
		BytesReceived:   b.u64(64),
		BytesAcked:      b.u64(72),
		SubflowsTotal:   b.u8(offsetSubflowsTotal),
		EndpLaminarMax:  b.u8(81),
		EndpFullmeshMax: b.u8(82),
		// 83: reserved
		LastDataSent: b.u32(84),
		LastDataRecv: b.u32(88),
		LastAckRecv:  b.u32(92),
	}, nil
}

// parseTCPInfo decodes the fields of struct tcp_info
// (include/uapi/linux/tcp.h) that TCPInfo has.
func parseTCPInfo(data []byte) TCPInfo {
	b := structBytes(data)
	us := func(off int) time.Duration { return time.Duration(b.u32(off)) * time.Microsecond }
	ms := func(off int) time.Duration { return time.Duration(b.u32(off)) * time.Millisecond }
	return TCPInfo{
		Size:          len(data),
		State:         State(b.u8(0)),
		Retransmits:   b.u8(2),
		Backoff:       b.u8(4),
		RTO:           us(8),
		Unacked:       b.u32(24),
		Lost:          b.u32(32),
		LastDataSent:  ms(44),
		LastDataRecv:  ms(52),
		LastAckRecv:   ms(56),
		SndMSS:        b.u32(16),
		RTT:           us(68),
		RTTVar:        us(72),
		SndCwnd:       b.u32(80),
		TotalRetrans:  b.u32(100),
		BytesAcked:    b.u64(120),
		BytesReceived: b.u64(128),
		MinRTT:        us(148),
		BytesSent:     b.u64(200),
		BytesRetrans:  b.u64(208),
	}
}

// errNotSubflow marks a TCP socket that is no MPTCP subflow: no ULP, or
// another one, or a listener (whose ULP info has no MPTCP part).
var errNotSubflow = errors.New("not an MPTCP subflow")

// parseSubflow decodes one reply of a TCP dump; it returns errNotSubflow
// for a socket that is not an MPTCP subflow.
func parseSubflow(b []byte) (Subflow, error) {
	m, err := parseSockMsg(b)
	if err != nil {
		return Subflow{}, err
	}
	s := Subflow{
		Family: m.family, Local: m.local, Remote: m.remote, State: m.state,
		IfIndex: m.ifindex, UID: m.uid, Inode: m.inode, Cookie: m.cookie,
	}
	ad, err := netlink.NewAttributeDecoder(m.attrs)
	if err != nil {
		return Subflow{}, err
	}
	var ulp string
	var mptcpNest bool
	for ad.Next() {
		switch ad.Type() {
		case INET_DIAG_INFO:
			s.TCP = parseTCPInfo(ad.Bytes())
		case INET_DIAG_ULP_INFO:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case INET_ULP_INFO_NAME:
						ulp = nad.String()
					case INET_ULP_INFO_MPTCP:
						mptcpNest = true
						nad.Nested(func(sad *netlink.AttributeDecoder) error {
							parseSubflowAttrs(sad, &s)
							return nil
						})
					}
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return Subflow{}, err
	}
	if ulp != "mptcp" || !mptcpNest {
		return Subflow{}, errNotSubflow
	}
	return s, nil
}

// parseSubflowAttrs decodes the INET_ULP_INFO_MPTCP nest (net/mptcp/diag.c);
// a wrong length is the decoder's error.
func parseSubflowAttrs(ad *netlink.AttributeDecoder, s *Subflow) {
	for ad.Next() {
		switch ad.Type() {
		case MPTCP_SUBFLOW_ATTR_TOKEN_REM:
			s.RemoteToken = mptcp.Token(ad.Uint32())
		case MPTCP_SUBFLOW_ATTR_TOKEN_LOC:
			s.LocalToken = mptcp.Token(ad.Uint32())
		case MPTCP_SUBFLOW_ATTR_RELWRITE_SEQ:
			s.RelWriteSeq = ad.Uint32()
		case MPTCP_SUBFLOW_ATTR_MAP_SEQ:
			s.MapSeq = ad.Uint64()
		case MPTCP_SUBFLOW_ATTR_MAP_SFSEQ:
			s.MapSubflowSeq = ad.Uint32()
		case MPTCP_SUBFLOW_ATTR_SSN_OFFSET:
			s.SSNOffset = ad.Uint32()
		case MPTCP_SUBFLOW_ATTR_MAP_DATALEN:
			s.MapDataLen = ad.Uint16()
		case MPTCP_SUBFLOW_ATTR_FLAGS:
			s.Flags = SubflowFlags(ad.Uint32())
		case MPTCP_SUBFLOW_ATTR_ID_REM:
			s.RemoteID = mptcp.ID(ad.Uint8())
		case MPTCP_SUBFLOW_ATTR_ID_LOC:
			s.LocalID = mptcp.ID(ad.Uint8())
		}
	}
}

// parseDump decodes every message of a dump with parse, naming the message
// that fails; parse drops a message by returning errNotSubflow.
func parseDump[T any](msgs []netlink.Message, parse func([]byte) (T, error)) ([]T, error) {
	out := make([]T, 0, len(msgs))
	for i, m := range msgs {
		v, err := parse(m.Data)
		switch {
		case errors.Is(err, errNotSubflow):
			continue
		case err != nil:
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// family is an address family to dump, and its name for errors.
type family struct {
	af   uint8
	name string
}

var families = []family{{AF_INET, "inet"}, {AF_INET6, "inet6"}}

// subflowFamilies are the address families whose TCP sockets may hold
// subflows of conns: a TCP dump walks the kernel's whole established hash
// (about 0.2 ms on this machine, with or without sockets), so it is
// skipped for a family without connections that could use it. An
// AF_INET connection's subflows are all AF_INET (the kernel joins only
// addresses of its family: mptcp_pm_addr_families_match); an AF_INET6
// one may also have IPv4 subflows.
func subflowFamilies(conns []Connection) []family {
	var v4, v6 bool
	for i := range conns {
		if conns[i].Listening() {
			continue
		}
		v4 = true
		v6 = v6 || conns[i].Family == AF_INET6
	}
	switch {
	case v6:
		return families
	case v4:
		return families[:1]
	}
	return nil
}

// join gives each connection the subflows whose local token is its token,
// and sorts both. Subflows of no connection (one that closed between the
// two dumps, or opened after the first) are dropped; so are connections'
// claims on token 0, which listeners share.
func join(conns []Connection, subflows []Subflow) []Connection {
	byToken := make(map[mptcp.Token]int, len(conns))
	for i := range conns {
		if t := conns[i].Info.Token; t != 0 && !conns[i].Listening() {
			if _, dup := byToken[t]; !dup {
				byToken[t] = i
			}
		}
	}
	for _, s := range subflows {
		if i, ok := byToken[s.LocalToken]; ok && s.LocalToken != 0 {
			conns[i].Subflows = append(conns[i].Subflows, s)
		}
	}
	for i := range conns {
		slices.SortFunc(conns[i].Subflows, compareSubflows)
	}
	slices.SortFunc(conns, compareConnections)
	return conns
}

// compareConnections orders connections by address, listeners last.
func compareConnections(a, b Connection) int {
	return cmp.Or(
		compareBool(a.Listening(), b.Listening()),
		a.Local.Compare(b.Local),
		a.Remote.Compare(b.Remote),
		cmp.Compare(a.Info.Token, b.Info.Token),
	)
}

// compareSubflows puts the initial subflow first, then orders by address.
func compareSubflows(a, b Subflow) int {
	return cmp.Or(
		compareBool(!a.Initial(), !b.Initial()),
		a.Local.Compare(b.Local),
		a.Remote.Compare(b.Remote),
	)
}

// compareBool orders false before true.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
