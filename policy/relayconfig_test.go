package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var equalPrefixes = cmpopts.EquateComparable(netip.Prefix{})

func TestParseRelayConfig(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name  string
		in    string
		want  RelayConfig
		warns []string
		err   string
	}{
		{name: "no section", in: "[core]\nlog=null\n[ssh]\nlisten=[::]:22\n"},
		{
			name: "gateway",
			in: "[relay]\nrole=gateway\nkey-file=/etc/mptcpd//relay.key\nrelay=relay.example.net:7443\n" +
				"transparent=[::]:7442\nintercept=br-lan, wg0\nintercept-sources=192.168.1.0/24,fd00::/8\n" +
				"intercept-exclude=192.0.2.7, 2001:db8::/32\nsocks=127.0.0.1:1080,[::1]:1080\n" +
				"socks-users-file=/etc/mptcpd/socks-users\nfirst-data-wait=5ms\nfast-open=yes\nwarm-pool=4\nwarm-pool-age=3s\n" +
				"max-connections=100\nmax-per-source=5\nrate=2.5\nburst=7\ndial-timeout=3s\nidle-timeout=none\ndrain-timeout=none\n",
			want: RelayConfig{
				Role: "gateway", KeyFile: "/etc/mptcpd/relay.key", Relay: "relay.example.net:7443",
				Transparent: []string{"[::]:7442"}, Intercept: []string{"br-lan", "wg0"},
				InterceptSources: []netip.Prefix{pfx("192.168.1.0/24"), pfx("fd00::/8")},
				InterceptExclude: []netip.Prefix{pfx("192.0.2.7/32"), pfx("2001:db8::/32")},
				SOCKS:            []string{"127.0.0.1:1080", "[::1]:1080"}, SOCKSUsersFile: "/etc/mptcpd/socks-users",
				FirstDataWait: 5 * time.Millisecond, FastOpen: true, WarmPool: 4, WarmPoolAge: 3 * time.Second,
				MaxConnections: 100, MaxPerSource: 5, Rate: 2.5, Burst: 7,
				DialTimeout: 3 * time.Second, IdleTimeout: none, DrainTimeout: none,
			},
		},
		{
			name: "relay",
			in: "[relay]\nrole=relay\nkey-file=/etc/mptcpd/relay.key\nlisten=[::]:7443,:443\n" +
				"allow-destinations=10.1.0.0/16\ndeny-destinations=0.0.0.0/8,::1\nhandshake-timeout=5s\n" +
				"idle-timeout=2h30m\nfast-open=no\nfirst-data-wait=none\nwarm-pool=0\ndrain-timeout=1m\n",
			want: RelayConfig{
				Role: "relay", KeyFile: "/etc/mptcpd/relay.key", Listen: []string{"[::]:7443", ":443"},
				AllowDestinations: []netip.Prefix{pfx("10.1.0.0/16")},
				DenyDestinations:  []netip.Prefix{pfx("0.0.0.0/8"), pfx("::1/128")},
				HandshakeTimeout:  5 * time.Second, IdleTimeout: 150 * time.Minute, FirstDataWait: none, WarmPool: none,
				DrainTimeout: time.Minute,
			},
		},
		{
			name: "unknown key and empty values",
			in:   "[relay]\nrole=\nintercept=\nkey-fle=/k\n[rely]\n",
			warns: []string{
				`c:4: unknown key key-fle in [relay] ignored (did you mean "key-file"?)`,
				`c:5: unknown section [rely]: its keys are ignored (did you mean "relay"?)`,
			},
		},
		{
			name: "errors",
			in: "[relay]\nrole=server\nkey-file=relay.key\nrelay=7443\nlisten=[::]:7443,[::]:7443\n" +
				"transparent=localhost:7442\nintercept=eth0,a-very-long-name0\nintercept-sources=192.168.1.1/24\n" +
				"intercept-exclude=10.0.0.0/8,lan\nsocks=:0\nsocks-users-file=users\n",
			err: `c:2: role: unknown role "server" (hint: want one of gateway, relay)
c:3: key-file: "relay.key" is not an absolute path (hint: the daemon does not run in the directory you do; write /...)
c:4: relay: "7443" is not host:port (hint: write a host name or an IP address and a port, such as relay.example.net:7443 or [2001:db8::1]:7443)
c:5: listen: [::]:7443 listed twice
c:6: transparent: "localhost:7442": "localhost" is not an IP address (hint: write an IP address and a port, such as 192.0.2.1:22 or [::1]:9257, or :PORT for every address)
c:7: intercept: interface name "a-very-long-name0" is longer than 15 bytes
c:8: intercept-sources: prefix 192.168.1.1/24 has bits set past /24 (hint: did you mean 192.168.1.0/24?)
c:9: intercept-exclude: "lan" is not an address or prefix (hint: write 192.0.2.0/24 or 2001:db8::/32)
c:10: socks: ":0": port "0" is not a number from 1 to 65535 (hint: write an IP address and a port, such as 192.0.2.1:22 or [::1]:9257, or :PORT for every address)
c:11: socks-users-file: "users" is not an absolute path (hint: the daemon does not run in the directory you do; write /...)`,
		},
		{
			name: "more errors",
			in: "[relay]\nmax-connections=0\nrate=NaN\nhandshake-timeout=10\ndial-timeout=-1s\nidle-timeout=0s\n" +
				"first-data-wait=2s\nfast-open=maybe\nintercept=br/lan\nallow-destinations=::1,::1\nburst=3\nburst=4\n",
			err: `c:2: max-connections: "0" is not a number from 1 to 1048576
c:3: rate: "NaN" is not a rate (hint: write new connections per second, such as 10 or 0.5)
c:4: handshake-timeout: "10" is not a positive duration (hint: write a number with a unit, such as 10s or 2h)
c:5: dial-timeout: "-1s" is not a positive duration (hint: write a number with a unit, such as 10s or 2h)
c:6: idle-timeout: "0s" is not a positive duration (hint: write a number with a unit, such as 10s or 2h, or none)
c:7: first-data-wait: 2s is longer than 1s (hint: clients that wait for the server to speak (SSH, SMTP) wait this long; a LAN needs a few milliseconds)
c:8: fast-open: "maybe" is not yes or no
c:9: intercept: "br/lan" is not an interface name (hint: write names as ip link shows them, such as br-lan or eth1)
c:10: allow-destinations: ::1/128 listed twice
c:12: burst given again (first at line 11) (hint: keep one of the two lines)`,
		},
		{
			name: "warm pool errors",
			in:   "[relay]\nwarm-pool=65\n[relay]\nwarm-pool-age=none\n",
			err: `c:2: warm-pool: "65" is not a number from 0 to 64, or none
c:4: warm-pool-age: "none" is not a positive duration (hint: write a number with a unit, such as 10s or 2h)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := ParseConfig("c", []byte(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error:\n%v\nwant:\n%s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c.Relay, equalPrefixes); diff != "" {
				t.Errorf("[relay] (-want +got):\n%s", diff)
			}
			var got []string
			for _, w := range warns {
				got = append(got, w.String())
			}
			if diff := cmp.Diff(tc.warns, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadRelayConfigOverride(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mptcpd.conf")
	if err := os.WriteFile(path, []byte("[core]\nlog=journal\n[relay]\nrole=relay\nlisten=[::]:7443\nrate=3\nburst=9\nfast-open=yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadRelayConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	// The command line sets listen, rate and fast-open (back to the
	// default), and gives role only to the flags' own config.
	var flags RelayConfig
	for _, kv := range [][2]string{{"listen", "127.0.0.1:7443"}, {"rate", "50"}, {"role", "gateway"}, {"fast-open", "no"}} {
		if err := flags.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	c.Override(&flags, func(name string) bool { return slices.Contains([]string{"listen", "rate", "fast-open"}, name) })
	want := RelayConfig{Role: "relay", Listen: []string{"127.0.0.1:7443"}, Rate: 50, Burst: 9, Log: "journal"}
	if diff := cmp.Diff(want, *c, equalPrefixes); diff != "" {
		t.Errorf("after Override (-want +got):\n%s", diff)
	}
	if c, _, err := LoadRelayConfig(filepath.Join(t.TempDir(), "absent")); err != nil || c.Log != "stderr" || c.Role != "" {
		t.Errorf("missing file: %+v, %v", c, err)
	}
}

// TestRelayConfigSet: a value set from the command line is read, and
// refused, as in the file; every key can be set and copied by Override.
func TestRelayConfigSet(t *testing.T) {
	var c RelayConfig
	if err := c.Set("intercept", "eth0,eth0"); err == nil || err.Error() != "eth0 listed twice" {
		t.Errorf("Set intercept=eth0,eth0: %v", err)
	}
	if err := c.Set("listn", ":1"); err == nil || err.Error() != `unknown [relay] key "listn" (hint: did you mean "listen"?)` {
		t.Errorf("Set listn: %v", err)
	}
	values := map[string]string{
		"role": "relay", "key-file": "/k", "relay": "r:1", "listen": ":1", "transparent": ":2", "intercept": "lan",
		"intercept-sources": "10.0.0.0/8", "intercept-exclude": "10.1.0.0/16", "socks": ":3", "socks-users-file": "/u",
		"allow-destinations": "10.2.0.0/16", "deny-destinations": "10.3.0.0/16", "max-connections": "9",
		"max-per-source": "8", "rate": "7", "burst": "6", "handshake-timeout": "5s", "dial-timeout": "4s",
		"idle-timeout": "3s", "first-data-wait": "2ms", "fast-open": "yes", "warm-pool": "3", "warm-pool-age": "4s", "drain-timeout": "5s",
	}
	for _, k := range RelayKeyNames() {
		v, ok := values[k]
		if !ok {
			t.Errorf("no test value for key %s", k)
			continue
		}
		var one, got RelayConfig
		if err := one.Set(k, v); err != nil {
			t.Errorf("Set %s=%s: %v", k, v, err)
		}
		if cmp.Equal(one, RelayConfig{}, equalPrefixes) {
			t.Errorf("Set %s=%s changed nothing", k, v)
		}
		got.Override(&one, func(name string) bool { return name == k })
		if diff := cmp.Diff(one, got, equalPrefixes); diff != "" {
			t.Errorf("Override of %s (-want +got):\n%s", k, diff)
		}
		if err := one.Set(k, ""); err != nil || !cmp.Equal(one, RelayConfig{}, equalPrefixes) {
			t.Errorf("Set %s to empty: %v, left %+v", k, err, one)
		}
	}
}
