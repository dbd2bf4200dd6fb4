package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The methods a request may name.
const (
	MethodStatus      = "status"
	MethodExplain     = "explain"
	MethodConnections = "connections"
	MethodReload      = "reload"
	MethodEvents      = "events"
)

// MaxRequest is the longest request line the server reads, newline
// excluded.
const MaxRequest = 64 << 10

const (
	// maxClients bounds the connections served at once; more are told so
	// and closed.
	maxClients = 64
	// writeTimeout bounds each reply's write: a client that stops reading
	// loses its connection instead of holding a goroutine forever.
	writeTimeout = 10 * time.Second
	// DefaultEventBuffer is how many events a watching client may fall
	// behind before it is dropped.
	DefaultEventBuffer = 1024
	// reloadTimeout bounds the wait for the engine loop to reload.
	reloadTimeout = time.Minute
)

// Backend is what the server serves. Status, Explain and Connections
// must not wait for the daemon's engine loop (they read what it
// published); Reload asks the loop and waits for it, at most until ctx
// ends.
type Backend interface {
	Status() Status
	Explain() Explain
	Connections() Connections
	Reload(ctx context.Context) (Reloaded, error)
}

// ErrorReply is the reply to a request that failed, and the last line of
// an event stream the server ended.
type ErrorReply struct {
	Error string `json:"error"`
}

// Request is one request line.
type Request struct {
	Method string `json:"method"`
}

// ErrAnotherDaemon is matched (errors.Is) by Listen's error when a
// daemon already answers on the socket.
var ErrAnotherDaemon = errors.New("another mptcpd runs in this network namespace")

// Config is what Listen needs.
type Config struct {
	Path string // the socket, normally SocketPath(state dir, 0)
	// Group is the socket's group, whose members may connect (mode
	// 0660); -1 keeps the daemon's own: root only.
	Group   int
	Backend Backend
	Log     *slog.Logger // nil: discard
	// EventBuffer is DefaultEventBuffer when 0.
	EventBuffer int
}

// Server serves the control protocol on a Unix socket.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ln     *net.UnixListener
	ino    uint64 // the socket file's, so that Close removes only its own
	hub    hub
	ctx    context.Context // ends at Close: pending reloads give up
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// chown is os.Chown; tests replace it to see the group given without
// being root.
var chown = os.Chown

// Listen creates the socket at cfg.Path and serves it. A socket left by a
// daemon that died is replaced; one that answers means another daemon
// runs in the namespace, and Listen fails with ErrAnotherDaemon.
//
// The socket is bound under a private temporary name, given its mode and
// group, and only then linked to cfg.Path, so that nobody can connect
// while its permissions are still the umask's.
func Listen(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("control: Config.Backend is nil")
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = DefaultEventBuffer
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := clearStale(cfg.Path); err != nil {
		return nil, err
	}
	ln, ino, err := bind(cfg.Path, cfg.Group)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, ln: ln, ino: ino, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	s.hub.subs = map[*subscriber]struct{}{}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// clearStale removes a socket nothing answers on.
func clearStale(path string) error {
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("control: %w (it answers on %s)", ErrAnotherDaemon, path)
	case errors.Is(err, syscall.ENOENT):
		return nil
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("control: probe %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: remove stale socket: %w", err)
	}
	return nil
}

// bind makes the listening socket at path with mode 0660 and group
// (unless -1), and returns it with the file's inode.
func bind(path string, group int) (*net.UnixListener, uint64, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".control-")
	if err != nil {
		return nil, 0, fmt.Errorf("control: %w", err)
	}
	defer os.RemoveAll(tmp)
	name := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, 0, fmt.Errorf("control: %w", err)
	}
	// The bound name goes with tmp; Close removes path itself.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, uint64, error) {
		ln.Close()
		return nil, 0, err
	}
	if err := os.Chmod(name, 0o660); err != nil {
		return fail(fmt.Errorf("control: %w", err))
	}
	if group >= 0 {
		if err := chown(name, -1, group); err != nil {
			return fail(fmt.Errorf("control: give the socket to group %d: %w", group, err))
		}
	}
	// link, unlike rename, never replaces: a daemon that started
	// meanwhile keeps its socket.
	if err := os.Link(name, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fail(fmt.Errorf("control: %w (it created %s just now)", ErrAnotherDaemon, path))
		}
		return fail(fmt.Errorf("control: %w", err))
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fail(fmt.Errorf("control: %w", err))
	}
	return ln, st.Ino, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.cfg.Path }

// Watched reports whether some client watches the events: when none
// does, the daemon need not build them.
func (s *Server) Watched() bool { return s.hub.watchers.Load() > 0 }

// Emit sends ev to every client watching the events, numbering and (if
// ev.Time is zero) timing it. It never waits: a client whose buffer is
// full is dropped.
func (s *Server) Emit(ev Event) { s.hub.emit(ev) }

// Close stops serving: it closes the socket and every connection, waits
// for their goroutines and removes the socket file, if it is still the
// one Listen made.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	s.cancel()
	err := s.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	s.hub.close()
	s.wg.Wait()
	var st unix.Stat_t
	if unix.Lstat(s.cfg.Path, &st) == nil && st.Ino == s.ino {
		if rerr := os.Remove(s.cfg.Path); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: the loop must go on.
			s.log.Warn("control socket: accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if msg := s.track(c); msg != "" {
			s.writeWithin(c, ErrorReply{Error: msg}, time.Second)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serve(c)
		}()
	}
}

// track registers a connection; a non-empty result says why it is not
// served.
func (s *Server) track(c net.Conn) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return "mptcpd is stopping"
	case len(s.conns) >= maxClients:
		return fmt.Sprintf("too many clients (%d)", maxClients)
	}
	s.conns[c] = struct{}{}
	return ""
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// serve answers the requests of one connection, one line each, until
// the client closes it, asks for the events or sends a line too long to
// trust what follows.
func (s *Server) serve(c net.Conn) {
	r := bufio.NewReaderSize(c, 4096)
	for {
		line, err := readLine(r, MaxRequest)
		if errors.Is(err, errLineTooLong) {
			s.write(c, ErrorReply{Error: fmt.Sprintf("request longer than %d bytes", MaxRequest)})
			return
		}
		if err != nil {
			return
		}
		method, err := parseRequest(line)
		var reply any
		switch {
		case err != nil:
			reply = ErrorReply{Error: err.Error()}
		case method == "":
			continue
		case method == MethodStatus:
			reply = s.cfg.Backend.Status()
		case method == MethodExplain:
			reply = s.cfg.Backend.Explain()
		case method == MethodConnections:
			reply = s.cfg.Backend.Connections()
		case method == MethodReload:
			reply = s.reload()
		case method == MethodEvents:
			s.stream(c, r)
			return
		}
		if !s.write(c, reply) {
			return
		}
	}
}

func (s *Server) reload() any {
	ctx, cancel := context.WithTimeout(s.ctx, reloadTimeout)
	defer cancel()
	r, err := s.cfg.Backend.Reload(ctx)
	if err != nil {
		return ErrorReply{Error: err.Error()}
	}
	return r
}

// stream sends the events to c until the client closes the connection,
// a write fails, or the client falls too far behind: then a last error
// line says so.
func (s *Server) stream(c net.Conn, r *bufio.Reader) {
	sub := s.hub.subscribe(s.cfg.EventBuffer)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Whatever the client sends now is ignored; its end (or the
		// connection's) ends the stream.
		_, _ = io.Copy(io.Discard, r)
		s.hub.unsubscribe(sub)
	}()
	for ev := range sub.ch {
		if !s.write(c, ev) {
			s.hub.unsubscribe(sub)
			return
		}
	}
	if sub.dropped {
		s.writeWithin(c, ErrorReply{Error: fmt.Sprintf("events: dropped, more than %d events behind", cap(sub.ch))}, time.Second)
	}
}

func (s *Server) write(c net.Conn, v any) bool { return s.writeWithin(c, v, writeTimeout) }

// writeWithin writes v as one JSON line, giving up after d.
func (s *Server) writeWithin(c net.Conn, v any, d time.Duration) bool {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(ErrorReply{Error: "control: encode reply: " + err.Error()})
	}
	b = append(b, '\n')
	_ = c.SetWriteDeadline(time.Now().Add(d))
	_, err = c.Write(b)
	return err == nil
}

// errLineTooLong is readLine's error for a line over its limit.
var errLineTooLong = errors.New("control: line too long")

// readLine reads one line of at most max bytes besides its newline; a
// last line without one counts at the end of the stream.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(bytes.TrimSuffix(frag, []byte("\n"))) > max {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		}
		return nil, err
	}
}

// parseRequest reads a request line: a JSON object naming a known method.
// A blank line is no request (method "").
func parseRequest(line []byte) (string, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return "", nil
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return "", fmt.Errorf("malformed request: %v", err)
	}
	switch req.Method {
	case MethodStatus, MethodExplain, MethodConnections, MethodReload, MethodEvents:
		return req.Method, nil
	case "":
		return "", errors.New(`malformed request: no "method"`)
	}
	return "", fmt.Errorf("unknown method %q (want status, explain, connections, reload or events)", req.Method)
}
