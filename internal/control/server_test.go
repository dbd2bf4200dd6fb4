package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeBackend serves fixed replies and counts the calls.
type fakeBackend struct {
	calls     atomic.Int64
	reloadErr error
	reloaded  chan struct{} // if not nil, each reload waits to send on it
}

func (b *fakeBackend) Status() Status {
	b.calls.Add(1)
	return Status{Version: "v-test", PID: 42, Mode: ModeInKernel, Config: "built-in", Policy: "built-in",
		Links: []Link{{Index: 2, Name: "eth0", Kind: "ethernet", Usable: true}},
		Endpoints: []Wanted{{Endpoint: Endpoint{ID: 1, Address: netip.MustParseAddr("10.0.0.2"), Flags: []string{"subflow"}, Dev: "eth0", IfIndex: 2},
			Kernel: "present"}},
		Counters: Counters{Passes: 3}}
}

func (b *fakeBackend) Explain() Explain {
	b.calls.Add(1)
	return Explain{Mode: ModeInKernel, PolicySource: "built-in", Capacity: 8}
}

func (b *fakeBackend) Connections() Connections {
	b.calls.Add(1)
	return Connections{Mode: ModeUserspace, Plugin: "sspi", Connections: []Connection{{Token: "7ab06eec",
		Local: netip.MustParseAddrPort("10.0.0.2:40000"), Remote: netip.MustParseAddrPort("10.0.1.1:5000")}}}
}

func (b *fakeBackend) Reload(ctx context.Context) (Reloaded, error) {
	b.calls.Add(1)
	if b.reloaded != nil {
		select {
		case b.reloaded <- struct{}{}:
		case <-ctx.Done():
			return Reloaded{}, ctx.Err()
		}
	}
	if b.reloadErr != nil {
		return Reloaded{}, b.reloadErr
	}
	return Reloaded{Config: "built-in", Policy: "/etc/mptcpd/policy"}, nil
}

// socketDir is a short directory: socket paths must fit in 108 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func startServer(t *testing.T, b Backend, edit ...func(*Config)) *Server {
	t.Helper()
	cfg := Config{Path: filepath.Join(socketDir(t), "netns-1-2.sock"), Group: -1, Backend: b}
	for _, f := range edit {
		f(&cfg)
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func dial(t *testing.T, s *Server) *Client {
	t.Helper()
	c, err := Dial(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRequests(t *testing.T) {
	b := &fakeBackend{}
	s := startServer(t, b)
	c := dial(t, s)

	st, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.Status(), st, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	x, err := c.Explain()
	if err != nil || x.Capacity != 8 || x.Mode != ModeInKernel {
		t.Errorf("explain = %+v, %v", x, err)
	}
	cs, err := c.Connections()
	if err != nil || len(cs.Connections) != 1 || cs.Connections[0].Token != "7ab06eec" || cs.Connections[0].Remote.Port() != 5000 {
		t.Errorf("connections = %+v, %v", cs, err)
	}
	r, err := c.Reload()
	if err != nil || r.Policy != "/etc/mptcpd/policy" {
		t.Errorf("reload = %+v, %v", r, err)
	}
	b.reloadErr = errors.New("/etc/mptcpd/policy:3: unknown keyword \"mtach\"")
	_, err = c.Reload()
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != b.reloadErr.Error() {
		t.Errorf("failed reload: %v, want the daemon's reason as a RemoteError", err)
	}
}

// exchange writes raw lines and reads one reply line per request.
type exchange struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func rawDial(t *testing.T, s *Server) *exchange {
	t.Helper()
	conn, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &exchange{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (e *exchange) send(s string) {
	e.t.Helper()
	if _, err := io.WriteString(e.conn, s); err != nil {
		e.t.Fatal(err)
	}
}

func (e *exchange) reply() map[string]any {
	e.t.Helper()
	line, err := e.r.ReadBytes('\n')
	if err != nil {
		e.t.Fatalf("reading a reply: %v (got %q)", err, line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		e.t.Fatalf("reply %q: %v", line, err)
	}
	return m
}

func TestMalformedRequests(t *testing.T) {
	b := &fakeBackend{}
	s := startServer(t, b)
	e := rawDial(t, s)
	for _, tt := range []struct{ line, err string }{
		{"status\n", "malformed request: invalid character 's' looking for beginning of value"},
		{"{\"method\":\"status\"\n", "malformed request: unexpected end of JSON input"},
		{"{\"method\":\"status\"} {}\n", "malformed request: invalid character '{' after top-level value"},
		{"\"status\"\n", "malformed request: json: cannot unmarshal string into Go value of type control.Request"},
		{"{}\n", `malformed request: no "method"`},
		{"null\n", `malformed request: no "method"`},
		{"{\"method\":\"Status\"}\n", `unknown method "Status" (want status, explain, connections, reload or events)`},
		{"{\"method\":\"shutdown\"}\n", `unknown method "shutdown" (want status, explain, connections, reload or events)`},
		{"{\"method\":7}\n", "malformed request: json: cannot unmarshal number into Go struct field Request.method of type string"},
		{"\xff\xfe\n", "malformed request: invalid character 'ÿ' looking for beginning of value"},
	} {
		e.send(tt.line)
		if got := e.reply(); got["error"] != tt.err {
			t.Errorf("%q: reply %v, want error %q", tt.line, got, tt.err)
		}
	}
	// Blank lines are no requests; the connection still answers.
	e.send("\n  \n{\"method\":\"status\",\"extra\":1}\n")
	if got := e.reply(); got["version"] != "v-test" {
		t.Errorf("status after the malformed requests: %v", got)
	}
	if n := b.calls.Load(); n != 1 {
		t.Errorf("backend called %d times, want once (the valid status)", n)
	}

	// A line over MaxRequest: an error, then the connection ends; the
	// server goes on serving others.
	e.send(strings.Repeat("x", MaxRequest+1) + "\n")
	if got := e.reply(); got["error"] != fmt.Sprintf("request longer than %d bytes", MaxRequest) {
		t.Errorf("oversized request: reply %v", got)
	}
	if _, err := e.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after an oversized request: read %v, want EOF", err)
	}
	// Exactly MaxRequest is fine.
	e = rawDial(t, s)
	e.send(`{"method":"status"}` + strings.Repeat(" ", MaxRequest-len(`{"method":"status"}`)) + "\n")
	if got := e.reply(); got["version"] != "v-test" {
		t.Errorf("request of MaxRequest bytes: %v", got)
	}
	if _, err := dial(t, s).Status(); err != nil {
		t.Errorf("status on a new connection: %v", err)
	}
}

func TestEventsInOrder(t *testing.T) {
	s := startServer(t, &fakeBackend{})
	if s.Watched() {
		t.Fatal("Watched before any client")
	}
	s.Emit(Event{Kind: KindAddr, Text: "nobody sees this"})
	c := dial(t, s)
	got := make(chan Event, 4000)
	var received atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- c.Events(func(ev Event) error {
			got <- ev
			received.Add(1)
			return nil
		})
	}()
	waitFor(t, "the client to watch", s.Watched)
	// More than the buffer holds, in bursts of half of it that the
	// client takes in between.
	const n = 3 * DefaultEventBuffer
	go func() {
		for i := range n {
			for int64(i)-received.Load() >= DefaultEventBuffer/2 {
				time.Sleep(100 * time.Microsecond)
			}
			s.Emit(Event{Kind: KindAddr, Op: "new", Text: fmt.Sprintf("event %d", i)})
		}
	}()
	for i := range n {
		select {
		case ev := <-got:
			if ev.Seq != uint64(i+1) || ev.Text != fmt.Sprintf("event %d", i) || ev.Time.IsZero() {
				t.Fatalf("event %d: %+v", i, ev)
			}
		case err := <-done:
			t.Fatalf("stream ended after %d events: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d did not come", i)
		}
	}
	c.Close()
	if err := <-done; err == nil {
		t.Error("Events returned nil after Close")
	}
	waitFor(t, "the server to notice", func() bool { return !s.Watched() })
}

// A client that stops reading is dropped, and Emit never waits for it.
func TestSlowClientDropped(t *testing.T) {
	s := startServer(t, &fakeBackend{}, func(c *Config) { c.EventBuffer = 4 })
	e := rawDial(t, s)
	e.send(`{"method":"events"}` + "\n")
	waitFor(t, "the client to watch", s.Watched)
	// Big events fill the socket's buffer at once, then the client's.
	big := strings.Repeat("x", 64<<10)
	start := time.Now()
	for i := 0; s.Watched(); i++ {
		if i > 1000 {
			t.Fatal("the client was not dropped after 1000 events of 64 KiB")
		}
		s.Emit(Event{Kind: KindRoute, Text: big})
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("emitting to a stuck client took %v", d)
	}
	// What was queued arrives in order, then the reason.
	var seq uint64
	for {
		line, err := e.r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("after %d events: %v, want a last error line", seq, err)
		}
		var ev struct {
			Event
			Error string `json:"error"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Error != "" {
			if want := "events: dropped, more than 4 events behind"; ev.Error != want {
				t.Errorf("last line: %q, want %q", ev.Error, want)
			}
			break
		}
		if seq++; ev.Seq != seq {
			t.Fatalf("event %d has seq %d", seq, ev.Seq)
		}
	}
	if _, err := e.r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the error line: %v, want EOF", err)
	}
	// Others are still served.
	if _, err := dial(t, s).Status(); err != nil {
		t.Errorf("status after dropping a client: %v", err)
	}
}

// Close ends idle connections, streams and a reload waiting for the
// engine, and removes the socket.
func TestClose(t *testing.T) {
	b := &fakeBackend{reloaded: make(chan struct{})}
	dir := socketDir(t)
	s, err := Listen(Config{Path: filepath.Join(dir, "s.sock"), Group: -1, Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	idle := rawDial(t, s)
	stream := rawDial(t, s)
	stream.send(`{"method":"events"}` + "\n")
	reload := rawDial(t, s)
	reload.send(`{"method":"reload"}` + "\n")
	waitFor(t, "the stream", s.Watched)
	waitFor(t, "the reload to start", func() bool { return b.calls.Load() == 1 })

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	for name, e := range map[string]*exchange{"idle": idle, "stream": stream} {
		if _, err := e.r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("%s connection after Close: %v, want EOF", name, err)
		}
	}
	// The reload gave up; its reply may or may not have made it out
	// before the connection closed.
	if rest, err := io.ReadAll(reload.r); err != nil || len(rest) > 0 && !strings.Contains(string(rest), `"error":"context canceled"`) {
		t.Errorf("reload during Close: %q, %v", rest, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "s.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after Close: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left in the directory: %v", entries)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestTooManyClients(t *testing.T) {
	s := startServer(t, &fakeBackend{})
	for range maxClients {
		rawDial(t, s).send(`{"method":"status"}` + "\n")
	}
	waitFor(t, "every client to be served", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == maxClients
	})
	_, err := dial(t, s).Status()
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "too many clients (64)" {
		t.Errorf("client %d: %v", maxClients+1, err)
	}
}

func TestListenSocketFile(t *testing.T) {
	t.Run("stale socket replaced", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "s.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // as a killed daemon leaves it
		_, err = Dial(path)
		var nr *NotRunningError
		if !errors.As(err, &nr) || nr.Missing || !errors.Is(err, ErrNotRunning) {
			t.Errorf("Dial on a stale socket: %v", err)
		}
		s, err := Listen(Config{Path: path, Group: -1, Backend: &fakeBackend{}})
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		defer s.Close()
		c, err := Dial(path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Status(); err != nil {
			t.Error(err)
		}
	})
	t.Run("another daemon answers", func(t *testing.T) {
		s := startServer(t, &fakeBackend{})
		_, err := Listen(Config{Path: s.Path(), Group: -1, Backend: &fakeBackend{}})
		if !errors.Is(err, ErrAnotherDaemon) || !strings.Contains(err.Error(), s.Path()) {
			t.Errorf("second Listen: %v", err)
		}
		if _, err := dial(t, s).Status(); err != nil {
			t.Errorf("the first server after the second's attempt: %v", err)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "s.sock")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Listen(Config{Path: path, Group: -1, Backend: &fakeBackend{}})
		if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
			t.Errorf("Listen over a file: %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the file is gone: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(socketDir(t), "s.sock")
		_, err := Dial(path)
		var nr *NotRunningError
		if !errors.As(err, &nr) || !nr.Missing {
			t.Fatalf("Dial: %v", err)
		}
		want := "mptcpd is not running in this network namespace (no " + path + ")"
		if err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	})
}

func TestPermissions(t *testing.T) {
	var mu sync.Mutex
	var chowned []string
	orig := chown
	chown = func(name string, uid, gid int) error {
		mu.Lock()
		defer mu.Unlock()
		chowned = append(chowned, fmt.Sprintf("%s %d %d", filepath.Base(name), uid, gid))
		return nil
	}
	t.Cleanup(func() { chown = orig })

	for _, tt := range []struct {
		group int
		want  []string
	}{
		{group: -1},
		{group: 4242, want: []string{"s -1 4242"}},
	} {
		chowned = nil
		s := startServer(t, &fakeBackend{}, func(c *Config) { c.Group = tt.group })
		fi, err := os.Lstat(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != fs.ModeSocket|0o660 {
			t.Errorf("group %d: mode %v, want socket 0660", tt.group, fi.Mode())
		}
		if diff := cmp.Diff(tt.want, chowned); diff != "" {
			t.Errorf("group %d: chown calls (-want +got):\n%s", tt.group, diff)
		}
	}

	chown = func(string, int, int) error { return fs.ErrPermission }
	path := filepath.Join(socketDir(t), "s.sock")
	_, err := Listen(Config{Path: path, Group: 4242, Backend: &fakeBackend{}})
	if err == nil || err.Error() != "control: give the socket to group 4242: permission denied" {
		t.Errorf("Listen when the group cannot be set: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
