package intercept

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	valid := Config{Interfaces: []string{"lan0"}, Port: 7070}
	with := func(f func(*Config)) Config {
		c := valid
		f(&c)
		return c
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		want []string // one line per problem; none: valid
	}{
		{name: "minimal", cfg: valid},
		{name: "everything", cfg: Config{
			Table:      "relay_2.lan-a",
			Interfaces: []string{"lan0", "wlan-guest.100", "abcdefghijklmno"},
			Sources:    prefixes("192.168.7.0/24", "fd00:7::/64", "10.0.0.0/9", "10.128.0.0/9"),
			Exclude:    prefixes("0.0.0.0/0", "::/0"),
			Port:       1,
			NetNS:      3,
		}},
		{name: "nothing", cfg: Config{}, want: []string{
			"intercept: no interfaces: name at least one LAN link to intercept",
			"intercept: port 0: give the local port the relay listens on",
		}},
		{name: "interface names", cfg: with(func(c *Config) {
			c.Interfaces = []string{"", "abcdefghijklmnop", ".", "eth/0", "a b", "lan0", "lan0"}
		}), want: []string{
			`intercept: interface "": empty name`,
			`intercept: interface "abcdefghijklmnop": longer than 15 bytes`,
			`intercept: interface ".": not a link name`,
			`intercept: interface "eth/0": contains '/', ':', a space or NUL, which link names cannot`,
			`intercept: interface "a b": contains '/', ':', a space or NUL, which link names cannot`,
			`intercept: interface "lan0" listed twice`,
		}},
		{name: "prefixes", cfg: with(func(c *Config) {
			c.Sources = []netip.Prefix{
				{},
				netip.MustParsePrefix("192.168.7.1/24"),
				netip.MustParsePrefix("::ffff:10.0.0.0/104"),
				netip.MustParsePrefix("fd00::/8"),
				netip.MustParsePrefix("fd00::/8"),
			}
			c.Exclude = prefixes("10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "2001:db8::5/128")
		}), want: []string{
			"intercept: source 1 (invalid Prefix): not a valid prefix",
			"intercept: source 2 (192.168.7.1/24): has host bits set: did you mean 192.168.7.0/24 or 192.168.7.1/32?",
			"intercept: source 3 (::ffff:10.0.0.0/104): is IPv4-mapped IPv6: write the IPv4 prefix",
			"intercept: source fd00::/8 listed twice",
			"intercept: exclude 10.1.0.0/16 overlaps 10.0.0.0/8",
			"intercept: exclude 2001:db8::5/128 overlaps 2001:db8::/32",
		}},
		{name: "table names", cfg: with(func(c *Config) { c.Table = "1relay" }), want: []string{
			`intercept: table "1relay": must start with a letter or '_'`,
		}},
		{name: "table name characters", cfg: with(func(c *Config) { c.Table = "my relay" }), want: []string{
			`intercept: table "my relay": character ' ': use letters, digits, '_', '.' and '-'`,
		}},
		{name: "long table name", cfg: with(func(c *Config) { c.Table = strings.Repeat("t", 256) }), want: []string{
			`intercept: table "` + strings.Repeat("t", 256) + `": longer than 255 bytes`,
		}},
		{name: "negative namespace", cfg: with(func(c *Config) { c.NetNS = -1 }), want: []string{
			"intercept: network namespace fd -1 is negative",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			if err := Validate(tt.cfg); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}
