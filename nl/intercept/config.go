package intercept

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultTable is the nftables table (family inet) Install programs when
// Config.Table is empty.
const DefaultTable = "mptcpd_relay"

// Limits of the kernel's names: IFNAMSIZ and NFT_TABLE_MAXNAMELEN, both
// counting the terminating NUL.
const (
	maxIfNameLen    = 16 - 1
	maxTableNameLen = 256 - 1
)

// Config says what to intercept.
type Config struct {
	// Table is the nftables table of family inet that holds the rules; ""
	// means DefaultTable. The table belongs to this package: Install
	// replaces it, Remove deletes it.
	Table string
	// Interfaces are the names of the LAN links whose TCP is intercepted
	// (iifname; exact names, no wildcards). At least one.
	Interfaces []string
	// Sources, when not empty, restricts interception to TCP from these
	// prefixes. A family without prefixes here is then not intercepted.
	Sources []netip.Prefix
	// Exclude are destinations never intercepted, besides the gateway's own
	// addresses which never are.
	Exclude []netip.Prefix
	// Port is the local port redirected connections go to.
	Port uint16
	// NetNS, if not zero, is an open file descriptor of the network
	// namespace to program; 0 means the caller's. It must stay open until
	// Remove.
	NetNS int
}

func (cfg Config) table() string {
	if cfg.Table == "" {
		return DefaultTable
	}
	return cfg.Table
}

// Validate reports everything wrong with cfg, one error per problem, without
// touching the kernel.
func Validate(cfg Config) error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("intercept: "+format, args...))
	}
	if cfg.Table != "" {
		if err := checkTableName(cfg.Table); err != nil {
			fail("table %q: %v", cfg.Table, err)
		}
	}
	if len(cfg.Interfaces) == 0 {
		fail("no interfaces: name at least one LAN link to intercept")
	}
	seen := make(map[string]bool)
	for _, name := range cfg.Interfaces {
		if err := checkIfName(name); err != nil {
			fail("interface %q: %v", name, err)
		} else if seen[name] {
			fail("interface %q listed twice", name)
		}
		seen[name] = true
	}
	errs = append(errs, checkPrefixes("source", cfg.Sources)...)
	errs = append(errs, checkPrefixes("exclude", cfg.Exclude)...)
	if cfg.Port == 0 {
		fail("port 0: give the local port the relay listens on")
	}
	if cfg.NetNS < 0 {
		fail("network namespace fd %d is negative", cfg.NetNS)
	}
	return errors.Join(errs...)
}

// checkIfName applies the kernel's rules for link names (dev_valid_name): a
// name it would refuse can never match.
func checkIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > maxIfNameLen:
		return fmt.Errorf("longer than %d bytes", maxIfNameLen)
	case name == "." || name == "..":
		return errors.New("not a link name")
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return errors.New("contains '/', ':', a space or NUL, which link names cannot")
	}
	return nil
}

// checkTableName accepts what the nft command line can name too, so that
// `nft list table inet NAME` works on it.
func checkTableName(name string) error {
	if len(name) > maxTableNameLen {
		return fmt.Errorf("longer than %d bytes", maxTableNameLen)
	}
	for i, r := range name {
		letter := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r == '_'
		if i == 0 && !letter {
			return errors.New("must start with a letter or '_'")
		}
		if !letter && !('0' <= r && r <= '9') && r != '.' && r != '-' {
			return fmt.Errorf("character %q: use letters, digits, '_', '.' and '-'", r)
		}
	}
	return nil
}

// checkPrefixes rejects what would make the rule mean something else than
// it says: host bits (was a /32 meant?), IPv4-mapped IPv6 (packets never
// carry it) and overlaps (one of the two is a mistake).
func checkPrefixes(what string, ps []netip.Prefix) []error {
	var errs []error
	for i, p := range ps {
		var err error
		switch {
		case !p.IsValid():
			err = errors.New("not a valid prefix")
		case p.Addr().Is4In6():
			err = errors.New("is IPv4-mapped IPv6: write the IPv4 prefix")
		case p.Masked() != p:
			err = fmt.Errorf("has host bits set: did you mean %s or %s/%d?", p.Masked(), p.Addr(), p.Addr().BitLen())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("intercept: %s %d (%s): %w", what, i+1, p, err))
			continue
		}
		for _, q := range ps[:i] {
			if q == p {
				errs = append(errs, fmt.Errorf("intercept: %s %s listed twice", what, p))
				break
			}
			if q.IsValid() && q.Overlaps(p) {
				errs = append(errs, fmt.Errorf("intercept: %s %s overlaps %s", what, p, q))
				break
			}
		}
	}
	return errs
}

// Rules are the rules Install put in place; Remove deletes them.
type Rules struct {
	table string
	netns int
}
