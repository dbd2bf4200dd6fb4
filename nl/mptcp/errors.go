package mptcp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/mdlayher/netlink"
)

// ErrNotSupported is matched (errors.Is) by errors meaning the kernel lacks
// what was asked: no MPTCP, the family absent, a command unknown.
var ErrNotSupported = errors.New("not supported by this kernel")

// ErrEventsLost is matched by a Receive error meaning the kernel dropped
// events (socket buffer overrun); callers should resync from dumps.
var ErrEventsLost = errors.New("events lost")

// ErrMalformedEvent is matched by a Receive error meaning some event
// messages did not decode. Receive then returns the events that did
// together with the error; the listener stays usable. A consumer that
// tracks state should treat it like ErrEventsLost.
var ErrMalformedEvent = errors.New("malformed event")

// Error is a failed mptcp_pm request. Every kernel error the client returns
// is an *Error.
type Error struct {
	Op      string        // e.g. "add endpoint"
	Errno   syscall.Errno // the kernel's errno
	Message string        // the kernel's extended ack text, may be empty
}

// Error formats as "mptcp: OP: ERRNO TEXT[: MESSAGE]".
func (e *Error) Error() string {
	s := fmt.Sprintf("mptcp: %s: %v", e.Op, e.Errno)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// errnoENOTSUPP is the kernel-internal ENOTSUPP (524), which leaks to user
// space from some drivers and subsystems; it has no name in package syscall.
const errnoENOTSUPP = syscall.Errno(524)

// notFoundMessages are extended-ack texts with which the kernel reports a
// missing object under EINVAL instead of ENOENT (net/mptcp/pm_kernel.c,
// pm_netlink.c, pm_userspace.c): an unknown endpoint id, connection token or
// subflow.
var notFoundMessages = map[string]bool{
	"address not found":                   true,
	"address with specified id not found": true,
	"address with id 0 not found":         true,
	"subflow not found":                   true,
	"invalid token":                       true,
}

// isNotFoundMessage reports whether an EINVAL's text says something was
// missing: one of notFoundMessages, or 6.18's "address with id N not found".
func isNotFoundMessage(msg string) bool {
	if notFoundMessages[msg] {
		return true
	}
	n, ok := strings.CutPrefix(msg, "address with id ")
	if !ok {
		return false
	}
	n, ok = strings.CutSuffix(n, " not found")
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 8)
	return err == nil
}

// Is maps errnos onto the standard sentinels:
//
//   - EEXIST -> os.ErrExist
//   - ENOENT, ESRCH, ENODEV -> os.ErrNotExist; so does EINVAL when the
//     kernel's message says an endpoint, token or subflow was not found
//     (the in-kernel PM reports a missing endpoint id as EINVAL "address not
//     found")
//   - EPERM, EACCES -> os.ErrPermission
//   - EOPNOTSUPP (also what generic netlink returns for an unknown command),
//     ENOTSUPP, EPROTONOSUPPORT -> ErrNotSupported
//   - ENOBUFS -> ErrEventsLost (an overrun event socket)
func (e *Error) Is(target error) bool {
	switch target {
	case os.ErrExist:
		return e.Errno == syscall.EEXIST
	case os.ErrNotExist:
		switch e.Errno {
		case syscall.ENOENT, syscall.ESRCH, syscall.ENODEV:
			return true
		case syscall.EINVAL:
			return isNotFoundMessage(e.Message)
		}
	case os.ErrPermission:
		return e.Errno == syscall.EPERM || e.Errno == syscall.EACCES
	case ErrNotSupported:
		switch e.Errno {
		case syscall.EOPNOTSUPP, errnoENOTSUPP, syscall.EPROTONOSUPPORT:
			return true
		}
	case ErrEventsLost:
		return e.Errno == syscall.ENOBUFS
	}
	return false
}

// Unwrap returns Errno so errors.Is(err, syscall.EEXIST) works too.
func (e *Error) Unwrap() error { return e.Errno }

// wrapError turns an error from the netlink packages into this package's
// vocabulary so that no netlink type leaks to callers: anything carrying an
// errno becomes an *Error (keeping the extended ack message), a closed
// socket wraps net.ErrClosed, and anything else is flattened into text.
func wrapError(op string, err error) error {
	if err == nil {
		return nil
	}
	var msg string
	var oe *netlink.OpError
	if errors.As(err, &oe) {
		msg = oe.Message
	}
	if errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
		return closedError(op)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("mptcp: %s: %w", op, os.ErrDeadlineExceeded)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &Error{Op: op, Errno: errno, Message: msg}
	}
	return fmt.Errorf("mptcp: %s: %v", op, err)
}

// closedError is returned by every operation on a closed Client or
// EventListener.
func closedError(op string) error {
	return fmt.Errorf("mptcp: %s: %w", op, net.ErrClosed)
}
