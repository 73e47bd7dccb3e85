package tlsintercept

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: Handle and
// HandleConnect must join everything they start.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
