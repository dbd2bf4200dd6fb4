package mptcpdiag

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

func TestEncodeRequest(t *testing.T) {
	tests := []struct {
		name     string
		family   uint8
		protocol uint32
		want     string
	}{{
		// sdiag_protocol TCP, idiag_ext INFO, all states, no cookie, then
		// INET_DIAG_REQ_PROTOCOL = 262.
		name: "MPTCP, inet6", family: AF_INET6, protocol: mptcp.IPPROTO_MPTCP,
		want: "0a060200ffffffff" + strings.Repeat("00", 40) + "ffffffffffffffff" + "0800030006010000",
	}, {
		name: "TCP, inet", family: AF_INET, protocol: IPPROTO_TCP,
		want: "02060200ffffffff" + strings.Repeat("00", 40) + "ffffffffffffffff",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hex.EncodeToString(encodeRequest(tt.family, tt.protocol, AllStates)); got != tt.want {
				t.Errorf("request\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// infoFromSequence is struct mptcp_info read from sequence(96): each field
// holds the bytes of its offsets (little endian).
var infoFromSequence = Info{
	Size: 96, Subflows: 0, AddAddrSignal: 1, AddAddrAccepted: 2, SubflowsMax: 3,
	AddAddrSignalMax: 4, AddAddrAcceptedMax: 5,
	Flags: 0x0b0a0908, Token: 0x0f0e0d0c,
	WriteSeq: 0x1716151413121110, SndUna: 0x1f1e1d1c1b1a1918, RcvNxt: 0x2726252423222120,
	LocalAddrUsed: 0x28, LocalAddrMax: 0x29, CsumEnabled: true,
	Retransmits: 0x2f2e2d2c, BytesRetrans: 0x3736353433323130, BytesSent: 0x3f3e3d3c3b3a3938,
	BytesReceived: 0x4746454443424140, BytesAcked: 0x4f4e4d4c4b4a4948,
	SubflowsTotal: 0x50, EndpLaminarMax: 0x51, EndpFullmeshMax: 0x52,
	LastDataSent: 0x57565554, LastDataRecv: 0x5b5a5958, LastAckRecv: 0x5f5e5d5c,
}

func TestParseMPTCPInfo(t *testing.T) {
	// The layouts of older kernels are prefixes of 6.18's.
	linux516 := Info{
		Size: 44, Subflows: 0, AddAddrSignal: 1, AddAddrAccepted: 2, SubflowsMax: 3,
		AddAddrSignalMax: 4, AddAddrAcceptedMax: 5,
		Flags: 0x0b0a0908, Token: 0x0f0e0d0c,
		WriteSeq: 0x1716151413121110, SndUna: 0x1f1e1d1c1b1a1918, RcvNxt: 0x2726252423222120,
		LocalAddrUsed: 0x28, LocalAddrMax: 0x29, CsumEnabled: true,
	}
	linux67 := linux516
	linux67.Size, linux67.Retransmits, linux67.BytesRetrans = 80, 0x2f2e2d2c, 0x3736353433323130
	linux67.BytesSent, linux67.BytesReceived, linux67.BytesAcked = 0x3f3e3d3c3b3a3938, 0x4746454443424140, 0x4f4e4d4c4b4a4948
	newer := infoFromSequence
	newer.Size = 128

	tests := []struct {
		name    string
		data    []byte
		want    Info
		wantErr bool
	}{
		{name: "6.18", data: sequence(96), want: infoFromSequence},
		{name: "6.7", data: sequence(80), want: linux67},
		{name: "5.16", data: sequence(44), want: linux516},
		{name: "newer kernel", data: sequence(128), want: newer},
		{name: "no token", data: sequence(15), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMPTCPInfo(tt.data)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("unexpected info (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTCPInfo(t *testing.T) {
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	ms := func(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
	full := TCPInfo{
		Size: 280, State: 0, Retransmits: 2, Backoff: 4, RTO: us(0x0b0a0908),
		Unacked: 0x1b1a1918, Lost: 0x23222120,
		LastDataSent: ms(0x2f2e2d2c), LastDataRecv: ms(0x37363534), LastAckRecv: ms(0x3b3a3938),
		SndMSS: 0x13121110,
		RTT:    us(0x47464544), RTTVar: us(0x4b4a4948), SndCwnd: 0x53525150,
		TotalRetrans:  0x67666564,
		BytesAcked:    0x7f7e7d7c7b7a7978,
		BytesReceived: 0x8786858483828180,
		MinRTT:        us(0x97969594),
		BytesSent:     0xcfcecdcccbcac9c8,
		BytesRetrans:  0xd7d6d5d4d3d2d1d0,
	}
	// Linux 2.6's struct ended with tcpi_total_retrans.
	oldest := TCPInfo{Size: 104, Retransmits: 2, Backoff: 4, RTO: full.RTO, Unacked: full.Unacked, Lost: full.Lost,
		LastDataSent: full.LastDataSent, LastDataRecv: full.LastDataRecv, LastAckRecv: full.LastAckRecv, SndMSS: full.SndMSS, RTT: full.RTT, RTTVar: full.RTTVar, SndCwnd: full.SndCwnd, TotalRetrans: full.TotalRetrans}
	for _, tt := range []struct {
		name string
		data []byte
		want TCPInfo
	}{
		{"6.18", sequence(280), full},
		{"2.6", sequence(104), oldest},
		{"empty", nil, TCPInfo{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, parseTCPInfo(tt.data)); diff != "" {
				t.Errorf("unexpected tcp_info (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConnection(t *testing.T) {
	ap := netip.MustParseAddrPort
	listener := testSock{family: AF_INET6, state: StateListen, local: "[2001:db8::1]:5000", remote: "[::]:0", cookie: 0x1_0000_0002, uid: 1000, inode: 77}
	tests := []struct {
		name    string
		data    []byte
		want    Connection
		wantErr string
	}{{
		name: "captured",
		data: capturedConnection,
		want: Connection{
			Family: AF_INET, Local: ap("10.1.1.2:52401"), Remote: ap("10.1.1.1:32849"), State: StateEstablished,
			Inode: 0x21fac6, Cookie: 0x6f,
			Info: Info{
				Size: 96, Subflows: 1, SubflowsMax: 2, Flags: InfoRemoteKeyReceived, Token: 0x86c266db,
				WriteSeq: 0xa7b87b8bd84bddf9, SndUna: 0xa7b87b8bd84bddf9, RcvNxt: 0x0c9d0637b850a541,
				LocalAddrUsed: 1, LocalAddrMax: 1, BytesSent: 5, BytesReceived: 5, BytesAcked: 5,
				SubflowsTotal: 2, LastDataSent: 4, LastDataRecv: 4, LastAckRecv: 4,
			},
		},
	}, {
		name: "IPv6 listener, an unknown attribute",
		data: listener.encode(t, attr(INET_DIAG_PAD, nil), attr(99, []byte{1, 2, 3}), attr(INET_DIAG_INFO, mptcpInfo(96, 0))),
		want: Connection{
			Family: AF_INET6, Local: ap("[2001:db8::1]:5000"), Remote: ap("[::]:0"), State: StateListen,
			UID: 1000, Inode: 77, Cookie: 0x1_0000_0002, Info: Info{Size: 96},
		},
	}, {
		name: "no info",
		data: testSock{family: AF_INET, state: StateClose, local: "10.0.0.1:1", remote: "10.0.0.2:2", ifindex: 4}.encode(t),
		want: Connection{Family: AF_INET, Local: ap("10.0.0.1:1"), Remote: ap("10.0.0.2:2"), State: StateClose, IfIndex: 4},
	}, {
		name:    "short message",
		data:    capturedConnection[:sizeofInetDiagMsg-1],
		wantErr: "inet_diag_msg of 71 bytes, want 72",
	}, {
		name:    "unknown family",
		data:    testSock{family: 1}.encode(t),
		wantErr: "unknown address family 1",
	}, {
		name:    "short info",
		data:    listener.encode(t, attr(INET_DIAG_INFO, mptcpInfo(16, 1)[:12])),
		wantErr: "mptcp_info of 12 bytes, want at least 16",
	}, {
		name:    "truncated attribute",
		data:    append(listener.encode(t), 8, 0, 2, 0),
		wantErr: "invalid attribute",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConnection(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("unexpected connection (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSubflow(t *testing.T) {
	ap := netip.MustParseAddrPort
	sock := testSock{family: AF_INET, state: StateEstablished, local: "10.0.0.2:40000", remote: "10.0.0.1:443", inode: 9}
	tests := []struct {
		name    string
		data    []byte
		want    Subflow
		wantErr error // errNotSubflow, or any error when errAny
	}{{
		name: "captured join",
		data: capturedJoin,
		want: Subflow{
			Family: AF_INET, Local: ap("10.1.2.2:48743"), Remote: ap("10.1.1.1:32849"), State: StateEstablished,
			IfIndex: 3, Inode: 0x21fac6, Cookie: 0x70,
			LocalToken: 0x86c266db, RemoteToken: 0xb81f7acb, LocalID: 1,
			Flags:       SubflowJoinRemote | SubflowJoinLocal | SubflowFullyEstablished | SubflowConnected,
			RelWriteSeq: 1, MapSeq: 0x0c9d0637b850a53c, SSNOffset: 0x942a951a,
			TCP: TCPInfo{Size: 280, State: StateEstablished, RTO: 204 * time.Millisecond,
				LastDataSent: 8 * time.Millisecond, LastDataRecv: 8 * time.Millisecond, LastAckRecv: 8 * time.Millisecond,
				RTT: 30 * time.Microsecond, RTTVar: 15 * time.Microsecond,
				MinRTT: 30 * time.Microsecond, SndMSS: 1448, SndCwnd: 10, BytesAcked: 1},
		},
	}, {
		name: "every attribute, backup",
		data: sock.encode(t, ulpMPTCP(t,
			attr(MPTCP_SUBFLOW_ATTR_TOKEN_REM, u32(0x11111111)),
			attr(MPTCP_SUBFLOW_ATTR_TOKEN_LOC, u32(0x22222222)),
			attr(MPTCP_SUBFLOW_ATTR_RELWRITE_SEQ, u32(3)),
			attr(MPTCP_SUBFLOW_ATTR_PAD, nil),
			attr(MPTCP_SUBFLOW_ATTR_MAP_SEQ, u64(1<<40)),
			attr(MPTCP_SUBFLOW_ATTR_MAP_SFSEQ, u32(5)),
			attr(MPTCP_SUBFLOW_ATTR_SSN_OFFSET, u32(6)),
			attr(MPTCP_SUBFLOW_ATTR_MAP_DATALEN, []byte{7, 0}),
			attr(MPTCP_SUBFLOW_ATTR_FLAGS, u32(MPTCP_SUBFLOW_FLAG_JOIN_LOC|MPTCP_SUBFLOW_FLAG_BKUP_LOC)),
			attr(MPTCP_SUBFLOW_ATTR_ID_REM, u8(8)),
			attr(MPTCP_SUBFLOW_ATTR_ID_LOC, u8(9)),
			attr(42, []byte("from a newer kernel")),
		)),
		want: Subflow{
			Family: AF_INET, Local: ap("10.0.0.2:40000"), Remote: ap("10.0.0.1:443"), State: StateEstablished, Inode: 9,
			RemoteToken: 0x11111111, LocalToken: 0x22222222, RelWriteSeq: 3, MapSeq: 1 << 40, MapSubflowSeq: 5,
			SSNOffset: 6, MapDataLen: 7, Flags: SubflowJoinLocal | SubflowBackupLocal, RemoteID: 8, LocalID: 9,
		},
	}, {
		name:    "plain TCP",
		data:    sock.encode(t, attr(INET_DIAG_INFO, sequence(280))),
		wantErr: errNotSubflow,
	}, {
		name:    "another ULP",
		data:    sock.encode(t, nested(t, INET_DIAG_ULP_INFO, attr(INET_ULP_INFO_NAME, []byte("tls\x00")), nested(t, INET_ULP_INFO_TLS))),
		wantErr: errNotSubflow,
	}, {
		// A listener's ULP nest has the name and nothing else.
		name:    "MPTCP listener",
		data:    sock.encode(t, nested(t, INET_DIAG_ULP_INFO, attr(INET_ULP_INFO_NAME, []byte("mptcp\x00")))),
		wantErr: errNotSubflow,
	}, {
		name:    "token of the wrong size",
		data:    sock.encode(t, ulpMPTCP(t, attr(MPTCP_SUBFLOW_ATTR_TOKEN_LOC, []byte{1, 2}))),
		wantErr: errAny,
	}, {
		name:    "short message",
		data:    capturedJoin[:40],
		wantErr: errAny,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSubflow(tt.data)
			switch {
			case tt.wantErr == errAny && err != nil && !errors.Is(err, errNotSubflow):
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("unexpected subflow (-want +got):\n%s", diff)
			}
		})
	}
}

// errAny stands for "some decoding error" in tables.
var errAny = errors.New("any error")

func TestParseDump(t *testing.T) {
	msgs := []netlink.Message{{Data: capturedInitial}, {Data: testSock{family: AF_INET}.encode(t)}, {Data: capturedJoin}}
	got, err := parseDump(msgs, parseSubflow)
	if err != nil || len(got) != 2 {
		t.Fatalf("got %d subflows, %v; want the 2 subflows and no error", len(got), err)
	}
	msgs = append(msgs, netlink.Message{Data: []byte{2}})
	if _, err := parseDump(msgs, parseSubflow); err == nil || !strings.HasPrefix(err.Error(), "message 3: ") {
		t.Errorf("error %v, want one naming message 3", err)
	}
}

func TestJoin(t *testing.T) {
	ap := netip.MustParseAddrPort
	conn := func(local string, state State, token mptcp.Token) Connection {
		return Connection{Local: ap(local), Remote: ap("10.9.9.9:443"), State: state, Info: Info{Token: token}}
	}
	sub := func(local string, token mptcp.Token, flags SubflowFlags) Subflow {
		return Subflow{Local: ap(local), Remote: ap("10.9.9.9:443"), LocalToken: token, Flags: flags}
	}
	conns := []Connection{
		conn("0.0.0.0:443", StateListen, 0),
		conn("10.0.0.2:2000", StateEstablished, 2),
		conn("10.0.0.1:1000", StateEstablished, 1),
		conn("[2001:db8::1]:5000", StateListen, 0),
	}
	subflows := []Subflow{
		sub("10.0.0.3:1001", 1, SubflowJoinLocal),
		sub("10.0.0.4:1002", 1, SubflowJoinLocal|SubflowBackupLocal),
		sub("10.0.0.9:1000", 1, SubflowCapableLocal),
		sub("10.0.0.2:2000", 2, SubflowCapableRemote),
		sub("10.0.0.7:7", 3, 0), // its connection closed between the dumps
		sub("10.0.0.8:8", 0, 0),
	}
	got := join(conns, subflows)
	want := []Connection{
		conn("10.0.0.1:1000", StateEstablished, 1),
		conn("10.0.0.2:2000", StateEstablished, 2),
		conn("0.0.0.0:443", StateListen, 0),
		conn("[2001:db8::1]:5000", StateListen, 0),
	}
	want[0].Subflows = []Subflow{subflows[2], subflows[0], subflows[1]}
	want[1].Subflows = []Subflow{subflows[3]}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("unexpected connections (-want +got):\n%s", diff)
	}
}

func TestSubflowFlags(t *testing.T) {
	tests := []struct {
		f    SubflowFlags
		want string
	}{
		{0, ""},
		{SubflowCapableRemote | SubflowCapableLocal | SubflowFullyEstablished | SubflowConnected, "mcap_rem mcap_loc fully_established connected"},
		{SubflowJoinRemote | SubflowJoinLocal | SubflowBackupRemote | SubflowBackupLocal | SubflowMapValid, "join_rem join_loc bkup_rem bkup_loc mapvalid"},
		{SubflowMapValid | 1<<12 | 1<<9, "mapvalid 0x1200"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%#x: %q, want %q", uint32(tt.f), got, tt.want)
		}
	}
	for _, tt := range []struct {
		f    SubflowFlags
		want bool
	}{{0, false}, {SubflowBackupLocal, true}, {SubflowBackupRemote, true}, {SubflowJoinLocal, false}} {
		s := Subflow{Flags: tt.f}
		if got := s.Backup(); got != tt.want {
			t.Errorf("Backup() with %v = %v, want %v", tt.f, got, tt.want)
		}
	}
	if got := (InfoFallback | InfoRemoteKeyReceived | 8).String(); got != "fallback remote_key_received 0x8" {
		t.Errorf("info flags %q", got)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateEstablished: "ESTABLISHED", StateListen: "LISTEN", StateBoundInactive: "BOUND_INACTIVE", 0: "UNKNOWN(0)", 99: "UNKNOWN(99)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d) = %q, want %q", uint8(s), got, want)
		}
	}
}

func TestTotalSubflows(t *testing.T) {
	for _, tt := range []struct {
		info Info
		want int
	}{
		{Info{Size: 96, Subflows: 1, SubflowsTotal: 3}, 3}, // the kernel's count wins
		{Info{Size: 81, Subflows: 1, SubflowsTotal: 2}, 2},
		{Info{Size: 80, Subflows: 1}, 2}, // Linux 6.7: no subflows_total
		{Info{Size: 44}, 1},
	} {
		if got := tt.info.TotalSubflows(); got != tt.want {
			t.Errorf("TotalSubflows of %d bytes, %d extra, total %d: %d, want %d",
				tt.info.Size, tt.info.Subflows, tt.info.SubflowsTotal, got, tt.want)
		}
	}
}

func TestEncodeRequestStates(t *testing.T) {
	req := encodeRequest(AF_INET, IPPROTO_TCP, StatesOf(StateFinWait1, StateLastAck))
	if got, want := hex.EncodeToString(req[4:8]), "10020000"; got != want {
		t.Errorf("idiag_states %s, want %s (bits 4 and 9)", got, want)
	}
	s := StatesOf(StateFinWait1, StateLastAck)
	if !s.Has(StateFinWait1) || !s.Has(StateLastAck) || s.Has(StateEstablished) || s.Has(State(40)) {
		t.Errorf("%#x: Has is wrong", uint32(s))
	}
}

// TestEncodeExact checks that a request names the very socket a dump
// showed: its id, read back with the reply decoder, is the subflow's.
func TestEncodeExact(t *testing.T) {
	for _, s := range []Subflow{{
		Family: AF_INET, IfIndex: 7, Cookie: 0x0102030405060708,
		Local:  netip.MustParseAddrPort("10.1.1.2:40000"),
		Remote: netip.MustParseAddrPort("10.3.0.1:443"),
	}, {
		Family: AF_INET6, Cookie: 42,
		Local:  netip.MustParseAddrPort("[2001:db8::2]:1"),
		Remote: netip.MustParseAddrPort("[2001:db8:1::1]:65535"),
	}, {
		// An AF_INET6 socket talking IPv4: 4-in-6 addresses.
		Family: AF_INET6, Cookie: 1,
		Local:  netip.MustParseAddrPort("[::ffff:10.1.1.2]:2"),
		Remote: netip.MustParseAddrPort("[::ffff:10.3.0.1]:3"),
	}} {
		req, err := encodeExact(s)
		if err != nil {
			t.Fatalf("%v: %v", s.Local, err)
		}
		if len(req) != sizeofInetDiagReqV2 || req[1] != IPPROTO_TCP {
			t.Errorf("%v: request of %d bytes for protocol %d", s.Local, len(req), req[1])
		}
		msg := make([]byte, sizeofInetDiagMsg)
		msg[0] = req[0]
		copy(msg[4:52], req[8:56]) // struct inet_diag_sockid
		m, err := parseSockMsg(msg)
		if err != nil {
			t.Fatal(err)
		}
		if m.family != s.Family || m.local != s.Local || m.remote != s.Remote || m.ifindex != s.IfIndex || m.cookie != s.Cookie {
			t.Errorf("request names %d %v -> %v if %d cookie %#x, want %d %v -> %v if %d cookie %#x",
				m.family, m.local, m.remote, m.ifindex, m.cookie, s.Family, s.Local, s.Remote, s.IfIndex, s.Cookie)
		}
	}
	for _, bad := range []Subflow{
		{Family: 3},
		{Family: AF_INET, Local: netip.MustParseAddrPort("[2001:db8::2]:1"), Remote: netip.MustParseAddrPort("10.3.0.1:1")},
	} {
		if _, err := encodeExact(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
