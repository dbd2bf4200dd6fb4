package netmon

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Op says whether an object appeared (or changed) or went away.
type Op uint8

const (
	OpNew Op = iota + 1 // RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE: added or changed
	OpDel               // RTM_DELLINK, RTM_DELADDR, RTM_DELROUTE
)

func (o Op) String() string {
	switch o {
	case OpNew:
		return "new"
	case OpDel:
		return "del"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// OperState is a link's RFC 2863 operational state (IFLA_OPERSTATE).
type OperState uint8

// Values of IF_OPER_* from linux/if.h.
const (
	OperUnknown        OperState = 0
	OperNotPresent     OperState = 1
	OperDown           OperState = 2
	OperLowerLayerDown OperState = 3
	OperTesting        OperState = 4
	OperDormant        OperState = 5
	OperUp             OperState = 6
)

var operStateNames = [...]string{"UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"}

// String spells the state as `ip link` does ("UP", "LOWERLAYERDOWN", ...).
func (s OperState) String() string {
	if int(s) < len(operStateNames) {
		return operStateNames[s]
	}
	return "OPERSTATE(" + strconv.Itoa(int(s)) + ")"
}

// Scope is an address or route scope (RT_SCOPE_*).
type Scope uint8

const (
	ScopeUniverse Scope = 0 // "global"
	ScopeSite     Scope = 200
	ScopeLink     Scope = 253
	ScopeHost     Scope = 254
	ScopeNowhere  Scope = 255
)

// String spells the scope as iproute2 does.
func (s Scope) String() string {
	switch s {
	case ScopeUniverse:
		return "global"
	case ScopeSite:
		return "site"
	case ScopeLink:
		return "link"
	case ScopeHost:
		return "host"
	case ScopeNowhere:
		return "nowhere"
	}
	return strconv.Itoa(int(s))
}

// AddrFlags are IFA_F_* address flags (linux/if_addr.h).
type AddrFlags uint32

const (
	// AddrSecondary and AddrTemporary are the same bit: IPv4 calls it
	// secondary, IPv6 temporary (a privacy address).
	AddrSecondary      AddrFlags = 0x01
	AddrTemporary      AddrFlags = 0x01
	AddrNoDAD          AddrFlags = 0x02
	AddrOptimistic     AddrFlags = 0x04
	AddrDADFailed      AddrFlags = 0x08
	AddrHomeAddress    AddrFlags = 0x10
	AddrDeprecated     AddrFlags = 0x20
	AddrTentative      AddrFlags = 0x40
	AddrPermanent      AddrFlags = 0x80
	AddrManageTempAddr AddrFlags = 0x100
	AddrNoPrefixRoute  AddrFlags = 0x200
	AddrMcAutoJoin     AddrFlags = 0x400
	AddrStablePrivacy  AddrFlags = 0x800
)

// addrFlagNames is in bit order with iproute2's words.
var addrFlagNames = []struct {
	flag AddrFlags
	name string
}{
	{AddrSecondary, "secondary"},
	{AddrNoDAD, "nodad"},
	{AddrOptimistic, "optimistic"},
	{AddrDADFailed, "dadfailed"},
	{AddrHomeAddress, "home"},
	{AddrDeprecated, "deprecated"},
	{AddrTentative, "tentative"},
	{AddrPermanent, "permanent"},
	{AddrManageTempAddr, "mngtmpaddr"},
	{AddrNoPrefixRoute, "noprefixroute"},
	{AddrMcAutoJoin, "autojoin"},
	{AddrStablePrivacy, "stable-privacy"},
}

// names returns the flag words; bit 0 is spelled secondaryName.
func (f AddrFlags) names(secondaryName string) []string {
	var names []string
	for _, fn := range addrFlagNames {
		if f&fn.flag != 0 {
			name := fn.name
			if fn.flag == AddrSecondary {
				name = secondaryName
			}
			names = append(names, name)
			f &^= fn.flag
		}
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(f)))
	}
	return names
}

// String joins the flag names with "|"; bit 0 is spelled "secondary" (use
// [Addr.String] for the family-aware "temporary").
func (f AddrFlags) String() string { return strings.Join(f.names("secondary"), "|") }

// Forever is the lifetime of an address that does not expire (the
// kernel's INFINITY_LIFE_TIME).
const Forever = time.Duration(math.MaxInt64)

// Link is one network interface.
type Link struct {
	Index        int
	Name         string
	Kind         string // IFLA_INFO_KIND: "veth", "bridge", "wireguard", ...; "" for physical links and lo
	OperState    OperState
	Up           bool             // IFF_UP: administratively up
	Carrier      bool             // IFF_LOWER_UP: the lower layer (cable, peer) is up
	Loopback     bool             // IFF_LOOPBACK
	HardwareAddr net.HardwareAddr // nil when none or all zeros (lo)
	MTU          int
	MasterIndex  int // bridge, bond or VRF this link is enslaved to; 0 = none
}

// Equal reports whether l and o are the same in every field.
func (l Link) Equal(o Link) bool {
	return l.Index == o.Index && l.Name == o.Name && l.Kind == o.Kind &&
		l.OperState == o.OperState && l.Up == o.Up && l.Carrier == o.Carrier &&
		l.Loopback == o.Loopback && bytes.Equal(l.HardwareAddr, o.HardwareAddr) &&
		l.MTU == o.MTU && l.MasterIndex == o.MasterIndex
}

func (l Link) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d: %s", l.Index, l.Name)
	if l.Kind != "" {
		fmt.Fprintf(&b, " kind %s", l.Kind)
	}
	var flags []string
	for _, f := range []struct {
		set  bool
		name string
	}{{l.Loopback, "LOOPBACK"}, {l.Up, "UP"}, {l.Carrier, "LOWER_UP"}} {
		if f.set {
			flags = append(flags, f.name)
		}
	}
	fmt.Fprintf(&b, " <%s> mtu %d", strings.Join(flags, ","), l.MTU)
	if l.MasterIndex != 0 {
		fmt.Fprintf(&b, " master %d", l.MasterIndex)
	}
	fmt.Fprintf(&b, " state %s", l.OperState)
	if len(l.HardwareAddr) > 0 {
		fmt.Fprintf(&b, " link %s", l.HardwareAddr)
	}
	return b.String()
}

// Addr is one address of a link. Lifetimes are as of the message that
// reported them; [Forever] means the address does not expire.
type Addr struct {
	LinkIndex         int
	Prefix            netip.Prefix // the address itself with its prefix length, not masked
	Scope             Scope
	Flags             AddrFlags
	PreferredLifetime time.Duration
	ValidLifetime     time.Duration
}

// Key identifies the address in a [State]: the kernel keeps one address
// per link, address and prefix length.
func (a Addr) Key() AddrKey { return AddrKey{LinkIndex: a.LinkIndex, Prefix: a.Prefix} }

// AddrKey identifies an address in a [State].
type AddrKey struct {
	LinkIndex int
	Prefix    netip.Prefix
}

// sameIgnoringLifetimes is the duplicate rule: equal except for the
// lifetimes' values, as long as neither lifetime turned finite or infinite.
func (a Addr) sameIgnoringLifetimes(o Addr) bool {
	return a.LinkIndex == o.LinkIndex && a.Prefix == o.Prefix && a.Scope == o.Scope &&
		a.Flags == o.Flags &&
		(a.PreferredLifetime == Forever) == (o.PreferredLifetime == Forever) &&
		(a.ValidLifetime == Forever) == (o.ValidLifetime == Forever)
}

// String formats the address like a line of `ip addr`.
func (a Addr) String() string {
	family, secondary := "inet", "secondary"
	if a.Prefix.Addr().Is6() {
		family, secondary = "inet6", "temporary"
	}
	s := fmt.Sprintf("%s %s dev %d scope %s", family, a.Prefix, a.LinkIndex, a.Scope)
	if names := a.Flags.names(secondary); len(names) > 0 {
		s += " " + strings.Join(names, " ")
	}
	return s + fmt.Sprintf(" valid_lft %s preferred_lft %s", lifetime(a.ValidLifetime), lifetime(a.PreferredLifetime))
}

func lifetime(d time.Duration) string {
	if d == Forever {
		return "forever"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "sec"
}

// RouteProtocol says who installed a route (RTPROT_*).
type RouteProtocol uint8

var routeProtocolNames = map[RouteProtocol]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static",
	8: "gated", 9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted",
	14: "xorp", 15: "ntk", 16: "dhcp", 18: "keepalived", 42: "babel",
	99: "openr", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp",
}

// String spells the protocol as iproute2 does, or its number.
func (p RouteProtocol) String() string {
	if name, ok := routeProtocolNames[p]; ok {
		return name
	}
	return strconv.Itoa(int(p))
}

// Route is one unicast route, or one nexthop of a multipath route.
type Route struct {
	Dst       netip.Prefix // 0.0.0.0/0 or ::/0 for a default route
	Gateway   netip.Addr   // zero when the destination is on-link
	Src       netip.Addr   // preferred source address (RTA_PREFSRC), zero if none
	LinkIndex int          // outgoing link; 0 when the kernel gave none
	Table     int
	Priority  int // metric
	TOS       uint8
	Protocol  RouteProtocol
	Scope     Scope
}

// Default reports whether this is a default route (/0).
func (r Route) Default() bool { return r.Dst.IsValid() && r.Dst.Bits() == 0 }

// Key identifies the route in a [State]: destination, table, metric and
// TOS like the kernel, plus the nexthop, since IPv4 "append" and multipath
// routes share the rest.
func (r Route) Key() RouteKey {
	return RouteKey{Dst: r.Dst, Table: r.Table, Priority: r.Priority, TOS: r.TOS, LinkIndex: r.LinkIndex, Gateway: r.Gateway}
}

// RouteKey identifies a route in a [State].
type RouteKey struct {
	Dst       netip.Prefix
	Table     int
	Priority  int
	TOS       uint8
	LinkIndex int
	Gateway   netip.Addr
}

// String formats the route like a line of `ip route show table all`.
func (r Route) String() string {
	var b strings.Builder
	if r.Default() {
		b.WriteString("default")
		if r.Dst.Addr().Is6() {
			b.WriteString(" (inet6)")
		}
	} else {
		b.WriteString(r.Dst.String())
	}
	if r.Gateway.IsValid() {
		fmt.Fprintf(&b, " via %s", r.Gateway)
	}
	fmt.Fprintf(&b, " dev %d table %d proto %s scope %s", r.LinkIndex, r.Table, r.Protocol, r.Scope)
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	fmt.Fprintf(&b, " metric %d", r.Priority)
	if r.TOS != 0 {
		fmt.Fprintf(&b, " tos 0x%02x", r.TOS)
	}
	return b.String()
}

// Event is one of LinkEvent, AddrEvent, RouteEvent, ResyncNeeded, Synced.
type Event interface {
	fmt.Stringer
	isEvent()
}

// LinkEvent reports a link that appeared, changed (OpNew) or went away.
type LinkEvent struct {
	Op   Op
	Link Link
}

// AddrEvent reports an address that appeared, changed (OpNew) or went away.
type AddrEvent struct {
	Op   Op
	Addr Addr
}

// RouteEvent reports a route that appeared, changed (OpNew) or went away.
type RouteEvent struct {
	Op    Op
	Route Route
}

// ResyncNeeded says notifications were lost: the consumer's state is stale
// until the next [Synced]; the events in between bring it up to date (see
// the package documentation). errors.Is(Reason, syscall.ENOBUFS) when the
// socket overran its receive buffer.
type ResyncNeeded struct {
	Reason error
}

// Synced follows a complete dump: the initial one, or the one after a
// [ResyncNeeded]. From here on the consumer's state matches the kernel's.
type Synced struct{}

func (LinkEvent) isEvent()    {}
func (AddrEvent) isEvent()    {}
func (RouteEvent) isEvent()   {}
func (ResyncNeeded) isEvent() {}
func (Synced) isEvent()       {}

func (e LinkEvent) String() string  { return "link " + e.Op.String() + " " + e.Link.String() }
func (e AddrEvent) String() string  { return "addr " + e.Op.String() + " " + e.Addr.String() }
func (e RouteEvent) String() string { return "route " + e.Op.String() + " " + e.Route.String() }
func (e ResyncNeeded) String() string {
	return fmt.Sprintf("resync needed: %v", e.Reason)
}
func (Synced) String() string { return "synced" }
