package daemon

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"
)

// RunEndpoint is the body of an endpoint command (mptcpd-ssh,
// mptcpd-relay): parse its flags, then serve until SIGTERM or SIGINT. It
// returns the exit status: 64 (EX_USAGE) for bad flags, 1 when serving
// fails, 0 otherwise or when parse says there is nothing to serve (--help).
func RunEndpoint[O any](name string, stderr io.Writer, parse func() (opts O, exit bool, err error), serve func(context.Context, O) error) int {
	opts, exit, err := parse()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\nTry '%s --help' for more information.\n", name, err, name)
		return 64 // EX_USAGE
	}
	if exit {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The first signal starts a graceful stop (a relay drains its
	// connections); a second one kills at once, as the default action.
	context.AfterFunc(ctx, stop)
	if err := serve(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
