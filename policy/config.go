package policy

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// DefaultConfigFile is where Intel's mptcpd, and so mptcpd-go, look for
// mptcpd.conf.
const DefaultConfigFile = "/etc/mptcpd/mptcpd.conf"

// DefaultPolicyFile is the policy file used when it exists and
// mptcpd.conf names none (policy-file); without it the built-in Default
// policy applies.
const DefaultPolicyFile = "/etc/mptcpd/policy"

// Config is mptcpd.conf: Intel mptcpd 0.12's keys plus mptcpd-go's own,
// all in the [core] section. Every field holds a usable value (the
// default when the file does not set it); Set says which keys the file
// gave, so that command-line flags and the policy file can tell an
// explicit value from a default. A caller that overrides a field from the
// command line sets its bit too.
type Config struct {
	Source string // the file read, or "built-in"

	Log         string      // stderr (default), syslog, journal or null
	PluginDir   string      // accepted for Intel's files; mptcpd-go's plugins are compiled in
	PathManager string      // "addr_adv" or "": program the in-kernel PM; other names are userspace plugins
	AddrFlags   mptcp.Flags // flags of endpoints made from local addresses (built-in policy only)
	NotifyFlags NotifyFlags // meaningful only when Set has KeyNotifyFlags
	LoadPlugins []string

	// mptcpd-go's extensions.
	PolicyFile     string        // per-interface policy; "" uses the built-in one
	StateDir       string        // default /run/mptcpd-go
	RemoveOnExit   bool          // delete the endpoints the daemon made when it stops
	ResyncInterval time.Duration // full re-read of the kernel's state; default 30s, at least 1s
	// SetPathManager makes the daemon set net.mptcp.path_manager to its
	// mode at start (kernel for addr_adv, userspace for a plugin) instead
	// of only warning when they disagree.
	SetPathManager bool
	// ControlGroup is the group (a name or a number) whose members may use
	// the daemon's control socket besides root; "" for root only.
	ControlGroup string
	// MetricsListen is the address (IP:port, or :port for all) of the
	// daemon's Prometheus endpoint; "" for none.
	MetricsListen string
	// PathHealth is how often the daemon samples its subflows to
	// find paths that stopped delivering (pm/health); 0 turns it off.
	PathHealth time.Duration
	// OutageHold is how long the in-kernel mode waits, after an outage
	// (no usable path at all), for new subflows to carry the connections
	// before it deletes the endpoints it kept through the outage
	// (pm/outage.go); 0 deletes them when the outage starts.
	OutageHold time.Duration

	// SSH is the [ssh] section, read by the SSH endpoint (mptcpd-ssh);
	// the daemon ignores it.
	SSH SSHConfig
	// Relay is the [relay] section, read by the relay (mptcpd-relay);
	// the daemon ignores it.
	Relay RelayConfig

	Set Key // bitmask of the keys given explicitly
}

// Key names one mptcpd.conf key; Config.Set is a bitmask of them.
type Key uint16

const (
	KeyLog Key = 1 << iota
	KeyPluginDir
	KeyPathManager
	KeyAddrFlags
	KeyNotifyFlags
	KeyLoadPlugins
	KeyPolicyFile
	KeyStateDir
	KeyRemoveOnExit
	KeyResyncInterval
	KeySetPathManager
	KeyControlGroup
	KeyMetricsListen
	KeyPathHealth
	KeyOutageHold
)

type configKey struct {
	key  Key
	name string
	set  func(c *Config, v string) *Error
}

// configKeys describes each key: its name in the file and how to read a
// (non-empty) value into a Config.
var configKeys = []configKey{
	{KeyLog, "log", func(c *Config, v string) *Error {
		if !slices.Contains(logDests, v) {
			return unknownWord("log destination", v, logDests)
		}
		c.Log = v
		return nil
	}},
	{KeyPluginDir, "plugin-dir", func(c *Config, v string) *Error { c.PluginDir = v; return nil }},
	{KeyPathManager, "path-manager", func(c *Config, v string) *Error { c.PathManager = v; return nil }},
	{KeyAddrFlags, "addr-flags", func(c *Config, v string) (e *Error) {
		c.AddrFlags, e = parseFlagWords(splitList(v))
		return e
	}},
	{KeyNotifyFlags, "notify-flags", func(c *Config, v string) (e *Error) {
		c.NotifyFlags, e = parseNotifyFlags(v)
		return e
	}},
	{KeyLoadPlugins, "load-plugins", func(c *Config, v string) *Error { c.LoadPlugins = splitList(v); return nil }},
	{KeyPolicyFile, "policy-file", func(c *Config, v string) *Error { return setAbsPath(&c.PolicyFile, v) }},
	{KeyStateDir, "state-dir", func(c *Config, v string) *Error { return setAbsPath(&c.StateDir, v) }},
	{KeyRemoveOnExit, "remove-on-exit", func(c *Config, v string) (e *Error) {
		c.RemoveOnExit, e = parseBool(v)
		return e
	}},
	{KeySetPathManager, "set-path-manager", func(c *Config, v string) (e *Error) {
		c.SetPathManager, e = parseBool(v)
		return e
	}},
	{KeyControlGroup, "control-group", func(c *Config, v string) *Error {
		if !validGroup(v) {
			return errorf("%q is not a group name or number", v).withHint("write a group such as mptcpd, or its number")
		}
		c.ControlGroup = v
		return nil
	}},
	{KeyMetricsListen, "metrics-listen", func(c *Config, v string) *Error {
		if e := checkListenAddr(v); e != nil {
			return e
		}
		c.MetricsListen = v
		return nil
	}},
	{KeyPathHealth, "path-health", func(c *Config, v string) (e *Error) {
		c.PathHealth, e = parsePathHealth(v)
		return e
	}},
	{KeyOutageHold, "outage-hold", func(c *Config, v string) (e *Error) {
		c.OutageHold, e = parseOutageHold(v)
		return e
	}},
	{KeyResyncInterval, "resync-interval", func(c *Config, v string) *Error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return errorf("%q is not a duration", v).withHint("write a number with a unit, such as 30s or 5m")
		}
		if d < time.Second {
			return errorf("resync-interval %s is shorter than 1s", d).
				withHint("the resync is a safety net behind the event stream; 30s is plenty")
		}
		c.ResyncInterval = d
		return nil
	}},
}

var logDests = []string{"stderr", "syslog", "journal", "null"}

// Bounds of path-health: sampling faster costs CPU for nothing (a subflow
// is not judged before its retransmission timer, 200 ms at least, fired);
// slower lets a dead path hold data for seconds.
const (
	DefaultPathHealth = 100 * time.Millisecond
	minPathHealth     = 10 * time.Millisecond
	maxPathHealth     = 5 * time.Second
)

// ParsePathHealth reads a path-health value: a sampling period from 10ms
// to 5s, or off (0).
func ParsePathHealth(v string) (time.Duration, error) {
	d, e := parsePathHealth(v)
	if e != nil {
		return 0, e
	}
	return d, nil
}

func parsePathHealth(v string) (time.Duration, *Error) {
	return durationOrOff("path-health", v, minPathHealth, maxPathHealth, "write how often to look at the subflows, such as 100ms, or off")
}

// durationOrOff reads the value v of key: a duration within lo..hi, or
// off (0).
func durationOrOff(key, v string, lo, hi time.Duration, hint string) (time.Duration, *Error) {
	if v == "off" || v == "no" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errorf("%q is not a duration or off", v).withHint("%s", hint)
	}
	if d < lo || d > hi {
		return 0, errorf("%s %s is outside %s..%s", key, d, lo, hi).withHint("%s", hint)
	}
	return d, nil
}

// Bounds of outage-hold: a join takes a round trip, or a second and a
// round trip when its SYN is lost; waiting longer than a minute keeps
// connections whose peer will not take a new subflow stalled for nothing.
const (
	DefaultOutageHold = 2 * time.Second
	minOutageHold     = 100 * time.Millisecond
	maxOutageHold     = time.Minute
)

// ParseOutageHold reads an outage-hold value: a wait from 100ms to 1m, or
// off (0).
func ParseOutageHold(v string) (time.Duration, error) {
	d, e := parseOutageHold(v)
	if e != nil {
		return 0, e
	}
	return d, nil
}

func parseOutageHold(v string) (time.Duration, *Error) {
	return durationOrOff("outage-hold", v, minOutageHold, maxOutageHold, "write how long to wait for new subflows after an outage, such as 2s, or off")
}

// validGroup accepts what shadow-utils' groupadd does by default (a
// letter or underscore, then letters, digits, '_', '-', '.', optionally
// a final '$'; at most 32 characters) and decimal group numbers. Whether
// the group exists is checked where it is used.
func validGroup(v string) bool {
	if v == "" || len(v) > 32 {
		return false
	}
	if strings.Trim(v, "0123456789") == "" {
		_, err := strconv.ParseUint(v, 10, 31)
		return err == nil
	}
	for i, r := range strings.TrimSuffix(v, "$") {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return v != "$"
}

// CheckListenAddr checks a metrics-listen value: an IP address and a port
// (192.0.2.1:9257, [2001:db8::1]:9257), or :port for every address.
func CheckListenAddr(s string) error {
	if e := checkListenAddr(s); e != nil {
		return e
	}
	return nil
}

func checkListenAddr(v string) *Error {
	const hint = "write an IP address and a port, such as 192.0.2.1:22 or [::1]:9257, or :PORT for every address"
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return errorf("%q is not host:port", v).withHint("%s", hint)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return errorf("%q: port %q is not a number from 1 to 65535", v, port).withHint("%s", hint)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		// A name would be resolved at start, when DNS may not work yet.
		return errorf("%q: %q is not an IP address", v, host).withHint("%s", hint)
	}
	return nil
}

func setAbsPath(dst *string, v string) *Error {
	if !filepath.IsAbs(v) {
		return errorf("%q is not an absolute path", v).withHint("the daemon does not run in the directory you do; write /...")
	}
	*dst = filepath.Clean(v)
	return nil
}

// String is the key's name in mptcpd.conf; several set bits are joined
// with commas.
func (k Key) String() string {
	var names []string
	for _, ck := range configKeys {
		if k&ck.key != 0 {
			names = append(names, ck.name)
		}
	}
	return strings.Join(names, ",")
}

// DefaultConfig is the configuration without a file.
func DefaultConfig() *Config {
	return &Config{
		Source:         "built-in",
		Log:            "stderr",
		StateDir:       "/run/mptcpd-go",
		ResyncInterval: 30 * time.Second,
		PathHealth:     DefaultPathHealth,
		OutageHold:     DefaultOutageHold,
	}
}

// LoadConfig reads mptcpd.conf at path. A missing file is no error: the
// result is DefaultConfig's. Like Intel's mptcpd it refuses a
// world-writable file.
func LoadConfig(path string) (*Config, []Warning, error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultConfig(), nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return ParseConfig(path, data)
}

// ParseConfig reads mptcpd.conf's text; name is used in positions. The
// syntax is that of Intel's mptcpd (ELL's settings files): [section]
// headers, key=value lines, and lines starting with # as comments. Keys
// outside [core], unknown keys and unknown sections draw a Warning and are
// ignored; an empty value leaves a key at its default, as in Intel's
// mptcpd. All errors are returned together (errors.Join of *Error).
func ParseConfig(name string, data []byte) (*Config, []Warning, error) {
	cp := configParser{c: DefaultConfig(), seen: map[Key]int{}}
	cp.c.Source = name
	var errs errorList
	for i, line := range strings.Split(string(data), "\n") {
		pos := Position{File: name, Line: i + 1}
		if e := cp.line(pos, strings.TrimSpace(line)); e != nil && !errs.add(pos, e) {
			break
		}
	}
	if err := errs.err(); err != nil {
		return nil, cp.warns, err
	}
	return cp.c, cp.warns, nil
}

type configParser struct {
	c       *Config
	warns   []Warning
	section string
	seen    map[Key]int    // key -> line that set it
	seenIn  map[string]int // an endpoint section's "[ssh] listen" -> line that set it
}

// sections are mptcpd.conf's sections: the daemon's, and the endpoints'.
var sections = []string{"core", "ssh", "relay"}

func (cp *configParser) warn(pos Position, msg string) {
	switch {
	case len(cp.warns) < maxErrors:
		cp.warns = append(cp.warns, Warning{pos, msg})
	case len(cp.warns) == maxErrors:
		cp.warns = append(cp.warns, Warning{pos, "more warnings not shown"})
	}
}

func (cp *configParser) line(pos Position, line string) *Error {
	if line == "" || line[0] == '#' {
		return nil
	}
	if line[0] == '[' {
		end := strings.IndexByte(line, ']')
		if end < 0 || strings.TrimSpace(line[end+1:]) != "" {
			cp.section = ""
			return errorf("malformed section header %q", line).withHint("write [core]")
		}
		cp.section = line[1:end]
		if !slices.Contains(sections, cp.section) {
			msg := "unknown section [" + cp.section + "]: its keys are ignored"
			if h := didYouMean(cp.section, sections); h != "" {
				msg += " (" + h + ")"
			}
			cp.warn(pos, msg)
		}
		return nil
	}
	key, value, ok := strings.Cut(line, "=")
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	switch {
	case !ok || key == "":
		return errorf("expected key=value, [section] or # comment, not %q", line)
	case cp.section == "":
		// Intel's parser rejects the whole file.
		return errorf("key %s before any section", key).withHint("put it under [core]")
	case cp.section == "ssh":
		return cp.sshLine(pos, key, value)
	case cp.section == "relay":
		return cp.relayLine(pos, key, value)
	case cp.section != "core":
		return nil // warned about at the header
	}
	ki := slices.IndexFunc(configKeys, func(ck configKey) bool { return ck.name == key })
	if ki < 0 {
		cp.warnUnknownKey(pos, key+" ignored", key, configKeyNames())
		return nil
	}
	ck := configKeys[ki]
	if first, dup := cp.seen[ck.key]; dup {
		return givenAgain(key, first)
	}
	cp.seen[ck.key] = pos.Line
	if value == "" {
		return nil
	}
	if e := ck.set(cp.c, value); e != nil {
		if strings.Contains(value, "#") {
			e.Hint = "a comment must be on a line of its own"
		}
		e.Msg = key + ": " + e.Msg
		return e
	}
	cp.c.Set |= ck.key
	if ck.key == KeyNotifyFlags && cp.c.NotifyFlags&NotifyExisting == 0 {
		cp.warn(pos, "notify-flags without existing: mptcpd-go programs existing addresses anyway, because the endpoint table follows the current state")
	}
	return nil
}

// warnUnknownKey warns about an unknown key, suggesting a known one
// close to it.
func (cp *configParser) warnUnknownKey(pos Position, what, key string, known []string) {
	msg := "unknown key " + what
	if h := didYouMean(key, known); h != "" {
		msg += " (" + h + ")"
	}
	cp.warn(pos, msg)
}

// endpointLine reads one key=value line of an endpoint's section ([ssh],
// [relay]), whose keys are names: each at most once, a non-empty value
// read by set.
func (cp *configParser) endpointLine(pos Position, key, value string, names []string, set func(key, value string) *Error) *Error {
	section := "[" + cp.section + "]"
	if !slices.Contains(names, key) {
		cp.warnUnknownKey(pos, key+" in "+section+" ignored", key, names)
		return nil
	}
	if first, dup := cp.seenIn[section+" "+key]; dup {
		return givenAgain(key, first)
	}
	if cp.seenIn == nil {
		cp.seenIn = map[string]int{}
	}
	cp.seenIn[section+" "+key] = pos.Line
	if value == "" {
		return nil
	}
	if e := set(key, value); e != nil {
		e.Msg = key + ": " + e.Msg
		return e
	}
	return nil
}

func configKeyNames() []string {
	names := make([]string, len(configKeys))
	for i, ck := range configKeys {
		names[i] = ck.name
	}
	return names
}

// InKernelPM reports whether the configuration selects the in-kernel path
// manager (path-manager addr_adv, or none given): mptcpd-go then programs
// the kernel's endpoint table.
func (c *Config) InKernelPM() bool {
	return c.PathManager == "" || c.PathManager == "addr_adv"
}

// BaseSettings are the policy settings the configuration implies, before
// a policy file's global statements: skip loopback and link-local
// addresses, no route check, no temporary or deprecated addresses,
// automatic limits, tables and rules from 27000. An explicit notify-flags
// replaces the skip_loopback, skip_link_local and check_route defaults.
func (c *Config) BaseSettings() Settings {
	s := Settings{
		SkipLoopback:    true,
		SkipLinkLocal:   true,
		Subflows:        Limit{Mode: LimitAuto},
		AddAddrAccepted: Limit{Mode: LimitAuto},
		RouteTableBase:  27000,
		RulePriority:    27000,
	}
	if c.Set&KeyNotifyFlags != 0 {
		s.SkipLoopback = c.NotifyFlags&NotifySkipLoopback != 0
		s.SkipLinkLocal = c.NotifyFlags&NotifySkipLinkLocal != 0
		s.CheckRoute = c.NotifyFlags&NotifyCheckRoute != 0
	}
	return s
}

// Policy returns the policy the configuration names: policy-file read
// with BaseSettings, or without one the built-in Default, whose endpoints
// get addr-flags when given. (A policy file states its flags itself;
// addr-flags does not change it.)
func (c *Config) Policy() (*Policy, error) {
	if c.PolicyFile != "" {
		return Load(c.PolicyFile, c.BaseSettings())
	}
	return Default(c.BaseSettings(), c.AddrFlags), nil
}
