package mptcp

import (
	"fmt"
	"net/netip"
	"strings"
)

// ID is an endpoint (address) identifier, 1..255 for endpoints; 0 names the
// address of a connection's initial subflow.
type ID uint8

// Token identifies one MPTCP connection in events and userspace PM commands.
type Token uint32

// String formats the token as iproute2 does (%08x).
func (t Token) String() string { return fmt.Sprintf("%08x", uint32(t)) }

// Flags are endpoint flags (MPTCP_PM_ADDR_FLAG_*).
type Flags uint32

const (
	FlagSignal   Flags = MPTCP_PM_ADDR_FLAG_SIGNAL
	FlagSubflow  Flags = MPTCP_PM_ADDR_FLAG_SUBFLOW
	FlagBackup   Flags = MPTCP_PM_ADDR_FLAG_BACKUP
	FlagFullmesh Flags = MPTCP_PM_ADDR_FLAG_FULLMESH
	FlagImplicit Flags = MPTCP_PM_ADDR_FLAG_IMPLICIT // kernel-made; cannot be added
	FlagLaminar  Flags = MPTCP_PM_ADDR_FLAG_LAMINAR  // Linux 6.18+
)

// flagNames lists the flags in the order iproute2 prints them.
var flagNames = []struct {
	flag Flags
	name string
}{
	{FlagSignal, "signal"},
	{FlagSubflow, "subflow"},
	{FlagBackup, "backup"},
	{FlagFullmesh, "fullmesh"},
	{FlagImplicit, "implicit"},
	{FlagLaminar, "laminar"},
}

// Names returns the names of the set flags in iproute2's order; unknown
// bits are returned as one "0x.." word.
func (f Flags) Names() []string {
	var names []string
	for _, fn := range flagNames {
		if f&fn.flag != 0 {
			names = append(names, fn.name)
			f &^= fn.flag
		}
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(f)))
	}
	return names
}

// String joins Names with spaces, e.g. "subflow backup".
func (f Flags) String() string { return strings.Join(f.Names(), " ") }

// ParseFlag returns the flag for one iproute2 flag word ("signal", ...).
func ParseFlag(name string) (Flags, bool) {
	for _, fn := range flagNames {
		if fn.name == name {
			return fn.flag, true
		}
	}
	return 0, false
}

// Endpoint is one entry of the in-kernel path manager's address table, or
// an address given to a userspace PM command.
type Endpoint struct {
	ID      ID         // 0 on add: the kernel picks one
	Addr    netip.Addr // IPv4 or IPv6 (never 4-in-6)
	Port    uint16     // 0 = none; only with FlagSignal
	Flags   Flags
	IfIndex int // 0 = no device
}

// Limits are the in-kernel path manager's per-namespace limits. A nil field
// means "unset": SetLimits leaves it alone, Limits always fills both.
type Limits struct {
	Subflows        *uint32 // MPTCP_PM_ATTR_SUBFLOWS
	AddAddrAccepted *uint32 // MPTCP_PM_ATTR_RCV_ADD_ADDRS
}

// EventType is the genetlink command of an mptcp_pm_events message.
type EventType uint8

const (
	EventCreated         EventType = MPTCP_EVENT_CREATED
	EventEstablished     EventType = MPTCP_EVENT_ESTABLISHED
	EventClosed          EventType = MPTCP_EVENT_CLOSED
	EventAnnounced       EventType = MPTCP_EVENT_ANNOUNCED
	EventRemoved         EventType = MPTCP_EVENT_REMOVED
	EventSubEstablished  EventType = MPTCP_EVENT_SUB_ESTABLISHED
	EventSubClosed       EventType = MPTCP_EVENT_SUB_CLOSED
	EventSubPriority     EventType = MPTCP_EVENT_SUB_PRIORITY
	EventListenerCreated EventType = MPTCP_EVENT_LISTENER_CREATED
	EventListenerClosed  EventType = MPTCP_EVENT_LISTENER_CLOSED
)

// eventNames are the kernel's names (enum mptcp_event_type without the
// MPTCP_EVENT_ prefix). mptcpctl prints iproute2's own spellings.
var eventNames = map[EventType]string{
	EventCreated:         "CREATED",
	EventEstablished:     "ESTABLISHED",
	EventClosed:          "CLOSED",
	EventAnnounced:       "ANNOUNCED",
	EventRemoved:         "REMOVED",
	EventSubEstablished:  "SUB_ESTABLISHED",
	EventSubClosed:       "SUB_CLOSED",
	EventSubPriority:     "SUB_PRIORITY",
	EventListenerCreated: "LISTENER_CREATED",
	EventListenerClosed:  "LISTENER_CLOSED",
}

// String returns the kernel's name for the event, or "UNKNOWN(n)".
func (t EventType) String() string {
	if n, ok := eventNames[t]; ok {
		return n
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint8(t))
}

// EventAttr names an event attribute (MPTCP_ATTR_*), used to ask whether
// the kernel sent it: iproute2 prints only the attributes present.
type EventAttr uint8

const (
	AttrToken       EventAttr = MPTCP_ATTR_TOKEN
	AttrFamily      EventAttr = MPTCP_ATTR_FAMILY
	AttrLocalID     EventAttr = MPTCP_ATTR_LOC_ID
	AttrRemoteID    EventAttr = MPTCP_ATTR_REM_ID
	AttrSaddr4      EventAttr = MPTCP_ATTR_SADDR4
	AttrSaddr6      EventAttr = MPTCP_ATTR_SADDR6
	AttrDaddr4      EventAttr = MPTCP_ATTR_DADDR4
	AttrDaddr6      EventAttr = MPTCP_ATTR_DADDR6
	AttrSport       EventAttr = MPTCP_ATTR_SPORT
	AttrDport       EventAttr = MPTCP_ATTR_DPORT
	AttrBackup      EventAttr = MPTCP_ATTR_BACKUP
	AttrError       EventAttr = MPTCP_ATTR_ERROR
	AttrFlags       EventAttr = MPTCP_ATTR_FLAGS
	AttrTimeout     EventAttr = MPTCP_ATTR_TIMEOUT
	AttrIfIndex     EventAttr = MPTCP_ATTR_IF_IDX
	AttrResetReason EventAttr = MPTCP_ATTR_RESET_REASON
	AttrResetFlags  EventAttr = MPTCP_ATTR_RESET_FLAGS
	AttrServerSide  EventAttr = MPTCP_ATTR_SERVER_SIDE
)

// Event is one decoded mptcp_pm_events message. Fields the kernel did not
// send hold their zero value; Has tells which were sent.
type Event struct {
	Type        EventType
	Token       Token
	Family      uint16
	LocalID     ID
	RemoteID    ID
	Saddr       netip.Addr // from SADDR4 or SADDR6
	Daddr       netip.Addr // from DADDR4 or DADDR6
	Sport       uint16     // converted from the kernel's big-endian
	Dport       uint16
	Backup      bool
	Error       uint8
	Flags       uint16 // MPTCP_PM_EV_FLAG_*
	Timeout     uint32
	IfIndex     int
	ResetReason uint32
	ResetFlags  uint32
	ServerSide  bool

	// present has bit n set when attribute n was in the message.
	present uint32
}

// Has reports whether the kernel sent attribute a.
func (e *Event) Has(a EventAttr) bool { return a < 32 && e.present&(1<<a) != 0 }

// Set marks attribute a as present; decoders and tests use it.
func (e *Event) Set(a EventAttr) { e.present |= 1 << a }
