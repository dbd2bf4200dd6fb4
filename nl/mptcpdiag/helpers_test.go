package mptcpdiag

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
)

// Replies captured from Linux 6.18 on x86-64 (little endian, as every
// platform these tests run on), on the client of a connection
// 10.1.1.2:52401 -> 10.1.1.1:32849 with a second subflow from 10.1.2.2
// bound to ifindex 3 (see TestKernelConnections).
var (
	// The connection (MPTCP dump, AF_INET): token 86c266db, 96 bytes of
	// mptcp_info, after INET_DIAG_SHUTDOWN, _MARK, _CGROUP_ID, _SOCKOPT.
	capturedConnection = mustHex("02010000ccb180510a0101020000000000000000000000000a010101000000000000000000000000000000006f0000000000000000000000000000000000000000000000c6fa2100050008000000000008000f00000000000c0015000100000000000000060016005200000064000200010000020000000002000000db66c286f9dd4bd88b7bb8a7f9dd4bd88b7bb8a741a550b837069d0c0101000000000000000000000000000005000000000000000500000000000000050000000000000002000000040000000400000004000000")
	// Its joined subflow 10.1.2.2:48743 -> 10.1.1.1:32849 (TCP dump):
	// 280 bytes of tcp_info, then the ULP nest.
	capturedJoin = mustHex("02010200be6780510a0102020000000000000000000000000a010101000000000000000000000000030000007000000000000000903a0000000000000000000000000000c6fa2100050008000000000008000f00000000000c001500010000000000000006001600520000001c010200010000000007aa01e01c030000000000a805000018020000000000000000000000000000000000000000000008000000000000000800000008000000dc05000058fa00001e0000000f000000ffffff7f0a000000a805000003000000000000009038000000000000a5d0375200000000ffffffffffffffff010000000000000000000000000000000200000002000000000000001e0000000000000000000000000000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000000000000000000000000000000000000000000000fc000000fc00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000680013000a0001006d707463700000005800030008000100cb7a1fb808000200db66c28608000800cc000000050009000000000005000a000100000008000300010000000c0004003ca550b837069d0c0800050000000000080006001a952a940600070000000000")
	// Its initial subflow 10.1.1.2:52401 -> 10.1.1.1:32849.
	capturedInitial = mustHex("02010200ccb180510a0101020000000000000000000000000a010101000000000000000000000000000000007100000000000000903a0000000000000000000000000000c6fa2100050008000000000008000f00000000000c001500010000000000000006001600520000001c010200010000000007aa01e01c0300409c0000a805000018020000000000000000000000000000000000000000000008000000000000000800000008000000dc05000058fa00003d00000021000000ffffff7f0b000000a8050000030000000000000090380000000000001f65d02400000000ffffffffffffffff06000000000000000500000000000000040000000300000000000000180000000100000001000000159d98030000000000000000000000000000000000000000000000000000000002000000000000000500000000000000000000000000000000000000000000000000000000fc000000fc00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000680013000a0001006d7074637000000058000300080001000000000008000200db66c28608000800c3000000050009000000000005000a000000000008000300060000000c0004003ca550b837069d0c08000500010000000800060046f6f0d50600070005000000")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// testSock is the fixed part of a hand-made reply.
type testSock struct {
	family        uint8
	state         State
	local, remote string // address:port
	ifindex       uint32
	cookie        uint64
	uid, inode    uint32
}

// encode lays out struct inet_diag_msg as the kernel does and appends
// attrs.
func (s testSock) encode(t testing.TB, attrs ...netlink.Attribute) []byte {
	t.Helper()
	b := make([]byte, sizeofInetDiagMsg)
	b[0], b[1] = s.family, uint8(s.state)
	for _, a := range []struct {
		s       string
		portOff int
		addrOff int
	}{{s.local, 4, 8}, {s.remote, 6, 24}} {
		if a.s == "" {
			continue
		}
		ap := netip.MustParseAddrPort(a.s)
		binary.BigEndian.PutUint16(b[a.portOff:], ap.Port())
		copy(b[a.addrOff:], ap.Addr().AsSlice())
	}
	binary.NativeEndian.PutUint32(b[40:], s.ifindex)
	binary.NativeEndian.PutUint32(b[44:], uint32(s.cookie))
	binary.NativeEndian.PutUint32(b[48:], uint32(s.cookie>>32))
	binary.NativeEndian.PutUint32(b[64:], s.uid)
	binary.NativeEndian.PutUint32(b[68:], s.inode)
	if len(attrs) > 0 {
		ab, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, ab...)
	}
	return b
}

func attr(typ uint16, data []byte) netlink.Attribute { return netlink.Attribute{Type: typ, Data: data} }

func nested(t testing.TB, typ uint16, attrs ...netlink.Attribute) netlink.Attribute {
	t.Helper()
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel opens these nests without NLA_F_NESTED
	// (nla_nest_start_noflag).
	return netlink.Attribute{Type: typ, Data: b}
}

func u8(v uint8) []byte   { return []byte{v} }
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// ulpMPTCP is the ULP nest of a subflow with the given subflow attributes.
func ulpMPTCP(t testing.TB, attrs ...netlink.Attribute) netlink.Attribute {
	return nested(t, INET_DIAG_ULP_INFO,
		attr(INET_ULP_INFO_NAME, []byte("mptcp\x00")),
		nested(t, INET_ULP_INFO_MPTCP, attrs...))
}

// mptcpInfo is a struct mptcp_info of size bytes with token at its place.
func mptcpInfo(size int, token uint32) []byte {
	b := make([]byte, size)
	binary.NativeEndian.PutUint32(b[12:], token)
	return b
}

// sequence is n bytes 0, 1, 2, ...: every field of a struct read from it
// has a value that says where it was read.
func sequence(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}
