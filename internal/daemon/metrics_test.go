package daemon

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/golden"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// The metrics over the engine and the fake kernel, read as a scraper
// reads them: the endpoint's text, checked against golden files.

// fakeLister is the in-kernel mode's connection list.
type fakeLister struct {
	conns []mptcpdiag.Connection
	err   error
	calls atomic.Int32
}

func (l *fakeLister) Connections() ([]mptcpdiag.Connection, error) {
	l.calls.Add(1)
	return l.conns, l.err
}

// withMetrics gives r's engine metrics over its control plane (serve
// first), listing connections at every scrape.
func (r *engineRig) withMetrics(lister *fakeLister) *metrics {
	m := newMetrics("v-test", r.e.ctl, lister, r.e.log)
	if lister == nil {
		m.lister = nil // no typed nil: the userspace mode has none
	}
	m.connEvery = 0
	r.e.metrics = m
	return m
}

// scrapeAll is the endpoint's answer to a scrape.
func scrapeAll(t *testing.T, m *metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, metricsPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// scrape is scrapeAll cut down to the daemon's own metrics, with the Go
// version and the lag's buckets and sum (timings) left out.
func scrape(t *testing.T, m *metrics) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(scrapeAll(t, m), "\n") {
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if !strings.HasPrefix(name, "mptcpd_") || strings.HasPrefix(name, "mptcpd_event_lag_seconds_bucket") ||
			strings.HasPrefix(name, "mptcpd_event_lag_seconds_sum") {
			continue
		}
		b.WriteString(strings.ReplaceAll(line, runtime.Version(), "GOVERSION") + "\n")
	}
	return b.String()
}

// waitScrape scrapes until every one of lines is in the answer, and
// returns it.
func waitScrape(t *testing.T, m *metrics, lines ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := scrape(t, m)
		missing := ""
		for _, l := range lines {
			if !strings.Contains(got, "\n"+l+"\n") {
				missing = l
				break
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the scrape:\n%s", missing, got)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMetricsInKernel(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.serve(t)
	lister := &fakeLister{conns: []mptcpdiag.Connection{
		{Local: netip.MustParseAddrPort("[2001:db8::1]:40000"), State: mptcpdiag.StateEstablished, Subflows: []mptcpdiag.Subflow{
			{Local: netip.MustParseAddrPort("[2001:db8::1]:40000")},
			{Local: netip.MustParseAddrPort("[2001:db8::1]:40001"), IfIndex: 2},
		}},
		{Local: netip.MustParseAddrPort("203.0.113.9:5000"), State: mptcpdiag.StateFinWait1}, // on no known link
		{Local: netip.MustParseAddrPort("[::]:80"), State: mptcpdiag.StateListen},
	}}
	m := r.withMetrics(lister)
	l := r.run(t, nil)

	l.events <- link(2, "test0")
	l.events <- addr(netmon.OpNew, 2, "192.0.2.1/24")
	l.events <- netmon.Synced{}
	waitScrape(t, m, `mptcpd_endpoints{flags="subflow",interface="test0"} 1`, "mptcpd_event_lag_seconds_count 1")

	// A failed add, retried by a pass of the retry timer: not an event's.
	r.k.FailNext(mptcp.MPTCP_PM_CMD_ADD_ADDR, syscall.ENOMEM)
	l.events <- addr(netmon.OpNew, 2, "2001:db8::1/64")
	waitScrape(t, m, `mptcpd_endpoints{flags="subflow",interface="test0"} 2`, "mptcpd_event_lag_seconds_count 2")

	l.events <- addr(netmon.OpDel, 2, "192.0.2.1/24")
	waitScrape(t, m, `mptcpd_reconcile_operations_total{kind="delete"} 1`, "mptcpd_event_lag_seconds_count 3")

	// Lost events: a full pass, whose dump fails, then the retry's.
	r.k.FailNext(mptcp.MPTCP_PM_CMD_GET_ADDR, syscall.EIO)
	l.events <- netmon.ResyncNeeded{Reason: syscall.ENOBUFS}
	l.events <- netmon.Synced{}
	waitFor(t, "the retry after the failed dump", func() bool { return r.e.ctl.snap.Load().counters.Retries == 2 })
	got := waitScrape(t, m, `mptcpd_reconcile_errors_total{kind="dump"} 1`, "mptcpd_event_lag_seconds_count 4")
	golden.Check(t, filepath.Join("testdata", "metrics-inkernel.golden"), []byte(got))

	all := scrapeAll(t, m)
	for _, want := range []string{"\ngo_goroutines ", "\nprocess_start_time_seconds "} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in the scrape: the Go and process collectors are missing", strings.TrimSpace(want))
		}
	}
}

func TestMetricsUserspace(t *testing.T) {
	s := testSettings(t, subflowPolicy)
	r, _ := userspaceRig(t, s)
	k := r.k
	m := r.withMetrics(nil)
	l := r.run(t, nil)

	l.twoLinks("test1")
	waitScrape(t, m, `mptcpd_endpoints{flags="subflow",interface="test1"} 1`)
	// sspi opens a subflow from test1; the fake kernel establishes it.
	k.Inject(userspacetest.OpenEvents(0x7ab06eec, netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("203.0.113.1:443"), false)...)
	got := waitScrape(t, m, `mptcpd_subflows{interface="test1"} 1`)
	golden.Check(t, filepath.Join("testdata", "metrics-userspace.golden"), []byte(got))
}

// However often a scraper asks, the connections are listed at most every
// connEvery; a listing that fails leaves them out and is logged once.
func TestMetricsConnectionsBounded(t *testing.T) {
	var logged bytes.Buffer
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.e.log = slog.New(slog.NewTextHandler(&logged, nil))
	r.serve(t)
	lister := &fakeLister{conns: []mptcpdiag.Connection{{Local: netip.MustParseAddrPort("192.0.2.1:1"), State: mptcpdiag.StateEstablished}}}
	m := r.withMetrics(lister)
	m.connEvery = time.Hour
	for range 3 {
		if got := scrape(t, m); !strings.Contains(got, `mptcpd_connections{interface=""} 1`) {
			t.Fatalf("scrape without the connection:\n%s", got)
		}
	}
	if n := lister.calls.Load(); n != 1 {
		t.Errorf("3 scrapes listed the connections %d times, want once", n)
	}

	failing := &fakeLister{err: errors.New("mptcp_diag: not supported")}
	m = r.withMetrics(failing)
	for range 3 {
		if got := scrape(t, m); strings.Contains(got, "mptcpd_connections{") || strings.Contains(got, "mptcpd_subflows{") {
			t.Errorf("connections counted though listing them failed:\n%s", got)
		}
	}
	if n := strings.Count(logged.String(), "cannot list the connections"); n != 1 || failing.calls.Load() != 3 {
		t.Errorf("listing tried %d times, logged %d times, want 3 and 1:\n%s", failing.calls.Load(), n, logged.String())
	}
}

func TestMetricsPeriodicResync(t *testing.T) {
	r := newEngineRig(t, testSettings(t, subflowPolicy))
	r.e.settings.conf.ResyncInterval = time.Millisecond
	r.serve(t)
	m := r.withMetrics(nil)
	l := r.run(t, nil)
	l.events <- link(2, "test0")
	l.events <- netmon.Synced{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := scrape(t, m)
		_, after, _ := strings.Cut(got, "\n"+`mptcpd_resyncs_total{reason="periodic"} `)
		if n, err := strconv.Atoi(strings.SplitN(after, "\n", 2)[0]); err == nil && n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 periodic resyncs counted in 10s of 1ms:\n%s", got)
		}
		time.Sleep(time.Millisecond)
	}
}

// A new metrics-listen is not taken at reload: the running endpoint stays
// and the log says a restart is needed.
func TestMetricsListenReload(t *testing.T) {
	var logged bytes.Buffer
	s := testSettings(t, subflowPolicy)
	s.conf.MetricsListen = "127.0.0.1:9257"
	r := newEngineRig(t, s)
	r.e.log = slog.New(slog.NewTextHandler(&logged, nil))
	resync := time.NewTicker(time.Hour)
	defer resync.Stop()
	err := r.e.reload(func() (*settings, error) {
		s := testSettings(t, subflowPolicy)
		s.conf.MetricsListen = "[::1]:9257"
		return s, nil
	}, resync)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.e.settings.conf.MetricsListen; got != "127.0.0.1:9257" {
		t.Errorf("metrics-listen %q after the reload, want the running 127.0.0.1:9257", got)
	}
	if !strings.Contains(logged.String(), `level=WARN msg="metrics-listen changes take effect at restart" metrics_listen=[::1]:9257`) {
		t.Errorf("log:\n%s", logged.String())
	}
}

func TestErrKind(t *testing.T) {
	for op, want := range map[string]string{
		"add": "add", "delete": "delete", "set flags": "set_flags", "read limits": "limits", "set limits": "limits",
		"save state": "save_state", "reticulate splines": "other",
	} {
		if got := errKind(op); got != want {
			t.Errorf("errKind(%q) = %q, want %q", op, got, want)
		}
	}
}
