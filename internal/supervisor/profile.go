package supervisor

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// CPUProfileEnv, when set in the environment of `msb create`/`msb run`
// (which the sandbox process inherits), makes the sandbox process write a
// Go CPU profile of its whole life to logs/cpu.pprof beside runtime.log. It
// is a developer's diagnostic: where a slow path spends the sandbox
// process's time (the native VMM's devices, the network stack, the relay),
// read with `go tool pprof -top msb cpu.pprof`.
const CPUProfileEnv = "MSB_SANDBOX_CPUPROFILE"

// startCPUProfile starts profiling into path; stop ends it and closes the
// file. The file is opened before the process confines itself.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
