//go:build cgo

package main

import (
	"os"
	"testing"

	"github.com/aem-dev/aem/goaem"
)

// TestMain: the test binary is the program its handler processes run.
func TestMain(m *testing.M) {
	goaem.ServeProcessHandler()
	os.Exit(m.Run())
}

func Example_main() {
	main()
	// Output:
	// stressed -> desserts
	// drawer -> reward
	// live -> evil
}
