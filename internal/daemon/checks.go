package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// capNetAdmin is CAP_NET_ADMIN's bit in the capability sets.
const capNetAdmin = 12

// checkNetAdmin says plainly when the process may not change the
// endpoint table, before the kernel answers EPERM to the first write.
func checkNetAdmin(procStatus string) error {
	data, err := os.ReadFile(procStatus)
	if err != nil {
		return nil // cannot tell; the kernel will say
	}
	eff, ok := capEff(data)
	if !ok || eff&(1<<capNetAdmin) != 0 {
		return nil
	}
	return errors.New("mptcpd needs CAP_NET_ADMIN to program MPTCP endpoints: run it as root or give it the capability (the systemd unit does: AmbientCapabilities=CAP_NET_ADMIN)")
}

// capEff returns the effective capability set from /proc/PID/status.
func capEff(status []byte) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// networkManagers returns the pids of NetworkManager processes in the
// namespace whose net namespace link is ownNS ("net:[4026531840]"), or
// whose namespace cannot be read. NetworkManager 1.40+ programs MPTCP
// endpoints itself; two managers of one table fight.
func networkManagers(proc, ownNS string) []int {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != "NetworkManager" {
			continue
		}
		ns, err := os.Readlink(filepath.Join(proc, e.Name(), "ns", "net"))
		if err == nil && ns != ownNS {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// networkManagerWarning is the startup warning for networkManagers' result.
func networkManagerWarning(pids []int) string {
	if len(pids) == 0 {
		return ""
	}
	return fmt.Sprintf("NetworkManager (pid %d) runs in this network namespace and may program MPTCP endpoints too (connection.mptcp-flags); its endpoints are foreign and left alone, but set connection.mptcp-flags=disabled to let mptcpd decide", pids[0])
}
