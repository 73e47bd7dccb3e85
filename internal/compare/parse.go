package compare

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Samples holds every value a benchmark reported, per metric unit, one
// value per round (go test -count).
type Samples map[string]map[string][]float64 // bench → unit → values

// benchLine is a result line of `go test -bench`: name with an optional
// -GOMAXPROCS suffix, iterations, then value/unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark[^\s]+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

// Parse reads `go test -bench` output and collects the metrics of every
// result line into s. Lines that are not results (logs, PASS, ok) are
// skipped; a result line with an odd value/unit list is an error, since
// it means the output format is not what the table is built from.
func (s Samples) Parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		if len(f)%2 != 0 {
			return fmt.Errorf("parse %s: odd value/unit list %q", m[1], m[3])
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("parse %s: value %q: %w", m[1], f[i], err)
			}
			s.add(m[1], f[i+1], v)
		}
	}
	return sc.Err()
}

func (s Samples) add(bench, unit string, v float64) {
	if s[bench] == nil {
		s[bench] = map[string][]float64{}
	}
	s[bench][unit] = append(s[bench][unit], v)
}
