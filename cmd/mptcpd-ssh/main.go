// Command mptcpd-ssh serves SSH over Multipath TCP with the system's own
// sshd: it accepts MPTCP (and plain TCP) connections and runs `sshd -i` on
// each; see endpoint/ssh. Its settings are the [ssh] section of
// mptcpd.conf, which its flags override.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/pflag"

	"github.com/mptcpd-go/mptcpd/endpoint/ssh"
	"github.com/mptcpd-go/mptcpd/internal/daemon"
	"github.com/mptcpd-go/mptcpd/policy"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "devel"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	configPath string
	log        string
	debug      bool
	flags      *pflag.FlagSet
	cfg        policy.SSHConfig // the flags' values, where Changed
}

func run(args []string, stdout, stderr io.Writer) int {
	return daemon.RunEndpoint("mptcpd-ssh", stderr,
		func() (options, bool, error) { return parseFlags(args, stdout) },
		func(ctx context.Context, opts options) error { return serve(ctx, opts, stderr) })
}

func serve(ctx context.Context, opts options, stderr io.Writer) error {
	conf, warns, err := policy.LoadSSHConfig(opts.configPath)
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
	srv, err := ssh.Listen(ctx, ssh.Config{
		Listen:         conf.Listen,
		SSHD:           conf.SSHD,
		SSHDArgs:       conf.SSHDArgs,
		MaxConnections: conf.MaxConnections,
		MaxPerSource:   conf.MaxPerSource,
		Rate:           conf.Rate,
		Burst:          conf.Burst,
		Logger:         log,
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (is ssh.service or ssh.socket listening there? stop it, or set listen= in mptcpd.conf's [ssh])", err)
	}
	if err != nil {
		return err
	}
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	return srv.Serve(ctx)
}

func parseFlags(args []string, stdout io.Writer) (opts options, exit bool, err error) {
	fs := pflag.NewFlagSet("mptcpd-ssh", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	var help, showVersion bool
	var sshdArgs string
	c := &opts.cfg
	fs.StringVar(&opts.configPath, "config", daemon.DefaultConfigPath, "mptcpd.conf whose [ssh] section to read; a missing file means built-in defaults")
	fs.StringSliceVar(&c.Listen, "listen", nil, "address to listen on, host:port (repeat, or separate with commas; default "+ssh.DefaultListen+")")
	fs.StringVar(&c.SSHD, "sshd", "", "sshd's absolute path (default "+ssh.DefaultSSHD+")")
	fs.StringVar(&sshdArgs, "sshd-args", "", "arguments after sshd's -i, split at spaces, e.g. \"-f /etc/ssh/sshd_config -oLogLevel=VERBOSE\"")
	fs.IntVar(&c.MaxConnections, "max-connections", 0, fmt.Sprintf("sessions at once (default %d)", ssh.DefaultMaxConnections))
	fs.IntVar(&c.MaxPerSource, "max-per-source", 0, fmt.Sprintf("sessions at once from one IPv4 address or IPv6 /64 (default %d)", ssh.DefaultMaxPerSource))
	fs.Float64Var(&c.Rate, "rate", 0, fmt.Sprintf("new connections per second on average (default %d)", ssh.DefaultRate))
	fs.IntVar(&c.Burst, "burst", 0, fmt.Sprintf("new connections at once after a quiet spell (default %d)", ssh.DefaultBurst))
	fs.StringVarP(&opts.log, "log", "l", "", "log to DEST: stderr, syslog, journal or null (default: mptcpd.conf's log)")
	fs.BoolVarP(&opts.debug, "debug", "d", false, "log every session's end too")
	fs.BoolVarP(&help, "help", "h", false, "show this help")
	fs.BoolVarP(&showVersion, "version", "V", false, "print the version")
	if err := fs.Parse(args); err != nil {
		return opts, false, err
	}
	if fs.NArg() > 0 {
		return opts, false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case help:
		fmt.Fprintf(stdout, "Usage: mptcpd-ssh [OPTION...]\nServe SSH over Multipath TCP: run sshd -i on every accepted connection.\n\n%s", fs.FlagUsages())
		return opts, true, nil
	case showVersion:
		fmt.Fprintln(stdout, "mptcpd-ssh (mptcpd-go)", version)
		return opts, true, nil
	}
	c.SSHDArgs = strings.Fields(sshdArgs)
	opts.flags = fs
	return opts, false, nil
}
