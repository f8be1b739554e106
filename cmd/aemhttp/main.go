// Command aemhttp is an HTTP/1.1 server whose sockets are served through
// an AEM ring (package goaem/aemhttp): the kernel side accepts, receives
// and sends; the server only parses and answers.
//
//	aemhttp [-addr 127.0.0.1:8080] [-root DIR] [-body TEXT] [-backend auto|kernel|embedded]
//
// It prints the address it listens on and, on SIGINT or SIGTERM, its
// counts: requests, connections, and requests per system call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	aem "github.com/aem-dev/aem"
	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/aemhttp"
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("aemhttp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (host:port; port 0 picks one)")
	root := fs.String("root", "", "directory served under /files/ (none if empty)")
	body := fs.String("body", string(aemhttp.DefaultBody), "static response body for GET /")
	backend := fs.String("backend", "auto", "AEM backend: auto, kernel or embedded")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "aemhttp: unexpected argument %q (all settings are flags)\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *version {
		fmt.Fprintln(stdout, "aemhttp", aem.Version)
		return 0
	}
	b, err := goaem.ParseBackend(*backend)
	if err != nil {
		fmt.Fprintf(stderr, "aemhttp: -backend: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := aemhttp.Listen(aemhttp.Config{
		Addr:    *addr,
		Body:    []byte(*body),
		Root:    *root,
		Options: []goaem.Option{goaem.WithBackend(b)},
	})
	if err != nil {
		fmt.Fprintln(stderr, "aemhttp:", err)
		return 1
	}
	defer s.Close()
	fmt.Fprintf(stdout, "aemhttp: listening on http://%s (%s backend)\n", s.Addr(), s.Backend())
	err = s.Serve(ctx)
	st := s.Stats()
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	fmt.Fprintf(stdout, "aemhttp: %d requests, %d connections, %d ring enters, %.1f requests per system call (enter)\n",
		st.Requests, st.Conns, st.Enters, st.RequestsPerEnter())
	if st.SendErrors != 0 {
		fmt.Fprintf(stdout, "aemhttp: %d sends refused\n", st.SendErrors)
	}
	if st.Overruns != 0 {
		fmt.Fprintf(stdout, "aemhttp: %d connections closed for pipelining past the bound without reading\n", st.Overruns)
	}
	if err != nil {
		fmt.Fprintln(stderr, "aemhttp:", err)
		return 1
	}
	return 0
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
