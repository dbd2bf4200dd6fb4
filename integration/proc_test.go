package integration

// What the tests and benchmarks read of processes in /proc.

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpuTime is the user plus system CPU time the process has used.
func cpuTime(pid int) (time.Duration, error) { return procCPU(pid, false) }

// procCPU is a process's utime and stime from /proc/PID/stat, plus its
// waited-for children's (cutime, cstime) when withChildren.
func procCPU(pid int, withChildren bool) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	fields := f[11:13] // utime, stime: fields 14 and 15
	if withChildren {
		fields = f[11:15] // and cutime, cstime
	}
	var ticks int64
	for _, s := range fields {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("pid %d: /proc/PID/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / time.Duration(clockTicks()), nil
}

// procStat is /proc/PID/stat's fields after the command name (which may
// hold spaces): index 0 is field 3, the state.
func procStat(pid int) ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return nil, fmt.Errorf("pid %d: unexpected /proc/PID/stat %q", pid, data)
	}
	f := strings.Fields(string(data)[i+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("pid %d: unexpected /proc/PID/stat %q", pid, data)
	}
	return f, nil
}

// clockTicks is the unit of /proc/PID/stat times (sysconf(_SC_CLK_TCK),
// which golang.org/x/sys/unix does not offer on Linux): getconf's answer,
// or USER_HZ's usual 100.
var clockTicks = sync.OnceValue(func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
		return n
	}
	return 100
})

// vmRSS reads a process's resident set size in KiB from /proc.
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

// children are the processes pid forked (pid is single-threaded).
func children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// running reports whether pid exists and has not exited (a zombie has:
// init reaps it).
func running(pid int) bool {
	f, err := procStat(pid)
	return err == nil && f[0] != "Z"
}
