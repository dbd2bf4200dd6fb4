package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Env is what Main runs with. Tests replace the streams and the backend.
type Env struct {
	Stdout, Stderr io.Writer
	// Stdin is read by ssh-proxy when it copies; nil means os.Stdin.
	Stdin io.Reader
	// Version is printed by --version.
	Version string
	// Open opens the backend of a namespace ("" is mptcpctl's own); nil
	// means OpenBackend, the kernel.
	Open func(netns string) (Backend, error)

	// Where the policy commands look when not told otherwise; empty
	// means the system's: policy.DefaultConfigFile, /etc/mptcpd/policy
	// and /sys/class/net. Tests point them into testdata.
	ConfigFile, PolicyFile, SysfsRoot string

	// StateDir is where the daemon commands look for mptcpd's socket
	// when --state-dir does not say; empty means mptcpd.conf's state-dir.
	StateDir string
	// Daemon connects to the mptcpd of a namespace whose socket is in
	// stateDir; nil means DialDaemon. Tests serve a fake daemon.
	Daemon func(netns, stateDir string) (*control.Client, error)
	// Now is the clock of status's "ago"s; nil means time.Now.
	Now func() time.Time
}

// Main runs mptcpctl with args (without the program name) and returns the
// exit status.
func Main(args []string, env Env) int {
	opts, rest, err := parseGlobalOptions(args)
	if err != nil {
		return exitStatus(env.Stderr, err)
	}
	r := &runner{env: env, netns: opts.netns, json: opts.json, pretty: opts.pretty, rcvbuf: opts.rcvbuf}
	defer r.close()
	switch {
	case opts.version:
		rest = []string{"--version"}
	case opts.help, opts.human && len(rest) == 0:
		rest = []string{"--help"}
	case opts.batch != "":
		return r.batch(opts.batch, opts.force)
	}
	return exitStatus(env.Stderr, r.execute(rest))
}

// execute runs one command line, the words after the global options.
func (r *runner) execute(args []string) error {
	root := r.rootCommand()
	root.SetArgs(args)
	root.SetOut(r.env.Stdout)
	root.SetErr(r.env.Stderr)
	return root.Execute()
}

// exitStatus prints err, if any, and returns the exit status it stands for.
func exitStatus(stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		fmt.Fprintln(stderr, ee.Msg)
		return ee.Code
	}
	// Errors of cobra itself: unknown options and the like.
	fmt.Fprintf(stderr, "Error: %v\nTry \"mptcpctl --help\".\n", err)
	return ExitUsage
}

const usageText = `Usage: mptcpctl [ OPTIONS ] OBJECT COMMAND [ ARGS ]
       mptcpctl [ -force ] -batch FILE
       mptcpctl endpoint add ADDRESS [ dev NAME ] [ id ID ]
                                     [ port NR ] [ FLAG-LIST ]
       mptcpctl endpoint delete id ID [ ADDRESS ]
       mptcpctl endpoint change [ id ID ] [ ADDRESS ] [ port NR ] CHANGE-OPT
       mptcpctl endpoint show [ id ID ]
       mptcpctl endpoint flush
       mptcpctl limits set [ subflows NR ] [ add_addr_accepted NR ]
       mptcpctl limits show
       mptcpctl monitor
       mptcpctl policy check [ FILE ] [ --config FILE ]
       mptcpctl policy show [ --policy FILE ] [ --config FILE ]
       mptcpctl policy explain [ --policy FILE ] [ --config FILE ]
       mptcpctl connections [ -a | --all ] [ --state-dir DIR ]
       mptcpctl status | explain | events | reload [ --state-dir DIR ]
       mptcpctl trace [ --interval D ] [ --duration D ] [ --format csv|json ] [ -o FILE ]
       mptcpctl top [ --interval D ] [ --once ]
       mptcpctl plot TRACE [ -o OUT ]
       mptcpctl ssh [ SSH-ARGS ] | ssh-config [ HOST... ] | ssh-proxy HOST PORT
` + userspaceUsage + `
FLAG-LIST := [ FLAG-LIST ] FLAG
FLAG  := [ signal | subflow | backup | fullmesh | laminar ]
CHANGE-OPT := [ backup | nobackup | fullmesh | nofullmesh ]
OPTIONS := { -n[etns] NETNS | -j[son] | -p[retty] | -V[ersion] |
             -b[atch] FILE | -force | -rc[vbuf] SIZE }`

const rootLong = `mptcpctl configures the kernel's MPTCP path manager: endpoints, limits,
and the event monitor, in a network namespace of choice. Its policy
commands, which ip lacks, check and show mptcpd-go's policy and explain
what it makes of the namespace's addresses ("mptcpctl policy --help");
"connections" lists the MPTCP connections and their subflows;
"userspace" drives the userspace path manager by hand, connection by
connection ("mptcpctl userspace --help"); status, explain, events and
reload ask the running mptcpd ("mptcpctl status --help"); top shows the
interfaces and connections live; trace samples
per-interface and per-subflow byte counters and plot draws them; ssh,
ssh-config and ssh-proxy run ssh over MPTCP ("mptcpctl ssh-proxy --help").

It takes the grammar of "ip mptcp" (iproute2 6.1) and prints the same
text, byte for byte, so scripts written for ip work unchanged. Keywords may
be shortened as ip allows: the first keyword a word is a prefix of wins
("e", "endp", "del", "sh", "l s" = limits set, "i 3" = id 3). Numbers may be
decimal, 0x-hex or 0-octal. -j prints JSON: endpoints as ip -j does, limits
as {"add_addr_accepted":N,"subflows":N}, monitor one object per event.

The options before the object are ip's, matched the same way ("-n" is
-netns, "-b" is -batch); the ones that change nothing for MPTCP (-4, -6,
-s, -d, -o, -t, -c, ...) are accepted and ignored. -rcvbuf sets the
monitor's socket buffer. -batch runs one command per line of FILE ("-":
stdin), with '#' comments, '\' continuations and quotes, and a leading
"mptcp" word allowed, so ip batch files of mptcp commands run unchanged;
a failed command stops the batch ("Command failed FILE:LINE", exit 1)
unless -force.

Differences from ip 6.1: the "laminar" flag (Linux 6.18) is accepted;
"any", "default" and "all" are refused as addresses, and "change" without
id or address is refused, before anything is sent (ip leaves both to the
kernel); "help", -help and a lone -h print this text on stdout and exit
0; in a batch a usage error fails that command, where ip exits at once;
-netns=NAME is accepted as well. Text output stays ip 6.1's, so flags it
cannot name (implicit, laminar) print as "rawflags N" and listener events
as "[UNKNOWN N]"; -j monitor names them.

` + usageText + `

` + exitCodesHelp

// runner holds the global options and the backend of one invocation.
type runner struct {
	env     Env
	netns   string
	json    bool
	pretty  bool
	rcvbuf  int // -rcvbuf: the monitor socket's receive buffer
	backend Backend
}

func (r *runner) stdout() io.Writer { return r.env.Stdout }

func (r *runner) format() format { return format{JSON: r.json, Pretty: r.pretty} }

func (r *runner) close() {
	if r.backend != nil {
		r.backend.Close()
	}
}

// open opens the backend of the selected namespace once.
func (r *runner) open() (Backend, error) {
	if r.backend != nil {
		return r.backend, nil
	}
	open := r.env.Open
	if open == nil {
		open = OpenBackend
	}
	b, err := open(r.netns)
	if err != nil {
		msg := "Error: " + err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = fmt.Sprintf("Cannot open network namespace %q: %s", r.netns, strerror(pe.Err))
		}
		return nil, &ExitError{Code: ExitUsage, Msg: msg}
	}
	r.backend = b
	return b, nil
}

// write sends one rendered block to stdout.
func (r *runner) write(b *bytes.Buffer) error {
	if _, err := r.stdout().Write(b.Bytes()); err != nil {
		return &ExitError{Code: ExitFailure, Msg: "Error: writing output: " + err.Error()}
	}
	return nil
}

// verb is a command word and what it runs, tried in order by prefix.
type verb struct {
	name string
	run  func(args []string) error
}

// dispatch runs the first verb args[0] is a prefix of, as ip does.
func dispatch(verbs []verb, args []string) error {
	for _, v := range verbs {
		if matches(args[0], v.name) {
			return v.run(args[1:])
		}
	}
	return unknownCommandError(args[0])
}

func (r *runner) topVerbs(root *cobra.Command) []verb {
	return []verb{
		{"help", func([]string) error { return root.Help() }},
		{"endpoint", r.endpoint},
		{"limits", r.limits},
		{"monitor", r.monitor},
		// Through cobra again, which parses the policy and connections
		// commands' flags.
		{"policy", func(args []string) error { return r.execute(append([]string{"policy"}, args...)) }},
		{"connections", func(args []string) error { return r.execute(append([]string{"connections"}, args...)) }},
		{"userspace", r.userspace},
		// mptcpctl's own, after ip's words so that ip's abbreviations
		// keep their meaning ("e" is endpoint).
		{"status", func(args []string) error { return r.execute(append([]string{"status"}, args...)) }},
		{"explain", func(args []string) error { return r.execute(append([]string{"explain"}, args...)) }},
		{"events", func(args []string) error { return r.execute(append([]string{"events"}, args...)) }},
		{"reload", func(args []string) error { return r.execute(append([]string{"reload"}, args...)) }},
	}
}

func (r *runner) endpointVerbs() []verb {
	return []verb{
		{"add", r.endpointAdd},
		{"change", r.endpointChange},
		{"delete", r.endpointDelete},
		{"show", r.endpointShow},
		{"flush", r.endpointFlush},
	}
}

func (r *runner) limitsVerbs() []verb {
	return []verb{
		{"set", r.limitsSet},
		{"show", r.limitsShow},
	}
}

// endpoint is `endpoint [COMMAND ...]`: no command shows the table.
func (r *runner) endpoint(args []string) error {
	if len(args) == 0 {
		return r.endpointShow(nil)
	}
	return dispatch(r.endpointVerbs(), args)
}

// limits is `limits [COMMAND ...]`: no command shows the limits. Like ip,
// a word that is neither set nor show falls through to the top-level
// "monitor" check, so "limits monitor" monitors.
func (r *runner) limits(args []string) error {
	if len(args) == 0 {
		return r.limitsShow(nil)
	}
	return dispatch(append(r.limitsVerbs(), verb{"monitor", r.monitor}), args)
}

// withPathManager runs fn with a client of the namespace's mptcp_pm.
func (r *runner) withPathManager(fn func(PathManager, Backend) error) error {
	b, err := r.open()
	if err != nil {
		return err
	}
	pm, err := b.PathManager()
	if err != nil {
		// Like ip's genl_init_handle failing.
		return &ExitError{Code: ExitFailure, Msg: "Error: " + err.Error()}
	}
	defer pm.Close()
	return fn(pm, b)
}

// sendParsed runs parse (which resolves "dev" names in the namespace)
// and only then send, so that a bad word sends nothing.
func (r *runner) sendParsed(parse func(LinkIndexer) error, send func(PathManager) error) error {
	b, err := r.open()
	if err != nil {
		return err
	}
	if err := parse(b); err != nil {
		return err
	}
	return r.withPathManager(func(pm PathManager, _ Backend) error {
		if err := send(pm); err != nil {
			return kernelError(err)
		}
		return nil
	})
}

// endpointModify parses the arguments of op and sends the request.
func (r *runner) endpointModify(op endpointOp, args []string, send func(PathManager, endpointArgs) error) error {
	var a endpointArgs
	return r.sendParsed(
		func(links LinkIndexer) (err error) {
			a, err = parseEndpointArgs(op, args, links)
			return err
		},
		func(pm PathManager) error { return send(pm, a) })
}

func (r *runner) endpointAdd(args []string) error {
	return r.endpointModify(opAdd, args, func(pm PathManager, a endpointArgs) error {
		return pm.AddEndpoint(a.endpoint())
	})
}

func (r *runner) endpointChange(args []string) error {
	return r.endpointModify(opChange, args, func(pm PathManager, a endpointArgs) error {
		return pm.SetEndpointFlags(a.endpoint())
	})
}

func (r *runner) endpointDelete(args []string) error {
	return r.endpointModify(opDelete, args, func(pm PathManager, a endpointArgs) error {
		return pm.DeleteEndpoint(a.ID, a.Addr)
	})
}

// endpointShow dumps the table, or with arguments asks for one endpoint
// (by id; ip parses the other words too and the kernel ignores them).
func (r *runner) endpointShow(args []string) error {
	b, err := r.open()
	if err != nil {
		return err
	}
	var a endpointArgs
	if len(args) > 0 {
		if a, err = parseEndpointArgs(opShow, args, b); err != nil {
			return err
		}
	}
	return r.withPathManager(func(pm PathManager, b Backend) error {
		var eps []mptcp.Endpoint
		if len(args) == 0 {
			var err error
			if eps, err = pm.Endpoints(); err != nil {
				ke := kernelError(err).(*ExitError)
				ke.Msg += "\nDump terminated"
				return ke
			}
		} else {
			e, err := pm.Endpoint(a.ID)
			if err != nil {
				return kernelError(err)
			}
			eps = []mptcp.Endpoint{e}
		}
		var out bytes.Buffer
		formatEndpoints(&out, eps, r.format(), b)
		return r.write(&out)
	})
}

// endpointFlush ignores its arguments, as ip does.
func (r *runner) endpointFlush([]string) error {
	return r.withPathManager(func(pm PathManager, _ Backend) error {
		if err := pm.FlushEndpoints(); err != nil {
			return kernelError(err)
		}
		return nil
	})
}

func (r *runner) limitsSet(args []string) error {
	l, err := parseLimits(args)
	if err != nil {
		return err
	}
	return r.withPathManager(func(pm PathManager, _ Backend) error {
		if err := pm.SetLimits(l); err != nil {
			return kernelError(err)
		}
		return nil
	})
}

// limitsShow checks its arguments as `limits set` does (ip parses them
// alike) but does not use them.
func (r *runner) limitsShow(args []string) error {
	if _, err := parseLimits(args); err != nil {
		return err
	}
	return r.withPathManager(func(pm PathManager, _ Backend) error {
		l, err := pm.Limits()
		if err != nil {
			return kernelError(err)
		}
		var out bytes.Buffer
		formatLimits(&out, l, r.format())
		return r.write(&out)
	})
}

// monitor prints events until the source ends, one write per event so
// that each line reaches a pipe at once.
func (r *runner) monitor(args []string) error {
	if len(args) > 0 {
		return unknownCommandError(args[0])
	}
	b, err := r.open()
	if err != nil {
		return err
	}
	src, err := b.ListenEvents()
	if err != nil {
		if errors.Is(err, mptcp.ErrNotSupported) {
			return &ExitError{Code: ExitFailure, Msg: "Error: " + err.Error()}
		}
		return &ExitError{Code: ExitUsage, Msg: "can't subscribe to mptcp events: " + errnoText(err)}
	}
	defer src.Close()
	if r.rcvbuf > 0 {
		if s, ok := src.(interface{ SetReadBuffer(int) error }); ok {
			if err := s.SetReadBuffer(r.rcvbuf); err != nil {
				return &ExitError{Code: ExitUsage, Msg: "Error: setting the receive buffer: " + err.Error()}
			}
		}
	}
	var out bytes.Buffer
	for {
		// Events come with an error when some of their batch did not
		// decode: print what did first.
		evs, err := src.Receive()
		for i := range evs {
			out.Reset()
			formatEvent(&out, &evs[i], r.format(), b)
			if err := r.write(&out); err != nil {
				return err
			}
		}
		switch {
		case errors.Is(err, mptcp.ErrEventsLost):
			// ip reports the overrun and goes on listening.
			fmt.Fprintf(r.env.Stderr, "netlink receive error %s (%d): events were lost\n",
				strerror(syscall.ENOBUFS), int(syscall.ENOBUFS))
		case errors.Is(err, mptcp.ErrMalformedEvent):
			// One bad message from a newer or buggy kernel is no reason
			// to stop watching.
			fmt.Fprintf(r.env.Stderr, "Warning: %v\n", err)
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			return nil
		case err != nil:
			return &ExitError{Code: ExitListen, Msg: "Error: receiving events: " + err.Error()}
		}
	}
}

// errnoText is the errno text of err as perror prints it, or err itself.
func errnoText(err error) string {
	var ke *mptcp.Error
	if errors.As(err, &ke) {
		return strerror(ke.Errno)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return strerror(errno)
	}
	return err.Error()
}

// rootCommand builds the cobra tree. Cobra provides help, completion and
// the global options; the keyword arguments after the command words are
// parsed by this package (leaf commands stop option parsing at the first
// word, so "id 3" and "subflows -1" reach the parser unchanged), and the
// command words themselves are also matched by prefix in ip's order.
func (r *runner) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "mptcpctl",
		Short:         "Configure the kernel's MPTCP path manager, as ip mptcp",
		Long:          rootLong,
		Version:       r.env.Version,
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Completion of the command words comes from the tree.
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	root.SetVersionTemplate("mptcpctl {{.Version}}\n")
	root.RunE = func(_ *cobra.Command, args []string) error {
		if len(args) == 0 {
			return &ExitError{Code: ExitUsage, Msg: usageText}
		}
		return dispatch(r.topVerbs(root), args)
	}
	pf := root.PersistentFlags()
	// The defaults are what the ip-style options before the command words
	// set (parseGlobalOptions); cobra sees these flags only in its own
	// commands, such as completion.
	pf.StringVarP(&r.netns, "netns", "n", r.netns, "run in network namespace `NETNS` (a name under /run/netns, or a path)")
	pf.BoolVarP(&r.json, "json", "j", r.json, "print JSON")
	pf.BoolVarP(&r.pretty, "pretty", "p", r.pretty, "indent JSON output")

	leaf := r.leaf
	endpoint := leaf("endpoint [add|change|delete|show|flush] ...", "Manage the path manager's endpoints (default: show)", r.endpoint)
	endpoint.Aliases = []string{"e", "endp"}
	endpoint.ValidArgsFunction = cobra.NoFileCompletions
	del := leaf("delete id ID [ADDRESS]", "Delete an endpoint", r.endpointDelete, "id")
	del.Aliases = []string{"del"}
	endpoint.AddCommand(
		leaf("add ADDRESS [dev NAME] [id ID] [port NR] [FLAG...]",
			"Add an endpoint; FLAG is signal, subflow, backup, fullmesh or laminar",
			r.endpointAdd, "dev", "id", "port", "signal", "subflow", "backup", "fullmesh", "laminar"),
		leaf("change [id ID] [ADDRESS] [port NR] backup|nobackup|fullmesh|nofullmesh",
			"Change the backup and fullmesh flags of an endpoint",
			r.endpointChange, "id", "port", "backup", "nobackup", "fullmesh", "nofullmesh"),
		del,
		leaf("show [id ID]", "Show all endpoints, or the one with id ID", r.endpointShow, "id"),
		leaf("flush", "Delete all endpoints", r.endpointFlush),
	)

	limits := leaf("limits [set|show] ...", "Show or set the path manager's limits (default: show)", r.limits)
	limits.Aliases = []string{"l"}
	limits.ValidArgsFunction = cobra.NoFileCompletions
	limits.AddCommand(
		leaf("set [subflows NR] [add_addr_accepted NR]", "Set the limits", r.limitsSet, "subflows", "add_addr_accepted"),
		leaf("show", "Show the limits", r.limitsShow),
	)

	monitor := leaf("monitor", "Print MPTCP events as they happen", r.monitor)

	root.AddCommand(endpoint, limits, monitor, r.policyCommand(), r.connectionsCommand(), r.userspaceCommand())
	root.AddCommand(r.daemonCommands()...)
	root.AddCommand(r.topCommand())
	root.AddCommand(r.traceCommands()...)
	root.AddCommand(r.sshCommands()...)
	root.Flags().SetInterspersed(false)
	return root
}

// leaf is a command whose words after its name are keyword arguments,
// completed from words.
func (r *runner) leaf(use, short string, run func([]string) error, words ...string) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE:  func(_ *cobra.Command, args []string) error { return run(args) },
	}
	c.ValidArgsFunction = r.completeKeywords(words)
	c.Flags().SetInterspersed(false)
	return c
}

// completeKeywords completes the keywords of a leaf command, and after
// "dev" the link names of the namespace, after "token" the tokens of its
// connections; values of id, port, addresses and the limits are left to
// the user.
func (r *runner) completeKeywords(words []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if n := len(args); n > 0 {
			switch prev := args[n-1]; {
			case prev == "dev":
				return r.completeLinks(toComplete), cobra.ShellCompDirectiveNoFileComp
			case prev == "token":
				return r.completeTokens(toComplete), cobra.ShellCompDirectiveNoFileComp
			case prev == "id" || prev == "port" || prev == "subflows" || prev == "add_addr_accepted" ||
				prev == "local" || prev == "remote":
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		var out []string
		for _, w := range words {
			if strings.HasPrefix(w, toComplete) {
				out = append(out, w)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func (r *runner) completeLinks(prefix string) []string {
	b, err := r.open()
	if err != nil {
		return nil
	}
	lister, ok := b.(interface{ LinkNames() []string })
	if !ok {
		return nil
	}
	var out []string
	for _, name := range lister.LinkNames() {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}
