// Package doc builds the documentation make install puts in place: the
// man pages mptcpd(8), mptcpd-ssh(8), mptcpd-relay(8), mptcpd.conf(5)
// and mptcpd-policy(5), written by hand in man/*.md, mptcpctl's pages,
// generated from its command tree, and mptcpctl's shell completion
// scripts. cmd docgen runs it at build time.
package doc
