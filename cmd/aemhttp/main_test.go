package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	aem "github.com/aem-dev/aem"
	"github.com/aem-dev/aem/goaem/abi"
)

// syncBuffer is a bytes.Buffer that the server goroutine writes while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func backends() []string {
	b := []string{"embedded"}
	if _, err := os.Stat(abi.DevicePath); err == nil {
		b = append(b, "kernel")
	}
	return b
}

var listening = regexp.MustCompile(`listening on (http://\S+) \((\w+) backend\)`)

// The server answers, serves files, and on SIGINT prints its counts and
// exits 0.
func TestServeUntilSignal(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("file a\n"), 0o644))
	for _, backend := range backends() {
		t.Run(backend, func(t *testing.T) {
			var stdout, stderr syncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code := make(chan int, 1)
			go func() {
				code <- run(ctx, []string{"-addr", "127.0.0.1:0", "-backend", backend, "-root", dir, "-body", "hi\n"}, &stdout, &stderr)
			}()
			var m []string
			require.Eventually(t, func() bool {
				m = listening.FindStringSubmatch(stdout.String())
				return m != nil
			}, 10*time.Second, 5*time.Millisecond, "no address printed; stderr %q", stderr.String())
			assert.Equal(t, backend, m[2])

			client := &http.Client{Timeout: 10 * time.Second}
			for path, want := range map[string]string{"/": "hi\n", "/files/a.txt": "file a\n"} {
				resp, err := client.Get(m[1] + path)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				assert.Equal(t, want, string(body))
			}
			client.CloseIdleConnections()

			require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT))
			select {
			case c := <-code:
				assert.Equal(t, 0, c, "stderr %q", stderr.String())
			case <-time.After(10 * time.Second):
				t.Fatal("no exit after SIGINT")
			}
			assert.Regexp(t, `aemhttp: 2 requests, 1 connections, \d+ ring enters, [0-9.]+ requests per system call`, stdout.String())
		})
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-version"}, 0, "aemhttp " + aem.Version + "\n"},
		{[]string{"-backend", "bogus"}, 2, `-backend: goaem: backend "bogus": want auto, kernel or embedded`},
		{[]string{"-nosuchflag"}, 2, "flag provided but not defined: -nosuchflag"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-addr", "127.0.0.1:bad", "-backend", "embedded"}, 1, "aemhttp: "},
		{[]string{"-root", "/nonexistent/dir", "-backend", "embedded"}, 1, "aemhttp: root: "},
	} {
		var stdout, stderr syncBuffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		assert.Equal(t, tc.code, code, "%v: stderr %q", tc.args, stderr.String())
		assert.Contains(t, stdout.String()+stderr.String(), tc.out, "%v", tc.args)
	}
}
