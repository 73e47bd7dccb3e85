package sandbox

import (
	"context"
	"os"
	"testing"

	"github.com/msb-go/msb/internal/supervisor"
)

// TestMain lets the test binary play the sandbox process: Manager.spawn runs
// `<exe> sandbox`, and with MSB_TEST_AS_SANDBOX=1 in its environment the
// test binary becomes supervisor.Main instead of running tests.
func TestMain(m *testing.M) {
	if os.Getenv("MSB_TEST_AS_SANDBOX") == "1" {
		os.Exit(supervisor.Main(context.Background()))
	}
	os.Exit(m.Run())
}
