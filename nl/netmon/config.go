package netmon

import "log/slog"

// DefaultReceiveBufferSize is the receive buffer of the notification
// socket when Config.ReceiveBufferSize is 0. rtnetlink accounts roughly a
// kilobyte per small message, so the kernel's default (net.core.rmem_default,
// usually 208 KiB) overruns after a few hundred queued changes.
const DefaultReceiveBufferSize = 4 << 20

// Config configures Start and Snapshot.
type Config struct {
	// NetNS is the network namespace to watch, as a descriptor (for
	// example nl/netns Handle.FD()); 0 is the namespace of the calling
	// thread at Start (or Snapshot). The monitor uses its own duplicate,
	// so the caller may close its descriptor once Start returns, and
	// creates every socket inside that namespace, also when it
	// re-subscribes later from another thread.
	NetNS int

	// Logger gets warnings (lost events, failed re-subscriptions,
	// malformed messages) and debug details; nil discards them.
	Logger *slog.Logger

	// ReceiveBufferSize is the receive buffer of the notification socket
	// in bytes, 0 for DefaultReceiveBufferSize. With CAP_NET_ADMIN it may
	// exceed net.core.rmem_max (SO_RCVBUFFORCE); without, the kernel caps
	// it there. A larger buffer makes ResyncNeeded rarer in bursts.
	ReceiveBufferSize int
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c Config) receiveBufferSize() int {
	if c.ReceiveBufferSize == 0 {
		return DefaultReceiveBufferSize
	}
	return c.ReceiveBufferSize
}
