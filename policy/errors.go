package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Error is one problem in a configuration or policy file. Parsers return
// all of them at once, joined with errors.Join; errors.As finds the first.
type Error struct {
	Pos  Position // zero for a value given outside a file (a command-line flag)
	Msg  string
	Hint string // how to fix it; may be empty
}

// Error formats "file:line: msg (hint: ...)".
func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos != (Position{}) {
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Warning is something a file says that mptcpd-go accepts but ignores or
// reads differently from Intel's mptcpd.
type Warning struct {
	Pos Position
	Msg string
}

// String formats "file:line: msg".
func (w Warning) String() string { return w.Pos.String() + ": " + w.Msg }

// maxErrors bounds what one parse reports: past it, the rest of a file
// (most likely not a config file at all) adds only noise.
const maxErrors = 10

// errorList collects a parse's errors.
type errorList struct {
	errs []error
	full bool
}

// add records e at pos. Past maxErrors it records "too many errors"
// instead and reports false: the parser should stop.
func (l *errorList) add(pos Position, e *Error) bool {
	if l.full {
		return false
	}
	if len(l.errs) == maxErrors {
		l.errs = append(l.errs, &Error{Pos: pos, Msg: "too many errors; stopping here"})
		l.full = true
		return false
	}
	e.Pos = pos
	l.errs = append(l.errs, e)
	return true
}

func (l *errorList) err() error { return errors.Join(l.errs...) }

func errorf(format string, args ...any) *Error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// withHint sets the hint and returns e, for one-line returns.
func (e *Error) withHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// readFile reads a file the daemon (running as root) will obey. Like
// Intel's mptcpd, it refuses one that anybody may write.
func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	if st.Mode().Perm()&0o002 != 0 {
		return nil, &Error{
			Msg:  path + ": file is world-writable; refusing to use it",
			Hint: "chmod o-w " + path,
		}
	}
	return os.ReadFile(path)
}

// didYouMean returns "did you mean X?" for the candidate closest to word,
// or "" when none is close enough to be a typo of it.
func didYouMean(word string, candidates []string) string {
	if len(word) > 64 {
		return "" // no keyword is that long; spare the quadratic work
	}
	best, bestDist := "", 0
	w := strings.ToLower(word)
	for _, c := range candidates {
		d := editDistance(w, c)
		if best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" || bestDist > 1+len(word)/4 {
		return ""
	}
	return fmt.Sprintf("did you mean %q?", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
