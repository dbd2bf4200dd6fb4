// Command docgen writes mptcpd-go's man pages and mptcpctl's completion
// scripts, for make man and make install:
//
//	docgen [-version V] [-man DIR] [-completion DIR]
//
// The pages are dated SOURCE_DATE_EPOCH when it is set, so that a
// package build can be reproduced, else today.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/mptcpd-go/mptcpd/doc"
)

func main() {
	version := flag.String("version", "devel", "the version the pages name")
	manDir := flag.String("man", "", "write the man pages into `DIR`")
	completionDir := flag.String("completion", "", "write the completion scripts into `DIR`")
	flag.Parse()
	if err := run(*version, *manDir, *completionDir); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}

func run(version, manDir, completionDir string) error {
	if flag.NArg() > 0 || manDir == "" && completionDir == "" {
		return fmt.Errorf("usage: docgen [-version V] [-man DIR] [-completion DIR]")
	}
	if manDir != "" {
		date, err := pageDate()
		if err != nil {
			return err
		}
		if err := doc.WriteManPages(manDir, doc.Header{Version: version, Date: date}); err != nil {
			return err
		}
	}
	if completionDir != "" {
		return doc.WriteCompletions(completionDir)
	}
	return nil
}

// pageDate is SOURCE_DATE_EPOCH (reproducible-builds.org) or now.
func pageDate() (time.Time, error) {
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		return time.Now().UTC(), nil
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", epoch)
	}
	return time.Unix(sec, 0).UTC(), nil
}
