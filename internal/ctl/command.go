package ctl

import "github.com/spf13/cobra"

// WithCommand builds mptcpctl's cobra tree as Main runs it, with its help
// and completion commands, and calls fn with it: doc generates the man
// pages and completion scripts from it, so they cannot drift from the
// commands. Whatever fn's use of the tree opens (a namespace, for link
// name completion) is closed when fn returns.
func WithCommand(env Env, fn func(root *cobra.Command) error) error {
	r := &runner{env: env}
	defer r.close()
	root := r.rootCommand()
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	return fn(root)
}
