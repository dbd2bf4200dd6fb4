package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mptcpd-go/mptcpd/pm"
	// The built-in userspace path-manager plugins.
	_ "github.com/mptcpd-go/mptcpd/pm/plugins/all"
	"github.com/mptcpd-go/mptcpd/policy"
)

const (
	// DefaultConfigPath is Intel mptcpd's configuration file, read as is.
	DefaultConfigPath = policy.DefaultConfigFile
	// DefaultPolicyPath is used when it exists and neither mptcpd.conf's
	// policy-file nor --policy names another file.
	DefaultPolicyPath = policy.DefaultPolicyFile
)

// Options are the command line: the file to read and the flags that
// override its keys. Empty strings and nil pointers mean "not given".
type Options struct {
	ConfigPath string

	// Intel mptcpd's flags.
	Log         string
	PluginDir   string
	PathManager string
	AddrFlags   string
	NotifyFlags string
	LoadPlugins string
	Debug       bool

	// mptcpd-go's own.
	PolicyPath     string
	StateDir       string
	RemoveOnExit   *bool
	SetPathManager *bool
	ResyncInterval time.Duration
	ControlGroup   string // who may use the control socket besides root
	MetricsListen  string // the Prometheus endpoint's address
	PathHealth     string // path-health: a sampling period or "off"
	OutageHold     string // outage-hold: the longest wait for new subflows, or "off"
	// ReceiveBuffer is the rtnetlink subscription buffer in bytes, 0 for
	// netmon's default. Tests shrink it to force lost events.
	ReceiveBuffer int
	// EventBuffer is the mptcp_pm event socket's buffer in the userspace
	// mode, 0 for eventBuffer. Tests shrink it to force lost events.
	EventBuffer int

	Version string
	Stderr  io.Writer
}

// settings is everything Run derives from the files and flags; a reload
// builds a new one and swaps it in only when all of it is valid.
type settings struct {
	conf       *policy.Config
	policy     *policy.Policy
	warnings   []string
	configPath string // the mptcpd.conf looked for, which may be absent
	policyWhy  string // how the policy file was chosen, for explain
}

// loadSettings reads mptcpd.conf, applies the command-line overrides and
// loads the policy it names. Every problem is returned at once.
func loadSettings(opts Options) (*settings, error) {
	path := opts.ConfigPath
	if path == "" {
		path = DefaultConfigPath
	}
	conf, warns, err := policy.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	s := &settings{conf: conf, configPath: path}
	for _, w := range warns {
		s.warnings = append(s.warnings, w.String())
	}
	if err := applyFlags(conf, opts); err != nil {
		return nil, err
	}
	// The reasons read as mptcpctl policy's, whose choice is the same.
	switch {
	case opts.PolicyPath != "":
		s.policyWhy = "given with --policy"
	case conf.PolicyFile != "":
		s.policyWhy = "policy-file in " + path
	default:
		if _, err := os.Stat(DefaultPolicyPath); err == nil {
			conf.PolicyFile = DefaultPolicyPath
			s.policyWhy = "the default policy file"
		} else {
			s.policyWhy = "no policy-file in " + path + " and no " + DefaultPolicyPath
		}
	}
	if err := checkPlugins(conf); err != nil {
		return nil, err
	}
	if conf.Set&policy.KeyPluginDir != 0 {
		s.warnings = append(s.warnings, "plugin-dir is ignored: mptcpd-go's plugins are built in")
	}
	if len(conf.LoadPlugins) > 0 && conf.InKernelPM() {
		s.warnings = append(s.warnings, fmt.Sprintf("load-plugins=%s is ignored in the in-kernel mode (path-manager=addr_adv)", strings.Join(conf.LoadPlugins, ",")))
	}
	if conf.Set&policy.KeyNotifyFlags != 0 && conf.NotifyFlags&policy.NotifyExisting == 0 {
		s.warnings = append(s.warnings, "notify-flags without 'existing': mptcpd-go still programs the addresses present at start, since the endpoint table always follows the current state")
	}
	if conf.Set&policy.KeyAddrFlags != 0 && conf.PolicyFile != "" {
		s.warnings = append(s.warnings, fmt.Sprintf("addr-flags is ignored: the policy file %s sets the flags of each rule", conf.PolicyFile))
	}
	s.policy, err = conf.Policy()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// checkPlugins checks that path-manager names addr_adv or a built-in
// plugin, and that load-plugins, when given, names known ones including
// it: as with Intel's mptcpd, only the listed plugins are loaded.
func checkPlugins(conf *policy.Config) error {
	known := append([]string{"addr_adv"}, pm.Plugins()...)
	var errs []error
	for _, name := range conf.LoadPlugins {
		if !slices.Contains(known, name) {
			errs = append(errs, fmt.Errorf("load-plugins: unknown plugin %q (known: %s)", name, strings.Join(known, ", ")))
		}
	}
	if !conf.InKernelPM() {
		switch {
		case !slices.Contains(known, conf.PathManager):
			errs = append(errs, fmt.Errorf("path-manager=%s: unknown plugin (known: %s)", conf.PathManager, strings.Join(known, ", ")))
		case len(conf.LoadPlugins) > 0 && !slices.Contains(conf.LoadPlugins, conf.PathManager):
			errs = append(errs, fmt.Errorf("path-manager=%s is not among load-plugins=%s", conf.PathManager, strings.Join(conf.LoadPlugins, ",")))
		}
	}
	return errors.Join(errs...)
}

// applyFlags overrides conf's keys with the flags given on the command
// line, marking them as set.
func applyFlags(conf *policy.Config, opts Options) error {
	var errs []error
	str := func(key policy.Key, v string, dst *string) {
		if v != "" {
			*dst = v
			conf.Set |= key
		}
	}
	str(policy.KeyLog, opts.Log, &conf.Log)
	str(policy.KeyPluginDir, opts.PluginDir, &conf.PluginDir)
	str(policy.KeyPathManager, opts.PathManager, &conf.PathManager)
	str(policy.KeyPolicyFile, opts.PolicyPath, &conf.PolicyFile)
	str(policy.KeyStateDir, opts.StateDir, &conf.StateDir)
	str(policy.KeyControlGroup, opts.ControlGroup, &conf.ControlGroup)
	str(policy.KeyMetricsListen, opts.MetricsListen, &conf.MetricsListen)
	switch opts.Log {
	case "", "stderr", "syslog", "journal", "null":
	default:
		errs = append(errs, fmt.Errorf("--log=%s: unknown destination (want stderr, syslog, journal or null)", opts.Log))
	}
	if opts.MetricsListen != "" {
		if err := policy.CheckListenAddr(opts.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen: %w", err))
		}
	}
	if opts.PathHealth != "" {
		d, err := policy.ParsePathHealth(opts.PathHealth)
		if err != nil {
			errs = append(errs, fmt.Errorf("--path-health: %w", err))
		}
		conf.PathHealth, conf.Set = d, conf.Set|policy.KeyPathHealth
	}
	if opts.OutageHold != "" {
		d, err := policy.ParseOutageHold(opts.OutageHold)
		if err != nil {
			errs = append(errs, fmt.Errorf("--outage-hold: %w", err))
		}
		conf.OutageHold, conf.Set = d, conf.Set|policy.KeyOutageHold
	}
	if opts.AddrFlags != "" {
		f, err := policy.ParseAddrFlags(opts.AddrFlags)
		if err != nil {
			errs = append(errs, fmt.Errorf("--addr-flags: %w", err))
		}
		conf.AddrFlags, conf.Set = f, conf.Set|policy.KeyAddrFlags
	}
	if opts.NotifyFlags != "" {
		f, err := policy.ParseNotifyFlags(opts.NotifyFlags)
		if err != nil {
			errs = append(errs, fmt.Errorf("--notify-flags: %w", err))
		}
		conf.NotifyFlags, conf.Set = f, conf.Set|policy.KeyNotifyFlags
	}
	if opts.LoadPlugins != "" {
		conf.LoadPlugins, conf.Set = strings.Split(opts.LoadPlugins, ","), conf.Set|policy.KeyLoadPlugins
	}
	if opts.RemoveOnExit != nil {
		conf.RemoveOnExit, conf.Set = *opts.RemoveOnExit, conf.Set|policy.KeyRemoveOnExit
	}
	if opts.SetPathManager != nil {
		conf.SetPathManager, conf.Set = *opts.SetPathManager, conf.Set|policy.KeySetPathManager
	}
	if opts.ResyncInterval != 0 {
		if opts.ResyncInterval < time.Second {
			errs = append(errs, fmt.Errorf("--resync-interval=%s is shorter than 1s", opts.ResyncInterval))
		}
		conf.ResyncInterval, conf.Set = opts.ResyncInterval, conf.Set|policy.KeyResyncInterval
	}
	return errors.Join(errs...)
}
