package ctl

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gonum.org/v1/plot/plotter"

	"github.com/mptcpd-go/mptcpd/internal/trace"
)

// testdata/trace-handover.csv is 4.6 s of a trace recorded by
// integration's TestTraceHandover: an upload leaves wlan0 for wwan0 when
// wlan0 loses its carrier, and comes back with it.
const handoverTrace = "testdata/trace-handover.csv"

func TestPlotOutputs(t *testing.T) {
	for _, tc := range []struct {
		out, trace string
		want       []string
	}{
		{"", "runs/handover.csv", []string{"runs/handover.png", "runs/handover.svg"}},
		{"", "handover", []string{"handover.png", "handover.svg"}},
		{"g", "a.jsonl", []string{"g.png", "g.svg"}},
		{"g.v2", "a.csv", []string{"g.v2.png", "g.v2.svg"}},
		{"graph.SVG", "a.csv", []string{"graph.SVG"}},
		{"graph.pdf", "a.csv", []string{"graph.pdf"}},
	} {
		if got := plotOutputs(tc.out, tc.trace); !cmp.Equal(got, tc.want) {
			t.Errorf("plotOutputs(%q, %q) = %q, want %q", tc.out, tc.trace, got, tc.want)
		}
	}
}

func TestBuildIOGraph(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	link := func(ms, index int, dev string, rx, tx uint64) trace.Record {
		return trace.Record{Time: at(ms), Kind: trace.KindLink, IfIndex: index, Dev: dev, RxBytes: rx, TxBytes: tx}
	}
	event := func(ms int, dev string, e trace.Event, detail string) trace.Record {
		return trace.Record{Time: at(ms), Kind: trace.KindEvent, IfIndex: 2, Dev: dev, Event: e, Detail: detail}
	}
	// 1.25 MB in 100 ms is 100 Mbit/s.
	recs := []trace.Record{
		link(0, 1, "lo", 0, 0), link(0, 2, "wlan0", 0, 0), link(0, 3, "wwan0", 0, 0),
		link(100, 1, "lo", 0, 0), link(100, 2, "wlan0", 125_000, 1_250_000), link(100, 3, "wwan0", 0, 0),
		event(150, "wlan0", trace.EventNoCarrier, ""),
		event(152, "wlan0", trace.EventAddrRemoved, "10.1.1.2/24"),
		event(153, "wlan0", trace.EventNoCarrier, ""),
		link(200, 1, "lo", 0, 0), link(200, 3, "wwan0", 0, 625_000),
		{Time: at(250), Kind: trace.KindEvent, Event: trace.EventResync, Detail: "lost"},
		{Time: at(252), Kind: trace.KindEvent, Event: trace.EventNote, Detail: "AP2"},
		link(300, 1, "lo", 0, 0), link(300, 2, "wlan0", 125_000, 1_250_000), link(300, 3, "wwan0", 0, 1_250_000),
		link(400, 1, "lo", 0, 0), link(400, 2, "wlan0", 250_000, 2_500_000), link(400, 3, "wwan0", 0, 1_250_000),
		event(-500, "wwan0", trace.EventUp, ""), // out of order: the graph starts with it
	}
	wlan := func(y1, y2 float64) ioLine {
		return ioLine{dev: "wlan0", segments: []plotter.XYs{{{X: 0.5, Y: y1}, {X: 0.6, Y: y1}}, {{X: 0.8, Y: y2}, {X: 0.9, Y: y2}}}}
	}
	wwan := func(y1, y2, y3 float64) ioLine {
		return ioLine{dev: "wwan0", segments: []plotter.XYs{{{X: 0.5, Y: y1}, {X: 0.6, Y: y1}, {X: 0.7, Y: y2}, {X: 0.8, Y: y3}, {X: 0.9, Y: 0}}}}
	}
	allMarkers := []ioMarker{
		{x: 0, label: "wwan0 up"},
		{x: 0.65, label: "wlan0 no-carrier, wlan0 -10.1.1.2/24"},
		{x: 0.75, label: "resync (events lost), AP2"},
	}
	for _, tc := range []struct {
		direction string
		devs      []string
		want      ioGraph
	}{
		{"both", nil, ioGraph{start: at(-500), direction: "both", peak: 110,
			lines:   []ioLine{wlan(110, 110), wwan(0, 50, 50)},
			markers: allMarkers}},
		{"tx", nil, ioGraph{start: at(-500), direction: "tx", peak: 100,
			lines:   []ioLine{wlan(100, 100), wwan(0, 50, 50)},
			markers: allMarkers}},
		{"rx", nil, ioGraph{start: at(-500), direction: "rx", peak: 10,
			lines:   []ioLine{wlan(10, 10)},
			markers: allMarkers}},
		{"both", []string{"wwan0", "eth0"}, ioGraph{start: at(-500), direction: "both", peak: 50,
			lines:   []ioLine{wwan(0, 50, 50)},
			markers: []ioMarker{{x: 0, label: "wwan0 up"}, {x: 0.75, label: "resync (events lost), AP2"}}}},
	} {
		t.Run(tc.direction+strings.Join(tc.devs, ","), func(t *testing.T) {
			got, err := buildIOGraph(recs, tc.direction, tc.devs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(ioGraph{}, ioLine{}, ioMarker{}),
				cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
				t.Errorf("buildIOGraph (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEventLabel(t *testing.T) {
	for _, tc := range []struct {
		rec  trace.Record
		want string
	}{
		{trace.Record{Dev: "wlan0", Event: trace.EventCarrier}, "wlan0 carrier"},
		{trace.Record{Dev: "wlan0", Event: trace.EventDown}, "wlan0 down"},
		{trace.Record{IfIndex: 7, Event: trace.EventLinkRemoved}, "if7 removed"},
		{trace.Record{Dev: "usb0", Event: trace.EventLinkAdded}, "usb0 added"},
		{trace.Record{Dev: "wlan0", Event: trace.EventAddrAdded, Detail: "fd00::2/64"}, "wlan0 +fd00::2/64"},
		{trace.Record{Event: trace.EventResync, Detail: "no buffer space"}, "resync (events lost)"},
		{trace.Record{Event: trace.EventNote, Detail: "leave AP1"}, "leave AP1"},
	} {
		if got := eventLabel(&tc.rec); got != tc.want {
			t.Errorf("eventLabel(%+v) = %q, want %q", tc.rec, got, tc.want)
		}
	}
}

// TestPlotImages draws the recorded handover: the images decode, the SVG
// has the legend and the markers' labels.
func TestPlotImages(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args  string
		files []string
	}{
		{"-o " + dir + "/both", []string{"both.png", "both.svg"}},
		{"-o " + dir + "/tx.svg --direction tx --dev wlan0 --dev wwan0", []string{"tx.svg"}},
	} {
		code, stdout, stderr, _ := run(t, testBackend(), "plot "+handoverTrace+" "+tc.args)
		if code != 0 || stdout != "" || stderr != "" {
			t.Fatalf("plot %s: exit %d, stdout %q, stderr %q", tc.args, code, stdout, stderr)
		}
		for _, name := range tc.files {
			checkImage(t, filepath.Join(dir, name), "wlan0", "wwan0", "wlan0 no-carrier", "wlan0 carrier")
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tx.png")); err == nil {
		t.Errorf("-o tx.svg wrote tx.png too")
	}
}

// TestMarkerLabel: a note names its marker instead of the link events
// near it; a resync stays.
func TestMarkerLabel(t *testing.T) {
	ev := func(dev string, e trace.Event, detail string) trace.Record {
		r := trace.Record{Kind: trace.KindEvent, Dev: dev, Event: e, Detail: detail}
		if dev != "" {
			r.IfIndex = 2
		}
		return r
	}
	for _, tc := range []struct {
		events []trace.Record
		want   string
	}{
		{[]trace.Record{ev("wlan0", trace.EventNoCarrier, ""), ev("wlan0", trace.EventAddrRemoved, "10.1.1.2/24"), ev("wlan0", trace.EventNoCarrier, "")},
			"wlan0 no-carrier, wlan0 -10.1.1.2/24"},
		{[]trace.Record{ev("wlan0", trace.EventNoCarrier, ""), ev("", trace.EventNote, "leave AP1"), ev("wwan0", trace.EventNoCarrier, "")},
			"leave AP1"},
		{[]trace.Record{ev("", trace.EventNote, "AP2"), ev("wlan0", trace.EventCarrier, ""), ev("", trace.EventResync, "lost"), ev("", trace.EventNote, "on Wi-Fi")},
			"AP2, resync (events lost), on Wi-Fi"},
	} {
		if got := markerLabel(tc.events); got != tc.want {
			t.Errorf("markerLabel = %q, want %q", got, tc.want)
		}
	}
}

// TestPlotLongLabel: a marker's label longer than the graph is high is
// cut, and leaves the graph its size (gonum/plot made it NaN).
func TestPlotLongLabel(t *testing.T) {
	long := strings.Repeat("a step of the walk with a long name, ", 8)
	g := ioGraph{direction: "both", peak: 50,
		lines:   []ioLine{{dev: "wlan0", segments: []plotter.XYs{{{X: 0, Y: 50}, {X: 1, Y: 50}}}}},
		markers: []ioMarker{{x: 0.5, label: long}}}
	p, err := g.plot("long")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "long.svg")
	if err := p.Save(plotWidth, plotHeight, file); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(data); strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Errorf("the SVG has NaN or Inf coordinates")
	}
	checkImage(t, file, shorten(long, markerLabelMax))
	if got := []rune(shorten(long, markerLabelMax)); len(got) != markerLabelMax || got[len(got)-1] != '…' {
		t.Errorf("shorten: %q", string(got))
	}
}

// checkImage decodes a PNG, or parses an SVG and looks for texts in it.
func checkImage(t *testing.T, file string, texts ...string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(file, ".png") {
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
			t.Errorf("%s: %v, want at least 400×200", file, b)
		}
		return
	}
	var root struct{ XMLName xml.Name }
	if err := xml.Unmarshal(data, &root); err != nil || root.XMLName.Local != "svg" {
		t.Fatalf("%s: root element %q, %v; want svg", file, root.XMLName.Local, err)
	}
	for _, s := range texts {
		if !strings.Contains(string(data), ">"+s+"<") {
			t.Errorf("%s: no text %q", file, s)
		}
	}
}

func TestPlotErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.csv", "time,kind,ifindex\n2026-03-14T09:26:53Z,link,0\n")
	idle := write("idle.csv", "time,kind,ifindex,dev,rx_bytes,tx_bytes\n"+
		"2026-03-14T09:26:53Z,link,1,lo,5,5\n2026-03-14T09:26:54Z,link,1,lo,5,5\n")
	one := write("one.csv", "time,kind,ifindex,dev,rx_bytes,tx_bytes\n2026-03-14T09:26:53Z,link,2,wlan0,5,5\n")
	empty := write("empty.csv", "")
	svg := write("trace.svg", "")
	runCommandCases(t, []commandCase{
		{line: "plot", code: ExitUsage, stderr: "Error: plot needs one TRACE file\n"},
		{line: "plot a b", code: ExitUsage, stderr: "Error: plot needs one TRACE file\n"},
		{line: "plot a --direction up", code: ExitUsage, stderr: "Error: --direction \"up\": both, tx or rx\n"},
		{line: "plot " + svg + " -o " + dir + "/trace", code: ExitUsage,
			stderr: "Error: plot would write over the trace " + svg + ": name another OUT with -o\n"},
		{line: "plot " + dir + "/missing.csv", code: ExitFailure,
			stderr: "Error: open " + dir + "/missing.csv: no such file or directory\n"},
		{line: "plot " + bad, code: ExitFailure,
			stderr: "Error: " + bad + ": trace: line 2: ifindex \"0\": not positive\n"},
		{line: "plot " + empty, code: ExitFailure, stderr: "Error: " + empty + ": no records\n"},
		{line: "plot " + idle, code: ExitFailure,
			stderr: "Error: " + idle + ": no interface carried anything (a rate needs two rounds)\n"},
		{line: "plot " + one, code: ExitFailure,
			stderr: "Error: " + one + ": no interface carried anything (a rate needs two rounds)\n"},
		{line: "plot " + handoverTrace + " --dev eth0 --dev usb0", code: ExitFailure,
			stderr: "Error: " + handoverTrace + ": none of eth0, usb0 carried anything (a rate needs two rounds)\n"},
	})
}
