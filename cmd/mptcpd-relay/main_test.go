package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
	"github.com/mptcpd-go/mptcpd/endpoint/relay"
	"github.com/mptcpd-go/mptcpd/nl/intercept"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Every [relay] key is a flag, in the file's order.
func TestKeyFlagsAreKeys(t *testing.T) {
	var names []string
	for _, k := range keyFlags {
		names = append(names, k.name)
	}
	if diff := cmp.Diff(policy.RelayKeyNames(), names); diff != "" {
		t.Errorf("flags differ from the [relay] keys (-keys +flags):\n%s", diff)
	}
}

func TestParseFlags(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name    string
		args    []string
		want    policy.RelayConfig // the flags' values
		changed []string
		err     string
	}{
		{name: "none"},
		{
			name: "lists add up",
			args: []string{"--listen", ":1", "--listen=:2,:3", "--intercept-sources", "10.0.0.0/8", "--intercept-sources", "fd00::1"},
			want: policy.RelayConfig{
				Listen:           []string{":1", ":2", ":3"},
				InterceptSources: []netip.Prefix{pfx("10.0.0.0/8"), pfx("fd00::1/128")},
			},
			changed: []string{"listen", "intercept-sources"},
		},
		{
			name:    "the last of a value wins",
			args:    []string{"--role", "relay", "--role=gateway", "--idle-timeout", "1h", "--idle-timeout=none", "--fast-open=yes"},
			want:    policy.RelayConfig{Role: "gateway", IdleTimeout: -1, FastOpen: true},
			changed: []string{"role", "idle-timeout", "fast-open"},
		},
		{name: "bare fast-open", args: []string{"--fast-open"}, want: policy.RelayConfig{FastOpen: true}, changed: []string{"fast-open"}},
		{
			name: "a value the file would refuse",
			args: []string{"--listen", "22"},
			err:  `invalid argument "22" for "--listen" flag: "22" is not host:port (hint: write an IP address and a port, such as 192.0.2.1:22 or [::1]:9257, or :PORT for every address)`,
		},
		{
			name: "listed twice across uses",
			args: []string{"--intercept", "lan", "--intercept", "wan,lan"},
			err:  `invalid argument "wan,lan" for "--intercept" flag: lan listed twice`,
		},
		{name: "argument", args: []string{"serve"}, err: `unexpected argument "serve"`},
		{name: "genkey with more", args: []string{"genkey", "now"}, err: `unexpected argument "now"`},
		{name: "unknown flag", args: []string{"--gateway"}, err: "unknown flag: --gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, exit, err := parseFlags(tc.args, io.Discard)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil || exit {
				t.Fatalf("parseFlags: exit %v, %v", exit, err)
			}
			if diff := cmp.Diff(tc.want, opts.cfg, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("flags' config (-want +got):\n%s", diff)
			}
			var changed []string
			for _, name := range policy.RelayKeyNames() {
				if opts.flags.Changed(name) {
					changed = append(changed, name)
				}
			}
			if diff := cmp.Diff(tc.changed, changed, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenkey(t *testing.T) {
	var keys []string
	for range 2 {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"genkey"}, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
			t.Fatalf("genkey: exit %d, stderr %q", code, stderr.String())
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(stdout.String(), "\n"))
		if err != nil || len(b) != 32 {
			t.Fatalf("genkey printed %q: %d bytes, %v", stdout.String(), len(b), err)
		}
		// What it prints is a key file.
		if _, err := relay.ParseKeys(stdout.Bytes()); err != nil {
			t.Errorf("genkey's output is no key file: %v", err)
		}
		keys = append(keys, stdout.String())
	}
	if keys[0] == keys[1] {
		t.Error("genkey printed the same key twice")
	}
}

// writeFile writes a file only its owner may read, in a fresh directory.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunErrors: what is missing or out of place stops the command with
// a message, before it opens anything.
func TestRunErrors(t *testing.T) {
	keyFile := writeFile(t, "relay.key", relay.GenerateKey().String()+"\n")
	openKey := writeFile(t, "open.key", relay.GenerateKey().String()+"\n")
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}
	users := writeFile(t, "users", "# users\nalice\n")
	for _, tc := range []struct {
		name, conf string
		args       []string
		code       int
		stderr     string
		prefix     bool // stderr only starts with it
	}{
		{
			name:   "no role",
			conf:   "[relay]\nkey-file=" + keyFile + "\n",
			code:   1,
			stderr: "mptcpd-relay: no role: set role=gateway or role=relay in mptcpd.conf's [relay], or give --role\n",
		},
		{
			name: "an empty gateway",
			conf: "[relay]\nrole=gateway\nintercept-sources=10.0.0.0/8\nsocks-users-file=/u\nwarm-pool=none\nwarm-pool-age=3s\n",
			code: 1,
			stderr: "mptcpd-relay: no key-file: both ends need the same key; make one with mptcpd-relay genkey\n" +
				"a gateway needs relay=HOST:PORT, where its relay listens\n" +
				"a gateway needs intercept=, socks= or transparent=: it has nothing to relay\n" +
				"intercept-sources and intercept-exclude need intercept=, the interfaces to intercept on\n" +
				"warm-pool-age with warm-pool=none: there is no pool to age\n" +
				"socks-users-file needs socks=, a SOCKS5 listener\n",
		},
		{
			name:   "gateway keys on a relay",
			conf:   "[relay]\nrole=relay\nkey-file=" + keyFile + "\nintercept=lan\n",
			args:   []string{"--fast-open=yes", "--socks", "127.0.0.1:1080", "--warm-pool=2"},
			code:   1,
			stderr: "mptcpd-relay: role relay does not use fast-open, intercept, socks, warm-pool, which only a gateway does\n",
		},
		{
			name:   "relay keys on a gateway, and limits that cannot work",
			conf:   "[relay]\nrole=gateway\nkey-file=" + keyFile + "\nrelay=r:1\nsocks=:1080\nhandshake-timeout=1s\nmax-per-source=2000\n",
			code:   1,
			stderr: "mptcpd-relay: role gateway does not use handshake-timeout, which only a relay does\nmax-per-source 2000 is above max-connections 1024\n",
		},
		{
			name:   "the flag overrides the file",
			conf:   "[relay]\nrole=gateway\n",
			args:   []string{"--role=relay"},
			code:   1,
			stderr: "mptcpd-relay: no key-file: both ends need the same key; make one with mptcpd-relay genkey\n",
		},
		{
			name:   "no key file",
			conf:   "[relay]\nrole=relay\nkey-file=/nonexistent/relay.key\n",
			code:   1,
			stderr: "mptcpd-relay: key-file: open /nonexistent/relay.key: no such file or directory (make one with: (umask 077; mptcpd-relay genkey >/nonexistent/relay.key), and copy it to the other end)\n",
		},
		{
			name:   "a key file others may read",
			conf:   "[relay]\nrole=relay\nkey-file=" + openKey + "\n",
			code:   1,
			stderr: "mptcpd-relay: key-file: " + openKey + ": mode 0644: readable by others than its owner (chmod 600 it)\n",
		},
		{
			name:   "a bad users file",
			conf:   "[relay]\nrole=gateway\nkey-file=" + keyFile + "\nrelay=r:1\nsocks=127.0.0.1:1080\nsocks-users-file=" + users + "\n",
			code:   1,
			stderr: "mptcpd-relay: socks-users-file: " + users + ": line 2: want user:password\n",
		},
		{
			name:   "a bad file",
			conf:   "[relay]\nrole=server\n",
			code:   1,
			stderr: "mptcpd-relay: " + filepath.Join(os.TempDir()),
			prefix: true,
		},
		{name: "a bad flag", args: []string{"--rate", "fast"}, code: 64, stderr: `mptcpd-relay: invalid argument "fast" for "--rate" flag: "fast" is not a rate`, prefix: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--config", writeFile(t, "mptcpd.conf", tc.conf), "--log=null"}, tc.args...)
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			got := stderr.String()
			if tc.prefix && strings.HasPrefix(got, tc.stderr) {
				got = tc.stderr
			}
			if code != tc.code || got != tc.stderr {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr:\n%s", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}

func TestConfigs(t *testing.T) {
	key := relay.GenerateKey()
	ten := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c := &policy.RelayConfig{Role: "relay", MaxConnections: 100, IdleTimeout: -1, AllowDestinations: ten}
	want := relay.ServerConfig{
		Listen: []string{"[::]:7443"}, Keys: []relay.Key{key},
		Limits:      gate.Limits{MaxConnections: 100, MaxPerSource: 100, Rate: 1000, Burst: 2000},
		Policy:      &relay.DestPolicy{Allow: ten},
		IdleTimeout: -1,
	}
	if diff := cmp.Diff(want, serverConfig(c, []relay.Key{key}), cmpopts.EquateComparable(netip.Prefix{}), cmpopts.IgnoreUnexported(relay.DestPolicy{})); diff != "" {
		t.Errorf("serverConfig (-want +got):\n%s", diff)
	}

	c = &policy.RelayConfig{Role: "gateway", Relay: "r:1", Intercept: []string{"lan"}, InterceptExclude: ten, MaxPerSource: 10, FastOpen: true}
	users := map[string]string{"u": "p"}
	wantGW := relay.GatewayConfig{
		Relay: "r:1", Key: key, Transparent: []string{"[::]:7442"},
		Intercept:  &intercept.Config{Interfaces: []string{"lan"}, Exclude: ten},
		SOCKSUsers: users,
		Limits:     gate.Limits{MaxConnections: 1024, MaxPerSource: 10, Rate: 500, Burst: 1000},
		FastOpen:   true,
		WarmPool:   defaultWarmPool,
	}
	if diff := cmp.Diff(wantGW, gatewayConfig(c, key, users), cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
		t.Errorf("gatewayConfig (-want +got):\n%s", diff)
	}
	// warm-pool=none is no pool; a number and an age pass through.
	for _, tc := range []struct {
		pool, want int
		age        time.Duration
	}{{-1, 0, 0}, {2, 2, 3 * time.Second}} {
		c = &policy.RelayConfig{Role: "gateway", Relay: "r:1", SOCKS: []string{":1080"}, WarmPool: tc.pool, WarmPoolAge: tc.age}
		if g := gatewayConfig(c, key, nil); g.WarmPool != tc.want || g.WarmAge != tc.age {
			t.Errorf("warm-pool %d, age %v: pool %d, age %v", tc.pool, tc.age, g.WarmPool, g.WarmAge)
		}
	}
	// Without intercept, no transparent listener unless asked for.
	c = &policy.RelayConfig{Role: "gateway", Relay: "r:1", SOCKS: []string{":1080"}}
	if g := gatewayConfig(c, key, nil); g.Intercept != nil || g.Transparent != nil {
		t.Errorf("a SOCKS gateway: intercept %v, transparent %v", g.Intercept, g.Transparent)
	}
}

func TestParseSOCKSUsers(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{
			name: "users",
			in:   "# who may use the proxy\n\nalice:s3cret:with:colons\n  bob:pass word  \r\n",
			want: map[string]string{"alice": "s3cret:with:colons", "bob": "pass word"},
		},
		{name: "no colon", in: "alice\n", err: "line 1: want user:password"},
		{name: "empty password", in: "#\nalice:\n", err: "line 2: a user name and a password are 1 to 255 bytes each"},
		{name: "empty user", in: ":secret\n", err: "line 1: a user name and a password are 1 to 255 bytes each"},
		{name: "long password", in: "a:" + strings.Repeat("x", 256), err: "line 1: a user name and a password are 1 to 255 bytes each"},
		{name: "twice", in: "a:1\nb:2\na:3\n", err: `line 3: user "a" given again (first at line 1)`},
		{name: "empty", in: "# nobody\n", err: "no user in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSOCKSUsers([]byte(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
		})
	}
}

// usersError is every error parseSOCKSUsers may return: a user name
// (without a colon) is all of a line it shows.
var usersError = regexp.MustCompile(`^(line \d+: (want user:password|a user name and a password are 1 to 255 bytes each|user "[^:]*" given again \(first at line \d+\))|no user in it|bufio.Scanner: token too long)$`)

// FuzzParseSOCKSUsers: the parser never panics, never echoes a password
// in an error, and what it accepts fits SOCKS5's fields.
func FuzzParseSOCKSUsers(f *testing.F) {
	f.Add([]byte("# users\nalice:secret\nbob:a:b\n"))
	f.Add([]byte("alice\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseSOCKSUsers(data)
		if err != nil {
			if !usersError.MatchString(err.Error()) {
				t.Errorf("error %q is none of the parser's (does it show a password?)", err)
			}
			return
		}
		for u, p := range users {
			if len(u) < 1 || len(u) > 255 || len(p) < 1 || len(p) > 255 || strings.Contains(u, ":") {
				t.Errorf("accepted user %q, password %q", u, p)
			}
		}
	})
}

// TestListenRoles starts a relay and a SOCKS5 gateway from their [relay]
// sections, as the command does, and relays a line to an echo server
// through them: the keys, the users file and the destination policy are
// wired to the endpoints.
func TestListenRoles(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	keyFile := writeFile(t, "relay.key", relay.GenerateKey().String()+"\n")
	usersFile := writeFile(t, "users", "alice:secret\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	start := func(c *policy.RelayConfig) server {
		t.Helper()
		if err := check(c); err != nil {
			t.Fatal(err)
		}
		srv, err := listen(ctx, c, log)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		return srv
	}
	r := start(&policy.RelayConfig{
		Role: "relay", KeyFile: keyFile, Listen: []string{"127.0.0.1:0"},
		AllowDestinations: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}).(*relay.Server)
	g := start(&policy.RelayConfig{
		Role: "gateway", KeyFile: keyFile, Relay: r.Addrs()[0].String(),
		SOCKS: []string{"127.0.0.1:0"}, SOCKSUsersFile: usersFile,
	}).(*relay.Gateway)

	c, err := net.DialTimeout("tcp", g.SOCKSAddrs()[0].String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	dst := echo.Addr().(*net.TCPAddr).AddrPort()
	a := dst.Addr().As4()
	// Greeting offering user/password only, RFC 1929's request, CONNECT.
	req := append([]byte{5, 1, 2, 1, 5}, "alice"...)
	req = append(append(req, 6), "secret"...)
	req = append(req, 5, 1, 0, 1, a[0], a[1], a[2], a[3], byte(dst.Port()>>8), byte(dst.Port()))
	if _, err := c.Write(append(req, "hello\n"...)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+2+10)
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("SOCKS5 replies: %v", err)
	}
	if want := []byte{5, 2, 1, 0, 5, 0}; !bytes.Equal(reply[:6], want) {
		t.Fatalf("SOCKS5 replies %x, want %x...", reply, want)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
}
