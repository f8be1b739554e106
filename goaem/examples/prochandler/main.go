// Command prochandler is the echo program with its handler in other
// processes: each call's request is reversed in place, in the ring's
// shared payload slot, by a pooled handler process re-executed from this
// program, and the reply carries the change.
//
//	go run ./goaem/examples/prochandler
package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/aem-dev/aem/goaem"
)

func init() {
	goaem.RegisterProcessHandler("reverse", func(d []byte) (int, error) {
		slices.Reverse(d) // in place: d is the event's slot, shared with the ring
		return len(d), nil
	})
}

func main() {
	goaem.ServeProcessHandler() // in a handler process: serves, then exits
	ring, err := goaem.Open()
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()
	ph, err := ring.NewProcessHandler(goaem.ProcessOptions{Handler: "reverse", MaxProcs: 2, Pool: true, Timeout: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer ph.Close()
	_, err = ring.Subscribe(goaem.Msg{Channel: 1}, goaem.SubOptions{Mode: goaem.ModeSpawn, Handler: ph.Handle, MaxInFlight: 2})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go ring.Run(ctx, nil)

	for _, word := range []string{"stressed", "drawer", "live"} {
		reply, err := ring.Call(ctx, ring.Addr(1), []byte(word))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s -> %s\n", word, reply)
	}
}
