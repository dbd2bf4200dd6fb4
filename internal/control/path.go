package control

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SocketPath returns the control socket of a network namespace in dir
// (the daemon's state directory): netns-DEV-INO.sock, named like the
// state file (pm.StatePath) from the device and inode of the namespace,
// so that each namespace's daemon has its own. nsFD is an open namespace
// (nl/netns Handle.FD), or 0 for the calling thread's own.
func SocketPath(dir string, nsFD int) (string, error) {
	var st unix.Stat_t
	if nsFD == 0 {
		const own = "/proc/thread-self/ns/net"
		if err := unix.Stat(own, &st); err != nil {
			return "", fmt.Errorf("control: identify network namespace: stat %s: %w", own, err)
		}
	} else if err := unix.Fstat(nsFD, &st); err != nil {
		return "", fmt.Errorf("control: identify network namespace: fstat: %w", err)
	}
	return filepath.Join(dir, fmt.Sprintf("netns-%d-%d.sock", st.Dev, st.Ino)), nil
}
