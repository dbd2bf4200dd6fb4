package control

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// FuzzRequests feeds arbitrary bytes to the server's reading of request
// lines: no panic, no line over the limit, and only known methods out.
func FuzzRequests(f *testing.F) {
	for _, s := range []string{
		`{"method":"status"}` + "\n", "status\n", `{"method":"events"}`, "\n\n", "null\n",
		`{"method":"reload","x":[1,2]}` + "\n" + `{"method":"explain"}`, strings.Repeat("{", 70000),
		"\xff\x00\n",
	} {
		f.Add([]byte(s))
	}
	known := []string{"", MethodStatus, MethodExplain, MethodConnections, MethodReload, MethodEvents}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		for {
			line, err := readLine(r, MaxRequest)
			if errors.Is(err, io.EOF) || errors.Is(err, errLineTooLong) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(bytes.TrimSuffix(line, []byte("\n"))) > MaxRequest {
				t.Fatalf("line of %d bytes", len(line))
			}
			method, err := parseRequest(line)
			if err == nil && !slices.Contains(known, method) {
				t.Fatalf("method %q accepted", method)
			}
		}
	})
}
