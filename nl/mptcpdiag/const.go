package mptcpdiag

// Kernel constants, spelled as in the kernel's headers (named above each
// group); only this package uses them.

// include/uapi/linux/sock_diag.h
const (
	SOCK_DIAG_BY_FAMILY = 20
	SOCK_DESTROY        = 21 // CONFIG_INET_DIAG_DESTROY: abort one socket
)

// include/uapi/linux/inet_diag.h: sizes of the fixed headers.
const (
	sizeofInetDiagReqV2 = 56 // struct inet_diag_req_v2
	sizeofInetDiagMsg   = 72 // struct inet_diag_msg
)

// include/uapi/linux/inet_diag.h: request attributes.
const (
	INET_DIAG_REQ_PROTOCOL = 3 // u32: a protocol that does not fit sdiag_protocol
)

// include/uapi/linux/inet_diag.h: reply attributes. INET_DIAG_INFO is
// asked for with bit (1 << (INET_DIAG_INFO - 1)) of idiag_ext; the kernel
// adds INET_DIAG_ULP_INFO (net/ipv4/tcp_diag.c) to its replies to callers
// with CAP_NET_ADMIN, unasked.
const (
	INET_DIAG_INFO      = 2 // struct tcp_info, or struct mptcp_info
	INET_DIAG_PAD       = 14
	INET_DIAG_ULP_INFO  = 19 // nest of INET_ULP_INFO_*
	INET_DIAG_NOCOOKIE  = ^uint32(0)
	inetDiagInfoExtFlag = 1 << (INET_DIAG_INFO - 1)
)

// include/uapi/linux/inet_diag.h: the INET_DIAG_ULP_INFO nest.
const (
	INET_ULP_INFO_NAME  = 1 // string: "mptcp", "tls", ...
	INET_ULP_INFO_TLS   = 2
	INET_ULP_INFO_MPTCP = 3 // nest of MPTCP_SUBFLOW_ATTR_*
)

// include/uapi/linux/mptcp.h: the INET_ULP_INFO_MPTCP nest
// (net/mptcp/diag.c). The sequence numbers are sent with CAP_NET_ADMIN
// only, as the whole nest is.
const (
	MPTCP_SUBFLOW_ATTR_TOKEN_REM    = 1  // u32
	MPTCP_SUBFLOW_ATTR_TOKEN_LOC    = 2  // u32
	MPTCP_SUBFLOW_ATTR_RELWRITE_SEQ = 3  // u32
	MPTCP_SUBFLOW_ATTR_MAP_SEQ      = 4  // u64
	MPTCP_SUBFLOW_ATTR_MAP_SFSEQ    = 5  // u32
	MPTCP_SUBFLOW_ATTR_SSN_OFFSET   = 6  // u32
	MPTCP_SUBFLOW_ATTR_MAP_DATALEN  = 7  // u16
	MPTCP_SUBFLOW_ATTR_FLAGS        = 8  // u32, MPTCP_SUBFLOW_FLAG_*
	MPTCP_SUBFLOW_ATTR_ID_REM       = 9  // u8
	MPTCP_SUBFLOW_ATTR_ID_LOC       = 10 // u8
	MPTCP_SUBFLOW_ATTR_PAD          = 11
)

// include/uapi/linux/mptcp.h: MPTCP_SUBFLOW_ATTR_FLAGS bits.
const (
	MPTCP_SUBFLOW_FLAG_MCAP_REM          = 1 << 0
	MPTCP_SUBFLOW_FLAG_MCAP_LOC          = 1 << 1
	MPTCP_SUBFLOW_FLAG_JOIN_REM          = 1 << 2
	MPTCP_SUBFLOW_FLAG_JOIN_LOC          = 1 << 3
	MPTCP_SUBFLOW_FLAG_BKUP_REM          = 1 << 4
	MPTCP_SUBFLOW_FLAG_BKUP_LOC          = 1 << 5
	MPTCP_SUBFLOW_FLAG_FULLY_ESTABLISHED = 1 << 6
	MPTCP_SUBFLOW_FLAG_CONNECTED         = 1 << 7
	MPTCP_SUBFLOW_FLAG_MAPVALID          = 1 << 8
)

// include/uapi/linux/mptcp.h: mptcpi_flags bits.
const (
	MPTCP_INFO_FLAG_FALLBACK            = 1 << 0
	MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED = 1 << 1
)

// include/net/tcp_states.h
const (
	TCP_ESTABLISHED    = 1
	TCP_SYN_SENT       = 2
	TCP_SYN_RECV       = 3
	TCP_FIN_WAIT1      = 4
	TCP_FIN_WAIT2      = 5
	TCP_TIME_WAIT      = 6
	TCP_CLOSE          = 7
	TCP_CLOSE_WAIT     = 8
	TCP_LAST_ACK       = 9
	TCP_LISTEN         = 10
	TCP_CLOSING        = 11
	TCP_NEW_SYN_RECV   = 12
	TCP_BOUND_INACTIVE = 13 // Linux 6.7+
)

// include/linux/socket.h and include/uapi/linux/in.h; IPPROTO_MPTCP is
// nl/mptcp's.
const (
	AF_INET     = 2
	AF_INET6    = 10
	IPPROTO_TCP = 6
)
