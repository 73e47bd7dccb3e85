package sandbox

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/msb-go/msb/internal/supervisor"
)

// TestMain lets the test binary play the sandbox process: the launcher runs
// `<exe> sandbox`, and with MSB_TEST_AS_SANDBOX in its environment the test
// binary becomes the sandbox process instead of running tests: "1" runs
// supervisor.Main, "fake:<mode>" runs fakeSandbox (fake_test.go).
func TestMain(m *testing.M) {
	switch v := os.Getenv("MSB_TEST_AS_SANDBOX"); {
	case v == "1":
		os.Exit(supervisor.Main(context.Background()))
	case strings.HasPrefix(v, "fake:"):
		os.Exit(fakeSandbox(strings.TrimPrefix(v, "fake:")))
	}
	os.Exit(m.Run())
}
