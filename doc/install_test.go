package doc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCompletions writes the completion scripts and checks each with its
// shell's syntax check, where the shell is installed.
func TestCompletions(t *testing.T) {
	dir := t.TempDir()
	if err := WriteCompletions(dir); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file, marker string
		check        []string // the shell's syntax check
	}{
		{"mptcpctl.bash", "complete -o default -F __start_mptcpctl mptcpctl", []string{"bash", "-n"}},
		{"_mptcpctl", "#compdef mptcpctl", []string{"zsh", "-n"}},
		{"mptcpctl.fish", "complete -c mptcpctl", []string{"fish", "--no-execute"}},
	} {
		path := filepath.Join(dir, c.file)
		script, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(script, []byte(c.marker)) {
			t.Errorf("%s lacks %q", c.file, c.marker)
		}
		shell, err := exec.LookPath(c.check[0])
		if err != nil {
			t.Logf("no %s to check %s with", c.check[0], c.file)
			continue
		}
		if out, err := exec.Command(shell, append(c.check[1:], path)...).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", strings.Join(c.check, " "), c.file, err, out)
		}
	}
}

// TestMakeInstall runs make install into a temporary DESTDIR and checks
// that the pages and completion scripts are where man and the shells
// look, that they are the ones ManPages renders, that the files copied
// from the repository are in place, that each systemd unit starts an
// installed daemon of the version built, and that the installed mptcpctl
// answers the bash script's completion requests.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and the documentation")
	}
	makeTool, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	epoch := testHeader.Date.Unix()
	cmd := exec.Command(makeTool, "-C", root, "install", "DESTDIR="+dest, "BIN="+t.TempDir(), "VERSION="+testHeader.Version)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}

	pages, err := ManPages(Header{Version: testHeader.Version, Date: time.Unix(epoch, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range pages {
		installed := filepath.Join(dest, "usr/share/man/man"+name[strings.LastIndexByte(name, '.')+1:], name)
		got, err := os.ReadFile(installed)
		if err != nil {
			t.Errorf("page %s not installed: %v", name, err)
			continue
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("installed %s differs from ManPages' (-want +got):\n%s", name, diff)
		}
	}
	for _, f := range []string{
		"usr/share/bash-completion/completions/mptcpctl",
		"usr/share/zsh/site-functions/_mptcpctl",
		"usr/share/fish/vendor_completions.d/mptcpctl.fish",
	} {
		if st, err := os.Stat(filepath.Join(dest, f)); err != nil || st.Size() == 0 {
			t.Errorf("completion script %s not installed (%v)", f, err)
		}
	}

	for _, f := range []struct{ src, dst string }{
		{"dist/mptcpd.service", "etc/systemd/system/mptcpd.service"},
		{"dist/mptcpd-ssh.service", "etc/systemd/system/mptcpd-ssh.service"},
		{"dist/mptcpd-relay.service", "etc/systemd/system/mptcpd-relay.service"},
		{"dist/rt_protos.conf", "etc/iproute2/rt_protos.d/mptcpd.conf"},
		{"mptcpd.conf.example", "etc/mptcpd/mptcpd.conf"},
		{"policy.example", "usr/share/doc/mptcpd-go/policy.example"},
		// Documentation only: it needs systemd 257 or later.
		{"dist/ssh.socket-mptcp.conf", "usr/share/doc/mptcpd-go/ssh.socket-mptcp.conf"},
	} {
		want, err := os.ReadFile(filepath.Join(root, f.src))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(dest, f.dst)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not installed as /%s (%v)", f.src, f.dst, err)
		}
	}
	for _, unit := range []string{"mptcpd.service", "mptcpd-ssh.service", "mptcpd-relay.service"} {
		text, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system", unit))
		if err != nil {
			continue // reported above
		}
		prog := execStart.FindSubmatch(text)
		if prog == nil {
			t.Errorf("%s has no ExecStart=", unit)
			continue
		}
		out, err := exec.Command(filepath.Join(dest, string(prog[1])), "--version").Output()
		if got := strings.TrimSpace(string(out)); err != nil || !strings.HasSuffix(got, " "+testHeader.Version) {
			t.Errorf("%s starts %s: --version says %q (%v), want version %s", unit, prog[1], got, err, testHeader.Version)
		}
	}

	// The bash script asks "mptcpctl __complete WORDS..." for the
	// candidates, one a line with a tab before its description, then a
	// ":DIRECTIVE" line.
	out, err := exec.Command(filepath.Join(dest, "usr/bin/mptcpctl"), "__complete", "endp").Output()
	if err != nil {
		t.Fatalf("mptcpctl __complete endp: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if first, _, _ := strings.Cut(lines[0], "\t"); len(lines) != 2 || first != "endpoint" || !strings.HasPrefix(lines[1], ":") {
		t.Errorf("mptcpctl __complete endp = %q, want endpoint and a directive", out)
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		script := filepath.Join(dest, "usr/share/bash-completion/completions/mptcpctl")
		out, err := exec.Command(bash, "-c", `source "$1" && complete -p mptcpctl`, "bash", script).CombinedOutput()
		if want := "complete -o default -F __start_mptcpctl mptcpctl\n"; err != nil || string(out) != want {
			t.Errorf("sourcing the installed bash script: %v, complete -p says %q, want %q", err, out, want)
		}
	}
}

// execStart finds the program a systemd unit's ExecStart= runs.
var execStart = regexp.MustCompile(`(?m)^ExecStart=(/\S+)`)
