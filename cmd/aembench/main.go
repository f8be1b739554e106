// Command aembench load-tests AEM against its peers: throughput, latency,
// round trips, fan-in, timers, priorities, subscriptions and handler
// modes. Run `aembench -h` for the flags.
package main

import (
	"os"

	"github.com/aem-dev/aem/bench/aemt"
	"github.com/aem-dev/aem/cmd/aembench/app"
)

func main() {
	// The handlers scenario starts this program again as a handler process.
	aemt.ServeHandlers()
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
