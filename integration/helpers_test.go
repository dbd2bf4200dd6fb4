package integration

// Shared helpers of the integration tests: TestMain builds the project's
// binaries once into a temporary directory, and tests that run them ask for
// them through requireMptcpctl / requireMptcpecho / requireMptcpd.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// Binaries built by TestMain. A path is empty when its build failed or the
// package does not exist; the matching error says why.
var (
	binDir string

	mptcpctlBin    string // cmd/mptcpctl
	mptcpctlErr    error
	mptcpechoBin   string // internal/mptcpecho, the MPTCP echo server/client
	mptcpechoErr   error
	mptcpdBin      string // cmd/mptcpd, the daemon
	mptcpdErr      error
	mptcpdSSHBin   string // cmd/mptcpd-ssh, the SSH endpoint
	mptcpdSSHErr   error
	mptcpdRelayBin string // cmd/mptcpd-relay, the relay's two roles
	mptcpdRelayErr error
)

// Environment knobs of the tests in this package.
const (
	// envMptcpctl replaces the built mptcpctl: a path, or "ip" to run
	// iproute2 on both sides of the parity tests (checks the harness).
	envMptcpctl = "MPTCPCTL"
	// envDaemonCycles is the number of address add/delete cycles per
	// daemon in each round of BenchmarkDaemonEndpoint.
	envDaemonCycles = "DAEMON_BENCH_CYCLES"
)

const modulePath = "github.com/mptcpd-go/mptcpd"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mptcpd-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	// Without root every test here skips: don't spend a build on it.
	if os.Geteuid() == 0 {
		mptcpechoBin, mptcpechoErr = buildBinary(dir, "internal/mptcpecho")
		mptcpdBin, mptcpdErr = buildBinary(dir, "cmd/mptcpd")
		mptcpdSSHBin, mptcpdSSHErr = buildBinary(dir, "cmd/mptcpd-ssh")
		mptcpdRelayBin, mptcpdRelayErr = buildBinary(dir, "cmd/mptcpd-relay")
		if os.Getenv(envMptcpctl) == "" {
			mptcpctlBin, mptcpctlErr = buildBinary(dir, "cmd/mptcpctl")
		}
	}
	return m.Run()
}

// errNoPackage marks a binary whose package is not in the tree (yet).
var errNoPackage = errors.New("package not in the tree")

// buildBinary builds the main package at the module-relative path pkg into
// dir and returns the binary's path.
func buildBinary(dir, pkg string) (string, error) {
	// The test runs in integration/, one level below the module root.
	if _, err := os.Stat(filepath.Join("..", pkg)); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, errNoPackage)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, modulePath+"/"+pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build does
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// requireBinary returns a binary built by TestMain; it skips without root
// (nothing is built then) and while the package does not exist, and fails
// when it does not build.
func requireBinary(t testing.TB, path string, err error) string {
	t.Helper()
	nstest.Require(t)
	switch {
	case errors.Is(err, errNoPackage):
		t.Skip(err)
	case err != nil:
		t.Fatal(err)
	case path == "":
		t.Fatal("binary not built")
	}
	return path
}

// mptcpTool is a command that takes ip-mptcp arguments after its own
// "-n NETNS [-j]" options: iproute2 ("ip -n NS -j mptcp ARGS") or mptcpctl
// ("mptcpctl -n NS -j ARGS").
type mptcpTool struct {
	name string   // in messages
	path string   // the executable
	sub  []string // words between the global options and ARGS

	// iproute2 6.1 prints limits as text even with -j and has no JSON
	// monitor; mptcpctl has both.
	textLimits, noJSONMonitor bool
}

var ipTool = mptcpTool{name: "ip", path: "ip", sub: []string{"mptcp"}, textLimits: true, noJSONMonitor: true}

// requireMptcpctl returns mptcpctl, or iproute2 in its place when
// MPTCPCTL=ip, or the binary MPTCPCTL names.
func requireMptcpctl(t testing.TB) mptcpTool {
	t.Helper()
	switch env := os.Getenv(envMptcpctl); env {
	case "":
		return mptcpTool{name: "mptcpctl", path: requireBinary(t, mptcpctlBin, mptcpctlErr)}
	case "ip":
		tl := ipTool
		tl.name = "ip(as mptcpctl)"
		return tl
	default:
		return mptcpTool{name: "mptcpctl", path: env}
	}
}

// requireMptcpecho returns the MPTCP echo helper binary.
func requireMptcpecho(t testing.TB) string {
	t.Helper()
	return requireBinary(t, mptcpechoBin, mptcpechoErr)
}

// requireMptcpd returns the daemon binary.
func requireMptcpd(t testing.TB) string {
	t.Helper()
	return requireBinary(t, mptcpdBin, mptcpdErr)
}

// argv is the full argument list for args in namespace ns.
func (tl mptcpTool) argv(ns string, json bool, args []string) []string {
	argv := []string{"-n", ns}
	if json {
		argv = append(argv, "-j")
	}
	argv = append(argv, tl.sub...)
	return append(argv, args...)
}

// command prepares args in namespace ns, bound by ctx.
func (tl mptcpTool) command(ctx context.Context, ns string, json bool, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, tl.path, tl.argv(ns, json, args)...)
}

// result is what one command did.
type result struct {
	stdout, stderr string
	code           int // exit status
}

// toolTimeout bounds one short command; generous for a loaded machine.
const toolTimeout = 30 * time.Second

// run runs one short (non-monitor) command to completion.
func (tl mptcpTool) run(t testing.TB, ns string, json bool, args ...string) result {
	t.Helper()
	return tl.runArgv(t, tl.argv(ns, json, args))
}

// runArgv runs the tool with a complete argument list.
func (tl mptcpTool) runArgv(t testing.TB, argv []string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, tl.path, argv...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s %s: %v (stderr %q)", tl.name, strings.Join(argv, " "), err, e.String())
	}
	return r
}

// lockedBuffer collects a background process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines are the complete lines written so far (a partial last one is left out).
func (b *lockedBuffer) lines() []string {
	s := b.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// background is a long-running process of a test: started with start,
// killed and reaped at cleanup at the latest.
type background struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	done           chan struct{}
	err            error // valid after done is closed
	ended          bool  // the test ended it on purpose: an exit is no surprise
}

// start runs cmd in the background; stop or the test's cleanup ends it.
func start(t testing.TB, name string, cmd *exec.Cmd) *background {
	t.Helper()
	b := &background{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &b.stdout, &b.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(b.stop)
	return b
}

// stop kills the process (if still running) and waits for it.
func (b *background) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Kill()
	<-b.done
}

// exited reports whether the process has ended by itself.
func (b *background) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds or timeout passes; it reports whether
// cond held. Polling keeps waits short when the machine is idle and bounded
// when it is loaded.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
