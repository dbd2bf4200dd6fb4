package ctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mptcpd-go/mptcpd/internal/trace"
)

// `trace` and `plot` are mptcpctl's own: a recording of what the links and
// MPTCP connections carry over time (internal/trace), and its I/O graph.

const traceLong = `trace records what the namespace (-n) carries: every interval (one
round) the byte and packet counters of each link and the byte counters of
each MPTCP connection and of each of its subflows, and between rounds the
links' events as they happen: a link added or removed, up or down, its
carrier gained or lost, an address added or removed. It runs for
--duration, or until interrupted (Ctrl-C, SIGTERM), and writes to -o FILE
(else stdout), flushing every round.

The output is CSV: a header line, then one row per link, connection and
subflow of each round and one per event, with the columns

  time         RFC 3339 in UTC, nanoseconds; a round's rows share it
  kind         link, conn, subflow or event
  ifindex dev  the link; a subflow's is the one it is bound to, else the
               one that has its local address (empty when unknown)
  token local remote                         conn and subflow
  rx_bytes tx_bytes                          link, conn and subflow
  acked_bytes                                conn and subflow
  rx_packets tx_packets                      link
  event detail link-added, link-removed, up, down, carrier, no-carrier,
               addr-added ADDR/LEN, addr-removed ADDR/LEN, or resync
               (notifications were lost; the events up to the next
               round were found late)

Counters are the kernel's, cumulative: the links' from rtnetlink, the
connections' from mptcp_info (Linux 6.7+) and the subflows' from tcp_info
(tx includes retransmissions, acked is what the peer acknowledged).
--format json (or -j, or a FILE ending in .json or .jsonl) writes one JSON
object per line instead, with the same keys, empty ones left out.
Subflows need CAP_NET_ADMIN in the namespace. "mptcpctl plot" draws a
trace.`

const plotLong = `plot draws a trace written by "mptcpctl trace" (CSV or JSON lines) as
an I/O graph: the throughput of each interface in Mbit/s over time, one
line each, from its counters' growth from round to round (sent and
received added up, unless --direction tx or rx), and the interfaces'
events as dashed vertical markers labelled with the interface and what
happened ("wlan0 no-carrier", "wlan0 +10.1.1.2/24"). Interfaces that
carried nothing are left out, and with --dev the lines and events of the
interfaces it does not name. A line breaks where its interface is
missing from the trace; a counter that went down counts from zero again.

-o OUT names the images: OUT.png and OUT.svg, or OUT alone when it ends
in .png, .svg, .pdf, .eps, .jpg, .jpeg, .tif or .tiff. Without -o, OUT is
TRACE without its extension.`

// traceCommands are trace and plot.
func (r *runner) traceCommands() []*cobra.Command {
	var tf traceFlags
	tc := &cobra.Command{
		Use:               "trace [--interval DUR] [--duration DUR] [--format csv|json] [-o FILE]",
		Short:             "Record the links' and MPTCP connections' counters and the links' events",
		Long:              traceLong,
		Args:              cobra.ArbitraryArgs,
		RunE:              func(_ *cobra.Command, args []string) error { return r.trace(tf, args) },
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	f := tc.Flags()
	f.DurationVar(&tf.interval, "interval", trace.DefaultInterval, "wait `DUR` between rounds")
	f.DurationVar(&tf.duration, "duration", 0, "stop after `DUR` (default: when interrupted)")
	f.StringVar(&tf.format, "format", "", "write in `FORMAT` csv or json (default: json with -j or a .json/.jsonl FILE, else csv)")
	f.StringVarP(&tf.output, "output", "o", "", "write to `FILE` (default: stdout)")
	_ = tc.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"csv", "json"}, cobra.ShellCompDirectiveNoFileComp))

	var pf plotFlags
	pc := &cobra.Command{
		Use:   "plot TRACE [-o OUT] [--direction both|tx|rx] [--dev NAME]...",
		Short: "Draw a trace as an I/O graph of the interfaces, PNG and SVG",
		Long:  plotLong,
		Args:  cobra.ArbitraryArgs,
		RunE:  func(_ *cobra.Command, args []string) error { return r.plot(pf, args) },
	}
	pc.Flags().StringVarP(&pf.output, "output", "o", "", "write `OUT`.png and OUT.svg, or OUT in the format of its extension (default: TRACE without its extension)")
	pc.Flags().StringVar(&pf.direction, "direction", "both", "draw `WHICH` traffic: both (sent + received), tx or rx")
	pc.Flags().StringArrayVar(&pf.devs, "dev", nil, "draw only the interface `NAME` and its events (repeat for more)")
	_ = pc.RegisterFlagCompletionFunc("direction", cobra.FixedCompletions([]string{"both", "tx", "rx"}, cobra.ShellCompDirectiveNoFileComp))
	return []*cobra.Command{tc, pc}
}

// traceFlags are the options of trace.
type traceFlags struct {
	interval, duration time.Duration
	format             string
	output             string
}

// traceFormat is the format the options ask for.
func (r *runner) traceFormat(tf traceFlags) (trace.Format, error) {
	switch tf.format {
	case "csv":
		return trace.FormatCSV, nil
	case "json":
		return trace.FormatJSON, nil
	case "":
	default:
		return "", optionError(fmt.Sprintf("--format %q: csv or json", tf.format))
	}
	if ext := filepath.Ext(tf.output); r.json || ext == ".json" || ext == ".jsonl" {
		return trace.FormatJSON, nil
	}
	return trace.FormatCSV, nil
}

// optionError is a bad option of one of mptcpctl's own commands.
func optionError(msg string) error {
	return &ExitError{Code: ExitUsage, Msg: "Error: " + msg}
}

// traceError is a failure of trace or plot once running.
func traceError(err error) error {
	return &ExitError{Code: ExitFailure, Msg: "Error: " + err.Error()}
}

// trace samples the namespace until --duration or a signal ends it.
func (r *runner) trace(tf traceFlags, args []string) error {
	if len(args) > 0 {
		return unknownCommandError(args[0])
	}
	format, err := r.traceFormat(tf)
	if err != nil {
		return err
	}
	if tf.interval <= 0 {
		return optionError(fmt.Sprintf("--interval %v: must be positive", tf.interval))
	}
	if tf.duration < 0 {
		return optionError(fmt.Sprintf("--duration %v: must not be negative", tf.duration))
	}
	b, err := r.open()
	if err != nil {
		return err
	}
	kb, ok := b.(*kernelBackend)
	if !ok {
		return traceError(errors.New("trace: reads the kernel, not this backend"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if tf.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tf.duration)
		defer cancel()
	}
	logger := slog.New(slog.NewTextHandler(r.env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := trace.Start(ctx, trace.Config{NetNS: kb.ns.FD(), Interval: tf.interval, Logger: logger})
	if err != nil {
		return traceError(err)
	}
	defer s.Close()

	out, closeOut := r.stdout(), func() error { return nil }
	if tf.output != "" {
		f, err := os.Create(tf.output)
		if err != nil {
			return traceError(err)
		}
		out, closeOut = f, f.Close
	}
	err = s.Run(ctx, trace.NewWriter(out, format))
	if cerr := closeOut(); err == nil && cerr != nil {
		err = fmt.Errorf("trace: %w", cerr)
	}
	if err != nil {
		return traceError(err)
	}
	return nil
}

// readTrace reads a trace file.
func readTrace(path string) ([]trace.Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := trace.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return recs, nil
}
