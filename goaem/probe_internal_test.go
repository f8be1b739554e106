//go:build cgo

package goaem

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A setup refused for its version says which version each side has and
// matches ENOTSUP.
func TestVersionErrorNamesBothSides(t *testing.T) {
	err := versionError(BackendEmbedded)
	assert.ErrorIs(t, err, syscall.ENOTSUP)
	assert.ErrorIs(t, err, syscall.EOPNOTSUPP)
	assert.Contains(t, err.Error(), "speaks AEM ABI version 3, the embedded backend serves 2..3")
}
