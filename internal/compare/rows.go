// Package compare runs msb and its peers on the same work, side by side in
// one invocation, and reports one row per measure: msb's median, the peer's
// median, their ratio and the goal (`make compare`).
//
// Each row is a Go benchmark that does both sides itself, alternating them
// round by round so that both see the same machine load, and reports two
// custom metrics: msb's figure and the peer's. The runner only builds the
// table: it runs the benchmarks (`go test -bench`), parses their metrics,
// takes medians over the rounds, and writes the table as text and JSON.
package compare

// Better says which direction of a metric is an improvement.
type Better string

const (
	Lower  Better = "lower"  // times, memory
	Higher Better = "higher" // throughput
)

// Row is one measure: where its benchmark lives, the two metrics it
// reports, and the goal for msb/peer.
type Row struct {
	ID    string // stable key in compare.json
	Title string // what is measured
	Pkg   string // Go package holding the benchmark
	Bench string // benchmark name (no -N suffix)
	// Msb and Peer are the custom metric units the benchmark reports
	// (e.g. "msb-ms", "peer-ms"); Unit is how the table shows them.
	Msb, Peer, Unit string
	PeerName        string // who the peer is
	Better          Better
	// Goal is the bound on the ratio msb/peer (≤ for Lower, ≥ for Higher);
	// 0 means the row has no ratio goal. AbsGoal bounds msb's own figure
	// instead (e.g. memory overhead ≤ 20 MiB); 0 means none.
	Goal, AbsGoal float64
	// Benchtime is the -benchtime of one round ("1x" for rows whose
	// benchmark loops internally).
	Benchtime string
	// Slow rows (many guest boots, hundreds of MiB) are left out of -quick.
	Slow bool
	// Env is extra environment for the benchmark's process.
	Env []string
}

const (
	pkgE2E   = "./test/e2e"
	pkgLocal = "./internal/compare"
)

// Rows is the table of `make compare`, in print order.
var Rows = []Row{
	{ID: "boot", Title: "msb run --rootfs DIR -- true", Pkg: pkgE2E, Bench: "BenchmarkCompareBoot",
		Msb: "msb-ms", Peer: "peer-ms", Unit: "ms", PeerName: "bare QEMU, same kernel+flags, trivial init",
		Better: Lower, Goal: 1.15, Benchtime: "1x"},
	{ID: "exec-host", Title: "exec round trip, agentd as host process behind the relay", Pkg: pkgLocal,
		Bench: "BenchmarkCompareExecHost", Msb: "msb-µs", Peer: "peer-µs", Unit: "µs", PeerName: "fork/exec/wait",
		Better: Lower, Goal: 1.5, Benchtime: "1x"},
	{ID: "exec-guest", Title: "exec round trip, TCG guest", Pkg: pkgE2E, Bench: "BenchmarkCompareExecGuest",
		Msb: "msb-ms", Peer: "peer-ms", Unit: "ms", PeerName: "host fork/exec/wait", Better: Lower, Benchtime: "1x"},
	{ID: "read-host", Title: "fs read 256 MiB out, agentd as host process", Pkg: pkgLocal,
		Bench: "BenchmarkCompareCopyHost", Msb: "read-MB/s", Peer: "pipe-MB/s", Unit: "MB/s", PeerName: "cat | pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x"},
	{ID: "write-host", Title: "fs write 256 MiB in, agentd as host process", Pkg: pkgLocal,
		Bench: "BenchmarkCompareCopyHost", Msb: "write-MB/s", Peer: "pipe-MB/s", Unit: "MB/s", PeerName: "cat | pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x"},
	{ID: "stdout-host", Title: "exec stdout 256 MiB, agentd as host process", Pkg: pkgLocal,
		Bench: "BenchmarkCompareCopyHost", Msb: "stdout-MB/s", Peer: "pipe-MB/s", Unit: "MB/s", PeerName: "cat | pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x"},
	{ID: "stdin-host", Title: "exec stdin 256 MiB, agentd as host process", Pkg: pkgLocal,
		Bench: "BenchmarkCompareCopyHost", Msb: "stdin-MB/s", Peer: "pipe-MB/s", Unit: "MB/s", PeerName: "cat | pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x"},
	{ID: "read-guest", Title: "fs read 256 MiB out of a TCG guest", Pkg: pkgE2E, Bench: "BenchmarkCompareCopyGuest",
		Msb: "read-MB/s", Peer: "guest-pipe-MB/s", Unit: "MB/s", PeerName: "the guest's own pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x", Slow: true},
	{ID: "write-guest", Title: "fs write 256 MiB into a TCG guest (its /tmp tmpfs)", Pkg: pkgE2E, Bench: "BenchmarkCompareCopyGuest",
		Msb: "write-MB/s", Peer: "guest-pipe-MB/s", Unit: "MB/s", PeerName: "the guest's own pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x", Slow: true},
	{ID: "write-guest-cold", Title: "fs write 256 MiB into a fresh TCG guest's untouched RAM", Pkg: pkgE2E,
		Bench: "BenchmarkCompareCopyGuest", Msb: "write-cold-MB/s", Peer: "guest-cold-MB/s", Unit: "MB/s",
		PeerName: "the guest writing as much into its own untouched RAM (dd)", Better: Higher, Goal: 0.5,
		Benchtime: "1x", Slow: true},
	{ID: "stdout-guest", Title: "exec stdout 256 MiB from a TCG guest", Pkg: pkgE2E, Bench: "BenchmarkCompareCopyGuest",
		Msb: "stdout-MB/s", Peer: "guest-pipe-MB/s", Unit: "MB/s", PeerName: "the guest's own pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x", Slow: true},
	{ID: "stdin-guest", Title: "exec stdin 256 MiB into a TCG guest (to cat > /dev/null)", Pkg: pkgE2E, Bench: "BenchmarkCompareCopyGuest",
		Msb: "stdin-MB/s", Peer: "guest-pipe-MB/s", Unit: "MB/s", PeerName: "the guest's own pipe",
		Better: Higher, Goal: 0.5, Benchtime: "1x", Slow: true},
	{ID: "rss-sandbox-qemu", Title: "sandbox process RSS beyond guest RAM, QEMU backend (QEMU apart)", Pkg: pkgE2E,
		Bench: "BenchmarkCompareRSS", Msb: "msb-MiB", Peer: "peer-MiB", Unit: "MiB",
		PeerName: "bare QEMU's RSS beyond guest RAM", Better: Lower, AbsGoal: 20, Benchtime: "1x"},
	{ID: "anon-sandbox-qemu", Title: "sandbox process private (anonymous) memory, QEMU backend", Pkg: pkgE2E,
		Bench: "BenchmarkCompareRSS", Msb: "msb-anon-MiB", Peer: "peer-anon-MiB", Unit: "MiB",
		PeerName: "bare QEMU's anonymous memory (its heap)", Better: Lower, AbsGoal: 5, Benchtime: "1x"},
	{ID: "rss-sandbox-native", Title: "sandbox process RSS beyond guest RAM, native VMM (nested KVM)", Pkg: pkgE2E,
		Bench: "BenchmarkCompareRSSNative", Msb: "msb-MiB", Peer: "peer-MiB", Unit: "MiB",
		PeerName: "QEMU -accel kvm's RSS beyond guest RAM, same L1", Better: Lower, AbsGoal: 20, Benchtime: "1x"},
	{ID: "rss-qemu", Title: "QEMU's RSS beyond guest RAM in a sandbox", Pkg: pkgE2E, Bench: "BenchmarkCompareRSS",
		Msb: "msb-qemu-MiB", Peer: "peer-MiB", Unit: "MiB", PeerName: "bare QEMU, same kernel and flags",
		Better: Lower, Benchtime: "1x"},
	{ID: "guest-touched", Title: "guest RAM touched after boot, QEMU backend", Pkg: pkgE2E, Bench: "BenchmarkCompareRSS",
		Msb: "msb-guest-MiB", Peer: "peer-guest-MiB", Unit: "MiB", PeerName: "bare QEMU guest RAM touched",
		Better: Lower, Benchtime: "1x"},
	{ID: "runs-20-p50", Title: "20 concurrent msb run, p50", Pkg: pkgE2E, Bench: "BenchmarkCompareConcurrentRuns",
		Msb: "p50-ms", Peer: "single-ms", Unit: "ms", PeerName: "one msb run alone", Better: Lower, Benchtime: "1x",
		Slow: true},
	{ID: "runs-20-p99", Title: "20 concurrent msb run, p99", Pkg: pkgE2E, Bench: "BenchmarkCompareConcurrentRuns",
		Msb: "p99-ms", Peer: "single-ms", Unit: "ms", PeerName: "one msb run alone", Better: Lower, Benchtime: "1x",
		Slow: true},
	{ID: "runs-20-ok", Title: "20 concurrent msb run, success", Pkg: pkgE2E, Bench: "BenchmarkCompareConcurrentRuns",
		Msb: "success-%", Peer: "want-%", Unit: "%", PeerName: "all", Better: Higher, Goal: 1, Benchtime: "1x",
		Slow: true},
	{ID: "net-guest", Title: "guest→host TCP through the user-mode stack, TCG guest", Pkg: pkgE2E,
		Bench: "BenchmarkNetGuestToHost", Msb: "stack-MB/s", Peer: "guest-pipe-MB/s", Unit: "MB/s",
		PeerName: "the guest's own pipe", Better: Higher, Benchtime: "1x"},
	{ID: "net-stack", Title: "guest→host TCP through the stack in process: device-path TSO frames, fake guest", Pkg: "./internal/netstack",
		Bench: "BenchmarkCompareNetStack", Msb: "stack-MB/s", Peer: "loopback-MB/s", Unit: "MB/s",
		PeerName: "host loopback TCP", Better: Higher, Goal: 0.3, Benchtime: "1x"},
	{ID: "erofs", Title: "EROFS image of a ~100 MiB, 5000-file tree", Pkg: "./internal/rootfs",
		Bench: "BenchmarkCompareErofs", Msb: "msb-ms", Peer: "peer-ms", Unit: "ms", PeerName: "mkfs.erofs (erofs-utils)",
		Better: Lower, Goal: 0.7, Benchtime: "1x"},
	{ID: "pull", Title: "pull busybox from a local registry", Pkg: pkgE2E, Bench: "BenchmarkImagePullVsSkopeo",
		Msb: "msb-ms/op", Peer: "skopeo-ms/op", Unit: "ms", PeerName: "skopeo copy", Better: Lower, Benchtime: "1x"},
}
