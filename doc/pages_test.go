package doc

import (
	"bytes"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/google/go-cmp/cmp"
)

var testHeader = Header{Version: "v1.2.3", Date: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}

// TestManPages checks the set of pages, their title lines and their
// cross-references, and that no markdown is left in the roff.
func TestManPages(t *testing.T) {
	pages, err := ManPages(testHeader)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"mptcpd.8", "mptcpd.conf.5", "mptcpd-policy.5", "mptcpd-ssh.8", "mptcpd-relay.8",
		"mptcpctl.8", "mptcpctl-endpoint-add.8", "mptcpctl-limits-set.8", "mptcpctl-policy-check.8",
		"mptcpctl-completion-bash.8",
	} {
		if _, ok := pages[name]; !ok {
			t.Errorf("no page %s", name)
		}
	}
	for name, want := range map[string]string{
		"mptcpd.8":                `.TH "MPTCPD" "8" "Jan 2026" "mptcpd-go v1.2.3" "System Manager's Manual"`,
		"mptcpd.conf.5":           `.TH "MPTCPD.CONF" "5" "Jan 2026" "mptcpd-go v1.2.3" "File Formats Manual"`,
		"mptcpd-ssh.8":            `.TH "MPTCPD-SSH" "8" "Jan 2026" "mptcpd-go v1.2.3" "System Manager's Manual"`,
		"mptcpctl-endpoint-add.8": `.TH "MPTCPCTL-ENDPOINT-ADD" "8" "Jan 2026" "mptcpd-go v1.2.3" "System Manager's Manual"`,
	} {
		if got := titleLine(pages[name]); got != want {
			t.Errorf("%s: title line\n%s\nwant\n%s", name, got, want)
		}
	}
	refs := 0
	for name, roff := range pages {
		for _, m := range crossRef.FindAllSubmatch(roff, -1) {
			refs++
			if ref := string(m[1]) + "." + string(m[2]); pages[ref] == nil {
				t.Errorf("%s refers to %s, which is no page", name, ref)
			}
		}
		if m := markdownLeft.Find(roff); m != nil {
			t.Errorf("%s: markdown left in the roff: %q", name, m)
		}
	}
	if refs < len(pages) {
		t.Errorf("only %d cross-references in %d pages: is crossRef out of date?", refs, len(pages))
	}
}

var (
	// \fBmptcpd.conf\fP(5) from the hand-written pages and
	// \fBmptcpctl-endpoint(8)\fP from cobra's.
	crossRef = regexp.MustCompile(`\\fB(mptcp[a-z.-]*[a-z])(?:\\fP)?\(([58])\)`)
	// Markup that md2man did not understand: **bold**, *X*, _X_.
	markdownLeft = regexp.MustCompile(`\*\*|\*[A-Z]+\*|\b_[A-Za-z]+_\b`)
)

func titleLine(roff []byte) string {
	for line := range strings.Lines(string(roff)) {
		if strings.HasPrefix(line, ".TH ") {
			return strings.TrimSuffix(line, "\n")
		}
	}
	return ""
}

// TestManPagesRender formats every page with groff, as man does, and
// fails on any warning.
func TestManPagesRender(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff")
	}
	render := func(roff []byte) string {
		// -t: md2man's tables need tbl; -ww: every warning; -z: no output.
		cmd := exec.Command(groff, "-t", "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = bytes.NewReader(roff)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return err.Error() + ": " + string(out)
		}
		return string(out)
	}
	// The check itself: a page with an unknown macro draws a warning.
	if render([]byte(".TH X 8\n.XYZ\n")) == "" {
		t.Fatal("groff -ww does not warn about an unknown macro")
	}
	pages, err := ManPages(testHeader)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(pages))
	for name := range pages {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if warnings := render(pages[name]); warnings != "" {
			t.Errorf("%s: groff says:\n%s", name, warnings)
		}
	}
}

// TestMarkdownOf checks that help texts keep their characters and their
// layout once through md2man.
func TestMarkdownOf(t *testing.T) {
	for _, tt := range []struct{ name, text, roff string }{
		{"markup characters", `'\' continuations, *all*, add_addr_accepted, [x], <y>, a|b, ` + "`c`",
			"\n.PP\n\\&'\\\\\\&' continuations, *all*, add_addr_accepted, [x], <y>, a|b, `c`\n"},
		{"list and heading marks", "-j prints JSON\n- not a list\n+ nor this\n1. nor this\n# not a heading\n> not a quote",
			"\n.PP\n-j prints JSON\n- not a list\n+ nor this\n1\\&. nor this\n# not a heading\n> not a quote\n"},
		{"paragraphs", "one\ntwo\n\nthree",
			"\n.PP\none\ntwo\n\n.PP\nthree\n"},
		{"indented block", "Usage: a [ b ]\n       a c\n  x  y",
			"\n.EX\nUsage: a [ b ]\n       a c\n  x  y\n.EE\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.TrimPrefix(string(md2man.Render([]byte(markdownOf(tt.text)))), ".nh\n")
			if diff := cmp.Diff(tt.roff, got); diff != "" {
				t.Errorf("markdownOf(%q) renders as (-want +got):\n%s", tt.text, diff)
			}
		})
	}
}
