// Command mptcpd is the MPTCP path manager daemon: it programs the kernel's
// MPTCP endpoints from the links, addresses and routes it watches, following
// a per-interface policy. It takes Intel mptcpd's flags and mptcpd.conf;
// see internal/daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/mptcpd-go/mptcpd/internal/daemon"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "devel"

func main() {
	// The daemon is one event loop: a single P keeps the hand-off from the
	// network monitor to the engine on one thread instead of waking a
	// second one each time. Measured with BenchmarkDaemonEndpoint: CPU
	// per address cycle 1050 µs instead of 1500, add p50 460 µs instead
	// of 560. GOMAXPROCS in the environment still wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, exit, err := parseFlags(args, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "mptcpd: %v\nTry 'mptcpd --help' for more information.\n", err)
		return 64 // EX_USAGE, as argp does
	}
	if exit {
		return 0
	}
	opts.Stderr = stderr
	opts.Version = version
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "mptcpd: %v\n", err)
		return 1
	}
	return 0
}

// parseFlags reads Intel mptcpd's command line plus mptcpd-go's own flags.
// exit is true when --help, --usage or --version has been answered.
func parseFlags(args []string, stdout io.Writer) (opts daemon.Options, exit bool, err error) {
	fs := pflag.NewFlagSet("mptcpd", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	var (
		help, usage, showVersion     bool
		removeOnExit, setPathManager bool
	)
	// Intel mptcpd's flags, same names and meaning.
	fs.StringVar(&opts.AddrFlags, "addr-flags", "", "endpoint flags for addresses the policy does not set, e.g. --addr-flags=subflow")
	fs.BoolVarP(&opts.Debug, "debug", "d", false, "enable debug log messages")
	fs.StringVar(&opts.LoadPlugins, "load-plugins", "", "plugins to load (userspace mode), e.g. --load-plugins=sspi")
	fs.StringVarP(&opts.Log, "log", "l", "", "log to DEST: stderr, syslog, journal or null")
	fs.StringVar(&opts.NotifyFlags, "notify-flags", "", "address flags: existing,skip_link_local,skip_loopback,check_route")
	fs.StringVar(&opts.PathManager, "path-manager", "", "path manager: addr_adv (in-kernel endpoints, the default) or a userspace plugin")
	fs.StringVar(&opts.PluginDir, "plugin-dir", "", "accepted for compatibility: plugins are built in")
	fs.BoolVarP(&help, "help", "?", false, "give this help list")
	fs.BoolVar(&usage, "usage", false, "give a short usage message")
	fs.BoolVarP(&showVersion, "version", "V", false, "print program version")
	// mptcpd-go's own.
	fs.StringVar(&opts.ConfigPath, "config", daemon.DefaultConfigPath, "mptcpd.conf to read; a missing file means built-in defaults")
	fs.StringVar(&opts.PolicyPath, "policy", "", "per-interface policy file (default: mptcpd.conf's policy-file, else "+daemon.DefaultPolicyPath+" if it exists, else the built-in laptop policy)")
	fs.StringVar(&opts.StateDir, "state-dir", "", "where endpoint ownership is remembered (default /run/mptcpd-go)")
	fs.BoolVar(&removeOnExit, "remove-on-exit", false, "remove the endpoints this daemon owns when it stops")
	fs.BoolVar(&setPathManager, "set-path-manager", false, "set net.mptcp.path_manager to the mode (kernel, or userspace with a plugin) at start")
	fs.DurationVar(&opts.ResyncInterval, "resync-interval", 0, "period of the safety check of the endpoint table (default 30s)")
	fs.StringVar(&opts.ControlGroup, "control-group", "", "group (name or number) allowed to use the control socket besides root")
	fs.StringVar(&opts.PathHealth, "path-health", "", "how often to sample subflows for paths that stopped delivering, or off (default 100ms)")
	fs.StringVar(&opts.OutageHold, "outage-hold", "", "after an outage, how long to wait for new subflows before the endpoints kept through it go, or off (default 2s)")
	fs.StringVar(&opts.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics, ADDR an IP address and port (default: none)")
	fs.IntVar(&opts.ReceiveBuffer, "netlink-rcvbuf", 0, "rtnetlink receive buffer in bytes (testing: a tiny one forces lost events)")
	_ = fs.MarkHidden("netlink-rcvbuf")
	fs.IntVar(&opts.EventBuffer, "events-rcvbuf", 0, "mptcp_pm event receive buffer in bytes, userspace mode (testing: a small one forces lost events)")
	_ = fs.MarkHidden("events-rcvbuf")
	if err := fs.Parse(args); err != nil {
		return opts, false, err
	}
	if fs.NArg() > 0 {
		return opts, false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case help:
		fmt.Fprintf(stdout, "Usage: mptcpd [OPTION...]\nStart the Multipath TCP path manager daemon.\n\n%s", fs.FlagUsages())
		return opts, true, nil
	case usage:
		fmt.Fprintln(stdout, "Usage: mptcpd [-d?V] [--addr-flags=FLAGS] [--debug] [--load-plugins=PLUGINS] [--log=DEST] [--notify-flags=FLAGS] [--path-manager=PLUGIN] [--plugin-dir=DIR] [--config=FILE] [--policy=FILE] [--state-dir=DIR] [--remove-on-exit] [--set-path-manager] [--resync-interval=DURATION] [--control-group=GROUP] [--path-health=PERIOD] [--outage-hold=WAIT] [--metrics-listen=ADDR] [--help] [--usage] [--version]")
		return opts, true, nil
	case showVersion:
		fmt.Fprintln(stdout, "mptcpd (mptcpd-go)", version)
		return opts, true, nil
	}
	if fs.Changed("remove-on-exit") {
		opts.RemoveOnExit = &removeOnExit
	}
	if fs.Changed("set-path-manager") {
		opts.SetPathManager = &setPathManager
	}
	if fs.Changed("resync-interval") && opts.ResyncInterval <= 0 {
		return opts, false, errors.New("--resync-interval must be positive")
	}
	return opts, false, nil
}
