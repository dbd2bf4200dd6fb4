package policy

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Kind is what sort of link an interface is, as rules see it.
type Kind uint8

const (
	KindOther    Kind = iota // physical, but neither ethernet, wifi nor wwan as far as we can tell
	KindEthernet             // wired ethernet (also bonds and VLANs over it)
	KindWiFi                 // 802.11 (sysfs DEVTYPE=wlan)
	KindWWAN                 // cellular modems (sysfs DEVTYPE=wwan, raw-IP links)
	KindVirtual              // bridges, veth, tun/tap, wireguard, docker, tunnels
	KindLoopback             // lo
)

var kindNames = [...]string{"other", "ethernet", "wifi", "wwan", "virtual", "loopback"}

// String spells the kind as the policy file does.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind reads a kind word of the policy file. "cellular" is a synonym
// of "wwan", "wlan" of "wifi".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "cellular":
		return KindWWAN, nil
	case "wlan":
		return KindWiFi, nil
	}
	for i, n := range kindNames {
		if n == s {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown interface kind %q (want ethernet, wifi, wwan, virtual, loopback or other)", s)
}

// Subject is one address on one interface: what a rule is matched against.
type Subject struct {
	Interface    string     // link name
	Kind         Kind       // after the policy's classify statements
	Addr         netip.Addr // the local address
	DefaultRoute bool       // the link carries a default route (either family)
}

// LimitMode says how the daemon manages one in-kernel PM limit.
type LimitMode uint8

const (
	LimitKeep  LimitMode = iota // never touch the kernel's value
	LimitAuto                   // derive it from the endpoints the policy wants
	LimitFixed                  // set Value
)

// Limit is the policy for one of the kernel's limits (subflows,
// add_addr_accepted).
type Limit struct {
	Mode  LimitMode
	Value uint32 // with LimitFixed, 0..8
}

// Position is where something was written: file and 1-based line. Line 0
// means the built-in default policy.
type Position struct {
	File string
	Line int
}

func (p Position) String() string {
	if p.Line == 0 {
		return "built-in"
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Settings are the policy's global statements. mptcpd.conf supplies the
// base values (notify-flags, check_route); statements in a policy file
// override them.
type Settings struct {
	CheckRoute    bool // use an address only if its link has a default route of the same family
	SkipLoopback  bool
	SkipLinkLocal bool // IPv6 fe80::/10 and IPv4 169.254/16
	UseTemporary  bool // IPv6 privacy (temporary) addresses
	UseDeprecated bool // addresses whose preferred lifetime ran out

	Subflows        Limit
	AddAddrAccepted Limit

	// Source routing: each interface whose rule asks for it gets its own
	// table (RouteTableBase + interface index) and a "from ADDR" rule at
	// RulePriority.
	RouteTableBase int
	RulePriority   int
}

// Rule is one match block of a policy file. A rule matches a Subject when
// every criterion that is set matches (empty lists match anything).
type Rule struct {
	Pos Position

	// Criteria.
	Names        []string       // path.Match globs on the interface name
	Kinds        []Kind         //
	Families     []int          // 4 and/or 6
	Prefixes     []netip.Prefix // the address lies in one of these
	DefaultRoute *bool          // link has (true) / has not (false) a default route

	// Actions.
	Ignore        bool        // no endpoint for this address
	Flags         mptcp.Flags // endpoint flags (signal, subflow, backup, fullmesh)
	Priority      int         // higher wins when more endpoints are wanted than fit
	Port          uint16      // signal endpoints only: port to announce and listen on
	SourceRouting bool        // install a per-interface table and "from" rule
	Adopt         bool        // take over existing foreign endpoints on matching addresses
}

// ClassifyRule overrides the detected kind of links whose name matches a
// glob ("classify usb* wwan": a USB modem that shows up as ethernet).
type ClassifyRule struct {
	Pos     Position
	Pattern string
	Kind    Kind
}

// Policy is a parsed, validated policy: global settings, classify
// overrides and rules, first match wins.
type Policy struct {
	Source   string // file name, or "built-in"
	Settings Settings
	Classify []ClassifyRule
	Rules    []Rule
}

// String spells the limit as the policy file does: auto, keep or a number.
func (l Limit) String() string {
	switch l.Mode {
	case LimitAuto:
		return "auto"
	case LimitKeep:
		return "keep"
	}
	return strconv.FormatUint(uint64(l.Value), 10)
}
