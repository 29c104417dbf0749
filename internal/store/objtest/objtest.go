package objtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mirrord/mirrord/internal/store"
)

// Large is the size of the suite's large object: above 5 MiB, so that a
// backend configured with a 5 MiB part size uploads it in parts.
const Large = 11<<20 + 17

// Run runs the suite. newObjects returns an empty backend for one subtest
// (a fresh folder, or a fresh prefix of one bucket).
func Run(t *testing.T, newObjects func(t *testing.T) store.Objects) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newObjects(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newObjects(t)) })
	t.Run("Replace", func(t *testing.T) { testReplace(t, newObjects(t)) })
	t.Run("FailedPut", func(t *testing.T) { testFailedPut(t, newObjects) })
	t.Run("NoPartialReads", func(t *testing.T) { testNoPartialReads(t, newObjects) })
	t.Run("PutIfAbsentOnce", func(t *testing.T) { testPutIfAbsentOnce(t, newObjects(t)) })
	t.Run("Version", func(t *testing.T) { testVersion(t, newObjects(t)) })
	t.Run("PutIfMatchOnce", func(t *testing.T) { testPutIfMatchOnce(t, newObjects(t)) })
	t.Run("PutIfMatchRefused", func(t *testing.T) { testPutIfMatchRefused(t, newObjects(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newObjects(t)) })
	t.Run("Range", func(t *testing.T) { testRange(t, newObjects(t)) })
	t.Run("BadKeys", func(t *testing.T) { testBadKeys(t, newObjects(t)) })
	t.Run("Copy", func(t *testing.T) { testCopy(t, newObjects(t)) })
}

// Winner checks the outcome of a race of conditional writes, what: errs
// of the racers, exactly one nil and every other lose. It returns the
// winner's index.
func Winner(t testing.TB, what string, errs []error, lose error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("%s: won by %d and %d", what, winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, lose):
			t.Fatalf("%s: %d = %v, want nil or %v", what, i, err, lose)
		}
	}
	if winner < 0 {
		t.Fatalf("%s: nobody won: %v", what, errs)
	}
	return winner
}

// body is n bytes of seeded noise and their metadata.
func body(seed uint64, n int) ([]byte, store.ObjectMeta) {
	b := make([]byte, n)
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	rand.NewChaCha8(s).Read(b)
	return b, store.BytesMeta(b)
}

func put(t *testing.T, o store.Objects, key string, b []byte, m store.ObjectMeta) {
	t.Helper()
	if err := o.Put(t.Context(), key, bytes.NewReader(b), m); err != nil {
		t.Fatalf("Put(%q) = %v", key, err)
	}
}

// get reads the whole object at key.
func get(ctx context.Context, o store.Objects, key string) ([]byte, store.ObjectMeta, error) {
	r, m, err := o.Get(ctx, key)
	if err != nil {
		return nil, m, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return b, m, err
}

// sameMeta compares metadata, times by instant; not the version, which
// the backend chooses.
func sameMeta(a, b store.ObjectMeta) bool {
	return a.Size == b.Size && a.SHA256 == b.SHA256 && a.ETag == b.ETag && a.LastModified.Equal(b.LastModified)
}

func testRoundTrip(t *testing.T, o store.Objects) {
	for _, tc := range []struct {
		name string
		key  string
		size int
		etag string
		lm   time.Time
	}{
		{"empty", "archlinux/core/os/x86_64/empty", 0, "", time.Time{}},
		{"small with validators", "archlinux/core/os/x86_64/core.db", 1234, `"5f3a-61c2"`, time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)},
		{"sub-second time", "archlinux/extra/os/x86_64/a.pkg.tar.zst", 1 << 16, "W/\"weak\"", time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)},
		{"large", "archlinux/extra/os/x86_64/big.pkg.tar.zst", Large, "", time.Time{}},
		{"odd characters", "arch linux/+x~y@z/ünï.pkg.tar.zst", 10, "", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, m := body(uint64(tc.size), tc.size)
			m.ETag, m.LastModified = tc.etag, tc.lm
			put(t, o, tc.key, b, m)
			got, gm, err := get(t.Context(), o, tc.key)
			if err != nil {
				t.Fatalf("Get(%q) = %v", tc.key, err)
			}
			if !bytes.Equal(got, b) {
				t.Errorf("Get(%q): %d bytes, not the %d put", tc.key, len(got), len(b))
			}
			if !sameMeta(gm, m) {
				t.Errorf("Get(%q) meta = %+v, want %+v", tc.key, gm, m)
			}
			sm, err := o.Stat(t.Context(), tc.key)
			if err != nil || !sameMeta(sm, m) {
				t.Errorf("Stat(%q) = %+v, %v, want %+v", tc.key, sm, err, m)
			}
		})
	}
}

func testMissing(t *testing.T, o store.Objects) {
	ctx := t.Context()
	const key = "archlinux/core/os/x86_64/nothing.db"
	if _, _, err := o.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := o.GetRange(ctx, key, 0, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRange(missing) = %v, want ErrNotFound", err)
	}
	if _, err := o.Stat(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(missing) = %v, want ErrNotFound", err)
	}
	if err := o.Delete(ctx, key); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
	// A file where a folder of the key would be is not the key either.
	b, m := body(1, 3)
	put(t, o, "archlinux/file", b, m)
	if _, err := o.Stat(ctx, "archlinux/file/below"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(below a file) = %v, want ErrNotFound", err)
	}
	put(t, o, "folder/below", b, m)
	if _, err := o.Stat(ctx, "folder"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(a folder) = %v, want ErrNotFound", err)
	}
	if err := o.Delete(ctx, "archlinux/file"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := o.Stat(ctx, "archlinux/file"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat(deleted) = %v, want ErrNotFound", err)
	}
}

func testReplace(t *testing.T, o store.Objects) {
	const key = "archlinux/core/os/x86_64/core.db"
	b1, m1 := body(1, 5000)
	b2, m2 := body(2, 3000)
	m2.ETag = "second"
	put(t, o, key, b1, m1)
	put(t, o, key, b2, m2)
	got, gm, err := get(t.Context(), o, key)
	if err != nil || !bytes.Equal(got, b2) || !sameMeta(gm, m2) {
		t.Errorf("Get after replace = %d bytes, %+v, %v; want the second object %+v", len(got), gm, err, m2)
	}
}

// failingReader gives n bytes of b, then err.
type failingReader struct {
	b   []byte
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := copy(p[:min(len(p), f.n)], f.b)
	f.b, f.n = f.b[k:], f.n-k
	return k, nil
}

func testFailedPut(t *testing.T, newObjects func(t *testing.T) store.Objects) {
	for _, size := range []int{100 << 10, Large} {
		b, m := body(7, size)
		cases := []struct {
			name string
			r    func() io.Reader
			meta store.ObjectMeta
			ctx  func(context.Context) context.Context
		}{
			{"reader fails midway", func() io.Reader { return &failingReader{b, size / 2, errors.New("upstream reset")} }, m, nil},
			{"reader fails at the last byte", func() io.Reader { return &failingReader{b, size - 1, errors.New("upstream reset")} }, m, nil},
			{"body short", func() io.Reader { return bytes.NewReader(b[:size-1]) }, m, nil},
			{"body long", func() io.Reader { return io.MultiReader(bytes.NewReader(b), strings.NewReader("x")) }, m, nil},
			{"sha256 wrong", func() io.Reader { return bytes.NewReader(b) }, store.ObjectMeta{Size: m.Size, SHA256: strings.Repeat("0", 64)}, nil},
			{"context cancelled", func() io.Reader { return bytes.NewReader(b) }, m, func(ctx context.Context) context.Context {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				return ctx
			}},
		}
		for _, tc := range cases {
			for _, how := range []string{"Put", "PutIfAbsent", "PutIfMatch"} {
				name := fmt.Sprintf("%s/%d/%s", tc.name, size, how)
				t.Run(name, func(t *testing.T) {
					o := newObjects(t)
					ctx := t.Context()
					putCtx := ctx
					if tc.ctx != nil {
						putCtx = tc.ctx(ctx)
					}
					// p puts with the method under test; PutIfMatch
					// names the version there (so only the body fails).
					p := func(ctx context.Context, key string, r io.Reader, m store.ObjectMeta) error {
						switch how {
						case "PutIfAbsent":
							return o.PutIfAbsent(ctx, key, r, m)
						case "PutIfMatch":
							sm, err := o.Stat(t.Context(), key)
							if err != nil {
								sm.Version = "none"
							}
							_, err = o.PutIfMatch(ctx, key, r, m, sm.Version)
							return err
						}
						return o.Put(ctx, key, r, m)
					}
					// Over nothing: nothing stays.
					if err := p(putCtx, "new/file", tc.r(), tc.meta); err == nil {
						t.Fatal("Put succeeded")
					}
					if _, err := o.Stat(ctx, "new/file"); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("Stat after a failed Put = %v, want ErrNotFound", err)
					}
					if keys, err := o.List(ctx, ""); err != nil || len(keys) != 0 {
						t.Errorf("List after a failed Put = %q, %v, want nothing", keys, err)
					}
					// The key is still free: a good PutIfAbsent takes it.
					if err := o.PutIfAbsent(ctx, "new/file", bytes.NewReader(b), m); err != nil {
						t.Errorf("PutIfAbsent after a failed Put = %v", err)
					}
					if how == "PutIfAbsent" {
						return // a PutIfAbsent over an object fails for that alone
					}
					// Over an object: the old one stays, whole.
					old, om := body(8, 999)
					put(t, o, "old/file", old, om)
					before, err := o.Stat(ctx, "old/file")
					if err != nil {
						t.Fatal(err)
					}
					if err := p(putCtx, "old/file", tc.r(), tc.meta); err == nil {
						t.Fatal("Put over an object succeeded")
					}
					got, gm, err := get(ctx, o, "old/file")
					if err != nil || !bytes.Equal(got, old) || !sameMeta(gm, om) || gm.Version != before.Version {
						t.Errorf("Get after a failed Put = %d bytes, %+v, %v; want the old object, version %q", len(got), gm, err, before.Version)
					}
				})
			}
		}
	}
}

// gatedReader gives the first half of b, reports on reached, and gives
// the rest only once release is closed.
type gatedReader struct {
	b       []byte
	half    int
	reached chan struct{}
	release chan struct{}
	off     int
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.off == g.half {
		if g.reached != nil {
			close(g.reached)
			g.reached = nil
		}
		<-g.release
	}
	if g.off == len(g.b) {
		return 0, io.EOF
	}
	end := len(g.b)
	if g.off < g.half {
		end = g.half
	}
	n := copy(p, g.b[g.off:end])
	g.off += n
	return n, nil
}

// testNoPartialReads holds a Put halfway while readers read the key: they
// must see the old object whole (or none), never a prefix of the new one;
// once released, every read is one object or the other, whole.
func testNoPartialReads(t *testing.T, newObjects func(t *testing.T) store.Objects) {
	for _, withOld := range []bool{false, true} {
		t.Run(fmt.Sprintf("old=%v", withOld), func(t *testing.T) {
			o := newObjects(t)
			ctx := t.Context()
			const key = "archlinux/extra/os/x86_64/slow.pkg.tar.zst"
			old, om := body(1, 300<<10)
			if withOld {
				put(t, o, key, old, om)
			}
			nb, nm := body(2, 700<<10)
			g := &gatedReader{b: nb, half: len(nb) / 2, reached: make(chan struct{}), release: make(chan struct{})}
			reached := g.reached
			putErr := make(chan error, 1)
			go func() { putErr <- o.Put(ctx, key, g, nm) }()
			select {
			case <-reached:
			case err := <-putErr:
				t.Fatalf("Put ended before its body did: %v", err)
			}

			// check reads the key once: it must be one whole object.
			check := func(allowNew bool) (isNew bool) {
				got, gm, err := get(ctx, o, key)
				switch {
				case errors.Is(err, store.ErrNotFound) && !withOld:
					return false
				case err != nil:
					t.Errorf("Get during Put = %v", err)
				case withOld && bytes.Equal(got, old) && sameMeta(gm, om):
					return false
				case allowNew && bytes.Equal(got, nb) && sameMeta(gm, nm):
					return true
				default:
					t.Errorf("Get during Put: %d bytes, meta %+v: neither object whole", len(got), gm)
				}
				return false
			}
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range 3 {
						check(false)
					}
				})
			}
			wg.Wait()
			if _, err := o.List(ctx, ""); err != nil {
				t.Fatal(err)
			}

			// Release it while readers keep reading, until one sees it.
			for range 8 {
				wg.Go(func() {
					for !check(true) && !t.Failed() {
						if ctx.Err() != nil {
							return
						}
					}
				})
			}
			close(g.release)
			if err := <-putErr; err != nil {
				t.Fatalf("Put = %v", err)
			}
			wg.Wait()
		})
	}
}

// testPutIfAbsentOnce races PutIfAbsent callers on one key: small
// objects, and large ones (which a backend may upload in parts: the
// condition must hold for them too).
func testPutIfAbsentOnce(t *testing.T, o store.Objects) {
	ctx := t.Context()
	for round, size := range []int{1000, 1000, Large} {
		key := fmt.Sprintf("jobs/%d/claim", round)
		n := 16
		if size == Large {
			n = 4
		}
		bodies := make([][]byte, n)
		metas := make([]store.ObjectMeta, n)
		for i := range n {
			bodies[i], metas[i] = body(uint64(100*round+i), size+i)
		}
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = o.PutIfAbsent(ctx, key, bytes.NewReader(bodies[i]), metas[i])
			})
		}
		close(start)
		wg.Wait()
		winner := Winner(t, fmt.Sprintf("round %d: PutIfAbsent", round), errs, store.ErrExists)
		got, gm, err := get(ctx, o, key)
		if err != nil || !bytes.Equal(got, bodies[winner]) || !sameMeta(gm, metas[winner]) {
			t.Errorf("round %d: Get = %d bytes, %+v, %v; want the winner's (%d) object", round, len(got), gm, err, winner)
		}
		// Once there, it stays: a later PutIfAbsent changes nothing.
		b, m := body(9, 10)
		if err := o.PutIfAbsent(ctx, key, bytes.NewReader(b), m); !errors.Is(err, store.ErrExists) {
			t.Errorf("round %d: PutIfAbsent over an object = %v, want ErrExists", round, err)
		}
		if got, _, _ := get(ctx, o, key); !bytes.Equal(got, bodies[winner]) {
			t.Errorf("round %d: a losing PutIfAbsent changed the object", round)
		}
	}
}

// testVersion: Get and Stat name the same version of an object; a Put of
// other bytes makes a new one, and so does a Delete and Put again.
func testVersion(t *testing.T, o store.Objects) {
	ctx := t.Context()
	const key = "archlinux/core/os/x86_64/core.db"
	seen := map[string]int{}
	for i, size := range []int{100, 200, Large, 0} {
		b, m := body(uint64(i), size)
		if i == 3 {
			if err := o.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		put(t, o, key, b, m)
		sm, err := o.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		_, gm, err := get(ctx, o, key)
		if err != nil {
			t.Fatal(err)
		}
		if sm.Version == "" || gm.Version != sm.Version {
			t.Errorf("Put %d: Stat version %q, Get version %q: want the same, not empty", i, sm.Version, gm.Version)
		}
		if j, ok := seen[sm.Version]; ok {
			t.Errorf("Put %d has the version of Put %d: %q", i, j, sm.Version)
		}
		seen[sm.Version] = i
	}
}

// testPutIfMatchOnce races PutIfMatch callers that read the same version:
// exactly one wins, its object and the version it returned are the key's,
// and the losers' changed nothing.
func testPutIfMatchOnce(t *testing.T, o store.Objects) {
	ctx := t.Context()
	const key = "leases/core/x86_64"
	b, m := body(1, 100)
	put(t, o, key, b, m)
	for round, size := range []int{1000, 1000, 1000, Large} {
		cur, err := o.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		n := 16
		if size == Large {
			n = 4
		}
		bodies := make([][]byte, n)
		metas := make([]store.ObjectMeta, n)
		for i := range n {
			bodies[i], metas[i] = body(uint64(1000*(round+1)+i), size+i)
		}
		start := make(chan struct{})
		errs := make([]error, n)
		versions := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				versions[i], errs[i] = o.PutIfMatch(ctx, key, bytes.NewReader(bodies[i]), metas[i], cur.Version)
			})
		}
		close(start)
		wg.Wait()
		winner := Winner(t, fmt.Sprintf("round %d: PutIfMatch", round), errs, store.ErrVersionMismatch)
		got, gm, err := get(ctx, o, key)
		if err != nil || !bytes.Equal(got, bodies[winner]) || !sameMeta(gm, metas[winner]) {
			t.Fatalf("round %d: Get = %d bytes, %+v, %v; want the winner's (%d) object", round, len(got), gm, err, winner)
		}
		if gm.Version != versions[winner] || gm.Version == cur.Version {
			t.Errorf("round %d: version %q after PutIfMatch, which returned %q (was %q)", round, gm.Version, versions[winner], cur.Version)
		}
	}
}

// testPutIfMatchRefused: a stale version, an empty one, a key without an
// object, and a deleted object are refused, and nothing changes.
func testPutIfMatchRefused(t *testing.T, o store.Objects) {
	ctx := t.Context()
	const key = "jobs/1/claim"
	b1, m1 := body(1, 100)
	b2, m2 := body(2, 200)
	b3, m3 := body(3, 300)
	put(t, o, key, b1, m1)
	v1, err := o.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := o.PutIfMatch(ctx, key, bytes.NewReader(b2), m2, v1.Version)
	if err != nil {
		t.Fatalf("PutIfMatch(current version) = %v", err)
	}
	unchanged := func(what string) {
		t.Helper()
		got, gm, err := get(ctx, o, key)
		if err != nil || !bytes.Equal(got, b2) || !sameMeta(gm, m2) || gm.Version != v2 {
			t.Errorf("after %s: Get = %d bytes, %+v, %v; want the second object, version %q", what, len(got), gm, err, v2)
		}
	}
	for _, tc := range []struct{ name, version string }{
		{"stale version", v1.Version},
		{"empty version", ""},
		{"made-up version", "0123456789abcdef0123456789abcdef"},
	} {
		if _, err := o.PutIfMatch(ctx, key, bytes.NewReader(b3), m3, tc.version); !errors.Is(err, store.ErrVersionMismatch) {
			t.Errorf("PutIfMatch(%s) = %v, want ErrVersionMismatch", tc.name, err)
		}
		unchanged(tc.name)
	}
	// No object: refused, and none made.
	if _, err := o.PutIfMatch(ctx, "jobs/2/claim", bytes.NewReader(b3), m3, v2); !errors.Is(err, store.ErrVersionMismatch) {
		t.Errorf("PutIfMatch(no object) = %v, want ErrVersionMismatch", err)
	}
	if err := o.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := o.PutIfMatch(ctx, key, bytes.NewReader(b3), m3, v2); !errors.Is(err, store.ErrVersionMismatch) {
		t.Errorf("PutIfMatch(deleted object) = %v, want ErrVersionMismatch", err)
	}
	if keys, err := o.List(ctx, "jobs/"); err != nil || len(keys) != 0 {
		t.Errorf("List after refused PutIfMatch = %q, %v, want nothing", keys, err)
	}
	// A bad key is refused before any version is looked at.
	if _, err := o.PutIfMatch(ctx, "../x", bytes.NewReader(b3), m3, v2); err == nil || errors.Is(err, store.ErrVersionMismatch) {
		t.Errorf("PutIfMatch(../x) = %v, want a bad-key error", err)
	}
}

func testList(t *testing.T, o store.Objects) {
	ctx := t.Context()
	keys := []string{"a/b/c", "a/b-c", "a/bc/d", "a/b/d/e", "ab", "b", "a/b/c2"}
	for i, k := range keys {
		b, m := body(uint64(i), i+1)
		put(t, o, k, b, m)
	}
	check := func(prefix string, want []string) {
		t.Helper()
		got, err := o.List(ctx, prefix)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, %v, want %q", prefix, got, err, want)
		}
	}
	all := slices.Clone(keys)
	slices.Sort(all)
	check("", all)
	check("a/b", []string{"a/b-c", "a/b/c", "a/b/c2", "a/b/d/e", "a/bc/d"})
	check("a/b/", []string{"a/b/c", "a/b/c2", "a/b/d/e"})
	check("a/b/c", []string{"a/b/c", "a/b/c2"})
	check("a", []string{"a/b-c", "a/b/c", "a/b/c2", "a/b/d/e", "a/bc/d", "ab"})
	check("zzz", nil)
	check("zzz/", nil)
	if err := o.Delete(ctx, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	check("a/b/", []string{"a/b/c2", "a/b/d/e"})
	if _, err := o.List(ctx, "../"); err == nil {
		t.Error(`List("../") succeeded`)
	}
}

func testRange(t *testing.T, o store.Objects) {
	ctx := t.Context()
	const key = "archlinux/core/os/x86_64/r.pkg.tar.zst"
	b, m := body(3, 1000)
	put(t, o, key, b, m)
	for _, tc := range []struct{ off, n, wantEnd int64 }{
		{0, 1, 1}, {10, 100, 110}, {0, 1000, 1000}, {990, 100, 1000}, {999, 1, 1000}, {500, 1 << 40, 1000},
	} {
		r, err := o.GetRange(ctx, key, tc.off, tc.n)
		if err != nil {
			t.Errorf("GetRange(%d, %d) = %v", tc.off, tc.n, err)
			continue
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, b[tc.off:tc.wantEnd]) {
			t.Errorf("GetRange(%d, %d) = %d bytes, %v; want bytes %d-%d", tc.off, tc.n, len(got), err, tc.off, tc.wantEnd)
		}
	}
	for _, tc := range []struct{ off, n int64 }{{1000, 1}, {5000, 10}, {-1, 10}, {0, 0}} {
		if r, err := o.GetRange(ctx, key, tc.off, tc.n); !errors.Is(err, store.ErrInvalidRange) {
			if r != nil {
				r.Close()
			}
			t.Errorf("GetRange(%d, %d) = %v, want ErrInvalidRange", tc.off, tc.n, err)
		}
	}
}

func testBadKeys(t *testing.T, o store.Objects) {
	ctx := t.Context()
	b, m := body(4, 10)
	for _, key := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", `a\b`, "a\x00b"} {
		if err := o.Put(ctx, key, bytes.NewReader(b), m); err == nil {
			t.Errorf("Put(%q) succeeded", key)
		}
		if err := o.PutIfAbsent(ctx, key, bytes.NewReader(b), m); err == nil {
			t.Errorf("PutIfAbsent(%q) succeeded", key)
		}
		if _, _, err := o.Get(ctx, key); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want a bad-key error", key, err)
		}
		if err := o.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded", key)
		}
	}
	for _, meta := range []store.ObjectMeta{{Size: 10}, {Size: -1, SHA256: m.SHA256}, {Size: 10, SHA256: strings.ToUpper(m.SHA256)}} {
		if err := o.Put(ctx, "ok/key", bytes.NewReader(b), meta); err == nil {
			t.Errorf("Put(meta %+v) succeeded", meta)
		}
	}
	if keys, err := o.List(ctx, ""); err != nil || len(keys) != 0 {
		t.Errorf("List after refused Puts = %q, %v, want nothing", keys, err)
	}
}

// testCopy: a copy holds the source's bytes with the metadata given; one
// whose metadata is not the source's, or of a source that is not there,
// stores nothing.
func testCopy(t *testing.T, o store.Objects) {
	ctx := t.Context()
	const src, dst = "_mirrord/hosted/staging/x.pkg", "archlinux/local/os/x86_64/x-1-1-x86_64.pkg.tar.zst"
	b, m := body(7, 1<<16)
	put(t, o, src, b, m)
	bad := m
	bad.SHA256 = strings.Repeat("0", 64)
	if err := o.Copy(ctx, src, dst, bad); err == nil {
		t.Error("Copy with another sha256 than the source's succeeded")
	}
	short := m
	short.Size--
	if err := o.Copy(ctx, src, dst, short); err == nil {
		t.Error("Copy with another size than the source's succeeded")
	}
	if _, err := o.Stat(ctx, dst); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after refused copies, Stat(dst) = %v; want ErrNotFound", err)
	}
	if err := o.Copy(ctx, "archlinux/none", dst, m); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Copy of a missing source = %v; want ErrNotFound", err)
	}
	want := m
	want.LastModified = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := o.Copy(ctx, src, dst, want); err != nil {
		t.Fatal(err)
	}
	got, gm, err := get(ctx, o, dst)
	if err != nil || !bytes.Equal(got, b) || !sameMeta(gm, want) {
		t.Errorf("the copy = %d bytes, %+v, %v; want the source's %d bytes, %+v", len(got), gm, err, len(b), want)
	}
	if got, _, err := get(ctx, o, src); err != nil || !bytes.Equal(got, b) {
		t.Errorf("the source after the copy: %d bytes, %v; want it unchanged", len(got), err)
	}
}
