package walk

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/golden"
	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/policy"
)

// TestSteps: the walk is the issue's, in order, every step after the
// first an event, and the names tell the steps apart in a trace.
func TestSteps(t *testing.T) {
	seen := map[string]bool{}
	for i, s := range steps {
		if seen[s.name] || strings.ContainsAny(s.name, "\n\r") {
			t.Errorf("step %d: name %q repeated or not one line", i, s.name)
		}
		seen[s.name] = true
		if (s.event == nil) != (i == 0) {
			t.Errorf("step %q: only the first step has no event", s.name)
		}
		if s.expect == "" || s.stay(&Config{Dwell: time.Second, BlackZone: time.Second, Outage: time.Second}) <= 0 {
			t.Errorf("step %q: no expectation or no stay", s.name)
		}
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.name)
	}
	want := "at AP1, leave AP1, AP2, new subnet, leave AP2, 4G black zone, out of the zone, AP3, new subnet, no link at all, AP4 and 4G back"
	if strings.Join(got, ", ") != want {
		t.Errorf("steps %q, want %q", strings.Join(got, ", "), want)
	}
}

// TestDemoPolicy: the policy the walk gives mptcpd parses back to itself,
// and classifies the testbed's links as the links they stand for.
func TestDemoPolicy(t *testing.T) {
	p := demoPolicy()
	back, err := policy.Parse("walk", []byte(p.Format()), policy.DefaultConfig().BaseSettings())
	if err != nil {
		t.Fatal(err)
	}
	if back.Source = p.Source; back.Format() != p.Format() {
		t.Errorf("parsed back:\n%s\nwant:\n%s", back.Format(), p.Format())
	}
	for name, want := range map[string]policy.Kind{"wlan0": policy.KindWiFi, "wwan0": policy.KindWWAN} {
		if k, ok := p.ClassifyName(name); !ok || k != want {
			t.Errorf("%s classified %v (%v), want %v", name, k, ok, want)
		}
	}
}

// TestPrint: the summary of a made-up walk.
func TestPrint(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	step := func(name string, bulk, echo time.Duration, wlan, wwan float64) StepReport {
		return StepReport{Name: name, BulkStall: bulk, EchoStall: echo, At: t0, End: t0.Add(time.Second),
			Tx: map[string]float64{"wlan0": wlan * 1e6, "wwan0": wwan * 1e6}}
	}
	rep := &Report{
		Steps: []StepReport{
			step("at AP1", 4200*time.Microsecond, 13*time.Millisecond, 50.04, 0),
			step("leave AP1", 50*time.Millisecond, 31*time.Millisecond, 0.1, 19.7),
			step("no link at all", 30*time.Second, 30001*time.Millisecond, 0, 0),
		},
		Bulk: testbed.Result{Sent: 147_400_000, Received: 147_400_000, Verified: 147_400_000, Survived: true},
		Echo: testbed.Result{Sent: 200_000, Received: 190_000, Verified: 190_000, Err: errors.New("laptop read: i/o timeout"),
			RTTs: []time.Duration{30 * time.Millisecond, 29 * time.Millisecond, 31 * time.Millisecond, 30 * time.Second}},
		Files: []string{"demo-out/walk.csv", "demo-out/walk.png"},
	}
	var b bytes.Buffer
	rep.Print(&b)
	golden.Check(t, "testdata/report.golden", b.Bytes())
	if rep.Survived() {
		t.Error("Survived with the interactive stream lost")
	}
	rep.Baseline = true
	b.Reset()
	rep.Print(&b)
	if !strings.Contains(b.String(), "the kernel alone") {
		t.Errorf("a baseline's summary does not say so:\n%s", b.String())
	}
}
