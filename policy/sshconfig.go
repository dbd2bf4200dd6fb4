package policy

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// SSHConfig is the [ssh] section of mptcpd.conf: the SSH endpoint
// (mptcpd-ssh) that serves SSH over MPTCP with the system's sshd. Zero
// fields mean the endpoint's defaults (endpoint/ssh).
type SSHConfig struct {
	Listen         []string // host:port each
	SSHD           string   // sshd's absolute path
	SSHDArgs       []string // after sshd's -i, split at white space
	MaxConnections int
	MaxPerSource   int
	Rate           float64 // new connections per second
	Burst          int

	// Log is [core]'s log: the endpoint logs where the daemon does.
	Log string
}

type sshKey struct {
	name string
	set  func(c *SSHConfig, v string) *Error
}

// sshKeys are the [ssh] section's keys; each name is also mptcpd-ssh's
// flag.
var sshKeys = []sshKey{
	{"listen", func(c *SSHConfig, v string) *Error {
		for _, a := range splitList(v) {
			if e := checkListenAddr(a); e != nil {
				return e
			}
			c.Listen = append(c.Listen, a)
		}
		return nil
	}},
	{"sshd", func(c *SSHConfig, v string) *Error {
		if !filepath.IsAbs(v) {
			return errorf("%q is not an absolute path", v).withHint("sshd refuses to run from a relative path; write /usr/sbin/sshd")
		}
		c.SSHD = filepath.Clean(v)
		return nil
	}},
	{"sshd-args", func(c *SSHConfig, v string) *Error { c.SSHDArgs = strings.Fields(v); return nil }},
	{"max-connections", func(c *SSHConfig, v string) (e *Error) { c.MaxConnections, e = positive(v); return e }},
	{"max-per-source", func(c *SSHConfig, v string) (e *Error) { c.MaxPerSource, e = positive(v); return e }},
	{"rate", func(c *SSHConfig, v string) (e *Error) { c.Rate, e = parseRate(v); return e }},
	{"burst", func(c *SSHConfig, v string) (e *Error) { c.Burst, e = positive(v); return e }},
}

func positive(v string) (int, *Error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1<<20 {
		return 0, errorf("%q is not a number from 1 to %d", v, 1<<20)
	}
	return n, nil
}

// parseRate reads new connections per second.
func parseRate(v string) (float64, *Error) {
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || !(r > 0 && r <= 1e6) { // NaN too
		return 0, errorf("%q is not a rate", v).withHint("write new connections per second, such as 10 or 0.5")
	}
	return r, nil
}

// SSHKeyNames are the names of the [ssh] section's keys, which are also
// mptcpd-ssh's flags.
func SSHKeyNames() []string {
	names := make([]string, len(sshKeys))
	for i, k := range sshKeys {
		names[i] = k.name
	}
	return names
}

// sshLine reads one key=value line of the [ssh] section.
func (cp *configParser) sshLine(pos Position, key, value string) *Error {
	return cp.endpointLine(pos, key, value, SSHKeyNames(), func(key, value string) *Error {
		i := slices.IndexFunc(sshKeys, func(k sshKey) bool { return k.name == key })
		return sshKeys[i].set(&cp.c.SSH, value)
	})
}

// Override replaces c's fields with those of flags that changed(name)
// says the command line gave; names are the [ssh] keys.
func (c *SSHConfig) Override(flags *SSHConfig, changed func(name string) bool) {
	if changed("listen") {
		c.Listen = flags.Listen
	}
	if changed("sshd") {
		c.SSHD = flags.SSHD
	}
	if changed("sshd-args") {
		c.SSHDArgs = flags.SSHDArgs
	}
	if changed("max-connections") {
		c.MaxConnections = flags.MaxConnections
	}
	if changed("max-per-source") {
		c.MaxPerSource = flags.MaxPerSource
	}
	if changed("rate") {
		c.Rate = flags.Rate
	}
	if changed("burst") {
		c.Burst = flags.Burst
	}
}

// LoadSSHConfig reads mptcpd.conf at path for the SSH endpoint: its [ssh]
// section, and [core]'s log. A missing file gives the defaults.
func LoadSSHConfig(path string) (*SSHConfig, []Warning, error) {
	c, warns, err := LoadConfig(path)
	if err != nil {
		return nil, warns, err
	}
	ssh := c.SSH
	ssh.Log = c.Log
	return &ssh, warns, nil
}
