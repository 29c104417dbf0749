package alpm

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// vercmpCases are pacman's test/util/vercmptest.sh plus cases for
// epochs, letters and separators. Each is also checked mirrored.
var vercmpCases = []struct {
	a, b string
	want int
}{
	// all similar length, no pkgrel
	{"1.5.0", "1.5.0", 0},
	{"1.5.1", "1.5.0", 1},
	// mixed length
	{"1.5.1", "1.5", 1},
	// with pkgrel, simple
	{"1.5.0-1", "1.5.0-1", 0},
	{"1.5.0-1", "1.5.0-2", -1},
	{"1.5.0-1", "1.5.1-1", -1},
	{"1.5.0-2", "1.5.1-1", -1},
	// with pkgrel, mixed lengths
	{"1.5-1", "1.5.1-1", -1},
	{"1.5-2", "1.5.1-1", -1},
	{"1.5-2", "1.5.1-2", -1},
	// mixed pkgrel inclusion
	{"1.5", "1.5-1", 0},
	{"1.5-1", "1.5", 0},
	{"1.1-1", "1.1", 0},
	{"1.0-1", "1.1", -1},
	{"1.1-1", "1.0", 1},
	// alphanumeric versions
	{"1.5b-1", "1.5-1", -1},
	{"1.5b", "1.5", -1},
	{"1.5b-1", "1.5", -1},
	{"1.5b", "1.5.1", -1},
	// from the manpage
	{"1.0a", "1.0alpha", -1},
	{"1.0alpha", "1.0b", -1},
	{"1.0b", "1.0beta", -1},
	{"1.0beta", "1.0rc", -1},
	{"1.0rc", "1.0", -1},
	// going crazy? alpha-dotted versions
	{"1.5.a", "1.5", 1},
	{"1.5.b", "1.5.a", 1},
	{"1.5.1", "1.5.b", 1},
	// alpha dots and dashes
	{"1.5.b-1", "1.5.b", 0},
	{"1.5-1", "1.5.b", -1},
	// same/similar content, differing separators
	{"2.0", "2_0", 0},
	{"2.0_a", "2_0.a", 0},
	{"2.0a", "2.0.a", -1},
	{"2___a", "2_a", 1},
	// epoch included version comparisons
	{"0:1.0", "0:1.0", 0},
	{"0:1.0", "0:1.1", -1},
	{"1:1.0", "0:1.0", 1},
	{"1:1.0", "0:1.1", 1},
	{"1:1.0", "2:1.1", -1},
	// epoch + sometimes present pkgrel
	{"1:1.0", "0:1.0-1", 1},
	{"1:1.0-1", "0:1.1-1", 1},
	// epoch included on one version
	{"0:1.0", "1.0", 0},
	{"0:1.0", "1.1", -1},
	{"0:1.1", "1.0", 1},
	{"1:1.0", "1.0", 1},
	{"1:1.0", "1.1", 1},
	{"1:1.1", "1.1", 1},
	// epochs, letters and separators
	{"1.0a", "1.0", -1},
	{"1.0rc1", "1.0", -1},
	{"1.0.a", "1.0", 1},
	{"1.0~rc1", "1.0", 1},
	{"1.0", "1.0.0", -1},
	{"1.0_1", "1.0.1", 0},
	{"1.0+1", "1.0.1", 0},
	{"1.0..1", "1.0.1", 1},
	{"01", "1", 0},
	{"1.0", "1.0-1", 0},
	{"1:1.0-1", "2.0-1", 1},
	{"2.0-1.1", "2.0-1", 1},
	// edges of the port
	{"", "", 0},
	{"", "1", -1},
	{":1.0", "1.0", 0},
	{"1.0-", "1.0-1", -1},
	{"1.0\x001", "1.0", 0},
	{"1.0é", "1.0", 1},
}

func TestVercmp(t *testing.T) {
	for _, tc := range vercmpCases {
		t.Run(tc.a+"_vs_"+tc.b, func(t *testing.T) {
			if got := Vercmp(tc.a, tc.b); got != tc.want {
				t.Errorf("Vercmp(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := Vercmp(tc.b, tc.a); got != -tc.want {
				t.Errorf("Vercmp(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
			}
		})
	}
}

// genVersion makes versions that exercise every branch of rpmvercmp:
// epochs (also empty), separator runs, leading zeros, letter and digit
// runs, a missing or odd pkgrel.
func genVersion(r *rand.Rand) string {
	var b strings.Builder
	switch r.IntN(8) {
	case 0:
		b.WriteString(strconv.Itoa(r.IntN(3)) + ":")
	case 1:
		b.WriteString(":")
	}
	seps := []string{".", ".", ".", "_", "+", "~", "..", "._", "%"}
	letters := []string{"a", "b", "alpha", "beta", "rc", "pre", "git", "r", "Z"}
	n := 1 + r.IntN(4)
	for i := 0; i < n; i++ {
		if i > 0 || r.IntN(10) == 0 {
			if r.IntN(6) > 0 {
				b.WriteString(seps[r.IntN(len(seps))])
			}
		}
		switch r.IntN(5) {
		case 0:
			b.WriteString(letters[r.IntN(len(letters))])
		case 1:
			b.WriteString("0" + strconv.Itoa(r.IntN(12)))
		default:
			b.WriteString(strconv.Itoa(r.IntN(12)))
		}
	}
	if r.IntN(6) == 0 {
		b.WriteString(seps[r.IntN(len(seps))])
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		b.WriteString("-" + strconv.Itoa(r.IntN(3)) + "." + strconv.Itoa(r.IntN(3)))
	default:
		b.WriteString("-" + strconv.Itoa(1+r.IntN(3)))
	}
	return b.String()
}

// mutate returns a close relative of v, so that pairs often share prefixes
// and reach the deep branches instead of differing at the first digit.
func mutate(r *rand.Rand, v string) string {
	if v == "" {
		return "1"
	}
	i := r.IntN(len(v))
	repl := []string{"", "0", "1", "9", "a", "z", ".", "_", "-", ":", "00", "10", "rc"}
	return v[:i] + repl[r.IntN(len(repl))] + v[i+1:]
}

func randomASCII(r *rand.Rand) string {
	b := make([]byte, r.IntN(9))
	for i := range b {
		b[i] = byte('!' + r.IntN('~'-'!'+1))
	}
	return string(b)
}

// TestVercmpAgainstBinary compares Vercmp with pacman's vercmp on
// thousands of generated pairs.
func TestVercmpAgainstBinary(t *testing.T) {
	bin := needTool(t, "vercmp")
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(1, 2))
	type pair struct{ a, b string }
	pairs := make([]pair, n)
	for i := range pairs {
		a := genVersion(r)
		b := genVersion(r)
		switch r.IntN(10) {
		case 0:
			// Any printable ASCII, for the separators nobody thought of.
			a, b = randomASCII(r), randomASCII(r)
		case 1, 2, 3, 4, 5, 6:
			b = mutate(r, a)
		}
		if strings.HasPrefix(a, "-") || strings.HasPrefix(b, "-") {
			a, b = "0"+a, "0"+b // vercmp would take them for options
		}
		pairs[i] = pair{a, b}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	work := make(chan pair)
	for range 2 {
		wg.Go(func() {
			for p := range work {
				out, err := exec.Command(bin, p.a, p.b).Output()
				msg := ""
				if err != nil {
					msg = fmt.Sprintf("vercmp %q %q: %v", p.a, p.b, err)
				} else if want, _ := strconv.Atoi(strings.TrimSpace(string(out))); Vercmp(p.a, p.b) != want {
					msg = fmt.Sprintf("Vercmp(%q, %q) = %d, want %d (vercmp binary)", p.a, p.b, Vercmp(p.a, p.b), want)
				}
				if msg != "" {
					mu.Lock()
					failures = append(failures, msg)
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range pairs {
		work <- p
	}
	close(work)
	wg.Wait()
	for i, f := range failures {
		if i == 20 {
			t.Errorf("... and %d more", len(failures)-20)
			break
		}
		t.Error(f)
	}
	t.Logf("%d pairs compared with %s", n, bin)
}
