package ctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseGlobalOptions(t *testing.T) {
	tests := []struct {
		line    string
		want    globalOptions
		rest    string
		errText string // substring; code is always ExitUsage
	}{
		{line: "endpoint show", rest: "endpoint show"},
		{line: "-n ns1 -j -p e s", want: globalOptions{netns: "ns1", json: true, pretty: true}, rest: "e s"},
		{line: "-netns ns1 --json -pretty e", want: globalOptions{netns: "ns1", json: true, pretty: true}, rest: "e"},
		{line: "--netns ns1 e", want: globalOptions{netns: "ns1"}, rest: "e"},
		{line: "-ne ns1 -js e", want: globalOptions{netns: "ns1", json: true}, rest: "e"},
		{line: "-jx e", errText: `Option "-jx" is unknown`},
		{line: "-V", want: globalOptions{version: true}},
		{line: "-Version e s", want: globalOptions{version: true}, rest: "e s"},
		{line: "--version", want: globalOptions{version: true}},
		{line: "-version", errText: `Option "-version" is unknown`}, // ip is case-sensitive
		{line: "-he", want: globalOptions{help: true}},
		{line: "--help", want: globalOptions{help: true}},
		// ip's order: -h is -human, -b is -batch, -f is -family, -r is
		// -resolve, -i is -iec, -l is -loops: all but -batch ignored here.
		{line: "-h -r -i -l 3 -f inet6 m", want: globalOptions{human: true}, rest: "m"},
		{line: "-b cmds.txt", want: globalOptions{batch: "cmds.txt"}},
		{line: "-fo -batch -", want: globalOptions{force: true, batch: "-"}},
		{line: "-4 -6 -0 -M -B -s -d -o -t -ts -br -N -a -echo -iec -human-readable -statistics e", want: globalOptions{human: true}, rest: "e"},
		{line: "-c -col=never -color=auto -color=always e", rest: "e"},
		{line: "-color=bogus e", errText: `Option "-color=bogus" is unknown`},
		{line: "-e e", errText: `Option "-e" is unknown`}, // -echo only whole
		{line: "-I e", errText: `Option "-I" is unknown`}, // IPX is gone from 6.1
		{line: "-rc 65536 monitor", want: globalOptions{rcvbuf: 65536}, rest: "monitor"},
		{line: "-rc 0x10 monitor", want: globalOptions{rcvbuf: 16}, rest: "monitor"},
		{line: "-rcvbuf abc monitor", errText: "Invalid rcvbuf size 'abc'"},
		{line: "-f ipx e", errText: `argument "ipx" is wrong: invalid protocol family`},
		{line: "-n", errText: `Option "-n" needs a value`},
		{line: "--netns=red -netns=blue -l=3 -rc=99 e", want: globalOptions{netns: "blue", rcvbuf: 99}, rest: "e"},
		{line: "-json=1 e", errText: `Option "-json=1" is unknown`},
		{line: "-h", want: globalOptions{human: true}},
		{line: "-h e s", want: globalOptions{human: true}, rest: "e s"},
		{line: "-j -- -n", want: globalOptions{json: true}, rest: "-n"},
		{line: "-x", errText: `Option "-x" is unknown, try "mptcpctl -help".`},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, rest, err := parseGlobalOptions(strings.Fields(tt.line))
			if tt.errText != "" {
				ee, ok := err.(*ExitError)
				if !ok || ee.Code != ExitUsage || !strings.Contains(ee.Msg, tt.errText) {
					t.Fatalf("err = %v, want exit %d containing %q", err, ExitUsage, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(globalOptions{})); diff != "" {
				t.Errorf("unexpected options (-want +got):\n%s", diff)
			}
			if r := strings.Join(rest, " "); r != tt.rest {
				t.Errorf("rest = %q, want %q", r, tt.rest)
			}
		})
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		line string
		want []string
		err  bool
	}{
		{line: "", want: nil},
		{line: "  \t ", want: nil},
		{line: "endpoint add 10.0.0.1 subflow", want: []string{"endpoint", "add", "10.0.0.1", "subflow"}},
		{line: ` endpoint  "show"   id '3' `, want: []string{"endpoint", "show", "id", "3"}},
		{line: `add "a b" c`, want: []string{"add", "a b", "c"}},
		{line: `"show"x`, want: []string{"show", "x"}}, // makeargs eats the char after a closing quote
		{line: `add "unterminated`, err: true},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.line)
		if (err != nil) != tt.err {
			t.Errorf("splitWords(%q) err = %v, want error %v", tt.line, err, tt.err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("splitWords(%q) (-want +got):\n%s", tt.line, diff)
		}
	}
}

func TestMainBatch(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# endpoints\nmptcp endpoint show\n\nlimits \\\n show # the limits\n")
	bad := write("bad", "endpoint show\nendpoint frob\nlimits show\n")
	tests := []struct {
		name   string
		line   string
		code   int
		stdout string
		stderr string
	}{
		{
			name:   "comments, blank lines, continuation, optional mptcp word",
			line:   "-b " + good,
			stdout: dumpText + "add_addr_accepted 0 subflows 2 \n",
		},
		{
			name:   "global options apply to every line",
			line:   "-j -b " + good,
			stdout: dumpJSON + `{"add_addr_accepted":0,"subflows":2}` + "\n",
		},
		{
			name:   "a failed command ends the batch",
			line:   "-b " + bad,
			code:   ExitFailure,
			stdout: dumpText,
			stderr: `Command "frob" is unknown, try "mptcpctl help".` + "\nCommand failed " + bad + ":2\n",
		},
		{
			name:   "-force goes on",
			line:   "-force -b " + bad,
			code:   ExitFailure,
			stdout: dumpText + "add_addr_accepted 0 subflows 2 \n",
			stderr: `Command "frob" is unknown, try "mptcpctl help".` + "\nCommand failed " + bad + ":2\n",
		},
		{
			name:   "missing file",
			line:   "-b " + filepath.Join(dir, "nope"),
			code:   ExitFailure,
			stderr: `Cannot open file "` + filepath.Join(dir, "nope") + `" for reading: No such file or directory` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr, _ := run(t, testBackend(), tt.line)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if diff := cmp.Diff(tt.stdout, stdout); diff != "" {
				t.Errorf("unexpected stdout (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.stderr, stderr); diff != "" {
				t.Errorf("unexpected stderr (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseGlobalOptions(f *testing.F) {
	for _, s := range []string{"-n ns -j -p e s", "-netns=x -rc 0x10 monitor", "-b - -fo", "-col=never -h", "-- -n", "-f inet6 -l 9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		_, rest, err := parseGlobalOptions(args)
		if err != nil {
			if _, ok := err.(*ExitError); !ok {
				t.Fatalf("error %v is not an *ExitError", err)
			}
			return
		}
		// What is left is always the tail of the command line.
		if len(rest) > len(args) || strings.Join(rest, "\x00") != strings.Join(args[len(args)-len(rest):], "\x00") {
			t.Fatalf("rest %q is not a tail of %q", rest, args)
		}
	})
}
