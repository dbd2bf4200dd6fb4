package mptcp

// Kernel constants, spelled as in the kernel's UAPI headers. Everything in
// this file comes from include/uapi/linux/mptcp.h and
// include/uapi/linux/mptcp_pm.h (generated from
// Documentation/netlink/specs/mptcp_pm.yaml); only this package uses them.

// Generic netlink family.
const (
	MPTCP_PM_NAME           = "mptcp_pm"
	MPTCP_PM_VER            = 1
	MPTCP_PM_CMD_GRP_NAME   = "mptcp_pm_cmds"
	MPTCP_PM_EV_GRP_NAME    = "mptcp_pm_events"
	MPTCP_PM_ADDR_MAX_PERNS = 8 // MPTCP_PM_ADDR_MAX in net/mptcp/pm_kernel.c
	MPTCP_PM_MAX_ADDR_ID    = 255
	MPTCP_PM_LIMITS_MAX     = 8 // MPTCP_PM_ADDR_MAX for subflows / add_addr_accepted
)

// enum mptcp_pm_command
const (
	MPTCP_PM_CMD_UNSPEC          = 0
	MPTCP_PM_CMD_ADD_ADDR        = 1
	MPTCP_PM_CMD_DEL_ADDR        = 2
	MPTCP_PM_CMD_GET_ADDR        = 3
	MPTCP_PM_CMD_FLUSH_ADDRS     = 4
	MPTCP_PM_CMD_SET_LIMITS      = 5
	MPTCP_PM_CMD_GET_LIMITS      = 6
	MPTCP_PM_CMD_SET_FLAGS       = 7
	MPTCP_PM_CMD_ANNOUNCE        = 8
	MPTCP_PM_CMD_REMOVE          = 9
	MPTCP_PM_CMD_SUBFLOW_CREATE  = 10
	MPTCP_PM_CMD_SUBFLOW_DESTROY = 11
)

// enum mptcp_pm_attrs (top-level attributes)
const (
	MPTCP_PM_ATTR_UNSPEC        = 0
	MPTCP_PM_ATTR_ADDR          = 1 // nested mptcp_pm_addr_attrs
	MPTCP_PM_ATTR_RCV_ADD_ADDRS = 2 // u32
	MPTCP_PM_ATTR_SUBFLOWS      = 3 // u32
	MPTCP_PM_ATTR_TOKEN         = 4 // u32
	MPTCP_PM_ATTR_LOC_ID        = 5 // u8
	MPTCP_PM_ATTR_ADDR_REMOTE   = 6 // nested mptcp_pm_addr_attrs
)

// enum mptcp_pm_addr_attrs (the address nest)
const (
	MPTCP_PM_ADDR_ATTR_UNSPEC = 0
	MPTCP_PM_ADDR_ATTR_FAMILY = 1 // u16
	MPTCP_PM_ADDR_ATTR_ID     = 2 // u8
	MPTCP_PM_ADDR_ATTR_ADDR4  = 3 // 4 bytes, network order
	MPTCP_PM_ADDR_ATTR_ADDR6  = 4 // 16 bytes
	MPTCP_PM_ADDR_ATTR_PORT   = 5 // u16, HOST order
	MPTCP_PM_ADDR_ATTR_FLAGS  = 6 // u32
	MPTCP_PM_ADDR_ATTR_IF_IDX = 7 // s32
)

// MPTCP_PM_ADDR_FLAG_* (endpoint flags)
const (
	MPTCP_PM_ADDR_FLAG_SIGNAL   = 1 << 0
	MPTCP_PM_ADDR_FLAG_SUBFLOW  = 1 << 1
	MPTCP_PM_ADDR_FLAG_BACKUP   = 1 << 2
	MPTCP_PM_ADDR_FLAG_FULLMESH = 1 << 3
	MPTCP_PM_ADDR_FLAG_IMPLICIT = 1 << 4
	MPTCP_PM_ADDR_FLAG_LAMINAR  = 1 << 5 // Linux 6.18+
)

// enum mptcp_event_type
const (
	MPTCP_EVENT_UNSPEC           = 0
	MPTCP_EVENT_CREATED          = 1
	MPTCP_EVENT_ESTABLISHED      = 2
	MPTCP_EVENT_CLOSED           = 3
	MPTCP_EVENT_ANNOUNCED        = 6
	MPTCP_EVENT_REMOVED          = 7
	MPTCP_EVENT_SUB_ESTABLISHED  = 10
	MPTCP_EVENT_SUB_CLOSED       = 11
	MPTCP_EVENT_SUB_PRIORITY     = 13
	MPTCP_EVENT_LISTENER_CREATED = 15
	MPTCP_EVENT_LISTENER_CLOSED  = 16
)

// enum mptcp_event_attr
const (
	MPTCP_ATTR_UNSPEC       = 0
	MPTCP_ATTR_TOKEN        = 1  // u32
	MPTCP_ATTR_FAMILY       = 2  // u16
	MPTCP_ATTR_LOC_ID       = 3  // u8
	MPTCP_ATTR_REM_ID       = 4  // u8
	MPTCP_ATTR_SADDR4       = 5  // be32
	MPTCP_ATTR_SADDR6       = 6  // 16 bytes
	MPTCP_ATTR_DADDR4       = 7  // be32
	MPTCP_ATTR_DADDR6       = 8  // 16 bytes
	MPTCP_ATTR_SPORT        = 9  // be16 (unlike the endpoint PORT attribute)
	MPTCP_ATTR_DPORT        = 10 // be16
	MPTCP_ATTR_BACKUP       = 11 // u8
	MPTCP_ATTR_ERROR        = 12 // u8
	MPTCP_ATTR_FLAGS        = 13 // u16
	MPTCP_ATTR_TIMEOUT      = 14 // u32
	MPTCP_ATTR_IF_IDX       = 15 // s32
	MPTCP_ATTR_RESET_REASON = 16 // u32
	MPTCP_ATTR_RESET_FLAGS  = 17 // u32
	MPTCP_ATTR_SERVER_SIDE  = 18 // u8
	mptcpAttrMax            = MPTCP_ATTR_SERVER_SIDE
)

// MPTCP_PM_EV_FLAG_* (values of MPTCP_ATTR_FLAGS)
const (
	MPTCP_PM_EV_FLAG_DENY_JOIN_ID0 = 1 << 0
	MPTCP_PM_EV_FLAG_SERVER_SIDE   = 1 << 1
)

// Sockets (include/linux/socket.h, include/uapi/linux/in.h).
const (
	IPPROTO_MPTCP = 262
	SOL_MPTCP     = 284
)
