package hosted

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrord/mirrord/internal/pgp"
)

// testKey writes a new key pair to dir and returns the secret key's path,
// a signer of it, and a keyring of its public half.
func testKey(t *testing.T, dir, name string) (string, *pgp.Signer, *pgp.Keyring) {
	t.Helper()
	sec, pub, err := pgp.NewKey(name, name+"@example.org")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".asc")
	os.WriteFile(path, sec, 0o600)
	os.WriteFile(filepath.Join(dir, name+".pub.asc"), pub, 0o644)
	s, err := pgp.LoadSigner(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := pgp.ReadKeyring(bytes.NewReader(pub))
	if err != nil {
		t.Fatal(err)
	}
	return path, s, ring
}

func sign(t *testing.T, s *pgp.Signer, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := s.Sign(&b, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// verifyFile checks that rel's .sig (through the {repo}.db.sig style link
// when rel is a link) is a signature of rel by ring.
func (e *env) verifyFile(ring *pgp.Keyring, rel string) error {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.dir, "tree", rel))
	if err != nil {
		return err
	}
	sig, err := os.ReadFile(filepath.Join(e.dir, "tree", rel+".sig"))
	if err != nil {
		return err
	}
	_, err = ring.Verify(bytes.NewReader(data), sig)
	return err
}

// A repo with a signing key signs every db it builds, and every package
// uploaded without a signature; the signatures verify with its public key.
func TestSignedRepo(t *testing.T) {
	keys := t.TempDir()
	path, signer, ring := testKey(t, keys, "repo")
	cfg := testConfig()
	cfg.Hosted.SigningKey, cfg.Hosted.SignPackages = path, true
	e := newEnv(t, "", cfg, true)
	if k, ok := e.svc.Key("archlinux", "local"); !ok || k.Fingerprint != signer.Key().Fingerprint {
		t.Fatalf("Key = %+v, %v", k, ok)
	}
	// New built the empty dbs before the daemon serves: signed already.
	for _, a := range []string{"x86_64", "aarch64"} {
		for _, f := range []string{"local.db", "local.files", "local.db.tar.gz", "local.files.tar.gz"} {
			if err := e.verifyFile(ring, "archlinux/local/os/"+a+"/"+f); err != nil {
				t.Errorf("%s/%s at start: %v", a, f, err)
			}
		}
	}
	data := pkg(t, "hello", "1-1", "x86_64")
	j, err := e.submit("local", data, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if j = e.wait(j.ID); j.Status != Done {
		t.Fatalf("job = %+v", j)
	}
	e.idle()
	dir := "archlinux/local/os/x86_64/"
	for _, f := range []string{"local.db", "local.files", "hello-1-1-x86_64.pkg.tar.zst"} {
		if err := e.verifyFile(ring, dir+f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if p := e.db("x86_64", "local.db")["hello"]; p == nil || p.PGPSig == "" {
		t.Errorf("db entry of hello = %+v, want a %%PGPSIG%%", p)
	}
	if got := e.svc.SignedBy("archlinux", "local", "x86_64", "hello-1-1-x86_64.pkg.tar.zst"); got != signer.Key().Fingerprint {
		t.Errorf("SignedBy = %q, want the repo key %s", got, signer.Key().Fingerprint)
	}
	e.stop()

	// A restart keeps what it knew; without the key the signatures go
	// (they would not match the next db), and SignedBy survives.
	e2 := newEnv(t, e.dir, cfg, false)
	if got := e2.svc.SignedBy("archlinux", "local", "x86_64", "hello-1-1-x86_64.pkg.tar.zst"); got != signer.Key().Fingerprint {
		t.Errorf("after restart SignedBy = %q", got)
	}
	e2.stop()
	unsigned := testConfig()
	e3 := newEnv(t, e.dir, unsigned, true)
	e3.idle()
	if _, err := os.Lstat(filepath.Join(e.dir, "tree", dir, "local.db.sig")); !os.IsNotExist(err) {
		t.Errorf("unsigned repo keeps local.db.sig: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(e.dir, "tree", dir, "local.db.tar.gz.sig")); !os.IsNotExist(err) {
		t.Errorf("unsigned repo keeps local.db.tar.gz.sig: %v", err)
	}
	e3.stop()

	// A new key: the db is signed again with it at start.
	path2, _, ring2 := testKey(t, keys, "repo2")
	cfg.Hosted.SigningKey = path2
	e4 := newEnv(t, e.dir, cfg, true)
	e4.idle()
	if err := e4.verifyFile(ring2, dir+"local.db"); err != nil {
		t.Errorf("after a key change: %v", err)
	}
}

// With hosted.trusted_keys an uploaded signature must verify; nothing of a
// refused upload reaches the tree or the db.
func TestUploadSignatures(t *testing.T) {
	keys := t.TempDir()
	_, uploader, _ := testKey(t, keys, "uploader")
	_, stranger, _ := testKey(t, keys, "stranger")
	cfg := testConfig()
	cfg.Hosted.TrustedKeys = filepath.Join(keys, "uploader.pub.asc")
	e := newEnv(t, "", cfg, true)

	good := pkg(t, "good", "1-1", "x86_64")
	other := pkg(t, "other", "1-1", "x86_64")
	cases := []struct {
		name, pkgname string
		data, sig     []byte
		want          string // "" for done, else in the error
	}{
		{"trusted", "good", good, sign(t, uploader, good), ""},
		{"untrusted key", "strange", pkg(t, "strange", "1-1", "x86_64"), sign(t, stranger, pkg(t, "strange", "1-1", "x86_64")), "no trusted key: made by key " + stranger.Issuer()},
		{"signature of another file", "other", other, sign(t, uploader, good), "does not match"},
		{"garbage", "garbage", pkg(t, "garbage", "1-1", "x86_64"), []byte("garbage"), "not a binary OpenPGP"},
		{"armored", "armored", pkg(t, "armored", "1-1", "x86_64"), []byte("-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"), "armored"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j, err := e.submit("local", c.data, c.sig, false)
			if err != nil {
				t.Fatal(err)
			}
			j = e.wait(j.ID)
			file := c.pkgname + "-1-1-x86_64.pkg.tar.zst"
			if c.want == "" {
				if j.Status != Done {
					t.Fatalf("job = %s %s", j.Status, j.Error)
				}
				if got := e.svc.SignedBy("archlinux", "local", "x86_64", file); got != uploader.Key().Fingerprint {
					t.Errorf("SignedBy = %q, want %s", got, uploader.Key().Fingerprint)
				}
				return
			}
			if j.Status != Failed || j.Result != ResultInvalid || !strings.Contains(j.Error, c.want) {
				t.Errorf("job = %s %s %q, want failed invalid with %q", j.Status, j.Result, j.Error, c.want)
			}
			if e.exists("x86_64", file) || e.exists("x86_64", file+".sig") {
				t.Errorf("refused %s left a file in the tree", file)
			}
		})
	}
	e.idle()
	db := e.db("x86_64", "local.db")
	if len(db) != 1 || db["good"] == nil {
		t.Errorf("db = %v, want only good", keysOf(db))
	}
}

// Without trusted keys a signature is only checked for form, and not
// reported as verified; require_signatures refuses unsigned uploads when
// no repo key signs them.
func TestUnverifiedAndRequired(t *testing.T) {
	_, s, _ := testKey(t, t.TempDir(), "someone")
	cfg := testConfig()
	cfg.Hosted.RequireSignatures = true
	e := newEnv(t, "", cfg, true)
	data := pkg(t, "formed", "1-1", "x86_64")
	j, _ := e.submit("local", data, sign(t, s, data), false)
	if j = e.wait(j.ID); j.Status != Done {
		t.Fatalf("well-formed signature: job = %s %s", j.Status, j.Error)
	}
	if got := e.svc.SignedBy("archlinux", "local", "x86_64", "formed-1-1-x86_64.pkg.tar.zst"); got != "" {
		t.Errorf("SignedBy(unverified) = %q, want none", got)
	}
	j, _ = e.submit("local", pkg(t, "bare", "1-1", "x86_64"), nil, false)
	if j = e.wait(j.ID); j.Status != Failed || !strings.Contains(j.Error, "require_signatures") {
		t.Errorf("unsigned upload to a repo that requires signatures: %s %q", j.Status, j.Error)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
