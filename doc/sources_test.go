package doc

import (
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/policy"
)

// The hand-written pages must name exactly what the code accepts: these
// tests fail when an option, a key or a statement is added, renamed or
// removed without its page following.

// TestDaemonOptions compares the OPTIONS of each daemon's page with the
// options its --help lists (hidden testing flags are not documented).
func TestDaemonOptions(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the daemons with")
	}
	for _, tc := range []struct{ cmd, page string }{
		{"mptcpd", "mptcpd.8.md"},
		{"mptcpd-ssh", "mptcpd-ssh.8.md"},
		{"mptcpd-relay", "mptcpd-relay.8.md"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			want := helpOptions(t, goTool, tc.cmd)
			var got []string
			for _, term := range terms(section(t, tc.page, "OPTIONS")) {
				for _, m := range boldOption.FindAllStringSubmatch(term, -1) {
					got = append(got, m[1])
				}
			}
			compareWords(t, tc.page+"'s OPTIONS", want, got)
		})
	}
}

// helpOptions builds cmd/NAME and returns the short and long options
// its --help lists.
func helpOptions(t *testing.T, goTool, name string) []string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/mptcpd-go/mptcpd/cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	help, err := exec.Command(bin, "--help").Output()
	if err != nil {
		t.Fatalf("%s --help: %v", name, err)
	}
	var opts []string
	for _, m := range helpOption.FindAllStringSubmatch(string(help), -1) {
		if m[1] != "" {
			opts = append(opts, m[1])
		}
		opts = append(opts, m[2])
	}
	// Both daemons have more than ten: fewer means helpOption no longer
	// reads the help's layout.
	if len(opts) < 10 {
		t.Fatalf("found only %q in %s --help:\n%s", opts, name, help)
	}
	return opts
}

var (
	// "  -d, --debug   ..." and "      --addr-flags string   ..."
	helpOption = regexp.MustCompile(`(?m)^\s+(?:(-\S), )?(--[a-z][a-z-]*)`)
	// "**-d**, **--debug**" and "**--log**=_DEST_"
	boldOption = regexp.MustCompile(`\*\*(-[^*]+)\*\*`)
)

// TestConfigKeys compares the keys of mptcpd.conf.5 with the ones the
// parser knows.
func TestConfigKeys(t *testing.T) {
	want := strings.Split(policy.Key(math.MaxUint16).String(), ",")
	compareWords(t, "mptcpd.conf.5's KEYS", want, termWords(t, "mptcpd.conf.5.md", "KEYS"))
}

// TestSSHConfigKeys compares the [ssh] keys of mptcpd.conf.5 with the
// ones the parser knows.
func TestSSHConfigKeys(t *testing.T) {
	compareWords(t, "mptcpd.conf.5's SSH ENDPOINT KEYS", policy.SSHKeyNames(), termWords(t, "mptcpd.conf.5.md", "SSH ENDPOINT KEYS"))
}

// TestRelayConfigKeys compares the [relay] keys of mptcpd.conf.5 with
// the ones the parser knows.
func TestRelayConfigKeys(t *testing.T) {
	compareWords(t, "mptcpd.conf.5's RELAY KEYS", policy.RelayKeyNames(), termWords(t, "mptcpd.conf.5.md", "RELAY KEYS"))
}

// TestPolicyWords compares the statements and match criteria of
// mptcpd-policy.5 with the ones the parser lists when it meets an
// unknown one.
func TestPolicyWords(t *testing.T) {
	statements := append([]string{"match"}, termWords(t, "mptcpd-policy.5.md", "GLOBAL STATEMENTS")...)
	statements = append(statements, termWords(t, "mptcpd-policy.5.md", "RULE STATEMENTS")...)
	compareWords(t, "mptcpd-policy.5's statements", knownWords(t, "zzzzzzzzzzzzzzzzzzzzzzzz"), statements)
	compareWords(t, "mptcpd-policy.5's MATCH CRITERIA", knownWords(t, "match zzzzzzzzzzzzzzzzzzzzzzzz=1"),
		termWords(t, "mptcpd-policy.5.md", "MATCH CRITERIA"))
}

// knownWords parses a policy line with an unknown word and returns the
// words the parser's hint offers instead.
func knownWords(t *testing.T, line string) []string {
	t.Helper()
	_, err := policy.Parse("probe", []byte(line+"\n"), policy.Settings{})
	var pe *policy.Error
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Hint, "want one of ") {
		t.Fatalf("parsing %q: want an error listing the known words, got %v", line, err)
	}
	return strings.Split(strings.TrimPrefix(pe.Hint, "want one of "), ", ")
}

// TestPolicyExamples parses the policy page's examples, and checks that
// its built-in policy is policy.Default.
func TestPolicyExamples(t *testing.T) {
	base := policy.DefaultConfig().BaseSettings()
	builtin := codeBlocks(section(t, "mptcpd-policy.5.md", "THE BUILT-IN POLICY"))
	if len(builtin) != 1 {
		t.Fatalf("want one block in THE BUILT-IN POLICY, got %d", len(builtin))
	}
	p, err := policy.Parse("built-in", []byte(builtin[0]), base)
	if err != nil {
		t.Fatalf("THE BUILT-IN POLICY: %v", err)
	}
	if diff := cmp.Diff(policy.Default(base, 0).Format(), p.Format()); diff != "" {
		t.Errorf("THE BUILT-IN POLICY is not policy.Default (-want +got):\n%s", diff)
	}
	examples := codeBlocks(section(t, "mptcpd-policy.5.md", "EXAMPLES"))
	if len(examples) == 0 {
		t.Fatal("no examples in mptcpd-policy.5's EXAMPLES")
	}
	for i, ex := range examples {
		if _, err := policy.Parse("example", []byte(ex), base); err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, ex)
		}
	}
}

// TestConfigExamples parses mptcpd.conf.5's examples.
func TestConfigExamples(t *testing.T) {
	examples := codeBlocks(section(t, "mptcpd.conf.5.md", "EXAMPLES"))
	if len(examples) == 0 {
		t.Fatal("no examples in mptcpd.conf.5's EXAMPLES")
	}
	for i, ex := range examples {
		_, warns, err := policy.ParseConfig("example", []byte(ex))
		if err != nil || len(warns) > 0 {
			t.Errorf("example %d: error %v, warnings %v\n%s", i+1, err, warns, ex)
		}
	}
}

func compareWords(t *testing.T, what string, want, got []string) {
	t.Helper()
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s differ from the code's (-code +page):\n%s", what, diff)
	}
}

// section returns the lines of a hand-written page's section, from its
// "# TITLE" line to the next.
func section(t *testing.T, page, title string) []string {
	t.Helper()
	md, err := sources.ReadFile("man/" + page)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(md), "\n")
	start := slices.Index(lines, "# "+title)
	if start < 0 {
		t.Fatalf("%s has no section %s", page, title)
	}
	lines = lines[start+1:]
	if end := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "# ") }); end >= 0 {
		lines = lines[:end]
	}
	return lines
}

// terms returns the terms of the definition lists in lines: the lines
// followed by a ": definition" line.
func terms(lines []string) []string {
	var out []string
	for i := 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], ": ") {
			out = append(out, lines[i-1])
		}
	}
	return out
}

// termWords returns the keyword that starts each term of a section:
// "**log=**_DEST_" and "**flags** _FLAG_..." give log and flags.
func termWords(t *testing.T, page, title string) []string {
	t.Helper()
	var words []string
	for _, term := range terms(section(t, page, title)) {
		m := termWord.FindStringSubmatch(term)
		if m == nil {
			t.Fatalf("%s: term %q in %s does not start with a keyword", page, term, title)
		}
		words = append(words, m[1])
	}
	return words
}

var termWord = regexp.MustCompile(`^\*\*([a-z][a-z0-9-]*)(?:=\*\*|\*\*)`)

// codeBlocks returns the indented code blocks in lines, unindented.
func codeBlocks(lines []string) []string {
	var blocks []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, strings.TrimSpace(strings.Join(cur, "\n"))+"\n")
			cur = nil
		}
	}
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "    "):
			if len(cur) > 0 || i == 0 || lines[i-1] == "" {
				cur = append(cur, l[4:])
			}
		case l == "" && len(cur) > 0:
			cur = append(cur, "")
		default:
			flush()
		}
	}
	flush()
	return blocks
}
