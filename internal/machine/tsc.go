package machine

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// HostTSCKHz reads the host TSC rate from /proc/cpuinfo ("cpu MHz"), or 0.
func HostTSCKHz() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil && f > 0 {
				return int(f * 1000)
			}
		}
	}
	return 0
}
