package ctl

import (
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/mptcpd-go/mptcpd/internal/trace"
)

// plotFlags are the options of plot.
type plotFlags struct {
	output    string
	direction string   // both, tx, rx
	devs      []string // only these interfaces; none: all
}

// The size of the images, and how close events must be to share a marker,
// as a share of the time the graph spans.
const (
	plotWidth   = 24 * vg.Centimeter
	plotHeight  = 12 * vg.Centimeter
	markerMerge = 0.01
)

// imageExts are the extensions gonum/plot writes (plot.Save).
var imageExts = []string{".png", ".svg", ".pdf", ".eps", ".jpg", ".jpeg", ".tif", ".tiff"}

// plotOutputs are the files plot writes for the trace at tracePath.
func plotOutputs(out, tracePath string) []string {
	if out == "" {
		out = strings.TrimSuffix(tracePath, filepath.Ext(tracePath))
	}
	if slices.Contains(imageExts, strings.ToLower(filepath.Ext(out))) {
		return []string{out}
	}
	return []string{out + ".png", out + ".svg"}
}

// plot draws the trace named by args into the images -o names.
func (r *runner) plot(pf plotFlags, args []string) error {
	if len(args) != 1 {
		return optionError("plot needs one TRACE file")
	}
	if !slices.Contains([]string{"both", "tx", "rx"}, pf.direction) {
		return optionError(fmt.Sprintf("--direction %q: both, tx or rx", pf.direction))
	}
	files := plotOutputs(pf.output, args[0])
	if slices.Contains(files, args[0]) {
		return optionError(fmt.Sprintf("plot would write over the trace %s: name another OUT with -o", args[0]))
	}
	recs, err := readTrace(args[0])
	if err != nil {
		return traceError(err)
	}
	g, err := buildIOGraph(recs, pf.direction, pf.devs)
	if err != nil {
		return traceError(fmt.Errorf("%s: %w", args[0], err))
	}
	p, err := g.plot(fmt.Sprintf("%s, from %s", filepath.Base(args[0]), g.start.Format("2006-01-02 15:04:05 MST")))
	if err != nil {
		return traceError(err)
	}
	for _, f := range files {
		if err := p.Save(plotWidth, plotHeight, f); err != nil {
			return traceError(fmt.Errorf("plot: %w", err))
		}
	}
	return nil
}

// ioGraph is what the images show, in seconds from start and Mbit/s.
type ioGraph struct {
	start     time.Time
	direction string
	lines     []ioLine
	markers   []ioMarker
	peak      float64 // the highest rate
}

// ioLine is one interface: its rate as steps, in segments between the
// rounds it was missing from.
type ioLine struct {
	dev      string
	segments []plotter.XYs
}

// ioMarker is a vertical line at x, for the events of label.
type ioMarker struct {
	x     float64
	label string
}

// buildIOGraph computes the graph of recs: the rate of each link that
// carried something, and the events; only of the links in devs, unless
// it is empty.
func buildIOGraph(recs []trace.Record, direction string, devs []string) (ioGraph, error) {
	if len(recs) == 0 {
		return ioGraph{}, errors.New("no records")
	}
	g := ioGraph{start: recs[0].Time, direction: direction}
	end := recs[0].Time
	for _, r := range recs {
		if r.Time.Before(g.start) {
			g.start = r.Time
		}
		if r.Time.After(end) {
			end = r.Time
		}
	}
	secs := func(t time.Time) float64 { return t.Sub(g.start).Seconds() }
	for _, s := range trace.Rates(recs) {
		l := ioLine{dev: traceDev(s.Dev, s.IfIndex)}
		if s.Kind != trace.KindLink || len(devs) > 0 && !slices.Contains(devs, l.dev) {
			continue
		}
		var moved bool
		for i, p := range s.Points {
			mbps := rateOf(p, direction) / 1e6
			moved = moved || mbps > 0
			g.peak = max(g.peak, mbps)
			// Steps: the rate holds from From to To. A point that does
			// not start where the last ended opens a segment.
			if i == 0 || !p.From.Equal(s.Points[i-1].To) {
				l.segments = append(l.segments, plotter.XYs{{X: secs(p.From), Y: mbps}})
			}
			seg := &l.segments[len(l.segments)-1]
			*seg = append(*seg, plotter.XY{X: secs(p.To), Y: mbps})
		}
		if moved {
			g.lines = append(g.lines, l)
		}
	}
	if len(g.lines) == 0 {
		what := "no interface"
		if len(devs) > 0 {
			what = "none of " + strings.Join(devs, ", ")
		}
		return ioGraph{}, errors.New(what + " carried anything (a rate needs two rounds)")
	}

	// Events closer than markerMerge of the span share a marker. Those
	// of no link (resync, notes) are kept whatever devs says.
	var events []trace.Record
	for _, r := range recs {
		if r.Kind == trace.KindEvent &&
			(len(devs) == 0 || r.IfIndex == 0 || slices.Contains(devs, traceDev(r.Dev, r.IfIndex))) {
			events = append(events, r)
		}
	}
	slices.SortStableFunc(events, func(a, b trace.Record) int { return a.Time.Compare(b.Time) })
	span := end.Sub(g.start)
	var group []trace.Record
	flush := func() {
		if len(group) > 0 {
			g.markers = append(g.markers, ioMarker{x: secs(group[0].Time), label: markerLabel(group)})
		}
	}
	for _, r := range events {
		if len(group) > 0 && r.Time.Sub(group[0].Time) > time.Duration(markerMerge*float64(span)) {
			flush()
			group = group[:0]
		}
		group = append(group, r)
	}
	flush()
	return g, nil
}

// markerLabel is the label of a marker for events: their labels, each
// once. A note says what the link events near it were (a walk's step):
// when there is one, the link events are left to it.
func markerLabel(events []trace.Record) string {
	hasNote := slices.ContainsFunc(events, func(r trace.Record) bool { return r.Event == trace.EventNote })
	var labels []string
	for _, r := range events {
		if hasNote && r.IfIndex != 0 {
			continue
		}
		if l := eventLabel(&r); !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	return strings.Join(labels, ", ")
}

// rateOf is the rate of p drawn for direction, in bit/s.
func rateOf(p trace.Point, direction string) float64 {
	switch direction {
	case "tx":
		return p.Tx
	case "rx":
		return p.Rx
	}
	return p.Tx + p.Rx
}

// eventLabel is the short text of an event marker: "wlan0 no-carrier",
// "wlan0 +10.1.1.2/24".
func eventLabel(r *trace.Record) string {
	what := string(r.Event)
	switch r.Event {
	case trace.EventAddrAdded:
		what = "+" + r.Detail
	case trace.EventAddrRemoved:
		what = "-" + r.Detail
	case trace.EventLinkAdded:
		what = "added"
	case trace.EventLinkRemoved:
		what = "removed"
	case trace.EventResync:
		return "resync (events lost)"
	case trace.EventNote:
		return r.Detail
	}
	return traceDev(r.Dev, r.IfIndex) + " " + what
}

// traceDev names a link of a trace: dev, or "ifINDEX" as ip does when the
// name is unknown.
func traceDev(dev string, index int) string {
	return cmp.Or(dev, fmt.Sprintf("if%d", index))
}

// plot draws g: a step line per interface, dashed grey markers with their
// labels written upwards along them.
func (g *ioGraph) plot(title string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = map[string]string{
		"both": "throughput (Mbit/s, sent + received)",
		"tx":   "throughput (Mbit/s, sent)",
		"rx":   "throughput (Mbit/s, received)",
	}[g.direction]
	p.Y.Min = 0
	// Room above the peak for the labels.
	p.Y.Max = math.Max(g.peak*1.3, 1)
	p.Legend.Top = true
	p.Add(plotter.NewGrid())

	for i, l := range g.lines {
		for j, seg := range l.segments {
			line, err := plotter.NewLine(seg)
			if err != nil {
				return nil, fmt.Errorf("plot: %s: %w", l.dev, err)
			}
			line.StepStyle = plotter.PreStep
			line.Color = plotutil.Color(i)
			line.Width = vg.Points(1.5)
			p.Add(line)
			if j == 0 {
				p.Legend.Add(l.dev, line)
			}
		}
	}

	for _, m := range g.markers {
		line, err := plotter.NewLine(plotter.XYs{{X: m.x, Y: 0}, {X: m.x, Y: p.Y.Max}})
		if err != nil {
			return nil, fmt.Errorf("plot: marker %q: %w", m.label, err)
		}
		line.Color = color.Gray{Y: 96}
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		labels, err := plotter.NewLabels(plotter.XYLabels{
			XYs:    plotter.XYs{{X: m.x, Y: p.Y.Max}},
			Labels: []string{shorten(m.label, markerLabelMax)},
		})
		if err != nil {
			return nil, fmt.Errorf("plot: marker %q: %w", m.label, err)
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].Rotation = math.Pi / 2
			labels.TextStyle[i].Color = line.Color
			labels.TextStyle[i].XAlign = draw.XRight
			labels.TextStyle[i].YAlign = draw.YTop
		}
		labels.Offset = vg.Point{X: -vg.Points(2), Y: -vg.Points(4)}
		p.Add(line, unboxed{labels})
	}
	return p, nil
}

// markerLabelMax is the longest label a marker shows, in runes: at the
// default 10 pt, about half the height of the graph.
const markerLabelMax = 40

// shorten cuts s to max runes, the last an ellipsis.
func shorten(s string, max int) string {
	r := []rune(s)
	if len(r) <= max {
		return s
	}
	return string(r[:max-1]) + "…"
}

// unboxed draws labels without asking the plot for room: gonum/plot
// shrinks the data area to fit every glyph box, and a label hanging from
// the top of the graph would squeeze it, to nothing (NaN) when longer
// than the graph is high.
type unboxed struct{ labels *plotter.Labels }

func (u unboxed) Plot(c draw.Canvas, p *plot.Plot) { u.labels.Plot(c, p) }
