//go:build cgo

package main

func Example_main() {
	main()
	// Output:
	// stressed -> desserts
	// drawer -> reward
	// live -> evil
}
