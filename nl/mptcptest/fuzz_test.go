package mptcptest

import (
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// FuzzServe feeds arbitrary requests to a fake with endpoints and a
// userspace-PM connection: it must never panic, must answer every request
// with well-formed messages, and must keep the table's invariants.
func FuzzServe(f *testing.F) {
	for _, s := range []string{
		"030100000c0001800500020001000000",                                                                 // GET_ADDR id 1
		"010100001c0001800600010002000000080003000a0505090800060002000000",                                 // ADD_ADDR
		"0501000008000200090000000800030001000000",                                                         // SET_LIMITS
		"070100001400018005000200020000000800060008000000",                                                 // SET_FLAGS
		"080100002400018006000100020000000500020001000000080003000a050501080006000100000008000400bc0a0000", // ANNOUNCE
		"0a010000080004000000abcd",                                                                         // SUBFLOW_CREATE, no addresses
		"0301000028000180060001000a0000001400040000000000000000000000ffff0a050501",                         // v4-mapped
	} {
		b, err := hex.DecodeString(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint16(netlink.Request|netlink.Acknowledge), b)
		f.Add(uint16(netlink.Request|netlink.Dump), b)
	}
	f.Fuzz(func(t *testing.T, flags uint16, data []byte) {
		k := goldenKernel(t)
		k.AddConnection(Connection{Token: 0xabc, Local: mustAddrPort("10.0.0.1:1"), Remote: mustAddrPort("10.0.0.2:2"), Userspace: true})
		req := netlink.Message{
			Header: netlink.Header{Length: uint32(nlmsgHdrLen + len(data)), Type: familyID,
				Flags: netlink.HeaderFlags(flags), Sequence: 1, PID: 2},
			Data: data,
		}
		for _, d := range k.serve(req, ackOptions{extAck: true}) {
			for _, m := range d {
				if int(m.Header.Length) != nlmsgHdrLen+len(m.Data) || m.Header.Sequence != 1 || m.Header.PID != 2 {
					t.Fatalf("malformed answer %+v", m.Header)
				}
				if m.Header.Type == familyID {
					if _, err := netlink.NewAttributeDecoder(m.Data[genlHdrLen:]); err != nil {
						t.Fatalf("answer attributes do not decode: %v", err)
					}
				}
			}
		}
		checkInvariants(t, k)
	})
}

// checkInvariants verifies what the kernel guarantees of its table.
func checkInvariants(t *testing.T, k *Kernel) {
	t.Helper()
	if len(k.list) > maxEndpoints {
		t.Fatalf("%d endpoints, more than %d", len(k.list), maxEndpoints)
	}
	seen := map[mptcp.ID]bool{}
	for _, e := range k.list {
		if e.id == 0 || seen[e.id] || !k.idUsed[e.id] {
			t.Fatalf("bad id %d in %+v", e.id, k.list)
		}
		seen[e.id] = true
		if e.port != 0 && !usesPort(e.flags) {
			t.Fatalf("port on a non-signal endpoint %+v", e)
		}
		if e.flags&^addrFlagsMask != 0 {
			t.Fatalf("unknown flags kept: %+v", e)
		}
	}
	for id, used := range k.idUsed {
		if used && !seen[mptcp.ID(id)] {
			t.Fatalf("id %d marked used without an endpoint", id)
		}
	}
	if k.subflowsMax > maxLimit || k.addAddrAcceptMax > maxLimit {
		t.Fatalf("limits %d/%d above %d", k.subflowsMax, k.addAddrAcceptMax, maxLimit)
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
