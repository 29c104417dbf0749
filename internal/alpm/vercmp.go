package alpm

import "strings"

// Vercmp compares two versions exactly as libalpm's alpm_pkg_vercmp (and
// the vercmp tool): 1 if a is newer, -1 if b is newer, 0 if equal. It is a
// line-by-line port of lib/libalpm/version.c, C locale.
func Vercmp(a, b string) int {
	// C strings end at the first NUL; a Go string may carry one on.
	a, b = cstr(a), cstr(b)
	if a == b {
		return 0
	}
	e1, v1, r1, hasR1 := parseEVR(a)
	e2, v2, r2, hasR2 := parseEVR(b)
	ret := rpmvercmp(e1, e2)
	if ret == 0 {
		ret = rpmvercmp(v1, v2)
		if ret == 0 && hasR1 && hasR2 {
			ret = rpmvercmp(r1, r2)
		}
	}
	return ret
}

// parseEVR splits [epoch:]version[-release]. As in libalpm the release is
// searched for after the leading digits only, and an empty or absent epoch
// is "0".
func parseEVR(evr string) (epoch, version, release string, hasRelease bool) {
	s := 0
	for s < len(evr) && isDigit(evr[s]) {
		s++
	}
	se := strings.LastIndexByte(evr[s:], '-')
	if se >= 0 {
		se += s
	}
	end := len(evr)
	if se >= 0 {
		release, hasRelease = evr[se+1:], true
		end = se
	}
	if s < len(evr) && evr[s] == ':' {
		epoch = evr[:s]
		if epoch == "" {
			epoch = "0"
		}
		// A ':' can only be at s if s < se, so s+1 <= end.
		version = evr[s+1 : end]
	} else {
		epoch = "0"
		version = evr[:end]
	}
	return epoch, version, release, hasRelease
}

// rpmvercmp compares one field. Indices stand in for rpm's pointers; the
// NUL terminator is modelled by at(), which returns 0 past the end.
func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	one, two := 0, 0
	ptr1, ptr2 := 0, 0
	for at(a, one) != 0 && at(b, two) != 0 {
		for at(a, one) != 0 && !isAlnum(at(a, one)) {
			one++
		}
		for at(b, two) != 0 && !isAlnum(at(b, two)) {
			two++
		}
		if at(a, one) == 0 || at(b, two) == 0 {
			break
		}
		// A longer separator run wins.
		if one-ptr1 != two-ptr2 {
			if one-ptr1 < two-ptr2 {
				return -1
			}
			return 1
		}
		ptr1, ptr2 = one, two
		isnum := isDigit(a[ptr1])
		if isnum {
			for at(a, ptr1) != 0 && isDigit(at(a, ptr1)) {
				ptr1++
			}
			for at(b, ptr2) != 0 && isDigit(at(b, ptr2)) {
				ptr2++
			}
		} else {
			for at(a, ptr1) != 0 && isAlpha(at(a, ptr1)) {
				ptr1++
			}
			for at(b, ptr2) != 0 && isAlpha(at(b, ptr2)) {
				ptr2++
			}
		}
		// Segments of different types: b's is empty; numbers beat letters.
		if two == ptr2 {
			if isnum {
				return 1
			}
			return -1
		}
		s1, s2 := a[one:ptr1], b[two:ptr2]
		if isnum {
			s1 = strings.TrimLeft(s1, "0")
			s2 = strings.TrimLeft(s2, "0")
			if len(s1) != len(s2) {
				if len(s1) > len(s2) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(s1, s2); c != 0 {
			return c
		}
		one, two = ptr1, ptr2
	}
	c1, c2 := at(a, one), at(b, two)
	if c1 == 0 && c2 == 0 {
		return 0
	}
	// A leftover letter segment is older than nothing; anything else newer.
	if (c1 == 0 && !isAlpha(c2)) || isAlpha(c1) {
		return -1
	}
	return 1
}

func cstr(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}
