// Command aemprobe prints what an AEM backend serves: the ABI versions
// setup accepts, the ring features, the opcodes the core knows and each
// loaded event source with its version and the opcodes it answers.
//
//	aemprobe [-backend auto|kernel|embedded]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

var opNames = [...]string{
	abi.OpNop: "nop", abi.OpSubscribe: "subscribe", abi.OpUnsubscribe: "unsubscribe",
	abi.OpWriteback: "writeback", abi.OpPost: "post", abi.OpCall: "call",
	abi.OpTimerSet: "timer_set", abi.OpGenSet: "gen_set",
}

func ops(mask uint32) string {
	var names []string
	for op := 0; op < 32; op++ {
		if mask&(1<<op) == 0 {
			continue
		}
		if op < len(opNames) && opNames[op] != "" {
			names = append(names, opNames[op])
		} else {
			names = append(names, fmt.Sprintf("op%d", op))
		}
	}
	return strings.Join(names, ",")
}

func printProbe(w io.Writer, b goaem.Backend, p goaem.Probe) {
	fmt.Fprintf(w, "backend %s: ABI versions %d..%d, features %#x, setup flags %#x, sqe flags %#x\n",
		b, p.APIMin, p.APIVersion, p.Features, p.SetupFlags, p.SQEFlags)
	fmt.Fprintf(w, "core ops: %s\n", ops(p.Ops))
	fmt.Fprintf(w, "%-3s %-8s %-7s %-4s %-8s %-8s %s\n", "id", "source", "version", "impl", "abi", "state", "ops")
	for _, s := range p.Sources {
		state := "loaded"
		if s.Closing {
			state = "closing"
		}
		fmt.Fprintf(w, "%-3d %-8s %-7d %-4d %-8s %-8s %s\n", s.Source, s.Name, s.Version, s.Impl,
			versions(s.APIVersions), state, ops(s.Ops))
	}
}

// versions lists the ABI versions in a bit set (1 << v), as "2,3,4".
func versions(set uint32) string {
	var vs []string
	for v := 0; v < 32; v++ {
		if set&(1<<v) != 0 {
			vs = append(vs, fmt.Sprint(v))
		}
	}
	return strings.Join(vs, ",")
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aemprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("backend", "auto", "backend to ask: auto, kernel or embedded")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	b, err := goaem.ParseBackend(*name)
	if err != nil {
		fmt.Fprintln(stderr, "aemprobe:", err)
		return 2
	}
	p, err := goaem.ProbeBackend(b)
	if err != nil {
		fmt.Fprintln(stderr, "aemprobe:", err)
		return 1
	}
	printProbe(stdout, b, p)
	return 0
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
