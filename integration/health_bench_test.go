package integration

import (
	"fmt"
	"net"
	"os"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// BenchmarkPathHealthLoad measures what path health costs a daemon that
// holds many connections over two paths, a gateway's load: the daemon's
// CPU share while HEALTH_BENCH_CONNS (default 2000) idle MPTCP
// connections stay open, with path health off (the anchor) and at its
// default, in the same run.
func BenchmarkPathHealthLoad(b *testing.B) {
	conns := envCount(b, "HEALTH_BENCH_CONNS", 2000)
	rows := []struct {
		name  string
		extra []string
		share float64
	}{
		{"path-health=off", []string{"--path-health=off"}, -1},
		{"path-health=100ms", nil, -1},
	}
	for i := range rows {
		b.Run(rows[i].name, func(b *testing.B) {
			for b.Loop() {
				rows[i].share = healthLoadShare(b, conns, rows[i].extra)
			}
			b.ReportMetric(rows[i].share, "%CPU")
		})
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "mptcpd-go, %d idle connections over two paths\tdaemon CPU, %% of a core\n", conns)
	for _, r := range rows {
		if r.share < 0 {
			fmt.Fprintf(w, "%s\tnot measured\n", r.name)
			continue
		}
		fmt.Fprintf(w, "%s\t%.1f\n", r.name, r.share)
	}
	_ = w.Flush()
}

// healthLoadMeasure is how long the daemon's CPU time is read over, once
// the connections are up and their subflows joined.
const healthLoadMeasure = 10 * time.Second

// healthLoadShare opens conns connections from a client namespace with
// two links, under our daemon started with extra flags, and returns the
// daemon's CPU share while they stay open and idle.
func healthLoadShare(b *testing.B, conns int, extra []string) float64 {
	cli, srv := nstest.New(b), nstest.New(b)
	for i, l := range []string{"hl0", "hl1"} {
		nstest.Veth(b, cli, l, srv, fmt.Sprintf("hs%d", i))
		cli.MustRun("ip", "addr", "add", fmt.Sprintf("10.6%d.0.1/24", i+1), "dev", l)
		srv.MustRun("ip", "addr", "add", fmt.Sprintf("10.6%d.0.2/24", i+1), "dev", fmt.Sprintf("hs%d", i))
		cli.MustRun("ip", "route", "add", "default", "via", fmt.Sprintf("10.6%d.0.2", i+1), "dev", l, "metric", fmt.Sprint(100*(i+1)))
	}
	srv.MustRun("ip", "mptcp", "limits", "set", "subflow", "8", "add_addr_accepted", "8")
	prepareChurn(b, cli)
	echoServe(b, srv, "10.61.0.2:7000")
	f := newMptcpdFiles(b, "match name=hl*\n    flags subflow\n")
	d := startDaemon(b, cli, "mptcpd-go", append(f.argv(requireMptcpd(b)), extra...))
	pm, err := mptcp.Dial(&mptcp.Config{NetNS: cli.Handle().FD()})
	if err != nil {
		b.Fatal(err)
	}
	defer pm.Close()
	if !waitFor(startTimeout, func() bool { eps, err := pm.Endpoints(); return err == nil && len(eps) == 2 }) {
		b.Fatalf("%s: no endpoints on both links after %v", cli, startTimeout)
	}

	var open []*net.TCPConn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	err = netns.DoFD(cli.Handle().FD(), func() error {
		for range conns {
			c, _, err := echoDial("10.61.0.2:7000")
			if err != nil {
				return err
			}
			open = append(open, c)
		}
		return nil
	})
	if err != nil {
		b.Fatalf("%s: connection %d of %d: %v", cli, len(open)+1, conns, err)
	}
	// Every connection joins over hl1, so that there are two paths
	// with conns subflows each.
	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: cli.Handle().FD()})
	if err != nil {
		b.Fatal(err)
	}
	defer diag.Close()
	joined := func() int {
		cs, err := diag.Connections()
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, c := range cs {
			if len(c.Subflows) == 2 {
				n++
			}
		}
		return n
	}
	if !waitFor(startTimeout, func() bool { return joined() == conns }) {
		b.Fatalf("%s: %d of %d connections with two subflows after %v", cli, joined(), conns, startTimeout)
	}
	pid := d.cmd.Process.Pid
	cpu0, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(healthLoadMeasure)
	cpu1, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	return 100 * float64(cpu1-cpu0) / float64(healthLoadMeasure)
}
