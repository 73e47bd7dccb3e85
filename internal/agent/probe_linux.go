package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// virtioKinds names virtio device ids (virtio v1.2 §5).
var virtioKinds = map[uint64]string{1: "net", 2: "blk", 3: "console", 4: "rng", 9: "fs", 19: "vsock"}

// probeLine is the single line probe mode prints for the boot e2e test.
func probeLine(boot time.Duration, sysVirtio string) string {
	return fmt.Sprintf("msb-agentd: probe ok boot_ns=%d devices=%s", boot.Nanoseconds(), strings.Join(virtioDevices(sysVirtio), ","))
}

// virtioDevices returns the sorted, distinct kinds of the virtio devices
// under sysVirtio (normally /sys/bus/virtio/devices).
func virtioDevices(sysVirtio string) []string {
	files, _ := filepath.Glob(filepath.Join(sysVirtio, "*", "device"))
	var kinds []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(data)), "0x"), 16, 32)
		if err != nil {
			continue
		}
		k, ok := virtioKinds[id]
		if !ok {
			k = "id-" + strconv.FormatUint(id, 10)
		}
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return slices.Compact(kinds)
}
