package doc

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/spf13/cobra"
	cobradoc "github.com/spf13/cobra/doc"

	"github.com/mptcpd-go/mptcpd/internal/ctl"
)

// sources are the hand-written pages, NAME.SECTION.md in go-md2man's
// markdown without the title line, which WriteManPages adds.
//
//go:embed man/*.md
var sources embed.FS

// Header is what every page's title line says besides its name.
type Header struct {
	Version string    // shown as "mptcpd-go VERSION"
	Date    time.Time // the page's date; only month and year are shown
}

func (h Header) source() string { return "mptcpd-go " + h.Version }

func (h Header) date() string { return h.Date.Format("Jan 2006") }

// manuals names the manual of each section a page goes to.
var manuals = map[string]string{
	"5": "File Formats Manual",
	"8": "System Manager's Manual",
}

// mptcpctlSection is mptcpctl's, as ip(8)'s: it configures the system.
const mptcpctlSection = "8"

// WriteManPages writes every man page into dir as roff, one NAME.SECTION
// file each (see ManPages).
func WriteManPages(dir string, h Header) error {
	pages, err := ManPages(h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("doc: %w", err)
	}
	for name, roff := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), roff, 0o644); err != nil {
			return fmt.Errorf("doc: %w", err)
		}
	}
	return nil
}

// ManPages renders every man page as roff, by file name (NAME.SECTION):
// the hand-written ones and one per mptcpctl command.
func ManPages(h Header) (map[string][]byte, error) {
	pages, err := mptcpctlPages(h)
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(sources, "man/*.md")
	if err != nil {
		return nil, fmt.Errorf("doc: %w", err)
	}
	for _, name := range names {
		roff, err := renderSource(name, h)
		if err != nil {
			return nil, err
		}
		pages[strings.TrimSuffix(path.Base(name), ".md")] = roff
	}
	for name, roff := range pages {
		pages[name] = indentExamples(roff)
	}
	return pages, nil
}

// renderSource renders one hand-written page, whose file name gives its
// name and section.
func renderSource(name string, h Header) ([]byte, error) {
	md, err := sources.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("doc: %w", err)
	}
	base := strings.TrimSuffix(path.Base(name), ".md")
	dot := strings.LastIndexByte(base, '.')
	section := base[dot+1:]
	manual, ok := manuals[section]
	if dot <= 0 || !ok {
		return nil, fmt.Errorf("doc: %s: want NAME.SECTION.md, SECTION one of 5 and 8", name)
	}
	// The title line as cobra's pages have it.
	title := fmt.Sprintf("%% \"%s\" \"%s\" \"%s\" \"%s\" \"%s\"\n", strings.ToUpper(base[:dot]), section, h.date(), h.source(), manual)
	return md2man.Render(append([]byte(title), md...)), nil
}

// indentExamples indents md2man's example blocks (.EX to .EE), which it
// leaves at the margin of the text around them.
func indentExamples(roff []byte) []byte {
	roff = bytes.ReplaceAll(roff, []byte("\n.EX\n"), []byte("\n.RS\n.EX\n"))
	return bytes.ReplaceAll(roff, []byte("\n.EE\n"), []byte("\n.EE\n.RE\n"))
}

// mptcpctlPages renders mptcpctl's pages from the command tree that
// mptcpctl runs. cobra writes them into a directory; they are read back
// for the touches ManPages gives every page.
func mptcpctlPages(h Header) (map[string][]byte, error) {
	tmp, err := os.MkdirTemp("", "mptcpctl-man-")
	if err != nil {
		return nil, fmt.Errorf("doc: %w", err)
	}
	defer os.RemoveAll(tmp)
	err = ctl.WithCommand(ctl.Env{Stdout: io.Discard, Stderr: io.Discard}, func(root *cobra.Command) error {
		prepareForMan(root)
		return cobradoc.GenManTree(root, &cobradoc.GenManHeader{
			Section: mptcpctlSection,
			Date:    &h.Date,
			Source:  h.source(),
			Manual:  manuals[mptcpctlSection],
		}, tmp)
	})
	if err != nil {
		return nil, fmt.Errorf("doc: mptcpctl pages: %w", err)
	}
	files, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("doc: %w", err)
	}
	pages := make(map[string][]byte, len(files))
	for _, f := range files {
		if pages[f.Name()], err = os.ReadFile(filepath.Join(tmp, f.Name())); err != nil {
			return nil, fmt.Errorf("doc: %w", err)
		}
	}
	return pages, nil
}

// prepareForMan turns the help texts of c and its subcommands, written
// for a terminal, into the markdown cobra's man generator expects, and
// drops its "Auto generated" history section.
func prepareForMan(c *cobra.Command) {
	c.DisableAutoGenTag = true
	c.Short = escapeMarkdown(c.Short)
	c.Long = markdownOf(c.Long)
	for _, sub := range c.Commands() {
		prepareForMan(sub)
	}
}

// markdownOf converts a help text into markdown that renders alike:
// prose paragraphs flow and keep every character; a paragraph with
// indented lines (a usage synopsis, an aligned list) is laid out as
// written.
func markdownOf(text string) string {
	paras := strings.Split(strings.TrimSpace(text), "\n\n")
	for i, p := range paras {
		lines := strings.Split(p, "\n")
		indented := false
		for _, l := range lines {
			indented = indented || strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")
		}
		for j, l := range lines {
			if indented {
				lines[j] = "    " + l // a code block
			} else {
				lines[j] = escapeMarkdown(l)
			}
		}
		paras[i] = strings.Join(lines, "\n")
	}
	return strings.Join(paras, "\n\n")
}

// escapeMarkdown backslash-escapes the characters that markdown would
// read as markup: emphasis, code, links and HTML anywhere, and list,
// heading or quote marks where a line starts with them.
func escapeMarkdown(line string) string {
	var b strings.Builder
	digits := true // so far the line is digits, which a "." makes a list item
	for i, r := range line {
		lead := i == 0 && strings.ContainsRune("-+#>", r) || digits && i > 0 && r == '.'
		if lead || strings.ContainsRune("\\`*_[]<>|", r) {
			b.WriteByte('\\')
		}
		digits = digits && r >= '0' && r <= '9'
		b.WriteRune(r)
	}
	return b.String()
}

// completionFiles are mptcpctl's completion scripts: the file each shell
// loads for mptcpctl, and the shell.
var completionFiles = []struct{ file, shell string }{
	{"mptcpctl.bash", "bash"},
	{"_mptcpctl", "zsh"},
	{"mptcpctl.fish", "fish"},
}

// WriteCompletions writes the completion scripts that `mptcpctl
// completion SHELL` prints into dir: mptcpctl.bash, _mptcpctl (zsh) and
// mptcpctl.fish.
func WriteCompletions(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("doc: %w", err)
	}
	for _, c := range completionFiles {
		var out, errs bytes.Buffer
		if st := ctl.Main([]string{"completion", c.shell}, ctl.Env{Stdout: &out, Stderr: &errs}); st != ctl.ExitOK {
			return fmt.Errorf("doc: mptcpctl completion %s: exit %d: %s", c.shell, st, strings.TrimSpace(errs.String()))
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), out.Bytes(), 0o644); err != nil {
			return fmt.Errorf("doc: %w", err)
		}
	}
	return nil
}
