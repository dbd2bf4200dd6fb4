package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"sync"
)

// NewLogger returns the daemon's logger for one of mptcpd.conf's log
// destinations: "stderr", "journal", "syslog" or "null". Info level unless
// debug; the daemon logs at info only what changes the kernel's state.
func NewLogger(dest string, debug bool, stderr io.Writer) (*slog.Logger, error) {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	switch dest {
	case "", "stderr":
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})), nil
	case "journal":
		// journald reads a "<N>" priority prefix on each line of a
		// service's stderr (sd-daemon(3)) and stamps the time itself.
		return slog.New(newLineHandler(level, func(l slog.Level, line []byte) error {
			_, err := fmt.Fprintf(stderr, "<%d>%s", syslogPriority(l), line)
			return err
		})), nil
	case "syslog":
		w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "mptcpd")
		if err != nil {
			return nil, fmt.Errorf("log=syslog: %w", err)
		}
		return slog.New(newLineHandler(level, func(l slog.Level, line []byte) error {
			msg := string(bytes.TrimSuffix(line, []byte("\n")))
			switch syslogPriority(l) {
			case 3:
				return w.Err(msg)
			case 4:
				return w.Warning(msg)
			case 6:
				return w.Info(msg)
			default:
				return w.Debug(msg)
			}
		})), nil
	case "null":
		return slog.New(slog.DiscardHandler), nil
	}
	return nil, fmt.Errorf("unknown log destination %q (want stderr, journal, syslog or null)", dest)
}

// syslogPriority maps a slog level onto syslog's err, warning, info, debug.
func syslogPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// lineHandler formats records as slog's text without the time (the
// journal and syslog add their own) and hands each line to sink.
type lineHandler struct {
	text  slog.Handler
	buf   *bytes.Buffer
	mu    *sync.Mutex
	sink  func(slog.Level, []byte) error
	level slog.Level
}

func newLineHandler(level slog.Level, sink func(slog.Level, []byte) error) *lineHandler {
	buf := new(bytes.Buffer)
	text := slog.NewTextHandler(buf, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		},
	})
	return &lineHandler{text: text, buf: buf, mu: new(sync.Mutex), sink: sink, level: level}
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.text.Handle(ctx, r); err != nil {
		return err
	}
	return h.sink(r.Level, h.buf.Bytes())
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.text = h.text.WithAttrs(attrs)
	return &c
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.text = h.text.WithGroup(name)
	return &c
}
