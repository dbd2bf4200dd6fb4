//go:build !linux

package netmon

import (
	"context"
	"fmt"
	"runtime"
)

var errUnsupported = fmt.Errorf("netmon: not supported on %s (needs Linux rtnetlink)", runtime.GOOS)

// Monitor watches one network namespace; only Linux has one.
type Monitor struct{}

// Start fails: only Linux is supported.
func Start(context.Context, Config) (*Monitor, error) { return nil, errUnsupported }

// Events returns nil.
func (*Monitor) Events() <-chan Event { return nil }

// Close does nothing.
func (*Monitor) Close() error { return nil }

// Snapshot fails: only Linux is supported.
func Snapshot(context.Context, Config) (*State, error) { return nil, errUnsupported }
