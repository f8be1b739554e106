// Package aem is the repository's root: it holds the release version, read
// from the VERSION file, so that every part reports the same one. The API
// is in the goaem package.
package aem

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var versionFile string

// Version is the release, e.g. "0.1.0".
var Version = strings.TrimSpace(versionFile)
