package integration

// Tests of internal/trace and `mptcpctl trace`/`plot` on the real kernel:
// a recording of a handover shows, in its numbers, the traffic leave the
// link that lost its carrier and come back, with the events between.

import (
	"bytes"
	"context"
	"encoding/xml"
	"image/png"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/ctl"
	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/internal/trace"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// TestTraceHandover: an upload over wlan0 with wwan0 as the backup; the
// sampler runs in the laptop's namespace while wlan0's AP goes away and
// comes back. From the trace's rates: wlan0 carries the upload, then
// wwan0 does, then wlan0 again (once its subflow retransmits); the carrier events are there, and each
// subflow is on the link of its address. `mptcpctl trace` records the
// same events, and `mptcpctl plot` draws images that decode.
func TestTraceHandover(t *testing.T) {
	const rate = 20e6
	tb := twoLinks(t, rate)
	if err := tb.StaticEndpoints(mptcp.FlagSubflow); err != nil {
		t.Fatal(err)
	}
	wlan, wwan := tb.Link("wlan0"), tb.Link("wwan0")
	setBackup(t, tb, wwan.Addr())

	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "handover.csv")
	sampled := startSampler(ctx, t, tb.Laptop, csvFile)
	// The command line's trace, beside it, until the test is done.
	jsonFile := filepath.Join(dir, "cli.jsonl")
	cliDone := make(chan int, 1)
	var cliErr bytes.Buffer
	go func() {
		cliDone <- ctl.Main([]string{"-n", tb.Laptop.Name, "trace", "--duration", "12s", "-o", jsonFile},
			ctl.Env{Stdout: os.Stdout, Stderr: &cliErr})
	}()

	f := startFlow(t, tb.Upload, testbed.FlowConfig{})
	waitSubflows(t, tb, 2)
	time.Sleep(2 * time.Second)
	lost := time.Now()
	if err := wlan.CarrierLoss(testbed.AtAP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	back := time.Now()
	if err := wlan.CarrierBack(testbed.AtAP); err != nil {
		t.Fatal(err)
	}
	// wlan0's subflow sends again at its next retransmission timeout,
	// which backed off during the loss: up to 3.2 s later.
	if !waitFor(8*time.Second, func() bool { return linkSending(t, tb, "wlan0", rate/2) }) {
		t.Fatal("wlan0 does not carry the upload 8 s after its carrier came back")
	}
	t.Logf("wlan0 carries the upload again %v after its carrier came back", time.Since(back).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	end := time.Now()
	mustSurvive(t, "upload", f)
	recs := sampled()

	series := trace.Rates(recs)
	for _, ph := range []struct {
		name     string
		from, to time.Time
		on, off  string // the link that carries the upload, the one that must not
	}{
		{"before the loss", lost.Add(-1500 * time.Millisecond), lost, "wlan0", "wwan0"},
		{"without wlan0", back.Add(-1500 * time.Millisecond), back, "wwan0", "wlan0"},
		{"wlan0 back", end.Add(-1500 * time.Millisecond), end, "wlan0", "wwan0"},
	} {
		on, off := meanTx(t, series, ph.on, ph.from, ph.to), meanTx(t, series, ph.off, ph.from, ph.to)
		t.Logf("%s: %s %.1f Mbit/s, %s %.1f Mbit/s", ph.name, ph.on, on/1e6, ph.off, off/1e6)
		if on < 0.5*rate || off > 0.1*on {
			t.Errorf("%s: %s sent %.1f Mbit/s and %s %.1f, want over %.0f and under a tenth of that",
				ph.name, ph.on, on/1e6, ph.off, off/1e6, 0.5*rate/1e6)
		}
	}
	checkEvents(t, "sampler", recs, lost, back)
	checkSubflowLinks(t, recs, map[string]string{wlan.Addr().String(): "wlan0", wwan.Addr().String(): "wwan0"})

	select {
	case code := <-cliDone:
		if code != 0 {
			t.Fatalf("mptcpctl trace: exit %d: %s", code, cliErr.String())
		}
	case <-ctx.Done():
		t.Fatal("mptcpctl trace --duration 12s still runs")
	}
	cliRecs := readTraceFile(t, jsonFile)
	checkEvents(t, "mptcpctl trace", cliRecs, lost, back)
	if cliErr.Len() > 0 {
		t.Errorf("mptcpctl trace warned: %s", cliErr.String())
	}

	checkPlot(t, csvFile, filepath.Join(dir, "handover"))
}

// linkSending reports whether the laptop's link dev sends at least rate
// bit/s, over 200 ms.
func linkSending(t *testing.T, tb *testbed.Testbed, dev string, rate float64) bool {
	before := linkState(t, tb.Laptop, dev).TxBytes
	time.Sleep(200 * time.Millisecond)
	return float64(linkState(t, tb.Laptop, dev).TxBytes-before)*8/0.2 >= rate
}

// setBackup makes the laptop's endpoint of addr a backup one.
func setBackup(t *testing.T, tb *testbed.Testbed, addr netip.Addr) {
	t.Helper()
	c, err := mptcp.Dial(&mptcp.Config{NetNS: tb.Laptop.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eps, err := c.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range eps {
		if e.Addr == addr {
			e.Flags |= mptcp.FlagBackup
			if err := c.SetEndpointFlags(e); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no endpoint of %s in %v", addr, eps)
}

// startSampler runs a sampler in ns, writing CSV to file, until ctx ends
// or the returned function, which reads the trace back, is called.
func startSampler(ctx context.Context, t *testing.T, ns *testbed.Namespace, file string) func() []trace.Record {
	t.Helper()
	s, err := trace.Start(ctx, trace.Config{NetNS: ns.FD(), Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx, trace.NewWriter(out, trace.FormatCSV)) }()
	return func() []trace.Record {
		stop()
		if err := <-done; err != nil {
			t.Fatalf("sampler: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("sampler: close: %v", err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		return readTraceFile(t, file)
	}
}

func readTraceFile(t *testing.T, file string) []trace.Record {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := trace.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// meanTx is the send rate of the link called dev over [from, to], from
// the trace's points inside it, in bit/s.
func meanTx(t *testing.T, series []trace.Series, dev string, from, to time.Time) float64 {
	t.Helper()
	var bits, secs float64
	for _, s := range series {
		if s.Kind != trace.KindLink || s.Dev != dev {
			continue
		}
		for _, p := range s.Points {
			if p.From.Before(from) || p.To.After(to) {
				continue
			}
			d := p.To.Sub(p.From).Seconds()
			bits += p.Tx * d
			secs += d
		}
	}
	if secs < 0.5*to.Sub(from).Seconds() {
		t.Fatalf("%s: the trace covers %.2f s of the %v from %s", dev, secs, to.Sub(from), from.Format("15:04:05.000"))
	}
	return bits / secs
}

// checkEvents: wlan0 lost its carrier within a second of lost, and got it
// back within a second of back.
func checkEvents(t *testing.T, who string, recs []trace.Record, lost, back time.Time) {
	t.Helper()
	for _, want := range []struct {
		ev trace.Event
		at time.Time
	}{{trace.EventNoCarrier, lost}, {trace.EventCarrier, back}} {
		found := false
		for _, r := range recs {
			if r.Kind == trace.KindEvent && r.Dev == "wlan0" && r.Event == want.ev &&
				!r.Time.Before(want.at) && r.Time.Before(want.at.Add(time.Second)) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s event of wlan0 within a second of %s", who, want.ev, want.at.Format("15:04:05.000"))
		}
	}
}

// checkSubflowLinks: every subflow record names the link of its local
// address (the wwan0 subflow is bound to it by its endpoint; the initial
// one is not bound, and found by its address).
func checkSubflowLinks(t *testing.T, recs []trace.Record, linkOf map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Kind != trace.KindSubflow {
			continue
		}
		local := r.Local.Addr().String()
		if want := linkOf[local]; r.Dev != want || r.IfIndex == 0 {
			t.Fatalf("subflow %v-%v recorded on link %d %q, want %q", r.Local, r.Remote, r.IfIndex, r.Dev, want)
		}
		seen[r.Dev] = true
	}
	if len(seen) != 2 {
		t.Errorf("subflows recorded on %v, want wlan0 and wwan0", seen)
	}
}

// checkPlot runs mptcpctl plot on the trace and decodes its images.
func checkPlot(t *testing.T, traceFile, out string) {
	t.Helper()
	var stderr bytes.Buffer
	if code := ctl.Main([]string{"plot", traceFile, "-o", out}, ctl.Env{Stdout: os.Stdout, Stderr: &stderr}); code != 0 {
		t.Fatalf("mptcpctl plot: exit %d: %s", code, stderr.String())
	}
	f, err := os.Open(out + ".png")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s.png: %v", out, err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("%s.png is %v", out, b)
	}
	data, err := os.ReadFile(out + ".svg")
	if err != nil {
		t.Fatal(err)
	}
	var root struct{ XMLName xml.Name }
	if err := xml.Unmarshal(data, &root); err != nil || root.XMLName.Local != "svg" {
		t.Errorf("%s.svg: root element %q, %v; want svg", out, root.XMLName.Local, err)
	}
	if !strings.Contains(string(data), "wlan0 no-carrier") {
		t.Errorf("%s.svg does not label the carrier loss", out)
	}
}
