package main

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/aem-dev/aem/goaem/abi"
)

func TestPrintsEmbeddedSources(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, run([]string{"-backend", "embedded"}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), fmt.Sprintf("ABI versions 2..%d", abi.APIVersion))
	assert.Regexp(t, `(?m)^1 +timer +2 +1 +2,3,4 +loaded +subscribe,unsubscribe,writeback,timer_set$`, out.String())
	assert.Regexp(t, `(?m)^3 +gen .*gen_set$`, out.String())
	assert.Equal(t, 2, run([]string{"-backend", "bogus"}, &out, &errb))
}
