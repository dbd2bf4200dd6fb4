// Package netns opens network namespaces by name, the way `ip -n NAME`
// finds them, so every netlink client in this module can work inside one.
package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where iproute2 keeps named namespaces (`ip netns add`).
const Dir = "/run/netns"

// Handle is an open network namespace. The zero Handle (and a nil *Handle)
// means "the caller's own namespace".
type Handle struct {
	f *os.File
}

// Open opens the namespace NAME as `ip -n NAME` does: a bare name is looked
// up under /run/netns; a path (containing '/') is opened as is, so
// /proc/PID/ns/net works too. An empty name returns a nil Handle.
func Open(name string) (*Handle, error) {
	if name == "" {
		return nil, nil
	}
	path := name
	if !strings.Contains(name, "/") {
		path = filepath.Join(Dir, name)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open network namespace %q: %w", name, err)
	}
	return &Handle{f: f}, nil
}

// FD returns the namespace's file descriptor, or 0 for the caller's own
// namespace (the convention of netlink.Config.NetNS).
func (h *Handle) FD() int {
	if h == nil || h.f == nil {
		return 0
	}
	return int(h.f.Fd())
}

// Close releases the descriptor; it is safe on a nil Handle.
func (h *Handle) Close() error {
	if h == nil || h.f == nil {
		return nil
	}
	return h.f.Close()
}

// Do runs fn on an OS thread moved into the namespace; see DoFD. On a nil
// Handle fn runs in the caller's namespace.
func (h *Handle) Do(fn func() error) error { return DoFD(h.FD(), fn) }

// DoFD runs fn on an OS thread moved into the namespace open as fd, so that
// sockets fn creates (and /proc/sys/net files it opens) belong to it, and
// moves the thread back afterwards. The thread must not stay behind: the
// process would then count as living in the namespace. Should the way back
// fail, the thread stays locked to its exiting goroutine and the runtime
// retires it rather than reuse it in the wrong namespace. fd 0 runs fn in
// the caller's namespace.
func DoFD(fd int, fn func() error) error {
	if fd == 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns back to the original namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
