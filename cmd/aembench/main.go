// Command aembench load-tests AEM against its peers: throughput, latency,
// round trips, fan-in, timers, priorities and subscriptions. Run
// `aembench -h` for the flags.
package main

import (
	"os"

	"github.com/aem-dev/aem/cmd/aembench/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
