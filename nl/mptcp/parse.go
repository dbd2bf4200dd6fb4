package mptcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Reply decoding. These are pure functions over kernel bytes (fuzzed in
// fuzz_test.go); they never panic and reject what they cannot represent
// faithfully instead of guessing. Unknown attributes are skipped so that
// newer kernels keep working.

// parseEndpoints decodes GET_ADDR replies (a dump, or the single reply of a
// "do"). Each message must carry one MPTCP_PM_ATTR_ADDR nest; a message
// that cannot be decoded fails the whole call, naming the problem (unknown
// address family, address of the wrong length, ...), rather than returning
// a silently shortened table.
func parseEndpoints(msgs []genetlink.Message) ([]Endpoint, error) {
	eps := make([]Endpoint, 0, len(msgs))
	for i, m := range msgs {
		e, err := parseEndpoint(m.Data)
		if err != nil {
			return nil, fmt.Errorf("endpoint message %d: %w", i, err)
		}
		eps = append(eps, e)
	}
	return eps, nil
}

// parseEndpoint decodes the top-level attributes of one GET_ADDR reply.
func parseEndpoint(b []byte) (Endpoint, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Endpoint{}, err
	}
	var (
		e     Endpoint
		found bool
	)
	for ad.Next() {
		if ad.Type() != MPTCP_PM_ATTR_ADDR {
			continue
		}
		if found {
			return Endpoint{}, errors.New("more than one address attribute")
		}
		found = true
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			e, err = parseAddrNest(nad)
			return err
		})
	}
	if err := ad.Err(); err != nil {
		return Endpoint{}, err
	}
	if !found {
		return Endpoint{}, errors.New("missing address attribute")
	}
	return e, nil
}

// parseAddrNest decodes an mptcp_pm_addr_attrs nest.
func parseAddrNest(ad *netlink.AttributeDecoder) (Endpoint, error) {
	var (
		e            Endpoint
		family       uint16
		addr4, addr6 []byte
		haveFamily   bool
	)
	for ad.Next() {
		switch ad.Type() {
		case MPTCP_PM_ADDR_ATTR_FAMILY:
			family, haveFamily = ad.Uint16(), true
		case MPTCP_PM_ADDR_ATTR_ID:
			e.ID = ID(ad.Uint8())
		case MPTCP_PM_ADDR_ATTR_ADDR4:
			addr4 = ad.Bytes()
		case MPTCP_PM_ADDR_ATTR_ADDR6:
			addr6 = ad.Bytes()
		case MPTCP_PM_ADDR_ATTR_PORT:
			e.Port = ad.Uint16() // host byte order
		case MPTCP_PM_ADDR_ATTR_FLAGS:
			e.Flags = Flags(ad.Uint32())
		case MPTCP_PM_ADDR_ATTR_IF_IDX:
			e.IfIndex = int(ad.Int32())
		}
	}
	if err := ad.Err(); err != nil {
		return Endpoint{}, err
	}
	if !haveFamily {
		return Endpoint{}, errors.New("address without family")
	}
	var err error
	switch family {
	case unix.AF_INET:
		e.Addr, err = ipFromBytes("ADDR4", addr4, 4)
	case unix.AF_INET6:
		e.Addr, err = ipFromBytes("ADDR6", addr6, 16)
	default:
		err = fmt.Errorf("unknown address family %d", family)
	}
	if err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

// ipFromBytes converts an address attribute of the expected length.
func ipFromBytes(name string, b []byte, size int) (netip.Addr, error) {
	if b == nil {
		return netip.Addr{}, fmt.Errorf("missing %s attribute", name)
	}
	if len(b) != size {
		return netip.Addr{}, fmt.Errorf("%s attribute has %d bytes, want %d", name, len(b), size)
	}
	a, _ := netip.AddrFromSlice(b)
	return a, nil
}

// parseLimits decodes the GET_LIMITS reply; both limits must be present.
func parseLimits(msgs []genetlink.Message) (Limits, error) {
	if len(msgs) != 1 {
		return Limits{}, fmt.Errorf("got %d limits messages, want 1", len(msgs))
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data)
	if err != nil {
		return Limits{}, err
	}
	var l Limits
	for ad.Next() {
		switch ad.Type() {
		case MPTCP_PM_ATTR_RCV_ADD_ADDRS:
			v := ad.Uint32()
			l.AddAddrAccepted = &v
		case MPTCP_PM_ATTR_SUBFLOWS:
			v := ad.Uint32()
			l.Subflows = &v
		}
	}
	if err := ad.Err(); err != nil {
		return Limits{}, err
	}
	if l.AddAddrAccepted == nil || l.Subflows == nil {
		return Limits{}, errors.New("limits reply lacks add_addr_accepted or subflows")
	}
	return l, nil
}

// parseEvents decodes a batch of mptcp_pm_events messages. A message that
// does not decode costs only itself: the others are returned, with the
// decode errors joined.
func parseEvents(msgs []genetlink.Message) ([]Event, error) {
	evs := make([]Event, 0, len(msgs))
	var errs []error
	for _, m := range msgs {
		ev, err := parseEvent(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		evs = append(evs, ev)
	}
	return evs, errors.Join(errs...)
}

// parseEvent decodes one event. The command is the event type; every known
// attribute that is present is recorded with Set, so that callers can print
// exactly what the kernel sent (iproute2's monitor does). An unknown event
// type is returned as is; a known attribute of the wrong size is an error.
func parseEvent(m genetlink.Message) (Event, error) {
	ev := Event{Type: EventType(m.Header.Command)}
	ad, err := netlink.NewAttributeDecoder(m.Data)
	if err != nil {
		return Event{}, fmt.Errorf("%v event: %w", ev.Type, err)
	}
	for ad.Next() {
		a := EventAttr(ad.Type())
		switch a {
		case AttrToken:
			ev.Token = Token(ad.Uint32())
		case AttrFamily:
			ev.Family = ad.Uint16()
		case AttrLocalID:
			ev.LocalID = ID(ad.Uint8())
		case AttrRemoteID:
			ev.RemoteID = ID(ad.Uint8())
		case AttrSaddr4:
			ev.Saddr = eventAddr(ad, 4)
		case AttrSaddr6:
			ev.Saddr = eventAddr(ad, 16)
		case AttrDaddr4:
			ev.Daddr = eventAddr(ad, 4)
		case AttrDaddr6:
			ev.Daddr = eventAddr(ad, 16)
		case AttrSport:
			ev.Sport = be16(ad)
		case AttrDport:
			ev.Dport = be16(ad)
		case AttrBackup:
			ev.Backup = ad.Uint8() != 0
		case AttrError:
			ev.Error = ad.Uint8()
		case AttrFlags:
			ev.Flags = ad.Uint16()
		case AttrTimeout:
			ev.Timeout = ad.Uint32()
		case AttrIfIndex:
			ev.IfIndex = int(ad.Int32())
		case AttrResetReason:
			ev.ResetReason = ad.Uint32()
		case AttrResetFlags:
			ev.ResetFlags = ad.Uint32()
		case AttrServerSide:
			ev.ServerSide = ad.Uint8() != 0
		default:
			continue // newer kernel: not ours to interpret
		}
		ev.Set(a)
	}
	if err := ad.Err(); err != nil {
		return Event{}, fmt.Errorf("%v event: %w", ev.Type, err)
	}
	// One field holds either family's address; the kernel never sends both,
	// and keeping the last would label an IPv6 address "saddr4".
	if ev.Has(AttrSaddr4) && ev.Has(AttrSaddr6) || ev.Has(AttrDaddr4) && ev.Has(AttrDaddr6) {
		return Event{}, fmt.Errorf("%v event: both IPv4 and IPv6 addresses for one side", ev.Type)
	}
	return ev, nil
}

// eventAddr reads an address attribute of exactly size bytes.
func eventAddr(ad *netlink.AttributeDecoder, size int) netip.Addr {
	var a netip.Addr
	ad.Do(func(b []byte) error {
		if len(b) != size {
			return fmt.Errorf("address attribute %d has %d bytes, want %d", ad.Type(), len(b), size)
		}
		a, _ = netip.AddrFromSlice(b)
		return nil
	})
	return a
}

// be16 reads a big-endian (network order) u16: the kernel puts event ports
// with nla_put_be16, unlike the host-order PORT of the address nest.
func be16(ad *netlink.AttributeDecoder) uint16 {
	var v uint16
	ad.Do(func(b []byte) error {
		if len(b) != 2 {
			return fmt.Errorf("port attribute %d has %d bytes, want 2", ad.Type(), len(b))
		}
		v = binary.BigEndian.Uint16(b)
		return nil
	})
	return v
}
