//go:build !cgo

package goaem

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOpenWithoutCgo(t *testing.T) {
	r, err := Open()
	assert.Nil(t, r)
	assert.ErrorIs(t, err, ErrNoCgo)
}
