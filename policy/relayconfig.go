package policy

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RelayConfig is the [relay] section of mptcpd.conf: the TCP-to-MPTCP
// relay (mptcpd-relay) in either of its roles, the gateway that carries
// a LAN's TCP connections over MPTCP and the relay that takes them from
// there. Zero fields mean the defaults (mptcpd-relay's, then
// endpoint/relay's). Which keys apply to which role is mptcpd-relay's to
// check: the parser accepts every key in either.
type RelayConfig struct {
	Role    string // "gateway" or "relay"; "" when not given
	KeyFile string // absolute path of the shared keys

	// The relay role.
	Listen            []string // host:port each
	AllowDestinations []netip.Prefix
	DenyDestinations  []netip.Prefix
	HandshakeTimeout  time.Duration

	// The gateway role.
	Relay            string   // the relay's host:port; the host may be a name
	Transparent      []string // host:port each
	Intercept        []string // interface names
	InterceptSources []netip.Prefix
	InterceptExclude []netip.Prefix
	SOCKS            []string // host:port each
	SOCKSUsersFile   string   // absolute path
	FirstDataWait    time.Duration
	FastOpen         bool // fast-open=yes
	WarmPool         int  // connections kept ready; none (-1): off
	WarmPoolAge      time.Duration

	// Both roles.
	MaxConnections int
	MaxPerSource   int
	Rate           float64 // new connections per second
	Burst          int
	DialTimeout    time.Duration
	IdleTimeout    time.Duration // negative: none
	DrainTimeout   time.Duration // negative: none

	// Log is [core]'s log: the relay logs where the daemon does.
	Log string
}

// none is what a duration that may be switched off ("none") reads as:
// endpoint/relay's negative duration.
const none = -1

type relayKey struct {
	name string
	set  func(c *RelayConfig, v string) *Error
	take func(c, from *RelayConfig) // copies the key's field from from
}

// relayField makes a key that parse reads into the field field points to.
func relayField[T any](name string, field func(c *RelayConfig) *T, parse func(v string) (T, *Error)) relayKey {
	return relayKey{
		name: name,
		set: func(c *RelayConfig, v string) *Error {
			x, e := parse(v)
			if e == nil {
				*field(c) = x
			}
			return e
		},
		take: func(c, from *RelayConfig) { *field(c) = *field(from) },
	}
}

// relayKeys are the [relay] section's keys; each name is also
// mptcpd-relay's flag.
var relayKeys = []relayKey{
	relayField("role", func(c *RelayConfig) *string { return &c.Role }, parseRole),
	relayField("key-file", func(c *RelayConfig) *string { return &c.KeyFile }, parseAbsPath),
	relayField("relay", func(c *RelayConfig) *string { return &c.Relay }, parseDialAddr),
	relayField("listen", func(c *RelayConfig) *[]string { return &c.Listen }, listOf(checkListenAddr)),
	relayField("transparent", func(c *RelayConfig) *[]string { return &c.Transparent }, listOf(checkListenAddr)),
	relayField("intercept", func(c *RelayConfig) *[]string { return &c.Intercept }, listOf(checkIfName)),
	relayField("intercept-sources", func(c *RelayConfig) *[]netip.Prefix { return &c.InterceptSources }, parsePrefixes),
	relayField("intercept-exclude", func(c *RelayConfig) *[]netip.Prefix { return &c.InterceptExclude }, parsePrefixes),
	relayField("socks", func(c *RelayConfig) *[]string { return &c.SOCKS }, listOf(checkListenAddr)),
	relayField("socks-users-file", func(c *RelayConfig) *string { return &c.SOCKSUsersFile }, parseAbsPath),
	relayField("allow-destinations", func(c *RelayConfig) *[]netip.Prefix { return &c.AllowDestinations }, parsePrefixes),
	relayField("deny-destinations", func(c *RelayConfig) *[]netip.Prefix { return &c.DenyDestinations }, parsePrefixes),
	relayField("max-connections", func(c *RelayConfig) *int { return &c.MaxConnections }, positive),
	relayField("max-per-source", func(c *RelayConfig) *int { return &c.MaxPerSource }, positive),
	relayField("rate", func(c *RelayConfig) *float64 { return &c.Rate }, parseRate),
	relayField("burst", func(c *RelayConfig) *int { return &c.Burst }, positive),
	relayField("handshake-timeout", func(c *RelayConfig) *time.Duration { return &c.HandshakeTimeout }, parseTimeout(false)),
	relayField("dial-timeout", func(c *RelayConfig) *time.Duration { return &c.DialTimeout }, parseTimeout(false)),
	relayField("idle-timeout", func(c *RelayConfig) *time.Duration { return &c.IdleTimeout }, parseTimeout(true)),
	relayField("drain-timeout", func(c *RelayConfig) *time.Duration { return &c.DrainTimeout }, parseTimeout(true)),
	relayField("first-data-wait", func(c *RelayConfig) *time.Duration { return &c.FirstDataWait }, parseFirstDataWait),
	relayField("fast-open", func(c *RelayConfig) *bool { return &c.FastOpen }, parseBool),
	relayField("warm-pool", func(c *RelayConfig) *int { return &c.WarmPool }, parseWarmPool),
	relayField("warm-pool-age", func(c *RelayConfig) *time.Duration { return &c.WarmPoolAge }, parseTimeout(false)),
}

var roles = []string{"gateway", "relay"}

func parseRole(v string) (string, *Error) {
	if !slices.Contains(roles, v) {
		return "", unknownWord("role", v, roles)
	}
	return v, nil
}

func parseAbsPath(v string) (p string, e *Error) {
	e = setAbsPath(&p, v)
	return p, e
}

// parseDialAddr reads an address to connect to: a host name or an IP
// address, and a port. A name is resolved at each dial, so that a relay
// whose address changes is found again.
func parseDialAddr(v string) (string, *Error) {
	const hint = "write a host name or an IP address and a port, such as relay.example.net:7443 or [2001:db8::1]:7443"
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return "", errorf("%q is not host:port", v).withHint(hint)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", errorf("%q: port %q is not a number from 1 to 65535", v, port).withHint(hint)
	}
	return v, nil
}

// listOf reads a comma-separated list whose items check accepts.
func listOf(check func(string) *Error) func(string) ([]string, *Error) {
	return func(v string) ([]string, *Error) {
		items := splitList(v)
		for i, item := range items {
			if e := check(item); e != nil {
				return nil, e
			}
			if slices.Contains(items[:i], item) {
				return nil, errorf("%s listed twice", item)
			}
		}
		return items, nil
	}
}

// checkIfName applies the kernel's rules for link names
// (dev_valid_name): a name it would refuse can never match.
func checkIfName(v string) *Error {
	const maxLen = 15 // IFNAMSIZ less the NUL
	switch {
	case len(v) > maxLen:
		return errorf("interface name %q is longer than %d bytes", v, maxLen)
	case v == "." || v == ".." || strings.ContainsAny(v, "/: \t\n\v\f\r\x00"):
		return errorf("%q is not an interface name", v).withHint("write names as ip link shows them, such as br-lan or eth1")
	}
	return nil
}

// parsePrefixes reads a comma-separated list of prefixes and addresses.
func parsePrefixes(v string) ([]netip.Prefix, *Error) {
	var ps []netip.Prefix
	for _, item := range splitList(v) {
		p, e := parsePrefix(item)
		if e != nil {
			return nil, e
		}
		if slices.Contains(ps, p) {
			return nil, errorf("%s listed twice", p)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// parseTimeout reads a positive duration, or "none" (a negative one)
// when allowNone.
func parseTimeout(allowNone bool) func(string) (time.Duration, *Error) {
	return func(v string) (time.Duration, *Error) {
		if allowNone && v == "none" {
			return none, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			e := errorf("%q is not a positive duration", v).withHint("write a number with a unit, such as 10s or 2h")
			if allowNone {
				e.Hint += ", or none"
			}
			return 0, e
		}
		return d, nil
	}
}

// maxFirstDataWait bounds first-data-wait: a client that waits for the
// server to speak (SSH, SMTP) waits this long on every connection.
const maxFirstDataWait = time.Second

func parseFirstDataWait(v string) (time.Duration, *Error) {
	d, e := parseTimeout(true)(v)
	if e == nil && d > maxFirstDataWait {
		e = errorf("%s is longer than %s", d, maxFirstDataWait).
			withHint("clients that wait for the server to speak (SSH, SMTP) wait this long; a LAN needs a few milliseconds")
	}
	return d, e
}

// maxWarmPool bounds warm-pool: each pooled connection holds a place in
// the relay's per-source limit.
const maxWarmPool = 64

// parseWarmPool reads how many connections a gateway keeps ready: 0 or
// none switch the pool off.
func parseWarmPool(v string) (int, *Error) {
	if v == "none" || v == "0" {
		return none, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxWarmPool {
		return 0, errorf("%q is not a number from 0 to %d, or none", v, maxWarmPool)
	}
	return n, nil
}

// RelayKeyNames are the names of the [relay] section's keys, which are
// also mptcpd-relay's flags.
func RelayKeyNames() []string {
	names := make([]string, len(relayKeys))
	for i, k := range relayKeys {
		names[i] = k.name
	}
	return names
}

func relayKeyIndex(key string) int {
	return slices.IndexFunc(relayKeys, func(k relayKey) bool { return k.name == key })
}

// relayLine reads one key=value line of the [relay] section.
func (cp *configParser) relayLine(pos Position, key, value string) *Error {
	return cp.endpointLine(pos, key, value, RelayKeyNames(), func(key, value string) *Error {
		return relayKeys[relayKeyIndex(key)].set(&cp.c.Relay, value)
	})
}

// Set reads value into the field of the [relay] key key, as the file
// would; an empty value sets the default. mptcpd-relay's flags go
// through it, so that a flag and a line accept the same.
func (c *RelayConfig) Set(key, value string) error {
	i := relayKeyIndex(key)
	if i < 0 {
		return unknownWord("[relay] key", key, RelayKeyNames())
	}
	if value == "" {
		relayKeys[i].take(c, &RelayConfig{})
		return nil
	}
	if e := relayKeys[i].set(c, value); e != nil {
		return e
	}
	return nil
}

// Override replaces c's fields with those of flags that changed(name)
// says the command line gave; names are the [relay] keys.
func (c *RelayConfig) Override(flags *RelayConfig, changed func(name string) bool) {
	for _, k := range relayKeys {
		if changed(k.name) {
			k.take(c, flags)
		}
	}
}

// LoadRelayConfig reads mptcpd.conf at path for the relay: its [relay]
// section, and [core]'s log. A missing file gives the defaults.
func LoadRelayConfig(path string) (*RelayConfig, []Warning, error) {
	c, warns, err := LoadConfig(path)
	if err != nil {
		return nil, warns, err
	}
	r := c.Relay
	r.Log = c.Log
	return &r, warns, nil
}
