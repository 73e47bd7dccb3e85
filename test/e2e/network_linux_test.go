package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/msb-go/msb/internal/e2etest"
)

// TestNetwork runs msb's network end to end on the QEMU backend: the guest's
// eth0 behind the user-mode stack, the policy, DNS, published ports and the
// host alias. Every peer lives in a network namespace the test creates (its
// loopback interface holding a few more addresses, one per kind of
// destination), so nothing leaves the machine: the test re-runs itself
// inside it.
func TestNetwork(t *testing.T) {
	if os.Getenv("MSB_E2E_NETNS") != "1" {
		e2etest.Require(t)
		if os.Geteuid() != 0 {
			if e2etest.Required() {
				t.Fatal("TestNetwork needs root to create its network namespace")
			}
			t.Skip("TestNetwork needs root to create its network namespace")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestNetwork$", "-test.v", "-test.timeout=15m")
		cmd.Env = append(os.Environ(), "MSB_E2E_NETNS=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("network test in its namespace: %v", err)
		}
		return
	}
	setupNetns(t)
	c := newCLI(t)
	rootfs := busyboxRootfs(t)
	udpc := e2etest.Build(t, "./test/e2e/testdata/udpc")

	hostHTTP := serveHTTP(t, "127.0.0.1:0", "from-host")
	serveHTTP(t, "192.0.2.10:80", "allowed-ip")
	serveHTTP(t, "192.0.2.11:80", "neighbour")
	serveHTTP(t, "10.0.0.1:80", "private")
	serveHTTP(t, "169.254.169.254:80", "metadata")
	udpEcho := serveUDPEcho(t)
	dns := serveDNS(t, map[string]string{
		"allowed.test.": "192.0.2.10", "denied.test.": "192.0.2.10", "rebind.test.": "10.1.2.3",
	})
	hostPort, udpHostPort := freePort(t, "tcp"), freePort(t, "udp")

	t.Run("policy allows host and one domain", func(t *testing.T) {
		c.must(0, "create", "--rootfs", rootfs, "--name", "net1",
			"--net-rule", "allow@host", "--net-rule", "allow@allowed.test",
			"--deny-domain", "denied.test", "--dns-nameserver", dns,
			"-p", strconv.Itoa(hostPort)+":8080", "-p", strconv.Itoa(udpHostPort)+":9090/udp",
			"--copy", udpc+":/bin/udpc")
		defer c.must(0, "rm", "-f", "net1")
		// The vhost-user socket QEMU connected to is gone once it has
		// (a single-use rendezvous, not a door left open).
		if _, err := os.Stat(filepath.Join(c.home, "sandboxes", "net1", "runtime", "net.sock")); !os.IsNotExist(err) {
			t.Errorf("runtime/net.sock after start: %v; want it removed", err)
		}
		var listed []struct {
			Name  string
			Ports []string
		}
		if err := json.Unmarshal(c.must(0, "ls", "--format", "json").stdout, &listed); err != nil || len(listed) != 1 ||
			strings.Join(listed[0].Ports, " ") != fmt.Sprintf("127.0.0.1:%d->8080/tcp 127.0.0.1:%d->9090/udp", hostPort, udpHostPort) {
			t.Errorf("msb ls ports = %+v (%v); want both published ports", listed, err)
		}
		sh := func(script string) string {
			t.Helper()
			return string(c.must(0, "exec", "net1", "--", "sh", "-c", script).stdout)
		}
		if got := sh(fetch("http://host.msb.internal:" + port(hostHTTP) + "/")); !strings.Contains(got, "from-host") {
			t.Errorf("host alias with allow@host: %q; want the host's page", got)
		}
		if got := sh("nslookup allowed.test"); !strings.Contains(got, "192.0.2.10") {
			t.Errorf("nslookup allowed.test: %q; want 192.0.2.10", got)
		}
		if got := sh(fetch("http://allowed.test/")); !strings.Contains(got, "allowed-ip") {
			t.Errorf("allowed domain: %q; want its page", got)
		}
		refusedFast(t, c, "net1", "http://192.0.2.11/") // the resolved IP's neighbour
		if got := sh("nslookup denied.test 2>&1; true"); !strings.Contains(got, "REFUSED") || strings.Contains(got, "192.0.2.10") {
			t.Errorf("nslookup denied.test: %q; want REFUSED", got)
		}
		if got := sh("nslookup rebind.test 2>&1; true"); strings.Contains(got, "10.1.2.3") {
			t.Errorf("nslookup rebind.test: %q; a private answer must be refused", got)
		}
		if got := sh("udpc host.msb.internal:" + port(udpEcho) + " ping-udp"); strings.TrimSpace(got) != "ping-udp" {
			t.Errorf("udp echo through the host alias: %q; want ping-udp", got)
		}
		// A guest server, reached from the host through -p.
		sh("mkdir -p /tmp/www && echo guest-page > /tmp/www/index.html && httpd -p 8080 -h /tmp/www")
		if got := httpGet(t, "http://127.0.0.1:"+strconv.Itoa(hostPort)+"/"); !strings.Contains(got, "guest-page") {
			t.Errorf("published port: %q; want the guest's page", got)
		}
		sh("setsid udpc -l 9090 >/dev/null 2>&1 </dev/null &")
		if got := udpRoundTrip(t, "127.0.0.1:"+strconv.Itoa(udpHostPort), "ping-published"); got != "ping-published" {
			t.Errorf("published udp port: %q; want ping-published", got)
		}
		// The stack's counters reach msb metrics (sampled once a second).
		var m struct{ NetRxBytes, NetTxPackets, NetFlowsDenied int64 }
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			r := c.must(0, "metrics", "--format", "json", "net1")
			if err := json.Unmarshal(r.stdout, &m); err != nil {
				t.Fatalf("metrics json: %v: %s", err, r.stdout)
			}
			if m.NetRxBytes > 0 && m.NetTxPackets > 0 && m.NetFlowsDenied > 0 || time.Now().After(deadline) {
				break
			}
		}
		if m.NetRxBytes == 0 || m.NetTxPackets == 0 || m.NetFlowsDenied == 0 {
			t.Errorf("network metrics = %+v; want bytes, packets and the refused neighbour counted", m)
		}
	})

	t.Run("default policy refuses fast", func(t *testing.T) {
		c.must(0, "create", "--rootfs", rootfs, "--name", "net2", "--dns-nameserver", dns)
		defer c.must(0, "rm", "-f", "net2")
		for _, url := range []string{
			"http://host.msb.internal:" + port(hostHTTP) + "/", // host loopback through the alias
			"http://$GW:22/", // the gateway's other ports
			"http://10.0.0.1/", "http://169.254.169.254/",
		} {
			refusedFast(t, c, "net2", url)
		}
	})

	t.Run("no-net leaves loopback only", func(t *testing.T) {
		r := c.must(0, "run", "--rootfs", rootfs, "--no-net", "--", "ls", "/sys/class/net")
		// sit0 is the kernel's IPv6-in-IPv4 fallback device (CONFIG_IPV6_SIT):
		// always present, always down, no address.
		for _, iface := range strings.Fields(string(r.stdout)) {
			if iface != "lo" && iface != "sit0" {
				t.Errorf("interfaces with --no-net: %q; want only lo (and the kernel's sit0)", r.stdout)
			}
		}
	})

	t.Run("port in use is a network boot error", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		r := c.must(1, "create", "--rootfs", rootfs, "--name", "busy", "-p", port(ln.Addr().String())+":80")
		defer c.run(context.Background(), nil, "rm", "-f", "busy")
		for _, want := range []string{"network", "address already in use", "a port is already bound"} {
			if !strings.Contains(string(r.stderr), want) {
				t.Errorf("create with a busy port: stderr lacks %q:\n%s", want, r.stderr)
			}
		}
	})
}

// fetch is a guest shell command printing a URL's body (busybox wget).
func fetch(url string) string {
	return "timeout 20 wget -O /tmp/body " + url + " >/dev/null 2>&1 && cat /tmp/body"
}

// refusedFast asserts the guest's connection to url is refused well before
// any connect timeout: the policy answers with a reset, it never dials.
func refusedFast(t *testing.T, c *cli, name, url string) {
	t.Helper()
	start := time.Now()
	// GW is the guest's default gateway, for URLs that name it.
	script := "GW=$(ip route | awk '/default/ {print $3}'); timeout 20 wget -O /tmp/x " + url + " 2>&1; echo rc=$?"
	r := c.must(0, "exec", name, "--", "sh", "-c", script)
	took := time.Since(start)
	out := string(r.stdout)
	if !strings.Contains(out, "refused") || strings.Contains(out, "rc=0") {
		t.Errorf("%s from the guest: %q; want connection refused", url, out)
	}
	if took > 8*time.Second {
		t.Errorf("%s refused after %v; want a fast refusal", url, took)
	}
}

func setupNetns(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", "192.0.2.10/32", "dev", "lo"},
		{"addr", "add", "192.0.2.11/32", "dev", "lo"},
		{"addr", "add", "10.0.0.1/32", "dev", "lo"},
		{"addr", "add", "169.254.169.254/32", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func serveHTTP(t *testing.T, addr, body string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func serveUDPEcho(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

// serveDNS answers A queries for names (fully qualified) over UDP and
// NXDOMAIN for others.
func serveDNS(t *testing.T, names map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			ip, ok := names[strings.ToLower(q.Name.String())]
			if !ok {
				b = dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RCode: dnsmessage.RCodeNameError})
			}
			_ = b.StartQuestions()
			_ = b.Question(q)
			if ok && q.Type == dnsmessage.TypeA {
				_ = b.StartAnswers()
				a := net.ParseIP(ip).To4()
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
					dnsmessage.AResource{A: [4]byte{a[0], a[1], a[2], a[3]}})
			}
			msg, err := b.Finish()
			if err == nil {
				pc.WriteTo(msg, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; ; i++ {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if i == 20 {
			t.Errorf("GET %s: %v", url, err)
			return ""
		}
		time.Sleep(250 * time.Millisecond) // the guest server may still be starting
	}
}

func udpRoundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	for i := 0; i < 20; i++ {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		c.Close()
		if err == nil {
			return string(buf[:n])
		}
	}
	return ""
}
