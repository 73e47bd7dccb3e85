package e2e

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkNetGuestToHost POSTs 64 MiB from a guest (QEMU, TCG here) to an
// HTTP server on the host's loopback through host.msb.internal and the
// sandbox's user-mode stack, and reports MB/s next to the guest moving the
// same bytes through its own pipe (the emulation's ceiling on this
// machine), and the time of one small request through the stack.
func BenchmarkNetGuestToHost(b *testing.B) {
	c := newCLI(b)
	rootfs := busyboxRootfs(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received.Add(n)
		w.Write([]byte("ok\n"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	c.must(0, "create", "--rootfs", rootfs, "--name", "nb", "--net-rule", "allow@host", "-m", "512")
	defer c.must(0, "rm", "-f", "nb")
	const mib = 64
	timed := func(script string) time.Duration {
		// busybox date has no %N: /proc/uptime has centiseconds, enough
		// for transfers of seconds.
		r := c.must(0, "exec", "nb", "--", "sh", "-c",
			"s=$(cut -d' ' -f1 /proc/uptime); "+script+"; e=$(cut -d' ' -f1 /proc/uptime); "+
				"awk -v s=$s -v e=$e 'BEGIN { printf \"%d\\n\", (e - s) * 1000 }'")
		f := strings.Fields(string(r.stdout))
		ms, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if err != nil {
			b.Fatalf("timing output %q: %v", r.stdout, err)
		}
		return time.Duration(ms) * time.Millisecond
	}
	url := "http://host.msb.internal:" + port + "/"
	// busybox wget posts the file as a C string: no NUL bytes in it.
	c.must(0, "exec", "nb", "--", "sh", "-c", "yes 0123456789abcdef | head -c "+strconv.Itoa(mib<<20)+" > /tmp/blob")
	send := "wget -O /dev/null --post-file=/tmp/blob " + url + " 2>/dev/null"
	pipe := "cat /tmp/blob | cat >/dev/null"
	var stack, guest, request []time.Duration
	for b.Loop() {
		before := received.Load()
		stack = append(stack, timed(send))
		if got := received.Load() - before; got != mib<<20 {
			b.Fatalf("the host received %d bytes of a %d MiB POST", got, mib)
		}
		guest = append(guest, timed(pipe))
		request = append(request, timed("wget -O /dev/null "+url+" 2>/dev/null"))
	}
	med := func(d []time.Duration) time.Duration {
		sorted := slices.Clone(d)
		slices.Sort(sorted)
		return sorted[len(sorted)/2]
	}
	mbps := func(d time.Duration) float64 { return float64(mib<<20) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(med(stack)), "stack-MB/s")
	b.ReportMetric(mbps(med(guest)), "guest-pipe-MB/s")
	b.ReportMetric(mbps(med(stack))/mbps(med(guest)), "ratio")
	b.ReportMetric(float64(med(request).Microseconds())/1000, "request-ms")
}
