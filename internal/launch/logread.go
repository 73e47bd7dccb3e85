package launch

import (
	"errors"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// LogReader reads a sandbox's logs as records: exec.log, and with
// MaskSystem in its sources runtime.log and kernel.log too, each followed
// across rotations. It is not safe for concurrent use.
type LogReader struct {
	mask SourceMask
	exec *Follower
	text []*Follower // runtime.log, kernel.log
}

// NewLogReader returns a reader of the exec.log at execLog and, when mask
// has MaskSystem, of the text logs runtimeLog and kernelLog (reference §5:
// system also merges those). A zero mask means DefaultSources.
func NewLogReader(execLog, runtimeLog, kernelLog string, mask SourceMask) *LogReader {
	if mask == 0 {
		mask = DefaultSources
	}
	r := &LogReader{mask: mask, exec: NewFollower(execLog)}
	if mask&MaskSystem != 0 {
		r.text = []*Follower{NewFollower(runtimeLog), NewFollower(kernelLog)}
	}
	return r
}

// Next returns the records of the selected sources written since the last
// call (the first call returns everything kept), in time order. exec.log
// lines that do not parse are skipped.
func (r *LogReader) Next() ([]ExecRecord, error) {
	lines, err := r.exec.Next()
	var out []ExecRecord
	for _, l := range lines {
		if rec, ok := ParseExecRecord(l); ok && r.mask.has(rec.Source) {
			out = append(out, rec)
		}
	}
	if len(r.text) == 0 {
		return out, err
	}
	errs := []error{err}
	for _, fl := range r.text {
		lines, err := fl.Next()
		errs = append(errs, err)
		mtime := fl.modTime()
		for _, l := range lines {
			if rec, ok := TextLogRecord(string(l), mtime); ok {
				out = append(out, rec)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, errors.Join(errs...)
}

// Close closes the files being read.
func (r *LogReader) Close() error {
	errs := []error{r.exec.Close()}
	for _, fl := range r.text {
		errs = append(errs, fl.Close())
	}
	return errors.Join(errs...)
}

// modTime is the modification time of the file being read, or now.
func (fl *Follower) modTime() time.Time {
	if fl.f != nil {
		if st, err := fl.f.Stat(); err == nil {
			return st.ModTime()
		}
	}
	return time.Now()
}

var (
	stampRE  = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))`)
	slogTime = regexp.MustCompile(`^time=(\S+)`)
)

// TextLogRecord turns one runtime.log or kernel.log line into a system
// record: a leading RFC 3339 stamp (or slog's time=) gives the time, else
// fallback (the file's mtime, as the reference does). Empty lines report
// false.
func TextLogRecord(line string, fallback time.Time) (ExecRecord, bool) {
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return ExecRecord{}, false
	}
	t := fallback
	if m := stampRE.FindString(line); m != "" {
		if pt, err := time.Parse(time.RFC3339Nano, m); err == nil {
			t = pt
		}
	} else if m := slogTime.FindStringSubmatch(line); m != nil {
		if pt, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			t = pt
		}
	}
	return ExecRecord{Time: t, Source: SourceSystem, Data: line + "\n"}, true
}

// ReadLogs returns the records matching filter in the logs as they are now,
// in time order: exec.log, and with MaskSystem runtime.log and kernel.log.
// Unlike a LogReader it keeps memory proportional to filter.Tail when that
// is set, so `msb logs --tail 20` of a long log stays small.
func ReadLogs(execLog, runtimeLog, kernelLog string, filter ExecLogFilter) ([]ExecRecord, error) {
	recs, err := ReadExecLog(LogFiles(execLog), filter)
	if err != nil || filter.Sources&MaskSystem == 0 {
		return recs, err
	}
	for _, path := range []string{runtimeLog, kernelLog} {
		for _, name := range LogFiles(path) {
			data, err := os.ReadFile(name)
			if err != nil {
				continue // rotated away since the listing
			}
			mtime := time.Now()
			if st, err := os.Stat(name); err == nil {
				mtime = st.ModTime()
			}
			for line := range strings.Lines(string(data)) {
				if rec, ok := TextLogRecord(line, mtime); ok && filter.Match(rec) {
					recs = append(recs, rec)
				}
			}
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	if filter.Tail > 0 && len(recs) > filter.Tail {
		recs = recs[len(recs)-filter.Tail:]
	}
	return recs, nil
}
