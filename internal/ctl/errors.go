package ctl

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Exit statuses, chosen to be those `ip mptcp` (iproute2 6.1) returns in the
// same situation, so that scripts written for ip keep working.
const (
	ExitOK = 0
	// ExitFailure: a word of an endpoint command is not an address (ip's
	// get_addr; the userspace commands call that a usage error), or MPTCP or
	// netlink is not available; for the policy commands, a file cannot be
	// read or is invalid.
	// For the daemon commands: the daemon refused or failed the request,
	// or may not be asked (permission).
	ExitFailure = 1
	// ExitKernel: the kernel refused the request; its message is printed.
	// (Also `endpoint change` with neither id nor address, which ip leaves
	// to the kernel to refuse.)
	ExitKernel = 2
	// ExitNoDaemon: a daemon command found no mptcpd in the namespace (as
	// LSB's "program is not running").
	ExitNoDaemon = 3
	// ExitListen: the event stream failed while monitoring (monitor,
	// events).
	ExitListen = 254
	// ExitUsage: unknown command, bad or missing argument, a namespace that
	// cannot be opened, no permission to subscribe to events (ip: exit(-1)).
	ExitUsage = 255
)

// exitCodesHelp documents the statuses in the command help.
const exitCodesHelp = `Exit status (as ip mptcp):
  0    success
  1    a word is not an address; MPTCP or netlink unavailable; policy:
       a file cannot be read or is invalid (every error is printed);
       status, explain, events, reload: the daemon refused the request
       (a reload with a bad file) or may not be asked (permission)
  2    the kernel refused the request (its message is printed)
  3    status, explain, events, reload: no mptcpd runs in the namespace
  254  the event stream failed (monitor, events)
  255  usage error (unknown command, bad or missing argument; for the
       userspace commands a bad address too), the namespace cannot be
       opened, events cannot be subscribed to`

// ExitError is an error with the exit status it must produce. Its message is
// printed on stderr as is.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// invalidArgError is iproute2's invarg(msg, arg): the word arg is wrong.
func invalidArgError(msg, arg string) error {
	return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Error: argument %q is wrong: %s", arg, msg)}
}

// missingArgError is iproute2's missarg(key).
func missingArgError(key string) error {
	return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Error: argument %q is required", key)}
}

// incompleteError is iproute2's incomplete_command(), naming the keyword
// whose value is missing.
func incompleteError(keyword string) error {
	return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Command line is not complete: %q needs a value. Try \"mptcpctl help\".", keyword)}
}

// unknownCommandError is ip's message for a command word it does not know.
func unknownCommandError(word string) error {
	return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Command %q is unknown, try \"mptcpctl help\".", word)}
}

// notAddressError is iproute2's get_addr failure, which exits 1.
func notAddressError(word string) error {
	return &ExitError{Code: ExitFailure, Msg: fmt.Sprintf("Error: any valid address is expected rather than %q.", word)}
}

// kernelError turns an error of the mptcp client into ip's report: the
// kernel's extended-ack text as "Error: TEXT.", else the errno as
// "RTNETLINK answers: TEXT", with exit status 2. Errors that did not come
// from the kernel (no MPTCP, socket failures) exit 1.
func kernelError(err error) error {
	var ke *mptcp.Error
	if !errors.As(err, &ke) {
		return &ExitError{Code: ExitFailure, Msg: "Error: " + err.Error()}
	}
	if ke.Message != "" {
		msg := ke.Message
		if !strings.HasSuffix(msg, ".") {
			msg += "."
		}
		return &ExitError{Code: ExitKernel, Msg: "Error: " + msg}
	}
	return &ExitError{Code: ExitKernel, Msg: "RTNETLINK answers: " + strerror(ke.Errno)}
}

// strerror approximates glibc's strerror: Go's errno texts are glibc's with
// the first letter lowered.
func strerror(errno interface{ Error() string }) string {
	s := errno.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}
