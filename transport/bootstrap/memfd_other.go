//go:build !linux

package bootstrap

import (
	"errors"
	"os"
)

// memoryFile: only Linux runs the agent from memory; elsewhere the disk
// cache serves.
func (a *Agent) memoryFile() (*os.File, error) {
	return nil, errors.New("agent in memory: not supported on this platform")
}
