// Command echo is the goaem program of the README: it subscribes to a
// message channel, handles each call by writing back the request
// reversed, and calls itself a few times.
//
//	go run ./goaem/examples/echo
package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/aem-dev/aem/goaem"
)

func main() {
	ring, err := goaem.Open() // the kernel module if loaded, else the embedded backend
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()

	// Every event of channel 1 runs this handler; a call's request sits in
	// shared memory and is reversed in place, then written back as the reply.
	_, err = ring.Subscribe(goaem.Msg{Channel: 1}, goaem.SubOptions{
		Handler: func(ev *goaem.Event) error {
			p := ev.Payload()
			slices.Reverse(p)
			return ev.Writeback(p)
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go ring.Run(ctx, nil) // reads events in batches and dispatches them

	for _, word := range []string{"stressed", "drawer", "live"} {
		reply, err := ring.Call(ctx, ring.Addr(1), []byte(word))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s -> %s\n", word, reply)
	}
}
