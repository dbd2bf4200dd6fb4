package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parityOptionCases are ip's options before the object, each run before
// `endpoint show` on a small table; ip decides what is right.
var parityOptionCases = [][]string{
	{"-4"}, {"-6"}, {"-0"}, {"-M"}, {"-B"}, {"-s"}, {"-statistics"}, {"-d"},
	{"-o"}, {"-t"}, {"-ts"}, {"-r"}, {"-i"}, {"-iec"}, {"-h"},
	{"-human-readable"}, {"-br"}, {"-N"}, {"-Numeric"}, {"-a"}, {"-echo"},
	{"-fo"}, {"-c"}, {"-col=never"}, {"-color=auto"}, {"--"},
	{"-f", "inet"}, {"-family", "inet6"}, {"-f", "bridge"}, {"-l", "3"},
	{"-rc", "100000"}, {"-j"}, {"-json"}, {"--json"}, {"-js"},
	{"-j", "-p"}, {"-pretty", "-json"},
	// Refused by ip, and so here.
	{"-color=bogus"}, {"-e"}, {"-I"}, {"-D"}, {"-x"}, {"-jx"},
	{"-f", "ipx"}, {"-f", "bogus"}, {"-rc", "abc"}, {"-version"},
}

// TestParityGlobalOptions runs `ip -n A OPTS mptcp endpoint show` and
// `mptcpctl -n B OPTS endpoint show` and compares exit status and output.
func TestParityGlobalOptions(t *testing.T) {
	p := newParityPair(t)
	p.setup(t, [][]string{
		{"endpoint", "add", "10.0.1.1", "dev", "v0", "subflow"},
		{"endpoint", "add", "2001:db8:1::1", "id", "7", "signal", "backup"},
	})
	args := []string{"endpoint", "show"}
	for _, opts := range parityOptionCases {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			ipRes := p.ip.runArgv(t, optionArgv(p.ip, p.ipNS.Name, opts, args))
			ctlRes := p.ctl.runArgv(t, optionArgv(p.ctl, p.ctlNS.Name, opts, args))
			json := strings.HasPrefix(strings.TrimSpace(ipRes.stdout), "[")
			if diffs := compareResults(parityOp{json: json, args: args}, ipRes, ctlRes, p.ctl); len(diffs) > 0 {
				t.Errorf("%q:\n  %s\n  ip stderr:       %q\n  mptcpctl stderr: %q",
					opts, strings.Join(diffs, "\n  "), ipRes.stderr, ctlRes.stderr)
			}
		})
	}

	// -V prints each tool's own version and ends there.
	for _, v := range []string{"-V", "-Version"} {
		ipRes := p.ip.runArgv(t, optionArgv(p.ip, p.ipNS.Name, []string{v}, args))
		ctlRes := p.ctl.runArgv(t, optionArgv(p.ctl, p.ctlNS.Name, []string{v}, args))
		if ipRes.code != 0 || ctlRes.code != 0 || !strings.HasPrefix(ctlRes.stdout, "mptcpctl ") {
			t.Errorf("%s: ip exit %d, mptcpctl exit %d with %q; want 0, 0 and a version line", v, ipRes.code, ctlRes.code, ctlRes.stdout)
		}
	}
}

// optionArgv is "-n NS OPTS [mptcp] ARGS" for tool tl.
func optionArgv(tl mptcpTool, ns string, opts, args []string) []string {
	argv := append([]string{"-n", ns}, opts...)
	argv = append(argv, tl.sub...)
	return append(argv, args...)
}

// TestParityBatch runs one batch file of mptcp commands, with comments,
// a continued line and a command the kernel refuses, through `ip -batch`
// and `mptcpctl -batch`, with and without -force, and compares output,
// exit status, where each stopped, and the resulting tables.
func TestParityBatch(t *testing.T) {
	p := newParityPair(t)
	file := filepath.Join(t.TempDir(), "cmds")
	batch := `# set up the laptop's endpoints
mptcp endpoint add 10.0.1.1 dev v0 subflow
mptcp endpoint add 2001:db8:1::1 id 5 signal \
    backup   # continued
mptcp limits set subflows 3 add_addr_accepted 1

mptcp endpoint show
mptcp endpoint add 10.0.1.1 subflow
mptcp endpoint change id 5 nobackup
mptcp endpoint show
mptcp limits show
`
	if err := os.WriteFile(file, []byte(batch), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, force := range []bool{false, true} {
		p.reset(t)
		var opts []string
		if force {
			opts = append(opts, "-force")
		}
		opts = append(opts, "-batch", file)
		ipRes := p.ip.runArgv(t, append([]string{"-n", p.ipNS.Name}, opts...))
		ctlRes := p.ctl.runArgv(t, append([]string{"-n", p.ctlNS.Name}, opts...))
		if ipRes.code != ctlRes.code || ipRes.stdout != ctlRes.stdout {
			t.Errorf("force=%v: ip exit %d stdout %q; mptcpctl exit %d stdout %q", force, ipRes.code, ipRes.stdout, ctlRes.code, ctlRes.stdout)
		}
		const failed = "Command failed "
		if want := failed + file + ":8"; !strings.Contains(ipRes.stderr, want) || !strings.Contains(ctlRes.stderr, want) {
			t.Errorf("force=%v: both should report %q:\n  ip:       %q\n  mptcpctl: %q", force, want, ipRes.stderr, ctlRes.stderr)
		}
		if _, diffs := p.compareState(t); len(diffs) > 0 {
			t.Errorf("force=%v: tables differ after the batch:\n  %s", force, strings.Join(diffs, "\n  "))
		}
	}
}
