package mptcptest

import (
	"encoding/binary"
	"net/netip"

	"github.com/mdlayher/netlink"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Events of the mptcp_pm_events group, encoded as net/mptcp/pm_netlink.c
// does (mptcp_event, mptcp_event_addr_announced, mptcp_event_pm_listener).

// Complete returns ev with the attributes marked (Event.Set) that Linux
// 6.18 sends for an event of its type, so that tests can build events from
// field values alone:
//
//   - CREATED, ESTABLISHED: token, family, addresses, ports, both ids;
//     FLAGS when not zero, SERVER_SIDE only when set (ServerSide and the
//     FLAGS server-side bit imply each other)
//   - CLOSED: token
//   - ANNOUNCED: token, remote id, destination address and port
//   - REMOVED: token, remote id
//   - SUB_ESTABLISHED, SUB_PRIORITY: token, family, addresses, ports, both
//     ids, backup; IF_IDX and ERROR when not zero
//   - SUB_CLOSED: as SUB_ESTABLISHED, plus RESET_REASON and RESET_FLAGS
//     when either is set
//   - LISTENER_CREATED, LISTENER_CLOSED: family, source address and port
//
// IPv4 addresses go in the *ADDR4 attributes, others in *ADDR6. A zero
// Family is filled in from Saddr (or Daddr).
func Complete(ev mptcp.Event) mptcp.Event {
	switch ev.Type {
	case mptcp.EventCreated, mptcp.EventEstablished:
		ev.Set(mptcp.AttrToken)
		if ev.Flags&mptcp.MPTCP_PM_EV_FLAG_SERVER_SIDE != 0 {
			ev.ServerSide = true
		}
		if ev.ServerSide {
			ev.Flags |= mptcp.MPTCP_PM_EV_FLAG_SERVER_SIDE
			ev.Set(mptcp.AttrServerSide)
		}
		if ev.Flags != 0 {
			ev.Set(mptcp.AttrFlags)
		}
		setSubflowAttrs(&ev)
	case mptcp.EventAnnounced:
		ev.Set(mptcp.AttrToken)
		ev.Set(mptcp.AttrRemoteID)
		ev.Set(mptcp.AttrDport)
		ev.Set(addrAttr(ev.Daddr, mptcp.AttrDaddr4, mptcp.AttrDaddr6))
	case mptcp.EventRemoved:
		ev.Set(mptcp.AttrToken)
		ev.Set(mptcp.AttrRemoteID)
	case mptcp.EventSubEstablished, mptcp.EventSubPriority, mptcp.EventSubClosed:
		ev.Set(mptcp.AttrToken)
		setSubflowAttrs(&ev)
		ev.Set(mptcp.AttrBackup)
		if ev.IfIndex != 0 {
			ev.Set(mptcp.AttrIfIndex)
		}
		if ev.Error != 0 {
			ev.Set(mptcp.AttrError)
		}
		if ev.Type == mptcp.EventSubClosed && (ev.ResetReason != 0 || ev.ResetFlags != 0) {
			ev.Set(mptcp.AttrResetReason)
			ev.Set(mptcp.AttrResetFlags)
		}
	case mptcp.EventListenerCreated, mptcp.EventListenerClosed:
		setFamily(&ev)
		ev.Set(mptcp.AttrSport)
		ev.Set(addrAttr(ev.Saddr, mptcp.AttrSaddr4, mptcp.AttrSaddr6))
	default:
		ev.Set(mptcp.AttrToken)
	}
	return ev
}

// setSubflowAttrs marks what mptcp_event_add_subflow sends.
func setSubflowAttrs(ev *mptcp.Event) {
	setFamily(ev)
	ev.Set(addrAttr(ev.Saddr, mptcp.AttrSaddr4, mptcp.AttrSaddr6))
	ev.Set(addrAttr(ev.Daddr, mptcp.AttrDaddr4, mptcp.AttrDaddr6))
	ev.Set(mptcp.AttrSport)
	ev.Set(mptcp.AttrDport)
	ev.Set(mptcp.AttrLocalID)
	ev.Set(mptcp.AttrRemoteID)
}

func setFamily(ev *mptcp.Event) {
	if ev.Family == 0 {
		a := ev.Saddr
		if !a.IsValid() {
			a = ev.Daddr
		}
		ev.Family = afInet6
		if a.Is4() {
			ev.Family = afInet
		}
	}
	ev.Set(mptcp.AttrFamily)
}

func addrAttr(a netip.Addr, v4, v6 mptcp.EventAttr) mptcp.EventAttr {
	if a.Is4() {
		return v4
	}
	return v6
}

// hasAnyAttr tells whether an event has any attribute marked.
func hasAnyAttr(ev *mptcp.Event) bool {
	for a := mptcp.EventAttr(1); a < 32; a++ {
		if ev.Has(a) {
			return true
		}
	}
	return false
}

// encodeEvent builds the multicast message for ev with exactly the
// attributes ev.Has reports. Ports are big-endian, as the kernel sends
// them in events (unlike endpoint ports).
func encodeEvent(familyID uint16, ev mptcp.Event) netlink.Message {
	attrs := encodeAttrs(func(ae *netlink.AttributeEncoder) {
		has := ev.Has
		if has(mptcp.AttrToken) {
			ae.Uint32(mptcp.MPTCP_ATTR_TOKEN, uint32(ev.Token))
		}
		if has(mptcp.AttrServerSide) {
			ae.Uint8(mptcp.MPTCP_ATTR_SERVER_SIDE, boolU8(ev.ServerSide))
		}
		if has(mptcp.AttrFlags) {
			ae.Uint16(mptcp.MPTCP_ATTR_FLAGS, ev.Flags)
		}
		if has(mptcp.AttrFamily) {
			ae.Uint16(mptcp.MPTCP_ATTR_FAMILY, ev.Family)
		}
		if has(mptcp.AttrSaddr4) {
			b := ev.Saddr.Unmap().As4()
			ae.Bytes(mptcp.MPTCP_ATTR_SADDR4, b[:])
		}
		if has(mptcp.AttrSaddr6) {
			b := ev.Saddr.As16()
			ae.Bytes(mptcp.MPTCP_ATTR_SADDR6, b[:])
		}
		if has(mptcp.AttrDaddr4) {
			b := ev.Daddr.Unmap().As4()
			ae.Bytes(mptcp.MPTCP_ATTR_DADDR4, b[:])
		}
		if has(mptcp.AttrDaddr6) {
			b := ev.Daddr.As16()
			ae.Bytes(mptcp.MPTCP_ATTR_DADDR6, b[:])
		}
		if has(mptcp.AttrSport) {
			ae.Bytes(mptcp.MPTCP_ATTR_SPORT, binary.BigEndian.AppendUint16(nil, ev.Sport))
		}
		if has(mptcp.AttrDport) {
			ae.Bytes(mptcp.MPTCP_ATTR_DPORT, binary.BigEndian.AppendUint16(nil, ev.Dport))
		}
		if has(mptcp.AttrLocalID) {
			ae.Uint8(mptcp.MPTCP_ATTR_LOC_ID, uint8(ev.LocalID))
		}
		if has(mptcp.AttrRemoteID) {
			ae.Uint8(mptcp.MPTCP_ATTR_REM_ID, uint8(ev.RemoteID))
		}
		if has(mptcp.AttrBackup) {
			ae.Uint8(mptcp.MPTCP_ATTR_BACKUP, boolU8(ev.Backup))
		}
		if has(mptcp.AttrIfIndex) {
			ae.Int32(mptcp.MPTCP_ATTR_IF_IDX, int32(ev.IfIndex))
		}
		if has(mptcp.AttrError) {
			ae.Uint8(mptcp.MPTCP_ATTR_ERROR, ev.Error)
		}
		if has(mptcp.AttrTimeout) {
			ae.Uint32(mptcp.MPTCP_ATTR_TIMEOUT, ev.Timeout)
		}
		if has(mptcp.AttrResetReason) {
			ae.Uint32(mptcp.MPTCP_ATTR_RESET_REASON, ev.ResetReason)
		}
		if has(mptcp.AttrResetFlags) {
			ae.Uint32(mptcp.MPTCP_ATTR_RESET_FLAGS, ev.ResetFlags)
		}
	})
	data := genlPayload(uint8(ev.Type), attrs)
	// Multicast messages have no sequence number and port id 0.
	return message(netlink.Header{}, netlink.HeaderType(familyID), 0, data)
}

func boolU8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// emit sends ev, completed when it has no attribute marked, to every socket
// in the events group.
func (k *Kernel) emit(ev mptcp.Event) {
	if !hasAnyAttr(&ev) {
		ev = Complete(ev)
	}
	m := encodeEvent(familyID, ev)
	for s := range k.sockets {
		s.deliverMulticast(groupEvents, m)
	}
}

// emitListener sends LISTENER_CREATED or LISTENER_CLOSED for e's
// listening socket.
func (k *Kernel) emitListener(t mptcp.EventType, e *entry) {
	k.emit(mptcp.Event{Type: t, Family: e.family(), Saddr: e.addr, Sport: e.port})
}

// subflowEvent describes sf for a SUB_* event.
func subflowEvent(t mptcp.EventType, token mptcp.Token, sf Subflow) mptcp.Event {
	return mptcp.Event{
		Type:     t,
		Token:    token,
		Saddr:    sf.Local.Addr(),
		Daddr:    sf.Remote.Addr(),
		Sport:    sf.Local.Port(),
		Dport:    sf.Remote.Port(),
		LocalID:  sf.LocalID,
		RemoteID: sf.RemoteID,
		Backup:   sf.Backup,
		IfIndex:  sf.IfIndex,
	}
}
