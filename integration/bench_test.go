package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// BenchmarkCLI runs the same commands through ip (the anchor) and mptcpctl
// in one namespace holding a full table of 8 endpoints, so `make bench`
// prints both side by side: wall time per command, fork and exec included,
// as a user or a script sees it. (Peak RSS of such short runs is not
// reported: Linux counts the forked test process's pages before exec in
// the child's ru_maxrss.)
func BenchmarkCLI(b *testing.B) {
	ns := nstest.New(b)
	ns.MustRun("ip", "link", "add", "bench0", "type", "veth", "peer", "name", "bench1")
	for i := 1; i <= 8; i++ {
		ns.MustRun("ip", "addr", "add", fmt.Sprintf("10.88.0.%d/24", i), "dev", "bench0")
		ns.MustRun("ip", "mptcp", "endpoint", "add", fmt.Sprintf("10.88.0.%d", i), "dev", "bench0", "subflow")
	}
	tools := []mptcpTool{ipTool, requireMptcpctl(b)}
	cmds := []struct {
		name string
		json bool
		args []string
	}{
		{"endpoint-show", false, []string{"endpoint", "show"}},
		{"endpoint-show-json", true, []string{"endpoint", "show"}},
		{"limits-show", false, []string{"limits", "show"}},
		{"endpoint-show-id", false, []string{"endpoint", "show", "id", "5"}},
	}
	for _, c := range cmds {
		for _, tl := range tools {
			b.Run(c.name+"/"+tl.name, func(b *testing.B) {
				for b.Loop() {
					if err := benchRun(tl, ns.Name, c.json, c.args); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchRun runs one command to completion.
func benchRun(tl mptcpTool, ns string, json bool, args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := tl.command(ctx, ns, json, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// BenchmarkMonitorIdleRSS starts `ip mptcp monitor` and `mptcpctl monitor`
// in a namespace and reports each one's resident memory once subscribed.
func BenchmarkMonitorIdleRSS(b *testing.B) {
	ns := nstest.New(b)
	for _, tl := range []mptcpTool{ipTool, requireMptcpctl(b)} {
		b.Run(tl.name, func(b *testing.B) {
			var rss int64
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
				cmd := tl.command(ctx, ns.Name, false, "monitor")
				if err := cmd.Start(); err != nil {
					cancel()
					b.Fatal(err)
				}
				// Subscribed and idle: the steady state a watching admin
				// leaves running.
				time.Sleep(200 * time.Millisecond)
				kb, err := vmRSS(cmd.Process.Pid)
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				rss = max(rss, kb)
			}
			b.ReportMetric(float64(rss), "RSS-KiB")
		})
	}
}
