package mptcptest

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Golden tests: answers captured from Linux 6.18.44 with a raw genetlink
// socket (extended acks on) must come out of the fake byte for byte. The
// kernel's family id was 0x1c; it is patched to the fake's.

const capturedFamilyID = 0x1c

// goldenKernel holds what the captures were taken against: 10.5.5.1
// subflow (id 1), 10.5.5.2 signal (id 2), 10.5.5.3 subflow (id 3).
func goldenKernel(t *testing.T) *Kernel {
	t.Helper()
	k := NewKernel()
	for _, e := range []struct {
		addr  string
		flags mptcp.Flags
	}{{"10.5.5.1", mptcp.FlagSubflow}, {"10.5.5.2", mptcp.FlagSignal}, {"10.5.5.3", mptcp.FlagSubflow}} {
		if _, errno := k.appendEntry(&entry{addr: netip.MustParseAddr(e.addr), flags: e.flags}, true, true); errno != 0 {
			t.Fatalf("setup %s: %v", e.addr, errno)
		}
	}
	return k
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenErrors replays each request the kernel echoed in its error
// and compares the fake's error message with the kernel's.
func TestGoldenErrors(t *testing.T) {
	tests := []struct {
		name  string
		flags netlink.HeaderFlags
		data  string // the NLMSG_ERROR payload the kernel sent
	}{
		{"get id 0", 0x200, "eaffffff200000001c000100a4e3160835e92b84030100000c00018005000200000000001600010061646472657373206e6f7420666f756e640000000800020014000000"},
		{"get empty nest", 0x200, "eaffffff180000001c000100a5e3160835e92b8403010000040001801600010061646472657373206e6f7420666f756e640000000800020014000000"},
		{"get without address", 0x200, "eaffffff140000001c000100a2e3160835e92b84030100000800050001000000"},
		{"add duplicate", 0x200, "efffffff300000001c000500e8d5ef0c6c05c5b5010100001c0001800600010002000000080003000a05050108000600010000002d000100746f6f206d616e7920616464726573736573206f72206475706c6963617465206f6e653a202d313700000000"},
		{"add v4-mapped duplicate", 0x200, "efffffff3c0000001c000500f8a637aa3c470e8a0101000028000180060001000a0000001400040000000000000000000000ffff0a05050108000600020000002d000100746f6f206d616e7920616464726573736573206f72206475706c6963617465206f6e653a202d313700000000"},
		{"add port with subflow", 0x200, "eaffffff380000001c000500e9d5ef0c6c05c5b501010000240001800600010002000000080003000a050509060005000500000008000600020000003b000100666c616773206d7573742068617665207369676e616c20616e64206e6f7420737562666c6f77207768656e207573696e6720706f727400000800020014000000"},
		{"add signal fullmesh", 0x200, "eaffffff300000001c000500ead5ef0c6c05c5b5010100001c0001800600010002000000080003000a050509080006000900000030000100666c616773206d7573746e2774206861766520626f7468207369676e616c20616e642066756c6c6d657368000800020014000000"},
		{"add implicit", 0x200, "eaffffff300000001c000500ebd5ef0c6c05c5b5010100001c0001800600010002000000080003000a05050908000600100000002300010063616e27742063726561746520494d504c4943495420656e64706f696e7400000800020014000000"},
		{"add id in use", 0x200, "f0ffffff380000001c000500ecd5ef0c6c05c5b5010100002400018006000100020000000500020003000000080003000a05050908000600020000002d000100746f6f206d616e7920616464726573736573206f72206475706c6963617465206f6e653a202d313600000000"},
		{"add family without address", 0x200, "eaffffff280000001c000500f6d5ef0c6c05c5b5010100001400018006000100020000000800060002000000190001006d697373696e6720616464726573732064617461000000000800020014000000"},
		{"add unknown family", 0x200, "eaffffff300000001c000500f7d5ef0c6c05c5b5010100001c0001800600010007000000080003000102030408000600020000001b000100756e6b6e6f776e20616464726573732066616d696c7900000800020014000000"},
		{"add without family", 0x200, "eaffffff280000001c000500f8d5ef0c6c05c5b5010100001400018008000300010203040800060002000000130001006d697373696e672066616d696c7900000800020014000000"},
		{"limit add_addr_accepted 9", 0x200, "eaffffff240000001c000500f2d5ef0c6c05c5b50501000008000200090000000800030001000000230001006c696d69742067726561746572207468616e206d6178696d756d2028382900000800020014000000"},
		{"limit subflows 9", 0x200, "eaffffff240000001c000500f3d5ef0c6c05c5b50501000008000200010000000800030009000000230001006c696d69742067726561746572207468616e206d6178696d756d202838290000080002001c000000"},
		{"delete unknown id", 0x200, "eaffffff200000001c000500f9d5ef0c6c05c5b5020100000c00018005000200050000001600010061646472657373206e6f7420666f756e640000000800020014000000"},
		{"delete without address", 0x200, "eaffffff140000001c000500fbd5ef0c6c05c5b5020100000800050001000000"},
		{"set flags unknown id", 0x200, "eaffffff280000001c000500fcd5ef0c6c05c5b50701000014000180050002000500000008000600040000001600010061646472657373206e6f7420666f756e640000000800020014000000"},
		{"set flags id 0", 0x200, "a1ffffff280000001c000500fdd5ef0c6c05c5b5070100001400018005000200000000000800060004000000170001006d697373696e67206164647265737320494400000800020014000000"},
		{"set flags fullmesh on signal", 0x200, "eaffffff280000001c0005001bacf488bec9f4ab07010000140001800500020002000000080006000800000017000100696e76616c6964206164647220666c61677300000800020014000000"},
		{"dump of a command without dump", 0, "a1ffffff140000001c000103c02c45cab62047a106010000"},
		{"get with unknown token", 0x200, "eaffffff280000001c000100c22c45cab62047a1030100000c000180050002000100000008000400d20400001600010061646472657373206e6f7420666f756e640000000800020014000000"},
		{"announce with unknown token", 0x200, "eaffffff400000001c000500c32c45cab62047a1080100002400018006000100020000000500020001000000080003000a050501080006000100000008000400d204000012000100696e76616c696420746f6b656e0000000800020038000000"},
		{"remove with unknown token", 0x200, "eaffffff280000001c000500c42c45cab62047a1090100000400018008000400d2040000050005000300000012000100696e76616c696420746f6b656e0000000800020018000000"},
		{"remove without id", 0x200, "eaffffff200000001c000500c52c45cab62047a1090100000400018008000400d20400000800050005000000"},
		{"set flags unknown address", 0x200, "eaffffff300000001c00050023acf488bec9f4ab070100001c0001800600010002000000080003000a05050908000600040000001600010061646472657373206e6f7420666f756e640000000800020014000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := mustHex(t, tt.data)
			// The echoed request header and payload follow the errno.
			if got := binary.NativeEndian.Uint16(want[8:]); got != capturedFamilyID {
				t.Fatalf("capture has family %#x, want %#x", got, capturedFamilyID)
			}
			binary.NativeEndian.PutUint16(want[8:], familyID)
			h := netlink.Header{
				Length:   binary.NativeEndian.Uint32(want[4:]),
				Type:     netlink.HeaderType(binary.NativeEndian.Uint16(want[8:])),
				Flags:    netlink.HeaderFlags(binary.NativeEndian.Uint16(want[10:])),
				Sequence: binary.NativeEndian.Uint32(want[12:]),
				PID:      binary.NativeEndian.Uint32(want[16:]),
			}
			req := netlink.Message{Header: h, Data: want[20 : 20+h.Length-nlmsgHdrLen]}

			k := goldenKernel(t)
			got := k.serve(req, ackOptions{extAck: true})
			wantMsg := netlink.Message{
				Header: netlink.Header{
					Length: uint32(nlmsgHdrLen + len(want)), Type: netlink.Error, Flags: tt.flags,
					Sequence: h.Sequence, PID: h.PID,
				},
				Data: want,
			}
			if diff := cmp.Diff([][]netlink.Message{{wantMsg}}, got); diff != "" {
				t.Errorf("unexpected answer (-kernel +fake):\n%s", diff)
			}
		})
	}
}

// TestGoldenReplies checks replies, dumps and acks against captures.
func TestGoldenReplies(t *testing.T) {
	hdr := func(flags netlink.HeaderFlags) netlink.Header {
		return netlink.Header{Type: familyID, Flags: flags, Sequence: 77, PID: 1234}
	}
	msg := func(typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Length: uint32(nlmsgHdrLen + len(data)), Type: typ, Flags: flags, Sequence: 77, PID: 1234},
			Data:   data,
		}
	}
	getID1 := mustHex(t, "030100000c0001800500020001000000")
	tests := []struct {
		name  string
		setup func(k *Kernel)
		req   netlink.Message
		want  func(req netlink.Message) [][]netlink.Message
	}{
		{
			name: "get by id",
			req:  netlink.Message{Header: hdr(netlink.Request), Data: getID1},
			want: func(netlink.Message) [][]netlink.Message {
				return [][]netlink.Message{{msg(familyID, 0, mustHex(t,
					"030100002c0001800600010002000000060005000000000005000200010000000800060002000000080003000a050501"))}}
			},
		},
		{
			name: "get with ack: reply and ack apart",
			req:  netlink.Message{Header: hdr(netlink.Request | netlink.Acknowledge), Data: getID1},
			want: func(req netlink.Message) [][]netlink.Message {
				return [][]netlink.Message{
					{msg(familyID, 0, mustHex(t, "030100002c0001800600010002000000060005000000000005000200010000000800060002000000080003000a050501"))},
					{msg(netlink.Error, netlink.Capped, append(make([]byte, 4), appendHeader(nil, req.Header)...))},
				}
			},
		},
		{
			name: "dump with ifindex and port",
			setup: func(k *Kernel) {
				k.list[0].ifindex = 999
				k.appendEntry(&entry{addr: netip.MustParseAddr("10.5.5.1"), port: 7000, flags: mptcp.FlagSignal | mptcp.FlagBackup}, true, true)
			},
			req: netlink.Message{Header: hdr(netlink.Request | netlink.Dump), Data: mustHex(t, "03010000")},
			want: func(netlink.Message) [][]netlink.Message {
				return [][]netlink.Message{{
					msg(familyID, netlink.Multi, mustHex(t, "0301000034000180060001000200000006000500000000000500020001000000080006000200000008000700e7030000080003000a050501")),
					msg(familyID, netlink.Multi, mustHex(t, "030100002c0001800600010002000000060005000000000005000200020000000800060001000000080003000a050502")),
					msg(familyID, netlink.Multi, mustHex(t, "030100002c0001800600010002000000060005000000000005000200030000000800060002000000080003000a050503")),
					msg(familyID, netlink.Multi, mustHex(t, "030100002c000180060001000200000006000500581b000005000200040000000800060005000000080003000a050501")),
					msg(netlink.Done, netlink.Multi, make([]byte, 4)),
				}}
			},
		},
		{
			name:  "empty dump",
			setup: func(k *Kernel) { k.flushAddrs(nil) },
			req:   netlink.Message{Header: hdr(netlink.Request | netlink.Dump), Data: mustHex(t, "03010000")},
			want: func(netlink.Message) [][]netlink.Message {
				return [][]netlink.Message{{msg(netlink.Done, netlink.Multi, make([]byte, 4))}}
			},
		},
		{
			name: "failed dump ends in NLMSG_DONE with the errno",
			req:  netlink.Message{Header: hdr(netlink.Request | netlink.Dump), Data: mustHex(t, "0301000008000400d2040000")},
			want: func(netlink.Message) [][]netlink.Message {
				return [][]netlink.Message{{msg(netlink.Done, netlink.Multi|netlink.AcknowledgeTLVs,
					mustHex(t, "eaffffff12000100696e76616c696420746f6b656e0000000800020014000000"))}}
			},
		},
		{
			name: "successful add acks with the header only",
			req: netlink.Message{Header: hdr(netlink.Request | netlink.Acknowledge),
				Data: mustHex(t, "010100001c0001800600010002000000080003000a0505090800060002000000")},
			want: func(req netlink.Message) [][]netlink.Message {
				return [][]netlink.Message{{msg(netlink.Error, netlink.Capped, append(make([]byte, 4), appendHeader(nil, req.Header)...))}}
			},
		},
		{
			name: "limits",
			req:  netlink.Message{Header: hdr(netlink.Request), Data: mustHex(t, "06010000")},
			want: func(netlink.Message) [][]netlink.Message {
				return [][]netlink.Message{{msg(familyID, 0, mustHex(t, "0601000008000200000000000800030002000000"))}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := goldenKernel(t)
			if tt.setup != nil {
				tt.setup(k)
			}
			tt.req.Header.Length = uint32(nlmsgHdrLen + len(tt.req.Data))
			got := k.serve(tt.req, ackOptions{extAck: true})
			if diff := cmp.Diff(tt.want(tt.req), got); diff != "" {
				t.Errorf("unexpected answer (-kernel +fake):\n%s", diff)
			}
		})
	}
}
