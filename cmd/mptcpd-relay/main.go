// Command mptcpd-relay carries TCP connections over Multipath TCP: as a
// gateway it takes a LAN's connections (intercepted with nftables, or
// from SOCKS5 clients) and carries each over its own MPTCP connection to
// a relay, which dials the destination; see endpoint/relay. Its settings
// are the [relay] section of mptcpd.conf, which its flags override.
// `mptcpd-relay genkey` prints a new shared key.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/pflag"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
	"github.com/mptcpd-go/mptcpd/endpoint/relay"
	"github.com/mptcpd-go/mptcpd/internal/daemon"
	"github.com/mptcpd-go/mptcpd/nl/intercept"
	"github.com/mptcpd-go/mptcpd/policy"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "devel"

// Defaults of the listeners, one port apart so that a firewall rule or a
// ss(8) filter can take both.
const (
	defaultListen      = "[::]:7443" // the relay's MPTCP listener
	defaultTransparent = "[::]:7442" // where a gateway's intercepted connections arrive
	// defaultWarmPool saves most new connections the round trip of the
	// handshake to the relay (README: the relay's measurements).
	defaultWarmPool = 4
)

// Each role's limits where mptcpd.conf sets none. A
// relay's source is a gateway, which carries a whole household's
// connections (a browser alone keeps dozens open), so one source may
// take a quarter of the relay; a gateway's source is a LAN host. The
// rates bound the cost of a flood, not of a busy page load, which opens
// a hundred connections at once.
var (
	relayLimits   = gate.Limits{MaxConnections: 4096, MaxPerSource: 1024, Rate: 1000, Burst: 2000}
	gatewayLimits = gate.Limits{MaxConnections: 1024, MaxPerSource: 256, Rate: 500, Burst: 1000}
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	configPath string
	log        string
	debug      bool
	flags      *pflag.FlagSet
	cfg        policy.RelayConfig // the flags' values, where Changed
}

func run(args []string, stdout, stderr io.Writer) int {
	return daemon.RunEndpoint("mptcpd-relay", stderr,
		func() (options, bool, error) { return parseFlags(args, stdout) },
		func(ctx context.Context, opts options) error { return serve(ctx, opts, stderr) })
}

// server is a running relay or gateway.
type server interface {
	Serve(ctx context.Context) error
	Stats() relay.Stats
}

func serve(ctx context.Context, opts options, stderr io.Writer) error {
	conf, warns, err := policy.LoadRelayConfig(opts.configPath)
	if err != nil {
		return err
	}
	conf.Override(&opts.cfg, opts.flags.Changed)
	logDest := opts.log
	if logDest == "" {
		logDest = conf.Log
	}
	log, err := daemon.NewLogger(logDest, opts.debug, stderr)
	if err != nil {
		return err
	}
	for _, w := range warns {
		log.Warn(w.String())
	}
	if err := check(conf); err != nil {
		return err
	}
	srv, err := listen(ctx, conf, log)
	if err != nil {
		return err
	}
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	context.AfterFunc(ctx, func() { _, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping) })
	err = srv.Serve(ctx)
	st := srv.Stats()
	attrs := []any{"relayed", st.Relayed, "active", st.Active, "up", st.Up, "down", st.Down, "refused", st.Refused}
	if conf.Role == "relay" {
		attrs = append(attrs, "unused", st.Unused)
	} else {
		attrs = append(attrs, "warm_hits", st.Pool.Hits, "warm_misses", st.Pool.Misses)
	}
	log.Info("stopped", attrs...)
	return err
}

// listen opens conf's role's listeners.
func listen(ctx context.Context, conf *policy.RelayConfig, log *slog.Logger) (server, error) {
	keys, err := relay.LoadKeys(conf.KeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w (make one with: (umask 077; mptcpd-relay genkey >%s), and copy it to the other end)", err, conf.KeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("key-file: %w", err)
	}
	if conf.Role == "relay" {
		cfg := serverConfig(conf, keys)
		cfg.Logger = log
		return relay.Listen(ctx, cfg)
	}
	var users map[string]string
	if conf.SOCKSUsersFile != "" {
		if users, err = loadSOCKSUsers(conf.SOCKSUsersFile); err != nil {
			return nil, fmt.Errorf("socks-users-file: %w", err)
		}
	}
	cfg := gatewayConfig(conf, keys[0], users)
	cfg.Logger = log
	return relay.ListenGateway(ctx, cfg)
}

// check reports what c lacks for its role, and the keys it gives that
// its role does not use; the parser took each key on its own.
func check(c *policy.RelayConfig) error {
	if c.Role == "" {
		return errors.New("no role: set role=gateway or role=relay in mptcpd.conf's [relay], or give --role")
	}
	var errs []error
	if c.KeyFile == "" {
		errs = append(errs, errors.New("no key-file: both ends need the same key; make one with mptcpd-relay genkey"))
	}
	given := func(keys map[string]bool) []string {
		var names []string
		for name, set := range keys {
			if set {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		return names
	}
	relayOnly := given(map[string]bool{
		"listen": len(c.Listen) > 0, "allow-destinations": len(c.AllowDestinations) > 0,
		"deny-destinations": len(c.DenyDestinations) > 0, "handshake-timeout": c.HandshakeTimeout != 0,
	})
	gatewayOnly := given(map[string]bool{
		"relay": c.Relay != "", "transparent": len(c.Transparent) > 0, "intercept": len(c.Intercept) > 0,
		"intercept-sources": len(c.InterceptSources) > 0, "intercept-exclude": len(c.InterceptExclude) > 0,
		"socks": len(c.SOCKS) > 0, "socks-users-file": c.SOCKSUsersFile != "",
		"first-data-wait": c.FirstDataWait != 0, "fast-open": c.FastOpen,
		"warm-pool": c.WarmPool != 0, "warm-pool-age": c.WarmPoolAge != 0,
	})
	other, otherRole := gatewayOnly, "gateway"
	if c.Role == "gateway" {
		other, otherRole = relayOnly, "relay"
		if c.Relay == "" {
			errs = append(errs, errors.New("a gateway needs relay=HOST:PORT, where its relay listens"))
		}
		if len(c.Intercept) == 0 && len(c.Transparent) == 0 && len(c.SOCKS) == 0 {
			errs = append(errs, errors.New("a gateway needs intercept=, socks= or transparent=: it has nothing to relay"))
		}
		if len(c.Intercept) == 0 && (len(c.InterceptSources) > 0 || len(c.InterceptExclude) > 0) {
			errs = append(errs, errors.New("intercept-sources and intercept-exclude need intercept=, the interfaces to intercept on"))
		}
		if c.WarmPool < 0 && c.WarmPoolAge != 0 {
			errs = append(errs, errors.New("warm-pool-age with warm-pool=none: there is no pool to age"))
		}
		if c.SOCKSUsersFile != "" && len(c.SOCKS) == 0 {
			errs = append(errs, errors.New("socks-users-file needs socks=, a SOCKS5 listener"))
		}
	}
	if len(other) > 0 {
		errs = append(errs, fmt.Errorf("role %s does not use %s, which only a %s does", c.Role, strings.Join(other, ", "), otherRole))
	}
	if err := limits(c).Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// limits are c's limits, its role's defaults where it sets none. A lower
// max-connections lowers the default max-per-source with it.
func limits(c *policy.RelayConfig) gate.Limits {
	l := gatewayLimits
	if c.Role == "relay" {
		l = relayLimits
	}
	if c.MaxConnections != 0 {
		l.MaxConnections = c.MaxConnections
		l.MaxPerSource = min(l.MaxPerSource, c.MaxConnections)
	}
	if c.MaxPerSource != 0 {
		l.MaxPerSource = c.MaxPerSource
	}
	if c.Rate != 0 {
		l.Rate = c.Rate
	}
	if c.Burst != 0 {
		l.Burst = c.Burst
	}
	return l
}

// serverConfig is the relay role's configuration; zero timeouts are
// endpoint/relay's defaults.
func serverConfig(c *policy.RelayConfig, keys []relay.Key) relay.ServerConfig {
	cfg := relay.ServerConfig{
		Listen:           c.Listen,
		Keys:             keys,
		Limits:           limits(c),
		Policy:           &relay.DestPolicy{Allow: c.AllowDestinations, Deny: c.DenyDestinations},
		HandshakeTimeout: c.HandshakeTimeout,
		DialTimeout:      c.DialTimeout,
		IdleTimeout:      c.IdleTimeout,
		DrainTimeout:     c.DrainTimeout,
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{defaultListen}
	}
	return cfg
}

// gatewayConfig is the gateway role's configuration, sending with key.
func gatewayConfig(c *policy.RelayConfig, key relay.Key, users map[string]string) relay.GatewayConfig {
	cfg := relay.GatewayConfig{
		Relay:         c.Relay,
		Key:           key,
		Transparent:   c.Transparent,
		SOCKS:         c.SOCKS,
		SOCKSUsers:    users,
		Limits:        limits(c),
		FirstDataWait: c.FirstDataWait,
		FastOpen:      c.FastOpen,
		DialTimeout:   c.DialTimeout,
		IdleTimeout:   c.IdleTimeout,
		DrainTimeout:  c.DrainTimeout,
		WarmPool:      max(c.WarmPool, 0),
		WarmAge:       c.WarmPoolAge,
	}
	if c.WarmPool == 0 {
		cfg.WarmPool = defaultWarmPool
	}
	if len(c.Intercept) > 0 {
		// ListenGateway sets Port: the first transparent listener's.
		cfg.Intercept = &intercept.Config{Interfaces: c.Intercept, Sources: c.InterceptSources, Exclude: c.InterceptExclude}
		if len(cfg.Transparent) == 0 {
			cfg.Transparent = []string{defaultTransparent}
		}
	}
	return cfg
}

// loadSOCKSUsers reads the SOCKS5 users file at path, which only its
// owner may read, as the key file.
func loadSOCKSUsers(path string) (map[string]string, error) {
	data, err := relay.ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	users, err := parseSOCKSUsers(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return users, nil
}

// parseSOCKSUsers reads a SOCKS5 users file: one user:password a line
// (the password runs to the end of the line, blanks around the line
// trimmed), blank lines and '#' comments ignored. Names and passwords
// are 1 to 255 bytes, as SOCKS5's user/password method (RFC 1929)
// carries them.
func parseSOCKSUsers(data []byte) (map[string]string, error) {
	users := map[string]string{}
	first := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		// Never echo the line: it holds a password.
		user, password, ok := strings.Cut(s, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: want user:password", line)
		case len(user) < 1 || len(user) > 255 || len(password) < 1 || len(password) > 255:
			return nil, fmt.Errorf("line %d: a user name and a password are 1 to 255 bytes each", line)
		case first[user] != 0:
			return nil, fmt.Errorf("line %d: user %q given again (first at line %d)", line, user, first[user])
		}
		users[user], first[user] = password, line
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, errors.New("no user in it")
	}
	return users, nil
}

// keyFlag is a flag named as a [relay] key. Its value goes through the
// file's parser (policy.RelayConfig.Set), so that a flag and a line
// accept the same; a list flag may be repeated, each use adding to it.
type keyFlag struct {
	cfg   *policy.RelayConfig
	name  string
	typ   string
	list  bool
	value string
}

func (f *keyFlag) Set(v string) error {
	if f.list && f.value != "" {
		v = f.value + "," + v
	}
	if err := f.cfg.Set(f.name, v); err != nil {
		return err
	}
	f.value = v
	return nil
}

func (f *keyFlag) String() string { return f.value }
func (f *keyFlag) Type() string   { return f.typ }

// keyFlags are the [relay] keys as flags: the value's name in --help,
// whether it is a list, and what it does.
var keyFlags = []struct {
	name, typ string
	list      bool
	usage     string
}{
	{"role", "role", false, "gateway or relay"},
	{"key-file", "path", false, "the shared keys' file, one base64 key a line (see genkey)"},
	{"relay", "host:port", false, "[gateway] where the relay listens"},
	{"listen", "addrs", true, "[relay] MPTCP listeners, host:port (default " + defaultListen + ")"},
	{"transparent", "addrs", true, "[gateway] listeners for redirected connections (default " + defaultTransparent + " with --intercept)"},
	{"intercept", "names", true, "[gateway] intercept the TCP arriving on these LAN interfaces (nftables)"},
	{"intercept-sources", "prefixes", true, "[gateway] intercept only from these sources"},
	{"intercept-exclude", "prefixes", true, "[gateway] never intercept to these destinations"},
	{"socks", "addrs", true, "[gateway] SOCKS5 listeners, host:port"},
	{"socks-users-file", "path", false, "[gateway] user:password lines that SOCKS5 clients must give"},
	{"allow-destinations", "prefixes", true, "[relay] dial these even if private, loopback or the relay's own"},
	{"deny-destinations", "prefixes", true, "[relay] never dial these"},
	{"max-connections", "n", false, fmt.Sprintf("connections at once (default: relay %d, gateway %d)", relayLimits.MaxConnections, gatewayLimits.MaxConnections)},
	{"max-per-source", "n", false, fmt.Sprintf("connections at once from one IPv4 address or IPv6 /64 (default %d, %d)", relayLimits.MaxPerSource, gatewayLimits.MaxPerSource)},
	{"rate", "rate", false, fmt.Sprintf("new connections per second on average (default %g, %g)", relayLimits.Rate, gatewayLimits.Rate)},
	{"burst", "n", false, fmt.Sprintf("new connections at once after a quiet spell (default %d, %d)", relayLimits.Burst, gatewayLimits.Burst)},
	{"handshake-timeout", "duration", false, "[relay] for a gateway's header to arrive (default " + short(relay.DefaultHandshakeTimeout) + ")"},
	{"dial-timeout", "duration", false, "for the destination, or the relay, to answer (default " + short(relay.DefaultDialTimeout) + ")"},
	{"idle-timeout", "duration", false, "end a connection idle either way this long, or none (default " + short(relay.DefaultIdleTimeout) + ")"},
	{"drain-timeout", "duration", false, "at SIGTERM, let the connections being relayed finish this long, then reset them, or none (default " + short(relay.DefaultDrainTimeout) + ")"},
	{"first-data-wait", "duration", false, "[gateway] wait for a client's first bytes, to send them in the SYN, or none (default " + short(relay.DefaultFirstDataWait) + ")"},
	{"fast-open", "yes|no", false, "[gateway] TCP Fast Open to the relay (default no: see mptcpd-relay(8), BUGS)"},
	{"warm-pool", "n", false, fmt.Sprintf("[gateway] connections to the relay kept established while clients come, or none (default %d)", defaultWarmPool)},
	{"warm-pool-age", "duration", false, "[gateway] close a pooled connection unused this long; keep it below the relay's handshake-timeout (default " + short(relay.DefaultWarmAge) + ")"},
}

// short is d as mptcpd.conf would say it: 2h, not 2h0m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func parseFlags(args []string, stdout io.Writer) (opts options, exit bool, err error) {
	flags := pflag.NewFlagSet("mptcpd-relay", pflag.ContinueOnError)
	flags.SortFlags = false
	flags.SetOutput(io.Discard)
	var help, showVersion bool
	flags.StringVar(&opts.configPath, "config", daemon.DefaultConfigPath, "mptcpd.conf whose [relay] section to read; a missing file means built-in defaults")
	for _, k := range keyFlags {
		f := flags.VarPF(&keyFlag{cfg: &opts.cfg, name: k.name, typ: k.typ, list: k.list}, k.name, "", k.usage)
		if k.name == "fast-open" {
			f.NoOptDefVal = "yes"
		}
	}
	flags.StringVarP(&opts.log, "log", "l", "", "log to DEST: stderr, syslog, journal or null (default: mptcpd.conf's log)")
	flags.BoolVarP(&opts.debug, "debug", "d", false, "log every relayed connection too")
	flags.BoolVarP(&help, "help", "h", false, "show this help")
	flags.BoolVarP(&showVersion, "version", "V", false, "print the version")
	if err := flags.Parse(args); err != nil {
		return opts, false, err
	}
	switch {
	case help:
		fmt.Fprintf(stdout, "Usage: mptcpd-relay [OPTION...]\n       mptcpd-relay genkey\n"+
			"Carry TCP connections over Multipath TCP, as a gateway or as the relay.\n"+
			"genkey prints a new shared key for key-file.\n\n%s", flags.FlagUsages())
		return opts, true, nil
	case showVersion:
		fmt.Fprintln(stdout, "mptcpd-relay (mptcpd-go)", version)
		return opts, true, nil
	case flags.NArg() == 1 && flags.Arg(0) == "genkey":
		fmt.Fprintln(stdout, relay.GenerateKey().String())
		return opts, true, nil
	case flags.NArg() > 0:
		return opts, false, fmt.Errorf("unexpected argument %q", flags.Arg(flags.NArg()-1))
	}
	opts.flags = flags
	return opts, false, nil
}
