package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
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

// vmRSS reads a process's resident set size in KiB from /proc.
// cpuTime is the user plus system CPU time the process has used
// (/proc/PID/stat utime and stime, in clock ticks of 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are plain.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data)[i+1:])
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("pid %d: unexpected /proc/PID/stat %q", pid, data)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("pid %d: /proc/PID/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
