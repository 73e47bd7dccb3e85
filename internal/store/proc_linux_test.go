package store

import (
	"os"
	"testing"
)

func TestProcessStartTicksSelf(t *testing.T) {
	if _, ok := processStartTicks(os.Getpid()); !ok {
		t.Errorf("processStartTicks(self) failed")
	}
}
