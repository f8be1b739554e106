package aemnet_test

import (
	"io"
	"log"
	"net/http"

	"github.com/aem-dev/aem/goaem/aemnet"
)

// net/http on a ring: the kernel side accepts, receives and sends.
func ExampleListen() {
	ln, err := aemnet.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello, world\n")
	})
	log.Fatal(http.Serve(ln, handler))
}
