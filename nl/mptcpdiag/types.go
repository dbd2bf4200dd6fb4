package mptcpdiag

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Connection is one MPTCP socket: a connection, or a listener (State
// StateListen), with the TCP subflows that carry it.
type Connection struct {
	Family uint8 // AF_INET or AF_INET6 (an AF_INET6 socket may show 4-in-6 addresses)
	Local  netip.AddrPort
	Remote netip.AddrPort // zero for a listener
	State  State
	// IfIndex is the device the socket is bound to (SO_BINDTODEVICE),
	// 0 when unbound.
	IfIndex int
	UID     uint32
	Inode   uint32
	Cookie  uint64 // the kernel's socket cookie
	Info    Info   // struct mptcp_info

	// Subflows are the TCP subflows whose local token is Info.Token: the
	// initial one first, then by address. Empty for a listener, a
	// connection that fell back to TCP, and without CAP_NET_ADMIN.
	Subflows []Subflow
}

// Listening reports whether c is a listener rather than a connection.
func (c *Connection) Listening() bool { return c.State == StateListen }

// Established counts c's subflows in TCP state ESTABLISHED.
func (c *Connection) Established() int {
	n := 0
	for _, s := range c.Subflows {
		if s.State == StateEstablished {
			n++
		}
	}
	return n
}

// Info is struct mptcp_info (include/uapi/linux/mptcp.h). The kernel
// grows it at the end: fields past Size bytes were not sent (an older
// kernel) and are zero. The comments name the kernel's newer aliases.
type Info struct {
	Size int // bytes of struct mptcp_info the kernel sent

	Subflows           uint8 // extra_subflows: subflows besides the initial one
	AddAddrSignal      uint8 // ADD_ADDRs sent
	AddAddrAccepted    uint8 // ADD_ADDRs received and accepted
	SubflowsMax        uint8 // limit_extra_subflows
	AddAddrSignalMax   uint8 // endp_signal_max
	AddAddrAcceptedMax uint8 // limit_add_addr_accepted
	Flags              InfoFlags
	Token              mptcp.Token
	WriteSeq           uint64
	SndUna             uint64
	RcvNxt             uint64
	LocalAddrUsed      uint8
	LocalAddrMax       uint8 // endp_subflow_max
	CsumEnabled        bool
	// Linux 6.7+
	Retransmits   uint32
	BytesRetrans  uint64
	BytesSent     uint64
	BytesReceived uint64
	BytesAcked    uint64
	// Linux 6.10+
	SubflowsTotal   uint8 // subflows including the initial one
	EndpLaminarMax  uint8 // Linux 6.18+
	EndpFullmeshMax uint8 // after 6.18, which sends 0 there
	// Linux 6.10+, milliseconds ago
	LastDataSent uint32
	LastDataRecv uint32
	LastAckRecv  uint32
}

// TotalSubflows is the number of subflows, the initial one included, as
// the kernel counts them: SubflowsTotal where it sends it (Linux 6.10+),
// else Subflows + 1.
func (i *Info) TotalSubflows() int {
	if i.Size > offsetSubflowsTotal {
		return int(i.SubflowsTotal)
	}
	return int(i.Subflows) + 1
}

// Subflow is one TCP subflow of a connection.
type Subflow struct {
	Family  uint8
	Local   netip.AddrPort
	Remote  netip.AddrPort
	State   State
	IfIndex int // the device the subflow is bound to (an endpoint's dev), 0 when unbound
	UID     uint32
	Inode   uint32 // the MPTCP socket's: subflows have no file of their own
	Cookie  uint64

	LocalToken mptcp.Token // the connection's token (Info.Token)
	// RemoteToken is the peer's token as far as this subflow knows it:
	// only a subflow this end joined has it; 0 on initial subflows and
	// on joins the peer opened (Linux 6.18).
	RemoteToken mptcp.Token
	LocalID     mptcp.ID // the endpoint id of the local address; 0 for the initial one
	RemoteID    mptcp.ID
	Flags       SubflowFlags

	// Data-sequence state (MPTCP_SUBFLOW_ATTR_*).
	RelWriteSeq   uint32
	MapSeq        uint64
	MapSubflowSeq uint32
	SSNOffset     uint32
	MapDataLen    uint16

	TCP TCPInfo
}

// Backup reports whether the subflow is a backup one, asked for by either
// end, as the packet scheduler counts it.
func (s *Subflow) Backup() bool {
	return s.Flags&(SubflowBackupLocal|SubflowBackupRemote) != 0
}

// Initial reports whether s is the subflow that opened the connection
// (MP_CAPABLE) rather than one that joined it (MP_JOIN).
func (s *Subflow) Initial() bool {
	return s.Flags&(SubflowJoinLocal|SubflowJoinRemote) == 0
}

// TCPInfo is part of struct tcp_info (include/uapi/linux/tcp.h). Fields
// past Size bytes were not sent and are zero.
type TCPInfo struct {
	Size          int // bytes of struct tcp_info the kernel sent
	State         State
	Retransmits   uint8         // RTO firings since the last ACK of new data (tcpi_retransmits; SYN retries before ESTABLISHED)
	Backoff       uint8         // exponential backoff of the retransmission timer (tcpi_backoff)
	RTO           time.Duration // retransmission timeout, backed off (tcpi_rto, µs)
	Unacked       uint32        // segments sent and not yet acknowledged
	Lost          uint32        // segments the sender counts as lost
	LastDataSent  time.Duration // since the last data segment went out (ms resolution)
	LastDataRecv  time.Duration // since the last data segment came in
	LastAckRecv   time.Duration // since the last ACK came in
	RTT           time.Duration // smoothed round-trip time (tcpi_rtt, µs)
	RTTVar        time.Duration
	MinRTT        time.Duration
	SndMSS        uint32
	SndCwnd       uint32 // segments
	TotalRetrans  uint32 // segments retransmitted over the life of the socket
	BytesAcked    uint64
	BytesReceived uint64
	BytesSent     uint64 // including retransmissions (Linux 4.19+)
	BytesRetrans  uint64 // Linux 4.19+
}

// State is a TCP state (include/net/tcp_states.h); MPTCP sockets use the
// same values.
type State uint8

const (
	StateEstablished   State = TCP_ESTABLISHED
	StateSynSent       State = TCP_SYN_SENT
	StateSynRecv       State = TCP_SYN_RECV
	StateFinWait1      State = TCP_FIN_WAIT1
	StateFinWait2      State = TCP_FIN_WAIT2
	StateTimeWait      State = TCP_TIME_WAIT
	StateClose         State = TCP_CLOSE
	StateCloseWait     State = TCP_CLOSE_WAIT
	StateLastAck       State = TCP_LAST_ACK
	StateListen        State = TCP_LISTEN
	StateClosing       State = TCP_CLOSING
	StateNewSynRecv    State = TCP_NEW_SYN_RECV
	StateBoundInactive State = TCP_BOUND_INACTIVE // Linux 6.7+
)

var stateNames = map[State]string{
	StateEstablished:   "ESTABLISHED",
	StateSynSent:       "SYN_SENT",
	StateSynRecv:       "SYN_RECV",
	StateFinWait1:      "FIN_WAIT1",
	StateFinWait2:      "FIN_WAIT2",
	StateTimeWait:      "TIME_WAIT",
	StateClose:         "CLOSE",
	StateCloseWait:     "CLOSE_WAIT",
	StateLastAck:       "LAST_ACK",
	StateListen:        "LISTEN",
	StateClosing:       "CLOSING",
	StateNewSynRecv:    "NEW_SYN_RECV",
	StateBoundInactive: "BOUND_INACTIVE",
}

// String is the kernel's name without TCP_ ("ESTABLISHED"), or
// "UNKNOWN(n)".
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint8(s))
}

// States is a set of States, a bit per state as idiag_states has them.
type States uint32

// AllStates matches every state.
const AllStates = ^States(0)

// StatesOf is the set of the states given.
func StatesOf(states ...State) States {
	var s States
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

// Has reports whether st is in s.
func (s States) Has(st State) bool { return st < 32 && s&(1<<st) != 0 }

// SubflowFlags are MPTCP_SUBFLOW_FLAG_* bits. _LOC is what this end asked
// for, _REM what the peer did.
type SubflowFlags uint32

const (
	SubflowCapableRemote    SubflowFlags = MPTCP_SUBFLOW_FLAG_MCAP_REM
	SubflowCapableLocal     SubflowFlags = MPTCP_SUBFLOW_FLAG_MCAP_LOC
	SubflowJoinRemote       SubflowFlags = MPTCP_SUBFLOW_FLAG_JOIN_REM
	SubflowJoinLocal        SubflowFlags = MPTCP_SUBFLOW_FLAG_JOIN_LOC
	SubflowBackupRemote     SubflowFlags = MPTCP_SUBFLOW_FLAG_BKUP_REM
	SubflowBackupLocal      SubflowFlags = MPTCP_SUBFLOW_FLAG_BKUP_LOC
	SubflowFullyEstablished SubflowFlags = MPTCP_SUBFLOW_FLAG_FULLY_ESTABLISHED
	SubflowConnected        SubflowFlags = MPTCP_SUBFLOW_FLAG_CONNECTED
	SubflowMapValid         SubflowFlags = MPTCP_SUBFLOW_FLAG_MAPVALID
)

// subflowFlagNames are the header's names, lowercased, without the
// MPTCP_SUBFLOW_FLAG_ prefix.
var subflowFlagNames = []flagName{
	{uint32(SubflowCapableRemote), "mcap_rem"},
	{uint32(SubflowCapableLocal), "mcap_loc"},
	{uint32(SubflowJoinRemote), "join_rem"},
	{uint32(SubflowJoinLocal), "join_loc"},
	{uint32(SubflowBackupRemote), "bkup_rem"},
	{uint32(SubflowBackupLocal), "bkup_loc"},
	{uint32(SubflowFullyEstablished), "fully_established"},
	{uint32(SubflowConnected), "connected"},
	{uint32(SubflowMapValid), "mapvalid"},
}

// Names lists the set flags in bit order; unknown bits come last as one
// "0x.." word.
func (f SubflowFlags) Names() []string { return names(uint32(f), subflowFlagNames) }

// String joins Names with spaces.
func (f SubflowFlags) String() string { return strings.Join(f.Names(), " ") }

// InfoFlags are mptcpi_flags bits (MPTCP_INFO_FLAG_*).
type InfoFlags uint32

const (
	InfoFallback          InfoFlags = MPTCP_INFO_FLAG_FALLBACK // the connection fell back to plain TCP
	InfoRemoteKeyReceived InfoFlags = MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED
)

var infoFlagNames = []flagName{
	{uint32(InfoFallback), "fallback"},
	{uint32(InfoRemoteKeyReceived), "remote_key_received"},
}

// Names lists the set flags in bit order; unknown bits come last as one
// "0x.." word.
func (f InfoFlags) Names() []string { return names(uint32(f), infoFlagNames) }

// String joins Names with spaces.
func (f InfoFlags) String() string { return strings.Join(f.Names(), " ") }

type flagName struct {
	bit  uint32
	name string
}

func names(f uint32, table []flagName) []string {
	var out []string
	for _, fn := range table {
		if f&fn.bit != 0 {
			out = append(out, fn.name)
			f &^= fn.bit
		}
	}
	if f != 0 {
		out = append(out, fmt.Sprintf("0x%x", f))
	}
	return out
}
