package ctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// fakeNetwork serves NetworkState from a prepared state (empty when nil).
type fakeNetwork struct {
	state *netmon.State
}

func (n fakeNetwork) NetworkState(context.Context) (*netmon.State, error) {
	if n.state == nil {
		return netmon.NewState(), nil
	}
	return n.state, nil
}

// policyEnv runs the policy commands against files in dir: mptcpd.conf
// and the default policy file are absent unless a test writes them, so
// the host's /etc/mptcpd never leaks in.
func policyEnv(dir string, b Backend, o, e *bytes.Buffer) Env {
	return Env{
		Stdout:     o,
		Stderr:     e,
		Open:       func(string) (Backend, error) { return b, nil },
		ConfigFile: filepath.Join(dir, "mptcpd.conf"),
		PolicyFile: filepath.Join(dir, "policy"),
		SysfsRoot:  filepath.Join(dir, "sys"),
	}
}

// transcript runs a command line and records it as a golden file shows
// it: the line, the exit status, stdout and stderr.
func transcript(env Env, line string) string {
	o, e := env.Stdout.(*bytes.Buffer), env.Stderr.(*bytes.Buffer)
	o.Reset()
	e.Reset()
	code := Main(strings.Fields(line), env)
	return fmt.Sprintf("$ mptcpctl %s\nexit %d\n--- stdout\n%s--- stderr\n%s", line, code, o, e)
}

func TestGoldenPolicyCommands(t *testing.T) {
	tests := []struct {
		name string
		line string
	}{
		{"policy-check-good.txt", "policy check testdata/policy-good.policy"},
		{"policy-check-bad.txt", "policy check testdata/policy-bad.policy"},
		{"policy-check-missing.txt", "policy check testdata/nonexistent.policy"},
		{"policy-check-config.txt", "policy check --config testdata/policy-warn.conf testdata/policy-good.policy"},
		{"policy-check-config-bad.txt", "policy check --config testdata/policy-bad.conf"},
		{"policy-check-config-missing.txt", "policy check --config testdata/nonexistent.conf"},
		{"policy-check-builtin.txt", "policy check"},
		{"policy-show-builtin.txt", "policy show"},
		{"policy-show-file.txt", "policy show --policy testdata/policy-good.policy"},
	}
	var o, e bytes.Buffer
	// A directory that does not exist: the golden files name its files.
	env := policyEnv("testdata/absent", testBackend(), &o, &e)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			goldenFile(t, tt.name, []byte(transcript(env, tt.line)))
		})
	}
}

// TestPolicyChoice checks which file the commands read, as the daemon
// would choose it.
func TestPolicyChoice(t *testing.T) {
	dir := t.TempDir()
	good, err := filepath.Abs("testdata/policy-good.policy")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	named := write("named.conf", "[core]\npolicy-file="+good+"\n")
	write("policy", "match\n    flags subflow\n")
	conf := filepath.Join(dir, "mptcpd.conf")
	def := filepath.Join(dir, "policy")

	tests := []struct {
		line   string
		header string // the first line of policy show
	}{
		{"policy show", "# policy: " + def + " (the default policy file)"},
		{"policy show --config " + named, "# policy: " + good + " (policy-file in " + named + ")"},
		{"policy show --config " + named + " --policy " + def, "# policy: " + def + " (given with --policy)"},
		{"pol s --policy=" + good, "# policy: " + good + " (given with --policy)"},
		{"policy", "# policy: " + def + " (the default policy file)"},
		{"p --config " + named, "# policy: " + good + " (policy-file in " + named + ")"},
	}
	var o, e bytes.Buffer
	env := policyEnv(dir, testBackend(), &o, &e)
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			o.Reset()
			e.Reset()
			if code := Main(strings.Fields(tt.line), env); code != ExitOK {
				t.Fatalf("exit %d, stderr %q", code, e.String())
			}
			first, rest, _ := strings.Cut(o.String(), "\n")
			if first != tt.header {
				t.Errorf("header %q, want %q", first, tt.header)
			}
			if want := "# mptcpd.conf: " + conf + " (absent: defaults)"; !strings.Contains(tt.line, "--config") && !strings.HasPrefix(rest, want+"\n") {
				t.Errorf("second line of %q, want %q", rest, want)
			}
		})
	}
}

func TestPolicyCommandErrors(t *testing.T) {
	tests := []struct {
		line   string
		code   int
		stderr string
	}{
		{"policy bogus", ExitUsage, fmt.Sprintf(usageErr, "bogus")},
		{"policy show extra", ExitUsage, fmt.Sprintf(usageErr, "extra")},
		{"policy explain extra", ExitUsage, fmt.Sprintf(usageErr, "extra")},
		{"policy check a b", ExitUsage, fmt.Sprintf(usageErr, "b")},
		{"policy check a --policy b", ExitUsage, "Error: two policy files: a and --policy b\n"},
		{"policy explain --policy testdata/policy-bad.policy", ExitFailure, ""},
		{"policy show --bogus", ExitUsage, "Error: unknown flag: --bogus\nTry \"mptcpctl --help\".\n"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			var o, e bytes.Buffer
			b := testBackend()
			code := Main(strings.Fields(tt.line), policyEnv(t.TempDir(), b, &o, &e))
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, e.String())
			}
			if tt.stderr != "" && e.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", e.String(), tt.stderr)
			}
			if o.Len() != 0 {
				t.Errorf("stdout %q, want nothing", o.String())
			}
			// A bad policy stops explain before it reads the kernel.
			if len(b.calls) != 0 {
				t.Errorf("backend called: %v", b.calls)
			}
		})
	}
}

// TestPolicyExplainBadPolicyErrors: explain lists the policy's errors as
// check does.
func TestPolicyExplainBadPolicyErrors(t *testing.T) {
	var o, e bytes.Buffer
	env := policyEnv(t.TempDir(), testBackend(), &o, &e)
	Main(strings.Fields("policy check testdata/policy-bad.policy"), env)
	checkErr := e.String()
	e.Reset()
	Main(strings.Fields("policy explain --policy testdata/policy-bad.policy"), env)
	if diff := cmp.Diff(checkErr, e.String()); diff != "" {
		t.Errorf("explain's errors differ from check's (-check +explain):\n%s", diff)
	}
}

func TestMainHelpListsPolicy(t *testing.T) {
	b := testBackend()
	_, stdout, _, _ := run(t, b, "help")
	for _, want := range []string{"mptcpctl policy check [ FILE ]", "mptcpctl policy explain", "policy:\n       a file cannot be read"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	var o, e bytes.Buffer
	Main([]string{"policy", "--help"}, policyEnv(t.TempDir(), b, &o, &e))
	for _, want := range []string{"check [FILE]", "--config FILE", "--policy FILE", "-j prints a JSON object"} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("policy --help lacks %q:\n%s", want, o.String())
		}
	}
}
