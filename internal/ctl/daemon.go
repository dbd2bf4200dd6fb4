package ctl

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netns"
	"github.com/mptcpd-go/mptcpd/policy"
)

// The daemon commands are mptcpctl's own: they ask the mptcpd running in
// the namespace, over its control socket (internal/control).

const daemonLong = `status, explain, events and reload ask the mptcpd running in the
namespace (-n), through its control socket STATE_DIR/netns-DEV-INO.sock:
STATE_DIR is --state-dir, else mptcpd.conf's state-dir, else
/run/mptcpd-go. Root and the members of mptcpd.conf's control-group may
use it.

  status   the daemon's mode, files, interfaces, the endpoints it wants
           and the kernel's table split into its own and foreign ones,
           limits, counters and its latest warnings and errors
  explain  the decisions of its last pass, address by address, printed as
           "policy explain" prints them (which computes them from the
           files instead, without the daemon)
  events   network changes, the daemon's endpoint and limit writes,
           reloads and, in the userspace mode, connection and subflow
           events and the plugin's commands, one line each as they happen
           (-j: one JSON object per line), until interrupted
  reload   make it read its configuration again, as SIGHUP does; a file
           it refuses is reported and its running configuration stays

-j prints JSON, -p indents it. When no daemon answers they say so and
exit 3.`

// daemonFlags are the options of the daemon commands.
type daemonFlags struct {
	stateDir string // --state-dir: where the daemon's socket is
}

// addStateDirFlag gives a command --state-dir.
func addStateDirFlag(c *cobra.Command, fl *daemonFlags) {
	c.Flags().StringVar(&fl.stateDir, "state-dir", "", "find the daemon's socket in `DIR` (default: mptcpd.conf's state-dir, else /run/mptcpd-go)")
	_ = c.MarkFlagDirname("state-dir")
}

// daemonCommands are status, explain, events and reload.
func (r *runner) daemonCommands() []*cobra.Command {
	cmd := func(use, short string, run func(daemonFlags, []string) error) *cobra.Command {
		fl := &daemonFlags{}
		c := &cobra.Command{
			Use:               use + " [--state-dir DIR]",
			Short:             short,
			Long:              daemonLong,
			Args:              cobra.ArbitraryArgs,
			RunE:              func(_ *cobra.Command, args []string) error { return run(*fl, args) },
			ValidArgsFunction: cobra.NoFileCompletions,
		}
		addStateDirFlag(c, fl)
		return c
	}
	return []*cobra.Command{
		cmd("status", "Show what the running mptcpd does", r.status),
		cmd("explain", "Explain the running mptcpd's decisions, address by address", r.daemonExplain),
		cmd("events", "Print the running mptcpd's events as they happen", r.events),
		cmd("reload", "Make the running mptcpd read its configuration again", r.reload),
	}
}

// stateDir is where the daemon of the namespace keeps its socket.
func (r *runner) stateDir(fl daemonFlags) string {
	if fl.stateDir != "" {
		return fl.stateDir
	}
	if r.env.StateDir != "" {
		return r.env.StateDir
	}
	conf, _, err := policy.LoadConfig(cmp.Or(r.env.ConfigFile, policy.DefaultConfigFile))
	if err != nil {
		return policy.DefaultConfig().StateDir
	}
	return conf.StateDir
}

// dialDaemon connects to the daemon of the selected namespace.
func (r *runner) dialDaemon(fl daemonFlags) (*control.Client, error) {
	dir := r.stateDir(fl)
	if r.env.Daemon != nil {
		return r.env.Daemon(r.netns, dir)
	}
	return DialDaemon(r.netns, dir)
}

// DialDaemon connects to the mptcpd of namespace netnsName ("" for the
// caller's own), whose socket is in stateDir.
func DialDaemon(netnsName, stateDir string) (*control.Client, error) {
	h, err := netns.Open(netnsName)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	path, err := control.SocketPath(stateDir, h.FD())
	if err != nil {
		return nil, err
	}
	return control.Dial(path)
}

// daemonError is the report of a failed exchange with the daemon.
func daemonError(err error) error {
	var re *control.RemoteError
	switch {
	case errors.Is(err, control.ErrNotRunning):
		return &ExitError{Code: ExitNoDaemon, Msg: err.Error()}
	case errors.As(err, &re):
		return &ExitError{Code: ExitFailure, Msg: "Error: mptcpd: " + re.Msg}
	}
	return &ExitError{Code: ExitFailure, Msg: "Error: " + err.Error()}
}

// withDaemon runs fn with a connection to the daemon.
func (r *runner) withDaemon(fl daemonFlags, args []string, fn func(*control.Client) error) error {
	if len(args) > 0 {
		return unknownCommandError(args[0])
	}
	c, err := r.dialDaemon(fl)
	if err != nil {
		return daemonError(err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		var ee *ExitError
		if errors.As(err, &ee) {
			return err
		}
		return daemonError(err)
	}
	return nil
}

// writeJSON prints v as JSON, indented with -p as ip does.
func (r *runner) writeJSON(v any) error {
	var b []byte
	var err error
	if r.pretty {
		b, err = json.MarshalIndent(v, "", "    ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return &ExitError{Code: ExitFailure, Msg: "Error: " + err.Error()}
	}
	return r.write(bytes.NewBuffer(append(b, '\n')))
}

func (r *runner) now() time.Time {
	if r.env.Now != nil {
		return r.env.Now()
	}
	return time.Now()
}

func (r *runner) status(fl daemonFlags, args []string) error {
	return r.withDaemon(fl, args, func(c *control.Client) error {
		st, err := c.Status()
		if err != nil {
			return err
		}
		if r.json {
			return r.writeJSON(st)
		}
		var b bytes.Buffer
		formatStatus(&b, &st, r.now())
		return r.write(&b)
	})
}

func (r *runner) daemonExplain(fl daemonFlags, args []string) error {
	return r.withDaemon(fl, args, func(c *control.Client) error {
		dx, err := c.Explain()
		if err != nil {
			return err
		}
		x, err := explanationOf(&dx)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		formatExplain(&b, x, r.format())
		return r.write(&b)
	})
}

// explanationOf is the daemon's explain reply as policy explain's.
func explanationOf(dx *control.Explain) (*explanation, error) {
	p, links, plan, err := dx.Plan()
	if err != nil {
		return nil, err
	}
	// Policy "built-in" describes as the built-in policy's "".
	src := policySource{Config: dx.Config, ConfigFound: dx.ConfigFound, Why: dx.Why, Policy: p.Source}
	x := &explanation{src: src, policy: p, plan: plan, capacity: dx.Capacity, foreign: dx.Foreign,
		kernelLimits: dx.KernelLimits.Kernel()}
	if dx.Mode == control.ModeUserspace {
		x.plugin = dx.Plugin
	}
	eps := make([]mptcp.Endpoint, 0, len(dx.Kernel))
	for _, e := range dx.Kernel {
		k, err := e.Kernel()
		if err != nil {
			return nil, err
		}
		eps = append(eps, k)
	}
	x.compare(links, eps)
	return x, nil
}

func (r *runner) reload(fl daemonFlags, args []string) error {
	return r.withDaemon(fl, args, func(c *control.Client) error {
		rl, err := c.Reload()
		var re *control.RemoteError
		if errors.As(err, &re) {
			return &ExitError{Code: ExitFailure, Msg: "Error: mptcpd kept its running configuration: " + re.Msg}
		}
		if err != nil || !r.json {
			return err
		}
		return r.writeJSON(rl)
	})
}

// events prints the daemon's events until the stream ends, one write per
// event so that each line reaches a pipe at once. Times are the daemon's
// clock and zone, as it sent them.
func (r *runner) events(fl daemonFlags, args []string) error {
	return r.withDaemon(fl, args, func(c *control.Client) error {
		err := c.Events(func(ev control.Event) error {
			if r.json {
				return r.writeJSON(ev)
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "%d %s %s\n", ev.Seq, ev.Time.Format("15:04:05.000000"), ev.Text)
			return r.write(&b)
		})
		var re *control.RemoteError
		switch {
		case errors.As(err, &re):
			return &ExitError{Code: ExitListen, Msg: "Error: mptcpd ended the event stream: " + re.Msg}
		case errors.Is(err, io.EOF):
			return &ExitError{Code: ExitListen, Msg: "Error: mptcpd closed the event stream (it stopped)"}
		}
		return err
	})
}

// formatStatus renders the status for an 80-column terminal.
func formatStatus(b *bytes.Buffer, st *control.Status, now time.Time) {
	head := fmt.Sprintf("mptcpd %s (pid %d), %s mode", st.Version, st.PID, st.Mode)
	if st.Plugin != "" {
		head += ", plugin " + st.Plugin
	}
	fmt.Fprintf(b, "%s, up %s\n", head, since(now, st.Started))
	fmt.Fprintf(b, "config   %s\npolicy   %s\n", st.Config, st.Policy)
	if st.StateFile != "" {
		fmt.Fprintf(b, "state    %s\n", st.StateFile)
	}
	c := st.Counters
	if st.LastPass.IsZero() {
		b.WriteString("passes   none yet: waiting for the network state\n")
	} else {
		fmt.Fprintf(b, "passes   %d, the last %s ago; %s, %s, %s\n", c.Passes, since(now, st.LastPass),
			count(c.Resyncs, "resync"), count(c.Retries, "retry"), count(c.Reloads, "reload"))
	}
	if u := st.Userspace; u != nil {
		fmt.Fprintf(b, "conns    %d open; %s, %d lost, %s, %s\n", u.Connections, count(u.Events, "event"),
			u.EventsLost, count(u.Resyncs, "table rebuild"), count(u.CommandErrors, "command error"))
	}

	b.WriteString("\ninterfaces\n")
	if len(st.Links) == 0 {
		b.WriteString("  (none)\n")
	}
	nameW := 0
	for _, l := range st.Links {
		nameW = max(nameW, len(l.Name))
	}
	for _, l := range st.Links {
		state := "usable"
		if !l.Usable {
			state = "not usable: " + l.Why
		} else if h := l.Health; h != nil && h.State == "probation" {
			state += ", path health on probation (" + h.Why + ")"
		}
		state += defaultRoutes(l.DefaultRoute4, l.DefaultRoute6)
		fmt.Fprintf(b, "  %-*s  %-8s  %s\n", nameW, l.Name, l.Kind, state)
	}

	if st.Userspace != nil {
		fmt.Fprintf(b, "\nusable addresses (%d)\n", len(st.Endpoints))
	} else {
		fmt.Fprintf(b, "\nendpoints wanted (%d)\n", len(st.Endpoints))
	}
	rows := make([][]string, 0, len(st.Endpoints))
	for _, w := range st.Endpoints {
		addr := formatAddr(w.Address)
		if w.Port != 0 {
			addr += fmt.Sprintf(" port %d", w.Port)
		}
		var kernel string
		switch w.Kernel {
		case "present":
			kernel = fmt.Sprintf("id %d", w.ID)
		case "differs":
			kernel = fmt.Sprintf("id %d, differs", w.ID)
		case "held":
			kernel = fmt.Sprintf("id %d, held by a foreign endpoint", w.ID)
		default:
			kernel = w.Kernel
		}
		rows = append(rows, []string{addr, strings.Join(w.Flags, " "), w.Dev, kernel})
	}
	writeRows(b, rows)

	if k := st.Kernel; k != nil {
		fmt.Fprintf(b, "\nkernel endpoints: %d ours, %d foreign\n", len(k.Owned), len(k.Foreign))
		rows = rows[:0]
		for _, set := range []struct {
			eps   []control.Endpoint
			owner string
		}{{k.Owned, "ours"}, {k.Foreign, "foreign"}} {
			for _, e := range set.eps {
				addr := formatAddr(e.Address)
				if e.Port != 0 {
					addr += fmt.Sprintf(" port %d", e.Port)
				}
				owner := set.owner
				if set.owner == "ours" && slices.Contains(k.Kept, int(e.ID)) {
					owner = "ours, kept through the outage"
				}
				rows = append(rows, []string{fmt.Sprintf("id %d", e.ID), addr, strings.Join(e.Flags, " "), e.Dev, owner})
			}
		}
		writeRows(b, rows)
		for _, e := range k.InDoubt {
			fmt.Fprintf(b, "  id %d %s: deleted as the outage began; removal to be resent\n", e.ID, formatAddr(e.Address))
		}
		b.WriteString("\nlimits\n")
		writeRows(b, [][]string{
			limitRow("subflows", k.Limits.Subflows, k.WantedLimits.Subflows, k.AdminLimits),
			limitRow("add_addr_accepted", k.Limits.AddAddrAccepted, k.WantedLimits.AddAddrAccepted, k.AdminLimits),
		})
	}

	if len(st.Problems) > 0 {
		b.WriteString("\nwarnings and errors, latest last\n")
		for _, p := range st.Problems {
			line := fmt.Sprintf("  %s %-5s %s", p.Time.Format("Jan 02 15:04:05"), p.Level, p.Message)
			b.WriteString(clip(line, 80) + "\n")
		}
	}
}

// limitRow is one limit: the kernel's value and what the daemon does
// with it.
func limitRow(name string, kernel, want *uint32, admin []string) []string {
	value := "unknown"
	if kernel != nil {
		value = fmt.Sprint(*kernel)
	}
	var doing string
	switch {
	case slices.Contains(admin, name):
		doing = "set by an administrator, left alone"
	case want == nil:
		doing = "not managed"
	default:
		doing = fmt.Sprintf("want %d", *want)
	}
	return []string{name, value, doing}
}

// writeRows writes rows indented by two, columns padded to the widest
// cell and separated by two spaces; empty cells at the end are left out.
func writeRows(b *bytes.Buffer, rows [][]string) {
	if len(rows) == 0 {
		b.WriteString("  (none)\n")
		return
	}
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		line.WriteString(" ")
		for i, cell := range row {
			line.WriteString(" ")
			if i < len(row)-1 {
				fmt.Fprintf(&line, "%-*s ", widths[i], cell)
			} else {
				line.WriteString(cell)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// clip shortens s to n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// count is "N thing(s)"; "retry" becomes "retries".
func count(n uint64, thing string) string {
	switch {
	case n == 1:
		return "1 " + thing
	case strings.HasSuffix(thing, "y"):
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(thing, "y"))
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// since is the time from t to now, rounded for people: 812ms, 4.2s, 3m12s,
// 5h3m, 2d4h.
func since(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	days := d / (24 * time.Hour)
	return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
}
