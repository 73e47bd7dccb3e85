package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Paths of the account databases, parsed directly because agentd is built
// without cgo (no NSS).
const (
	passwdPath = "/etc/passwd"
	groupPath  = "/etc/group"
)

// maxAccountFile bounds how much of /etc/passwd or /etc/group is read.
const maxAccountFile = 16 << 20

// credential is the identity an exec runs as.
type credential struct {
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups; empty = none (setgroups(0))
	Home   string   // "" = not known
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// resolveUser resolves "user|uid[:group|gid]" the way reference §8.3 does:
// names through /etc/passwd and /etc/group, the primary group from passwd
// unless given, supplementary groups (initgroups) only for a named user.
// A numeric uid missing from passwd runs with gid 0 and no HOME.
func resolveUser(spec, passwdFile, groupFile string) (credential, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return credential{}, fmt.Errorf("user %q: want user|uid[:group|gid]", spec)
	}
	users, err := readPasswd(passwdFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return credential{}, err
	}
	var c credential
	named := false
	if uid, ok := parseID(userPart); ok {
		c.UID = uid
		for _, u := range users {
			if u.uid == uid {
				c.GID, c.Home = u.gid, u.home
				break
			}
		}
	} else {
		i := -1
		for j, u := range users {
			if u.name == userPart {
				i = j
				break
			}
		}
		if i < 0 {
			return credential{}, fmt.Errorf("user %q: %w", userPart, ErrUnknownUser)
		}
		c.UID, c.GID, c.Home = users[i].uid, users[i].gid, users[i].home
		named = true
	}
	var groups []groupEntry
	if hasGroup || named {
		groups, err = readGroup(groupFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return credential{}, err
		}
	}
	if hasGroup {
		if gid, ok := parseID(groupPart); ok {
			c.GID = gid
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					c.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return credential{}, fmt.Errorf("group %q: %w", groupPart, ErrUnknownGroup)
			}
		}
	}
	if named {
		c.Groups = []uint32{c.GID}
		for _, g := range groups {
			if g.gid != c.GID && slices.Contains(g.members, userPart) {
				c.Groups = append(c.Groups, g.gid)
			}
		}
	}
	return c, nil
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// readPasswd parses name:pw:uid:gid:gecos:home:shell lines; malformed lines
// are skipped as libc does.
func readPasswd(name string) ([]passwdEntry, error) {
	return passwdCache.load(name, func(f []string, out *[]passwdEntry) {
		if len(f) < 7 {
			return
		}
		uid, ok1 := parseID(f[2])
		gid, ok2 := parseID(f[3])
		if f[0] == "" || !ok1 || !ok2 {
			return
		}
		*out = append(*out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
	})
}

// readGroup parses name:pw:gid:member,member lines.
func readGroup(name string) ([]groupEntry, error) {
	return groupCache.load(name, func(f []string, out *[]groupEntry) {
		if len(f) < 4 {
			return
		}
		gid, ok := parseID(f[2])
		if f[0] == "" || !ok {
			return
		}
		var members []string
		for m := range strings.SplitSeq(f[3], ",") {
			if m != "" {
				members = append(members, m)
			}
		}
		*out = append(*out, groupEntry{name: f[0], gid: gid, members: members})
	})
}

// The account databases as last parsed: every exec resolves its user, and
// reading and parsing /etc/passwd was ~40 µs of an exec round trip of
// ~900 µs. A stat tells whether the file is still the one parsed.
var (
	passwdCache accountCache[passwdEntry]
	groupCache  accountCache[groupEntry]
)

// accountCache holds the entries of the last account file it parsed.
type accountCache[T any] struct {
	mu   sync.Mutex
	name string
	fi   os.FileInfo // of the file parsed; nil before the first parse
	ents []T         // shared with callers, who only read them
}

// load returns the entries of file name, parsing it again unless it is
// the same file, with the same size and modification time, as last time.
// (A change that keeps both, within the clock's resolution, is missed:
// the file is the guest's own, so only the guest can be confused by it.)
func (c *accountCache[T]) load(name string, parse func(fields []string, out *[]T)) ([]T, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fi != nil && c.name == name && os.SameFile(c.fi, fi) && c.fi.Size() == fi.Size() && c.fi.ModTime().Equal(fi.ModTime()) {
		return c.ents, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The key is what was opened, so a replacement racing the parse
	// is seen at the next load.
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	var out []T
	if err := parseAccountLines(io.LimitReader(f, maxAccountFile), func(fields []string) { parse(fields, &out) }); err != nil {
		return nil, err
	}
	c.name, c.fi, c.ents = name, fi, out
	return out, nil
}

func parseAccountLines(r io.Reader, fn func([]string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		fn(strings.Split(string(line), ":"))
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("parse accounts: %w", err)
	}
	return nil
}
