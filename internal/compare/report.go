package compare

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one row of the table as written to compare.json.
type Result struct {
	ID       string  `json:"id"`
	Title    string  `json:"title"`
	Unit     string  `json:"unit"`
	PeerName string  `json:"peer"`
	Msb      float64 `json:"msb"`
	PeerVal  float64 `json:"peer_value"`
	// Ratio is msb/peer; 0 when either side is missing.
	Ratio float64 `json:"ratio"`
	// RatioMin and RatioMax are the lowest and highest of the rounds'
	// own ratios (msb and peer of the same round), when there are several.
	RatioMin float64 `json:"ratio_min,omitempty"`
	RatioMax float64 `json:"ratio_max,omitempty"`
	Goal     string  `json:"goal,omitempty"`
	// Met is nil when the row has no goal or was not measured.
	Met    *bool  `json:"met,omitempty"`
	Rounds int    `json:"rounds"`
	Error  string `json:"error,omitempty"`
}

// Report is compare.json.
type Report struct {
	Date    time.Time `json:"date"`
	Machine string    `json:"machine"`
	Rounds  int       `json:"rounds"`
	Rows    []Result  `json:"rows"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// goalText is how a row's goal reads in the table.
func (r Row) goalText() string {
	switch {
	case r.AbsGoal > 0 && r.Better == Lower:
		return fmt.Sprintf("msb ≤ %g %s", r.AbsGoal, r.Unit)
	case r.AbsGoal > 0:
		return fmt.Sprintf("msb ≥ %g %s", r.AbsGoal, r.Unit)
	case r.Goal > 0 && r.Better == Lower:
		return fmt.Sprintf("≤ %g×", r.Goal)
	case r.Goal > 0:
		return fmt.Sprintf("≥ %g×", r.Goal)
	}
	return ""
}

// Evaluate turns the samples of a run into the row's result. A row whose
// benchmark reported nothing (skipped, failed, not run) has Error set and
// no verdict, so a missing measure never reads as a met goal.
func Evaluate(r Row, s Samples) Result {
	res := Result{ID: r.ID, Title: r.Title, Unit: r.Unit, PeerName: r.PeerName, Goal: r.goalText()}
	msb, peer := s[r.Bench][r.Msb], s[r.Bench][r.Peer]
	res.Rounds = min(len(msb), len(peer))
	if len(msb) == 0 || len(peer) == 0 {
		res.Error = fmt.Sprintf("%s reported no %s/%s", r.Bench, r.Msb, r.Peer)
		return res
	}
	res.Msb, res.PeerVal = median(msb), median(peer)
	if res.PeerVal != 0 {
		res.Ratio = res.Msb / res.PeerVal
	}
	if len(msb) == len(peer) && len(msb) > 1 && !slices.Contains(peer, 0) {
		// Each round measured both sides: its ratio is a pair from the
		// same minutes of the machine, and the range shows how far the
		// medians' ratio can be trusted.
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := range msb {
			r := msb[i] / peer[i]
			lo, hi = min(lo, r), max(hi, r)
		}
		res.RatioMin, res.RatioMax = lo, hi
	}
	var met bool
	switch {
	case r.AbsGoal > 0 && r.Better == Lower:
		met = res.Msb <= r.AbsGoal
	case r.AbsGoal > 0:
		met = res.Msb >= r.AbsGoal
	case r.Goal > 0 && res.Ratio == 0:
		return res
	case r.Goal > 0 && r.Better == Lower:
		met = res.Ratio <= r.Goal
	case r.Goal > 0:
		met = res.Ratio >= r.Goal
	default:
		return res
	}
	res.Met = &met
	return res
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// spread is the rounds' range of ratios as the table shows it after the
// ratio, or nothing.
func (res Result) spread() string {
	if res.RatioMax == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s–%s)", num(res.RatioMin), num(res.RatioMax))
}

func (res Result) verdict() string {
	switch {
	case res.Error != "":
		return "not measured"
	case res.Met == nil:
		return ""
	case *res.Met:
		return "met"
	}
	return "NOT met"
}

// WriteText prints the table for a terminal.
func (rep Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tMSB\tPEER\tRATIO\tGOAL\tVERDICT\tPEER IS")
	for _, r := range rep.Rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t%s\t%s\t%s\n", r.Title, r.Goal, r.verdict(), r.PeerName)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%s×%s\t%s\t%s\t%s\n", r.Title, num(r.Msb), r.Unit, num(r.PeerVal), r.Unit,
			num(r.Ratio), r.spread(), r.Goal, r.verdict(), r.PeerName)
	}
	return tw.Flush()
}

// Markdown renders the table for the README.
func (rep Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `make compare` on %s, %s, medians of %d rounds.\n\n", rep.Date.Format("2006-01-02"),
		rep.Machine, rep.Rounds)
	b.WriteString("| measure | msb | peer | ratio | goal | verdict |\n|---|---|---|---|---|---|\n")
	for _, r := range rep.Rows {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %s | – | – | – | %s | not measured |\n", cell(r.Title), cell(r.Goal))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s %s | %s %s (%s) | %s×%s | %s | %s |\n", cell(r.Title), num(r.Msb), r.Unit, num(r.PeerVal),
			r.Unit, cell(r.PeerName), num(r.Ratio), r.spread(), cell(r.Goal), r.verdict())
	}
	return b.String()
}

// cell escapes the pipes in a Markdown table cell ("cat | pipe").
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// JSON encodes the report as compare.json.
func (rep Report) JSON() ([]byte, error) {
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return append(out, '\n'), nil
}

// The README block the table is generated into.
const (
	beginMarker = "<!-- compare:begin (generated by make compare from bin/compare.json; do not edit) -->"
	endMarker   = "<!-- compare:end -->"
)

// ReplaceBlock returns doc with the text between the compare markers
// replaced by table. It fails when the markers are missing or out of
// order, rather than appending a second table.
func ReplaceBlock(doc []byte, table string) ([]byte, error) {
	i := bytes.Index(doc, []byte(beginMarker))
	j := bytes.Index(doc, []byte(endMarker))
	if i < 0 || j < 0 || j < i {
		return nil, fmt.Errorf("replace table: markers %q … %q not found in order", beginMarker, endMarker)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(beginMarker)])
	out.WriteString("\n")
	out.WriteString(table)
	out.Write(doc[j:])
	return out.Bytes(), nil
}
