package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/internal/trace"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// `top` is mptcpctl's own: a live view of what the links and MPTCP
// connections of a namespace carry, from internal/trace's sampler.

const topLong = `top shows what the namespace (-n) carries, redrawn every --interval: a
header line (the namespace, the time, how many MPTCP connections and
subflows), the interfaces (up, down or no-carrier; Mbit/s received and
sent; addresses, link-local ones left out), the MPTCP connections (token,
local -> remote, Mbit/s sent plus received at the MPTCP level, subflows
counting the initial one) each followed by its TCP subflows (the
interface it is bound to, else the one that has its local address;
"backup" when either end asked for it; Mbit/s sent plus received; the
smoothed RTT), and the latest link events. A rate is over the last
interval; "-" is a rate not known yet (a new connection) or not read (a
kernel before 6.7 has no byte counters in mptcp_info).

On a terminal it redraws the screen until interrupted (Ctrl-C). With
--once, or when stdout is not a terminal, it prints one view after one
interval and exits. Lines are cut to the terminal's width and the view to
its height (80x24 when stdout is not a terminal); connections that do not
fit are counted in a last line. Subflows need CAP_NET_ADMIN in the
namespace.`

// topCommand is `top [--interval DUR] [--once]`.
func (r *runner) topCommand() *cobra.Command {
	var tf topFlags
	cmd := &cobra.Command{
		Use:               "top [--interval DUR] [--once]",
		Short:             "Show the interfaces' and MPTCP connections' throughput live",
		Long:              topLong,
		Args:              cobra.ArbitraryArgs,
		RunE:              func(_ *cobra.Command, args []string) error { return r.top(tf, args) },
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cmd.Flags().DurationVar(&tf.interval, "interval", time.Second, "redraw every `DUR`")
	cmd.Flags().BoolVar(&tf.once, "once", false, "print one view after one interval and exit")
	return cmd
}

// topFlags are the options of top.
type topFlags struct {
	interval time.Duration
	once     bool
}

// ANSI sequences of the terminal mode.
const (
	ansiClearHome  = "\x1b[H\x1b[2J"
	ansiHideCursor = "\x1b[?25l"
	ansiShowCursor = "\x1b[?25h"
)

// The size of a view when stdout is not a terminal.
const (
	defaultWidth  = 80
	defaultHeight = 24
)

// errViewDone ends the sampler's watch once --once has its view.
var errViewDone = errors.New("top: view printed")

// top samples the namespace and draws views until interrupted, or prints
// one.
func (r *runner) top(tf topFlags, args []string) error {
	if len(args) > 0 {
		return unknownCommandError(args[0])
	}
	if tf.interval <= 0 {
		return optionError(fmt.Sprintf("--interval %v: must be positive", tf.interval))
	}
	b, err := r.open()
	if err != nil {
		return err
	}
	kb, ok := b.(*kernelBackend)
	if !ok {
		return traceError(errors.New("top: reads the kernel, not this backend"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(r.env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := trace.Start(ctx, trace.Config{NetNS: kb.ns.FD(), Interval: tf.interval, Logger: logger})
	if err != nil {
		return traceError(err)
	}
	defer s.Close()

	out := r.stdout()
	_, _, live := terminalSize(out)
	live = live && !tf.once
	if live {
		if _, err := io.WriteString(out, ansiHideCursor); err != nil {
			return traceError(fmt.Errorf("top: %w", err))
		}
		// Also after Ctrl-C, which ends the watch through ctx.
		defer io.WriteString(out, ansiShowCursor+"\n")
	}
	v := &topView{netns: r.netns}
	err = s.Watch(ctx, func(rd trace.Round) error {
		v.advance(rd)
		width, height, _ := terminalSize(out)
		switch {
		case live:
			_, err := io.WriteString(out, ansiClearHome+strings.Join(v.lines(width, height), "\n"))
			return err
		case v.prev.Time.IsZero():
			return nil // a rate needs a second round
		}
		if _, err := io.WriteString(out, strings.Join(v.lines(width, height), "\n")+"\n"); err != nil {
			return err
		}
		return errViewDone
	}, func(recs []trace.Record) error {
		v.addEvents(recs)
		return nil
	})
	if err != nil && !errors.Is(err, errViewDone) {
		return traceError(fmt.Errorf("top: %w", err))
	}
	return nil
}

// terminalSize is the size of the terminal out writes to, and whether it
// is one; 80x24 when not.
func terminalSize(out io.Writer) (width, height int, ok bool) {
	f, isFile := out.(*os.File)
	if !isFile {
		return defaultWidth, defaultHeight, false
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return defaultWidth, defaultHeight, false
	}
	// A terminal that does not say its size (a serial line) reads as 0.
	width, height = int(ws.Col), int(ws.Row)
	if width == 0 {
		width = defaultWidth
	}
	if height == 0 {
		height = defaultHeight
	}
	return width, height, true
}

// topEvents is how many of the latest link events a view keeps.
const topEvents = 5

// topView is what top shows: the latest round, the rates since the one
// before, and the latest link events.
type topView struct {
	netns     string
	prev, cur trace.Round    // prev is zero until the second round
	events    []trace.Record // oldest first
}

// advance makes rd the view's latest round.
func (v *topView) advance(rd trace.Round) {
	v.prev, v.cur = v.cur, rd
}

// addEvents keeps the latest topEvents of the events seen so far.
func (v *topView) addEvents(recs []trace.Record) {
	v.events = append(v.events, recs...)
	if n := len(v.events); n > topEvents {
		v.events = slices.Clone(v.events[n-topEvents:])
	}
}

// lines renders the view in at most height lines of at most width
// columns. The connections come before the events: the events keep the
// room the connections leave, and connections that do not fit are
// counted in a last line.
func (v *topView) lines(width, height int) []string {
	rates := v.rates()
	conns := slices.DeleteFunc(slices.Clone(v.cur.Conns), func(c mptcpdiag.Connection) bool { return c.Listening() })
	out := []string{v.header(conns), ""}
	out = append(out, v.linkTable(rates).lines()...)
	var cs []string
	if len(conns) > 0 {
		cs = append([]string{""}, v.connTable(conns, rates).lines()...)
	}
	room := height - len(out)
	if len(cs) > room {
		cs = cutLines(cs, max(room, 2))
	}
	// The latest events that fit, under their title.
	var evs []string
	if evLines, rest := v.eventLines(), room-len(cs); len(evLines) > 0 && rest >= 3 {
		evs = append([]string{"", "LINK EVENTS"}, evLines[max(len(evLines)-(rest-2), 0):]...)
	}
	out = append(append(out, cs...), evs...)
	if len(out) > height {
		out = out[:height]
	}
	for i, l := range out {
		out[i] = cutWidth(l, width)
	}
	return out
}

// cutLines keeps the first n-1 lines and counts the others in a last one.
func cutLines(lines []string, n int) []string {
	hidden := len(lines) - (n - 1)
	return append(slices.Clone(lines[:n-1]), fmt.Sprintf("... %d more line%s", hidden, plural(hidden)))
}

// cutWidth cuts s to width columns, one rune each (the text is printable
// by then).
func cutWidth(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	return string([]rune(s)[:max(width, 0)])
}

// rates are the rates of the series in both the previous and the latest
// round, over the time between them.
func (v *topView) rates() map[trace.SeriesKey]trace.Point {
	rates := map[trace.SeriesKey]trace.Point{}
	if v.prev.Time.IsZero() {
		return rates
	}
	for _, s := range trace.Rates(append(slices.Clone(v.prev.Records), v.cur.Records...)) {
		if n := len(s.Points); n > 0 && s.Points[n-1].To.Equal(v.cur.Time) {
			rates[s.SeriesKey] = s.Points[n-1]
		}
	}
	return rates
}

// header is "netns NAME  HH:MM:SS  N connections  M subflows".
func (v *topView) header(conns []mptcpdiag.Connection) string {
	subflows := 0
	for i := range conns {
		subflows += conns[i].Info.TotalSubflows()
	}
	where := "current netns"
	if v.netns != "" {
		where = "netns " + screenText(v.netns)
	}
	return fmt.Sprintf("%s  %s  %d connection%s  %d subflow%s", where, v.cur.Time.Format("15:04:05"),
		len(conns), plural(len(conns)), subflows, plural(subflows))
}

// linkTable has a row per interface.
func (v *topView) linkTable(rates map[trace.SeriesKey]trace.Point) *table {
	t := &table{right: []bool{false, false, true, true}}
	t.add("INTERFACE", "STATE", "RX Mbit/s", "TX Mbit/s", "ADDRESSES")
	for _, l := range v.cur.Links {
		var addrs []string
		for _, a := range v.cur.Addrs {
			if a.LinkIndex == l.Index && a.Scope != netmon.ScopeLink {
				addrs = append(addrs, formatAddr(a.Prefix.Addr())+"/"+strconv.Itoa(a.Prefix.Bits()))
			}
		}
		p, ok := rates[trace.SeriesKey{Kind: trace.KindLink, IfIndex: l.Index}]
		t.add(screenText(l.Name), linkState(l), mbits(p.Rx, ok), mbits(p.Tx, ok), strings.Join(addrs, " "))
	}
	return t
}

// linkState is down (not IFF_UP), no-carrier (no IFF_LOWER_UP) or up, as
// the trace's events name the changes.
func linkState(l netmon.Link) string {
	switch {
	case !l.Up:
		return string(trace.EventDown)
	case !l.Carrier:
		return string(trace.EventNoCarrier)
	}
	return string(trace.EventUp)
}

// connTable has a row per connection, each followed by one per subflow.
func (v *topView) connTable(conns []mptcpdiag.Connection, rates map[trace.SeriesKey]trace.Point) *table {
	devs := map[trace.SeriesKey]string{}
	for _, r := range v.cur.Records {
		if r.Kind == trace.KindSubflow && r.Dev != "" {
			devs[trace.SeriesKey{Kind: r.Kind, Token: r.Token, Local: r.Local, Remote: r.Remote}] = r.Dev
		}
	}
	// The addresses last: they are the cells that may not fit.
	t := &table{right: []bool{false, true}}
	t.add("CONNECTION", "Mbit/s", "", "", "LOCAL -> REMOTE")
	for i := range conns {
		c := &conns[i]
		tok := c.Info.Token
		p, ok := rates[trace.SeriesKey{Kind: trace.KindConn, Token: tok}]
		n := c.Info.TotalSubflows()
		t.add(tok.String(), mbits(p.Rx+p.Tx, ok), fmt.Sprintf("%d subflow%s", n, plural(n)), "", addrPair(c.Local, c.Remote))
		for j := range c.Subflows {
			sf := &c.Subflows[j]
			key := trace.SeriesKey{Kind: trace.KindSubflow, Token: tok, Local: unmapped(sf.Local), Remote: unmapped(sf.Remote)}
			dev := "-"
			if d, ok := devs[key]; ok {
				dev = screenText(d)
			}
			backup := ""
			if sf.Backup() {
				backup = "backup"
			}
			rtt := ""
			if sf.TCP.RTT > 0 {
				rtt = "rtt " + sf.TCP.RTT.Round(10*time.Microsecond).String()
			}
			p, ok := rates[key]
			t.add("  "+dev, mbits(p.Rx+p.Tx, ok), rtt, backup, addrPair(sf.Local, sf.Remote))
		}
	}
	return t
}

// eventLines has a line per kept event: time, interface, event, detail.
func (v *topView) eventLines() []string {
	t := &table{}
	for _, e := range v.events {
		dev := screenText(e.Dev)
		if dev == "" {
			dev = "-"
		}
		t.add(e.Time.Format("15:04:05.000"), dev, string(e.Event), screenText(e.Detail))
	}
	return t.lines()
}

// addrPair is "LOCAL -> REMOTE".
func addrPair(local, remote netip.AddrPort) string {
	return formatAddrPort(unmapped(local)) + " -> " + formatAddrPort(unmapped(remote))
}

// unmapped turns a 4-in-6 address (of an AF_INET6 socket) into IPv4, as
// the trace's records have it.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// mbits is a rate in bit/s as Mbit/s, "-" when not known.
func mbits(bps float64, known bool) string {
	if !known {
		return "-"
	}
	return strconv.FormatFloat(bps/1e6, 'f', 1, 64)
}

// screenText replaces what a terminal would act upon (control
// characters, invalid UTF-8) with '?': link names may hold any byte but
// '/', ':' and white space.
func screenText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// table lays out rows of cells in columns two spaces apart, each as wide
// as its widest cell, numbers (right) aligned to the right. A column
// empty in every row takes no room; the last cell of a row is not padded.
type table struct {
	right []bool
	rows  [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) lines() []string {
	var widths []int
	for _, row := range t.rows {
		for i, c := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	out := make([]string, 0, len(t.rows))
	for _, row := range t.rows {
		var b strings.Builder
		for i, c := range row {
			if widths[i] == 0 {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i < len(t.right) && t.right[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		out = append(out, strings.TrimRight(b.String(), " "))
	}
	return out
}
