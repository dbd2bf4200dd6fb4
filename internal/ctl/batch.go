package ctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// batch runs the commands of a file ("-" for stdin), one per line, as
// `ip -batch` does: '#' starts a comment, a trailing '\' continues the
// line, words may be quoted with ' or ". A leading "mptcp" word is dropped,
// so batch files written for ip's mptcp commands run unchanged. A failed
// command prints its error and "Command failed FILE:LINE" and ends the
// batch, unless force; the exit status is then 1. Unlike ip, a usage error
// counts as a failed command rather than ending the process at once.
func (r *runner) batch(name string, force bool) int {
	in := io.Reader(os.Stdin)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(r.env.Stderr, "Cannot open file %q for reading: %s\n", name, errnoText(err))
			return ExitFailure
		}
		defer f.Close()
		in = f
	}
	status := ExitOK
	lines := newCmdlineReader(in)
	for {
		words, lineno, err := lines.next()
		if errors.Is(err, io.EOF) {
			return status
		}
		if err == nil && len(words) == 0 {
			continue
		}
		if err == nil {
			if words[0] == "mptcp" {
				words = words[1:]
			}
			err = r.execute(words)
		}
		if err != nil {
			exitStatus(r.env.Stderr, err)
			fmt.Fprintf(r.env.Stderr, "Command failed %s:%d\n", name, lineno)
			status = ExitFailure
			if !force {
				return status
			}
		}
	}
}

// cmdlineReader splits a batch file into command lines the way iproute2's
// getcmdline and makeargs do.
type cmdlineReader struct {
	s      *bufio.Scanner
	lineno int
}

func newCmdlineReader(in io.Reader) *cmdlineReader {
	s := bufio.NewScanner(in)
	s.Buffer(make([]byte, 0, 4096), 1<<20)
	return &cmdlineReader{s: s}
}

// next returns the words of the next command and the number of its last
// line; io.EOF at the end.
func (c *cmdlineReader) next() ([]string, int, error) {
	if !c.s.Scan() {
		if err := c.s.Err(); err != nil {
			return nil, c.lineno, err
		}
		return nil, c.lineno, io.EOF
	}
	c.lineno++
	line := stripComment(c.s.Text())
	for strings.HasSuffix(line, `\`) {
		if !c.s.Scan() {
			return nil, c.lineno, &ExitError{Code: ExitUsage, Msg: "Error: missing continuation line"}
		}
		c.lineno++
		line = line[:len(line)-1] + stripComment(c.s.Text())
	}
	words, err := splitWords(line)
	return words, c.lineno, err
}

// stripComment cuts a line at its first '#', quoted or not, as ip does.
func stripComment(line string) string {
	line, _, _ = strings.Cut(line, "#")
	return line
}

// splitWords is iproute2's makeargs: words separated by blanks; a word
// that starts with a quote runs to the matching quote.
func splitWords(line string) ([]string, error) {
	const blanks = " \t\r\n"
	var words []string
	for {
		line = strings.TrimLeft(line, blanks)
		if line == "" {
			return words, nil
		}
		if q := line[0]; q == '\'' || q == '"' {
			word, rest, ok := strings.Cut(line[1:], string(q))
			if !ok {
				return nil, &ExitError{Code: ExitUsage, Msg: "Error: unterminated quoted string"}
			}
			words = append(words, word)
			line = rest
			continue
		}
		end := strings.IndexAny(line, blanks)
		if end < 0 {
			return append(words, line), nil
		}
		words, line = append(words, line[:end]), line[end:]
	}
}
