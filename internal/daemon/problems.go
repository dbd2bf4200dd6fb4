package daemon

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"github.com/mptcpd-go/mptcpd/internal/control"
)

// maxProblems is how many warnings and errors status shows.
const maxProblems = 10

// problemLog keeps the latest warnings and errors the daemon logged, from
// any of its goroutines, for status.
type problemLog struct {
	mu   sync.Mutex
	ring []control.Problem // the latest, oldest first
}

func (p *problemLog) add(pr control.Problem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ring) == maxProblems {
		copy(p.ring, p.ring[1:])
		p.ring = p.ring[:maxProblems-1]
	}
	p.ring = append(p.ring, pr)
}

// list returns a copy, oldest first; never nil.
func (p *problemLog) list() []control.Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]control.Problem{}, p.ring...)
}

// problemHandler passes every record on to next and keeps those at warning
// level and above in log, whatever level next logs at.
type problemHandler struct {
	next  slog.Handler
	log   *problemLog
	attrs string // "k=v ..." of WithAttrs, for the message
	group string // WithGroup's prefix for keys
}

func newProblemHandler(next slog.Handler, log *problemLog) *problemHandler {
	return &problemHandler{next: next, log: log}
}

func (h *problemHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *problemHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		b.WriteString(r.Message)
		if h.attrs != "" {
			b.WriteString(" " + h.attrs)
		}
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + attrText(h.group, a))
			return true
		})
		level := "WARN"
		if r.Level >= slog.LevelError {
			level = "ERROR"
		}
		h.log.add(control.Problem{Time: r.Time, Level: level, Message: b.String()})
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *problemHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	for _, a := range attrs {
		c.attrs = strings.TrimSpace(c.attrs + " " + attrText(h.group, a))
	}
	return &c
}

func (h *problemHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	c.group = h.group + name + "."
	return &c
}

// attrText is a as slog's text handler writes it: key=value, the value
// quoted when it has spaces, quotes or '='.
func attrText(group string, a slog.Attr) string {
	v := a.Value.Resolve().String()
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = strconv.Quote(v)
	}
	return group + a.Key + "=" + v
}
