package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/internal/golden"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm/health"
)

// withHealth gives r's engine path health fed by hand: the test sends
// the samples the sampler goroutine would.
func (r *engineRig) withHealth(cfg health.Config) chan<- healthSample {
	h := newHealthWatch(cfg, slog.New(slog.DiscardHandler))
	h.samples = make(chan healthSample)
	r.e.health = h
	return h.samples
}

// healthSub is a subflow from local with tcp_info ti.
func healthSub(local string, ti mptcpdiag.TCPInfo) mptcpdiag.Subflow {
	return mptcpdiag.Subflow{Local: netip.MustParseAddrPort(local), State: ti.State, TCP: ti}
}

var (
	subBusy = mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 204 * time.Millisecond, Unacked: 20, LastAckRecv: time.Millisecond}
	subIdle = mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 204 * time.Millisecond, LastAckRecv: 3 * time.Second}
	subDead = mptcpdiag.TCPInfo{State: mptcpdiag.StateEstablished, RTO: 408 * time.Millisecond, Backoff: 1, Retransmits: 1,
		Unacked: 2, LastAckRecv: 450 * time.Millisecond}
)

// A path that stops delivering loses its endpoint, which comes back on
// probation after the hold and stays once a subflow proves the path; the
// control socket and the metrics show each verdict.
func TestEngineHealth(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	c := r.serve(t)
	m := r.withMetrics(&fakeLister{})
	samples := r.withHealth(health.Config{Hold: 300 * time.Millisecond})
	l := r.run(t, nil)
	w := watchEvents(t, r.e.ctl)

	l.twoLinks("test1")
	r.waitFor(t, "both endpoints", hasAddrs("192.0.2.1/subflow", "198.51.100.1/subflow"))
	if !r.e.health.wanted.Load() {
		t.Fatal("two paths, and the sampler is not asked to sample")
	}

	conn := func(subs ...mptcpdiag.Subflow) []mptcpdiag.Connection {
		return []mptcpdiag.Connection{{State: mptcpdiag.StateEstablished, Subflows: subs}}
	}
	samples <- healthSample{at: time.Now(), conns: conn(healthSub("192.0.2.1:40000", subBusy), healthSub("198.51.100.1:40001", subIdle))}
	failedAt := time.Now()
	samples <- healthSample{at: failedAt, conns: conn(healthSub("192.0.2.1:40000", subDead), healthSub("198.51.100.1:40001", subIdle))}
	r.waitFor(t, "test0's endpoint withdrawn", hasAddrs("198.51.100.1/subflow"))

	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	var test0 control.Link
	for _, ln := range st.Links {
		if ln.Name == "test0" {
			test0 = ln
		}
	}
	if test0.Usable || !strings.HasPrefix(test0.Why, "path health: no ACK for 450ms") || test0.Health == nil || test0.Health.State != "failed" {
		t.Fatalf("status of test0: %+v (health %+v)", test0, test0.Health)
	}
	// The verdict, then what it did.
	w.waitText(t, "path test0 failed: no ACK for 450ms on 1 of 1 subflows, after 1 retransmission timeout; probation in 300ms",
		"endpoint deleted 192.0.2.1")

	// Held down: samples before the hold ends change nothing.
	samples <- healthSample{at: failedAt.Add(200 * time.Millisecond), conns: conn(healthSub("198.51.100.1:40001", subBusy))}
	samples <- healthSample{at: failedAt.Add(300 * time.Millisecond), conns: conn(healthSub("198.51.100.1:40001", subBusy))}
	r.waitFor(t, "test0 back on probation", hasAddrs("192.0.2.1/subflow", "198.51.100.1/subflow"))
	w.waitText(t, "path test0 probation: held down for 300ms")

	samples <- healthSample{at: failedAt.Add(400 * time.Millisecond), conns: conn(healthSub("192.0.2.1:40002", subBusy), healthSub("198.51.100.1:40001", subBusy))}
	w.waitText(t, "path test0 healthy: an ACK came on the path")
	for _, ev := range w.events() {
		if strings.HasPrefix(ev.Text, "path ") && (ev.Kind != control.KindHealth || ev.Link != "test0") {
			t.Errorf("event %+v", ev)
		}
	}
	got := waitScrape(t, m, `mptcpd_path_health{interface="test0",state="healthy"} 1`, `mptcpd_path_health_changes_total{state="failed"} 1`)
	var lines []string
	for _, line := range strings.Split(got, "\n") {
		if strings.Contains(line, "mptcpd_path_health") {
			lines = append(lines, line)
		}
	}
	golden.Check(t, filepath.Join("testdata", "metrics-health.golden"), []byte(strings.Join(lines, "\n")+"\n"))
}

// With one path there is nothing to choose: no sampling, no verdict.
func TestEngineHealthOnePath(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	samples := r.withHealth(health.Config{})
	l := r.run(t, nil)
	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	r.waitFor(t, "the endpoint", hasAddrs("192.0.2.1/subflow"))
	if r.e.health.wanted.Load() {
		t.Error("one path, and the sampler is asked to sample")
	}
	dead := []mptcpdiag.Connection{{State: mptcpdiag.StateEstablished, Subflows: []mptcpdiag.Subflow{healthSub("192.0.2.1:40000", subDead)}}}
	samples <- healthSample{at: time.Now(), conns: dead}
	samples <- healthSample{at: time.Now(), conns: dead} // the loop took the first
	if eps := r.k.Endpoints(); len(eps) != 1 {
		t.Fatalf("the only path's endpoint went: %v", eps)
	}
}

// The sampler lists nothing while samples are not wanted, and lists at
// once, not a period later, when they are wanted again.
func TestHealthSamplerIdle(t *testing.T) {
	h := newHealthWatch(health.Config{}, slog.New(slog.DiscardHandler))
	lists := make(chan struct{}, 16)
	list := func(mptcpdiag.States) ([]mptcpdiag.Connection, error) {
		lists <- struct{}{}
		return nil, nil
	}
	start := func(period time.Duration) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.sample(ctx, list, period)
		}()
		return func() {
			cancel()
			<-done
		}
	}
	stop := start(10 * time.Millisecond)
	select {
	case <-lists:
		t.Error("the sampler listed subflows while no sample was wanted")
	case <-time.After(100 * time.Millisecond):
	}
	stop()

	// A period of an hour: only the wake can make the next sample.
	defer start(time.Hour)()
	h.want(true)
	select {
	case <-lists:
	case <-time.After(5 * time.Second):
		t.Fatal("no sample within 5 s of samples being wanted again")
	}
	if s := <-h.samples; s.err != nil {
		t.Errorf("sample error %v", s.err)
	}
}

func TestNextSample(t *testing.T) {
	const period = 100 * time.Millisecond
	for _, c := range []struct {
		due, took, want time.Duration
	}{
		{0, time.Millisecond, period},                                    // cheap: the period
		{20 * time.Millisecond, time.Millisecond, 25 * time.Millisecond}, // a subflow due: then, with the slack
		{200 * time.Millisecond, time.Millisecond, period},               // due after the period: the period
		{0, 15 * time.Millisecond, 300 * time.Millisecond},               // thousands of connections: spaced
		{20 * time.Millisecond, 15 * time.Millisecond, 300 * time.Millisecond},
	} {
		if got := nextSample(period, c.due, c.took); got != c.want {
			t.Errorf("nextSample(%v, due %v, took %v) = %v, want %v", period, c.due, c.took, got, c.want)
		}
	}
}
