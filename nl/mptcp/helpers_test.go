package mptcp

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
)

// testFamily is what genltest answers for "mptcp_pm".
var testFamily = genetlink.Family{
	ID:      0x1c,
	Version: MPTCP_PM_VER,
	Name:    MPTCP_PM_NAME,
	Groups: []genetlink.MulticastGroup{
		{ID: 4, Name: MPTCP_PM_CMD_GRP_NAME},
		{ID: 5, Name: MPTCP_PM_EV_GRP_NAME},
	},
}

// testClient returns a Client whose requests go to fn.
func testClient(t *testing.T, fn genltest.Func) *Client {
	t.Helper()
	c, err := NewClient(genltest.Dial(genltest.ServeFamily(testFamily, fn)))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// cmpOpts compares netip values and Event's presence bits.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.AllowUnexported(Event{}),
}

// attr is a decoded attribute; Nest holds the children of a nested one.
type attr struct {
	Type uint16 // including the Nested flag
	Data []byte
	Nest []attr
}

// decodeAttrs splits b into attributes, recursing into nested ones.
func decodeAttrs(t *testing.T, b []byte) []attr {
	t.Helper()
	as, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		t.Fatalf("request attributes do not decode: %v", err)
	}
	var out []attr
	for _, a := range as {
		if a.Type&netlink.Nested != 0 {
			out = append(out, attr{Type: a.Type, Nest: decodeAttrs(t, a.Data)})
			continue
		}
		out = append(out, attr{Type: a.Type, Data: a.Data})
	}
	return out
}

// Attribute value helpers, in the kernel's encodings.
func u8(v uint8) []byte   { return []byte{v} }
func u16(v uint16) []byte { return nlenc.Uint16Bytes(v) }
func u32(v uint32) []byte { return nlenc.Uint32Bytes(v) }
func s32(v int32) []byte  { return nlenc.Int32Bytes(v) }

func ip(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

func nest(typ uint16, children ...attr) attr {
	return attr{Type: typ | netlink.Nested, Nest: children}
}

// encodeAttrs builds message data from attrs (for hand-made replies).
func encodeAttrs(t testing.TB, attrs ...attr) []byte {
	t.Helper()
	as := make([]netlink.Attribute, 0, len(attrs))
	for _, a := range attrs {
		data := a.Data
		if a.Nest != nil {
			data = encodeAttrs(t, a.Nest...)
		}
		as = append(as, netlink.Attribute{Type: a.Type, Data: data})
	}
	b, err := netlink.MarshalAttributes(as)
	if err != nil {
		t.Fatalf("MarshalAttributes: %v", err)
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Replies and events captured from Linux 6.18 on x86-64 (native byte order
// is little endian there, as it is for every platform these tests run on).
var (
	// GET_ADDR dump: 10.1.2.2 id 1 subflow backup dev lo (ifindex 1), and
	// 2001:db8::1 id 2 signal.
	capturedEndpoint4 = mustHex("3400018006000100020000000600050000000000050002000100000008000600060000000800070001000000080003000a010202")
	capturedEndpoint6 = mustHex("38000180060001000a0000000600050000000000050002000200000008000600010000001400040020010db8000000000000000000000001")
	// GET_LIMITS: add_addr_accepted 0 subflows 2.
	capturedLimits = mustHex("08000200000000000800030002000000")

	// Events of one MPTCP connection [::1]:57538 -> [::1]:5000 with a
	// signal endpoint 2001:db8::1 id 2 configured.
	capturedListenerCreated = mustHex("060002000a00000006000900138800001400060000000000000000000000000000000001")
	capturedCreatedClient   = mustHex("0800010011a2ef15060002000a0000001400060000000000000000000000000000000001140008000000000000000000000000000000000106000900e0c2000006000a001388000005000300000000000500040000000000")
	capturedCreatedServer   = mustHex("08000100d61dc06d050012000100000006000d0002000000060002000a00000014000600000000000000000000000000000000011400080000000000000000000000000000000001060009001388000006000a00e0c2000005000300000000000500040000000000")
	capturedAnnounced       = mustHex("0800010011a2ef15050004000200000006000a00138800001400080020010db8000000000000000000000001")
	capturedClosed          = mustHex("0800010011a2ef15")
)
