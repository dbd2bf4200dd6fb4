package ctl

import (
	"fmt"
	"strings"
)

// globalOptions are the options before the command words. They follow ip's
// (ip/ip.c main, iproute2 6.1): single dash, prefixes allowed, the first
// option in ip's order that a word is a prefix of wins ("-n" is -netns,
// "-h" is -human, "-b" is -batch), so that command lines written for ip run
// unchanged. Options that change nothing for MPTCP are accepted and ignored.
type globalOptions struct {
	netns         string
	json, pretty  bool
	version, help bool
	human         bool   // -h: ip's -human; alone, it asks for help here
	batch         string // file of commands, "-" for stdin
	force         bool   // batch: go on after a failed command
	rcvbuf        int    // monitor socket receive buffer; 0 = default
}

// globalOption is one of ip's options. apply is nil for options that do
// nothing here.
type globalOption struct {
	name  string
	exact bool                  // matched whole (strcmp in ip), not by prefix
	match func(opt string) bool // a matcher of its own, instead of name
	arg   bool                  // takes the next word as its value
	apply func(o *globalOptions, val string) error
}

// matches reports whether opt names this option.
func (g globalOption) matches(opt string) bool {
	switch {
	case g.match != nil:
		return g.match(opt)
	case g.exact:
		return opt == g.name
	}
	return matches(opt, g.name)
}

// globalOptionTable is ip 6.1's option list in its order. -I and -D
// (IPX, DECnet) are gone from 6.1, as they are here.
var globalOptionTable = []globalOption{
	{name: "-loops", arg: true},
	{name: "-family", arg: true, apply: checkFamily},
	{name: "-4", exact: true},
	{name: "-6", exact: true},
	{name: "-0", exact: true},
	{name: "-M", exact: true},
	{name: "-B", exact: true},
	{name: "-human", apply: setHuman},
	{name: "-human-readable", apply: setHuman},
	{name: "-iec"},
	{name: "-stats"},
	{name: "-statistics"},
	{name: "-details"},
	{name: "-resolve"},
	{name: "-oneline"},
	{name: "-timestamp"},
	{name: "-tshort"},
	{name: "-Version", apply: func(o *globalOptions, _ string) error { o.version = true; return nil }},
	{name: "-force", apply: func(o *globalOptions, _ string) error { o.force = true; return nil }},
	{name: "-batch", arg: true, apply: func(o *globalOptions, v string) error { o.batch = v; return nil }},
	{name: "-brief"},
	{name: "-json", apply: func(o *globalOptions, _ string) error { o.json = true; return nil }},
	{name: "-pretty", apply: func(o *globalOptions, _ string) error { o.pretty = true; return nil }},
	{name: "-rcvbuf", arg: true, apply: setRcvbuf},
	{name: "-color", match: matchesColor}, // output here has no colour
	{name: "-help", apply: func(o *globalOptions, _ string) error { o.help = true; return nil }},
	{name: "-netns", arg: true, apply: func(o *globalOptions, v string) error { o.netns = v; return nil }},
	{name: "-Numeric"},
	{name: "-all"},
	{name: "-echo", exact: true},
}

// parseGlobalOptions takes the leading options off args and returns the
// rest, the command words. It stops at the first word without a dash, or
// after "--". Cobra's own "--version" is kept too.
func parseGlobalOptions(args []string) (globalOptions, []string, error) {
	var o globalOptions
	for len(args) > 0 {
		word := args[0]
		if word == "--" {
			return o, args[1:], nil
		}
		if !strings.HasPrefix(word, "-") {
			break
		}
		args = args[1:]
		if word == "--version" {
			o.version = true
			continue
		}
		opt := word
		if strings.HasPrefix(opt, "--") {
			opt = opt[1:] // ip takes --json for -json
		}
		// Beyond ip: "-netns=NAME" and "--netns=NAME" as well.
		name, val, hasVal := strings.Cut(opt, "=")
		spec, ok := lookupGlobalOption(name)
		if !hasVal || !ok || !spec.arg {
			spec, ok = lookupGlobalOption(opt)
			if !ok {
				return o, nil, &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Option %q is unknown, try \"mptcpctl -help\".", word)}
			}
			val = ""
			if spec.arg {
				if len(args) == 0 {
					return o, nil, &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Option %q needs a value (%s VALUE).", word, spec.name)}
				}
				val, args = args[0], args[1:]
			}
		}
		if spec.apply != nil {
			if err := spec.apply(&o, val); err != nil {
				return o, nil, err
			}
		}
	}
	return o, args, nil
}

// lookupGlobalOption finds the first option opt names, as ip's chain of
// matches() calls does.
func lookupGlobalOption(opt string) (globalOption, bool) {
	for _, spec := range globalOptionTable {
		if spec.matches(opt) {
			return spec, true
		}
	}
	return globalOption{}, false
}

// matchesColor is ip's matches_color: a prefix of -color, optionally with
// =always, =auto or =never; another value makes the option unknown.
func matchesColor(opt string) bool {
	name, val, _ := strings.Cut(opt, "=")
	if !matches(name, "-color") {
		return false
	}
	switch val {
	case "", "always", "auto", "never":
		return true
	}
	return false
}

// checkFamily accepts the families ip's read_family knows. None of them
// changes an MPTCP command, but a word ip refuses is refused here too.
func checkFamily(_ *globalOptions, v string) error {
	switch v {
	case "inet", "inet6", "link", "mpls", "bridge":
		return nil
	case "help":
		return &ExitError{Code: ExitUsage, Msg: usageText}
	}
	return invalidArgError("invalid protocol family", v)
}

func setHuman(o *globalOptions, _ string) error { o.human = true; return nil }

func setRcvbuf(o *globalOptions, v string) error {
	n, ok := getUnsigned(v, 1<<31-1)
	if !ok {
		return &ExitError{Code: ExitUsage, Msg: fmt.Sprintf("Invalid rcvbuf size '%s'", v)}
	}
	o.rcvbuf = int(n)
	return nil
}
