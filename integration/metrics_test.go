package integration

// The daemon's Prometheus endpoint, served and scraped inside the
// daemon's namespace: an address added there shows up as an endpoint and
// an add operation, a connection as connections and subflows.

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// metricsAddr is where the daemon serves its metrics: a fixed port does,
// since each test's namespace is its own.
const metricsAddr = "127.0.0.1:9257"

// nsHTTPClient makes its connections inside ns, where the daemon's
// endpoint listens.
func nsHTTPClient(t *testing.T, ns *nstest.NS) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
		err = ns.Handle().Do(func() (err error) {
			var d net.Dialer
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: endpointTimeout}
}

// scrapeMetrics reads the daemon's metrics in the text format.
func scrapeMetrics(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s, %v\n%s", resp.Status, err, body)
	}
	return string(body)
}

// waitMetrics scrapes until every one of lines is in the answer; it fails
// when the daemon exits or endpointTimeout passes first.
func (d *mptcpd) waitMetrics(t *testing.T, c *http.Client, what string, lines ...string) string {
	t.Helper()
	var got, missing string
	waitFor(endpointTimeout, func() bool {
		got, missing = scrapeMetrics(t, c), ""
		for _, l := range lines {
			if !strings.Contains(got, "\n"+l+"\n") {
				missing = l
				break
			}
		}
		return missing == "" || d.proc.exited()
	})
	if missing != "" {
		var own []string
		for _, l := range strings.Split(got, "\n") {
			if strings.Contains(l, "mptcpd_") {
				own = append(own, l)
			}
		}
		t.Fatalf("%s: no %q in the metrics after %v (daemon exited: %v):\n%s", what, missing, endpointTimeout, d.proc.exited(), strings.Join(own, "\n"))
	}
	return got
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	d := startMptcpd(t, ns, wlanPolicy, "--metrics-listen="+metricsAddr)
	d.waitLog(t, startTimeout, 1, `msg="mptcpd started"`, "metrics="+metricsAddr)
	c := nsHTTPClient(t, ns)

	before := d.waitMetrics(t, c, "at start", `mptcpd_reconcile_operations_total{kind="add"} 0`)
	for _, want := range []string{"# HELP mptcpd_build_info ", "\ngo_goroutines ", "\nprocess_resident_memory_bytes "} {
		if !strings.Contains(before, want) {
			t.Errorf("at start: no %q in the metrics:\n%s", strings.TrimSpace(want), before)
		}
	}
	if strings.Contains(before, "mptcpd_endpoints{") {
		t.Errorf("at start: endpoints without an address:\n%s", before)
	}

	ipBatch(t, ns, "addr add 10.1.0.1/24 dev wlan0")
	d.waitEndpoints(t, "address added", ep("10.1.0.1", subflow, linkIndex(t, ns, "wlan0")))
	after := d.waitMetrics(t, c, "address added",
		`mptcpd_endpoints{flags="subflow",interface="wlan0"} 1`,
		`mptcpd_reconcile_operations_total{kind="add"} 1`,
		`mptcpd_reconcile_errors_total{kind="add"} 0`)
	const lag = "mptcpd_event_lag_seconds_count"
	if n, m := metricValue(before, lag), metricValue(after, lag); n < 0 || m <= n {
		t.Errorf("%s %v before the address, %v after: want the address's pass observed", lag, n, m)
	}

	// The in-kernel mode counts the kernel's connections at scrape time:
	// one over lo shows as its two ends (listed at most every 2s).
	ln := nlMptcpServer(t, ns.Handle())
	var conn net.Conn
	if err := ns.Handle().Do(func() (err error) {
		var dl net.Dialer
		dl.SetMultipathTCP(true)
		conn, err = dl.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatalf("MPTCP connection in %s: %v", ns, err)
	}
	defer conn.Close()
	d.waitMetrics(t, c, "connection open", `mptcpd_connections{interface="lo"} 2`, `mptcpd_subflows{interface="lo"} 2`)
}

// metricValue is the value of series (name{labels}) in a scrape, -1 when
// it has none.
func metricValue(scrape, series string) float64 {
	_, rest, ok := strings.Cut(scrape, "\n"+series+" ")
	if !ok {
		return -1
	}
	v, err := strconv.ParseFloat(strings.SplitN(rest, "\n", 2)[0], 64)
	if err != nil {
		return -1
	}
	return v
}
