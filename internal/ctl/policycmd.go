package ctl

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// The policy commands are mptcpctl's own, not ip's: they read the files
// mptcpd-go reads and show what it would make of the namespace.

const (
	defaultPolicyFile = policy.DefaultPolicyFile
	// defaultSysfsRoot is where links are classified (pm.SysfsClassifier).
	defaultSysfsRoot = "/sys/class/net"
	// snapshotTimeout bounds the netlink dump of links, addresses and
	// routes in policy explain.
	snapshotTimeout = 10 * time.Second
)

const policyLong = `The policy commands read mptcpd-go's files the way the daemon does:
mptcpd.conf (--config, default ` + policy.DefaultConfigFile + `), and the
policy file it names with policy-file, else ` + defaultPolicyFile + ` when it
exists, else the built-in policy. --policy FILE overrides that choice.

  check [FILE]  validate the policy file (FILE, or the one the daemon would
                use), and mptcpd.conf when --config is given; print every
                error as FILE:LINE: MESSAGE and exit 1 if there is one
  show          print the effective policy in the file's syntax
  explain       for every interface and address of the namespace (-n): its
                kind, the verdict and the rule that gave it, the endpoint
                wanted and whether the kernel has it; then the kernel's
                endpoints that no address explains, and the limits.
                -j prints a JSON object, -p indents it

No command is show. Nothing is changed: explain only reads the kernel.`

// policyFlags are the options of the policy commands.
type policyFlags struct {
	config string // --config: mptcpd.conf; "" for the default, which may be missing
	policy string // --policy: overrides the policy file the configuration selects
}

// policySource says which files the effective policy comes from, and why.
type policySource struct {
	Config      string // the mptcpd.conf read
	ConfigFound bool   // false: it does not exist, its defaults apply
	Policy      string // the policy file; "" for the built-in policy
	Why         string // how Policy was chosen
}

// describe is the source in one line: "FILE (WHY)".
func (s policySource) describe() string {
	name := s.Policy
	if name == "" {
		name = "built-in"
	}
	return name + " (" + s.Why + ")"
}

// configLine names mptcpd.conf, and says when it is absent.
func (s policySource) configLine() string {
	if !s.ConfigFound {
		return s.Config + " (absent: defaults)"
	}
	return s.Config
}

// loadedPolicy is the outcome of reading the files.
type loadedPolicy struct {
	src      policySource
	policy   *policy.Policy
	warnings []policy.Warning // mptcpd.conf's
}

// loadPolicy picks and reads the files as the daemon does (internal/daemon
// loadSettings, whose choice of the policy file is repeated here: file,
// the argument of check, wins over --policy, which wins over mptcpd.conf's
// policy-file, which wins over defaultPolicyFile if it exists). Problems
// come back as an *ExitError listing all of them, exit status 1.
func (r *runner) loadPolicy(fl policyFlags, file string) (*loadedPolicy, error) {
	src := policySource{Config: fl.config}
	if src.Config == "" {
		src.Config = cmp.Or(r.env.ConfigFile, policy.DefaultConfigFile)
	} else if _, err := os.Stat(src.Config); err != nil {
		// A default mptcpd.conf may be missing; one asked for by name
		// must not be silently replaced with defaults.
		return nil, fileErrors(err)
	}
	conf, warns, err := policy.LoadConfig(src.Config)
	if err != nil {
		return nil, fileErrors(err)
	}
	src.ConfigFound = conf.Source != policy.DefaultConfig().Source
	defPolicy := cmp.Or(r.env.PolicyFile, defaultPolicyFile)
	switch {
	case file != "":
		src.Policy, src.Why = file, "named on the command line"
	case fl.policy != "":
		src.Policy, src.Why = fl.policy, "given with --policy"
	case conf.PolicyFile != "":
		src.Policy, src.Why = conf.PolicyFile, "policy-file in "+src.Config
	default:
		if _, err := os.Stat(defPolicy); err == nil {
			src.Policy, src.Why = defPolicy, "the default policy file"
		} else {
			src.Why = "no policy-file in " + src.Config + " and no " + defPolicy
		}
	}
	conf.PolicyFile = src.Policy
	p, err := conf.Policy()
	if err != nil {
		return nil, fileErrors(err)
	}
	return &loadedPolicy{src: src, policy: p, warnings: warns}, nil
}

// fileErrors lists the problems of reading or parsing a file, one per
// line: policy errors as they are ("file:line: msg (hint: ...)"), read
// errors as "FILE: cannot read: REASON".
func fileErrors(err error) error {
	var lines []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			lines = append(lines, pe.Path+": cannot read: "+strerror(pe.Err))
			return
		}
		lines = append(lines, err.Error())
	}
	walk(err)
	return &ExitError{Code: ExitFailure, Msg: strings.Join(lines, "\n")}
}

func (r *runner) policyVerbs(fl *policyFlags) []verb {
	return []verb{
		{"check", func(args []string) error { return r.policyCheck(*fl, args) }},
		{"show", func(args []string) error { return r.policyShow(*fl, args) }},
		{"explain", func(args []string) error { return r.policyExplain(*fl, args) }},
	}
}

// policyCheck validates a policy file, and mptcpd.conf when --config names
// one: "FILE: OK (...)" on stdout, warnings and errors on stderr.
func (r *runner) policyCheck(fl policyFlags, args []string) error {
	if len(args) > 1 {
		return unknownCommandError(args[1])
	}
	var file string
	if len(args) == 1 {
		file = args[0]
		if fl.policy != "" && fl.policy != file {
			return &ExitError{Code: ExitUsage, Msg: "Error: two policy files: " + file + " and --policy " + fl.policy}
		}
	}
	lp, err := r.loadPolicy(fl, file)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if fl.config != "" {
		for _, w := range lp.warnings {
			fmt.Fprintf(r.env.Stderr, "%s: warning: %s\n", w.Pos, w.Msg)
		}
		fmt.Fprintf(&out, "%s: OK%s\n", fl.config, countSuffix(len(lp.warnings), "warning"))
	}
	p := lp.policy
	fmt.Fprintf(&out, "%s: OK (%d rule%s, %d classify)\n", p.Source, len(p.Rules), plural(len(p.Rules)), len(p.Classify))
	return r.write(&out)
}

// countSuffix is " (N things)", or "" for none.
func countSuffix(n int, thing string) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d %s%s)", n, thing, plural(n))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// policyShow prints the effective policy in the file's syntax.
func (r *runner) policyShow(fl policyFlags, args []string) error {
	if len(args) > 0 {
		return unknownCommandError(args[0])
	}
	lp, err := r.loadPolicy(fl, "")
	if err != nil {
		return err
	}
	var out bytes.Buffer
	formatPolicy(&out, lp)
	return r.write(&out)
}

// formatPolicy writes a header naming the sources, then the policy. The
// header replaces Format's own first comment, which names the file only.
func formatPolicy(b *bytes.Buffer, lp *loadedPolicy) {
	fmt.Fprintf(b, "# policy: %s\n# mptcpd.conf: %s\n", lp.src.describe(), lp.src.configLine())
	text := lp.policy.Format()
	text = strings.TrimPrefix(text, "# policy: "+lp.policy.Source+"\n")
	b.WriteString(text)
}

// policyExplain reads the namespace's network and the kernel's endpoint
// table and prints what the policy makes of them.
func (r *runner) policyExplain(fl policyFlags, args []string) error {
	if len(args) > 0 {
		return unknownCommandError(args[0])
	}
	lp, err := r.loadPolicy(fl, "")
	if err != nil {
		return err
	}
	b, err := r.open()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	st, err := b.NetworkState(ctx)
	if err != nil {
		return &ExitError{Code: ExitFailure, Msg: "Error: reading links, addresses and routes: " + err.Error()}
	}
	// sysfs is that of mptcpctl's mount namespace, which with -n is
	// usually not the target's: the classifier trusts it only for links
	// whose ifindex matches, and goes by name otherwise.
	network := pm.NetworkFrom(st, pm.SysfsClassifier(cmp.Or(r.env.SysfsRoot, defaultSysfsRoot), lp.policy))
	return r.withPathManager(func(pmc PathManager, _ Backend) error {
		eps, err := pmc.Endpoints()
		if err != nil {
			return kernelError(err)
		}
		limits, err := pmc.Limits()
		if err != nil {
			return kernelError(err)
		}
		x := explain(lp, network, eps, limits)
		var out bytes.Buffer
		formatExplain(&out, x, r.format())
		return r.write(&out)
	})
}

// policyCommand is `policy [check|show|explain]`, with --config and
// --policy for all three. Words that only abbreviate a command reach RunE,
// which matches them by prefix as the ip commands do.
func (r *runner) policyCommand() *cobra.Command {
	fl := &policyFlags{}
	cmd := &cobra.Command{
		Use:   "policy [check|show|explain] [--config FILE] [--policy FILE]",
		Short: "Check, show or explain mptcpd-go's policy (default: show)",
		Long:  policyLong,
		Args:  cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return r.policyShow(*fl, nil)
			}
			return dispatch(r.policyVerbs(fl), args)
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&fl.config, "config", "", "read mptcpd.conf from `FILE` (default "+policy.DefaultConfigFile+")")
	pf.StringVar(&fl.policy, "policy", "", "use the policy file `FILE` instead of the configured one")
	_ = cmd.MarkPersistentFlagFilename("config")
	_ = cmd.MarkPersistentFlagFilename("policy")

	sub := func(use, short string, files bool) *cobra.Command {
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ArbitraryArgs,
			RunE: func(c *cobra.Command, args []string) error {
				return dispatch(r.policyVerbs(fl), append([]string{c.Name()}, args...))
			},
		}
		if !files {
			c.ValidArgsFunction = cobra.NoFileCompletions
		}
		return c
	}
	cmd.AddCommand(
		sub("check [FILE]", "Validate a policy file, and mptcpd.conf with --config", true),
		sub("show", "Print the effective policy in the file's syntax", false),
		sub("explain", "Explain, address by address, what the policy makes of the namespace", false),
	)
	return cmd
}
