// Command mirrord-load measures HTTP servers for the benchmarks in
// docs/BENCHMARKS.md: `get` loads one or more URLs with N concurrent clients
// and reports throughput and latency; `upstream` serves a directory
// throttled, as a slow mirror would, and counts the requests it gets; `mix`
// starts a mirrord and loads it with hits, misses, revalidations and
// uploads for the reliability report (docs/RELIABILITY.md).
package main

import (
	"errors"
	"fmt"
	"os"
)

const usage = `usage:
  mirrord-load get --url URL[,URL...] [--clients N] [--duration D | --requests N]
                   [--upstream-stats URL] [--json]
  mirrord-load upstream --root DIR [--listen 127.0.0.1:PORT] [--rate 20MB]
  mirrord-load mix --binary bin/mirrord [--clients 1000] [--duration 60s] [--json]
                   (starts mirrord and an upstream; hits, misses, revalidations, uploads)`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mirrord-load:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "get":
		return getCmd(rest)
	case "upstream":
		return upstreamCmd(rest)
	case "mix":
		return mixCmd(rest)
	case "help", "-h", "--help":
		fmt.Println(usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}
