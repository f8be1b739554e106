//go:build cgo

package goaem

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/aem-dev/aem/goaem/abi"
)

// A setup refused for its version says which version each side has and
// matches ENOTSUP.
func TestVersionErrorNamesBothSides(t *testing.T) {
	err := versionError(BackendEmbedded)
	assert.ErrorIs(t, err, syscall.ENOTSUP)
	assert.ErrorIs(t, err, syscall.EOPNOTSUPP)
	assert.Contains(t, err.Error(), fmt.Sprintf("speaks AEM ABI version %d, the embedded backend serves 2..%d",
		abi.APIVersion, abi.APIVersion))
}
