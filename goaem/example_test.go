//go:build cgo

package goaem_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"runtime"
	"time"

	"github.com/aem-dev/aem/goaem"
)

// Subscribe to a message channel, post to it and handle what arrives.
func Example() {
	ring, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded))
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()

	sub, err := ring.Subscribe(goaem.Msg{Channel: 1}, goaem.SubOptions{Tag: 7})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []string{"hello", "world"} {
		if err := ring.Post(sub.Addr(1), []byte(m), 0); err != nil {
			log.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	batch := make([]goaem.Event, 16)
	n, err := ring.Wait(ctx, batch, 2)
	if err != nil {
		log.Fatal(err)
	}
	for i := range batch[:n] {
		ev := &batch[i]
		fmt.Printf("tag %d: %s\n", ev.Tag(), ev.Payload())
		ev.Release()
	}
	// Output:
	// tag 7: hello
	// tag 7: world
}

// A call waits for the handler's writeback: here the handler upper-cases
// the request in place, in the event's shared-memory slot.
func ExampleRing_Call() {
	ring, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded))
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()

	_, err = ring.Subscribe(goaem.Msg{Channel: 9}, goaem.SubOptions{
		Handler: func(ev *goaem.Event) error {
			p := ev.Payload()
			copy(p, bytes.ToUpper(p))
			return ev.Writeback(p)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go ring.Run(ctx, nil) //nolint:errcheck // ends with ctx

	reply, err := ring.Call(ctx, ring.Addr(9), []byte("shout"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output: SHOUT
}

// A server that polls in a loop and a caller that busy-polls for its
// reply: neither side sleeps, and the caller's reply buffer is reused, so
// a call allocates nothing.
func ExampleRing_CallWith() {
	server, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded))
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()
	client, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	if _, err := server.Subscribe(goaem.Msg{Channel: 1}, goaem.SubOptions{}); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	go func() { // the server: Poll in a loop, answer each call in place
		batch := make([]goaem.Event, 64)
		for ctx.Err() == nil {
			n, err := server.Poll(batch)
			if err != nil {
				return
			}
			for i := range batch[:n] {
				p := batch[i].Payload()
				p[0]++
				_ = batch[i].Writeback(p)
			}
			if n == 0 {
				runtime.Gosched()
			}
		}
	}()

	resp := make([]byte, client.SlotSize())
	req := []byte{0}
	for i := 0; i < 3; i++ {
		n, err := client.CallWith(ctx, server.Addr(1), req, resp, goaem.CallOptions{Spin: time.Millisecond})
		if err != nil {
			log.Fatal(err)
		}
		req[0] = resp[:n][0]
	}
	fmt.Println(req[0])
	// Output: 3
}

// One-shot and periodic timers.
func ExampleTimer() {
	ring, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded))
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()

	once, err := ring.Subscribe(goaem.Timer{First: 5 * time.Millisecond}, goaem.SubOptions{Tag: 1})
	if err != nil {
		log.Fatal(err)
	}
	tick, err := ring.Subscribe(goaem.Timer{First: 2 * time.Millisecond, Interval: 2 * time.Millisecond},
		goaem.SubOptions{Tag: 2})
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fired, ticks := false, uint64(0)
	batch := make([]goaem.Event, 8)
	for !fired || ticks < 3 {
		n, err := ring.Wait(ctx, batch, 1)
		if err != nil {
			log.Fatal(err)
		}
		for i := range batch[:n] {
			ev := &batch[i]
			expirations, _ := ev.TimerExpirations()
			if ev.Tag() == 1 {
				fired = ev.Final()
			} else {
				ticks += expirations
			}
			ev.Release()
		}
	}
	if err := tick.Unsubscribe(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("one-shot fired and ended:", once.Ended())
	fmt.Println("periodic ticked at least 3 times:", ticks >= 3)
	// Output:
	// one-shot fired and ended: true
	// periodic ticked at least 3 times: true
}

// Class 0 is the most urgent: Poll drains it before class 1, whatever the
// order of arrival.
func Example_priorities() {
	ring, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded), goaem.WithClasses(2))
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()

	for class, channel := range []uint32{10, 11} {
		if _, err := ring.Subscribe(goaem.Msg{Channel: channel}, goaem.SubOptions{Class: class}); err != nil {
			log.Fatal(err)
		}
	}
	ring.Post(ring.Addr(11), []byte("routine"), 1)
	ring.Post(ring.Addr(11), []byte("routine, again"), 1)
	ring.Post(ring.Addr(10), []byte("urgent"), 0)

	batch := make([]goaem.Event, 8)
	n, err := ring.Poll(batch)
	if err != nil {
		log.Fatal(err)
	}
	for i := range batch[:n] {
		fmt.Printf("class %d: %s\n", batch[i].Class(), batch[i].Payload())
		batch[i].Release()
	}
	// Output:
	// class 0: urgent
	// class 1: routine
	// class 1: routine, again
}

// Handlers can run in their own goroutines (bounded) or in a new process
// per event; here a command upper-cases each call's payload.
func ExampleCloner() {
	ring, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded))
	if err != nil {
		log.Fatal(err)
	}
	defer ring.Close()

	_, err = ring.Subscribe(goaem.Msg{Channel: 3}, goaem.SubOptions{
		Mode:        goaem.ModeClone,
		MaxInFlight: 4,
		Clone:       &goaem.Cloner{Path: "tr", Args: []string{"a-z", "A-Z"}, Timeout: 5 * time.Second},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go ring.Run(ctx, nil) //nolint:errcheck // ends with ctx

	reply, err := ring.Call(ctx, ring.Addr(3), []byte("from a process"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output: FROM A PROCESS
}
