package passthrough

import "encoding/binary"

// overrideXattr holds the guest-visible ownership of a host file. The
// record format is microsandbox's, so shares stay interchangeable.
const overrideXattr = "user.containers.override_stat"

// hiddenXattrPrefix names the xattrs the guest can neither see nor change:
// they carry the ownership the file system reports.
const hiddenXattrPrefix = "user.containers."

// overrideSize is the length of an encoded override: u8 version, 3 bytes
// of padding, then uid, gid, mode (with the file type bits) and rdev as
// native-endian u32.
const overrideSize = 20

const overrideVersion = 1

// override is the guest's view of a file's owner, mode and device number.
// The zero value (ok false) means the file has no record.
type override struct {
	ok                   bool
	uid, gid, mode, rdev uint32
}

func (o override) encode() []byte {
	b := make([]byte, overrideSize)
	b[0] = overrideVersion
	binary.NativeEndian.PutUint32(b[4:], o.uid)
	binary.NativeEndian.PutUint32(b[8:], o.gid)
	binary.NativeEndian.PutUint32(b[12:], o.mode)
	binary.NativeEndian.PutUint32(b[16:], o.rdev)
	return b
}

// decodeOverride parses a record; anything but a version 1 record of
// exactly overrideSize bytes yields the zero override.
func decodeOverride(b []byte) override {
	if len(b) != overrideSize || b[0] != overrideVersion {
		return override{}
	}
	return override{
		ok:   true,
		uid:  binary.NativeEndian.Uint32(b[4:]),
		gid:  binary.NativeEndian.Uint32(b[8:]),
		mode: binary.NativeEndian.Uint32(b[12:]),
		rdev: binary.NativeEndian.Uint32(b[16:]),
	}
}
