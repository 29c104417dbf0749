package pgp

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// newKey makes a secret key and writes it armored (encrypted with pass
// when given); it returns the secret key's and the public key's paths.
func newKey(t *testing.T, name string, pass []byte) (secret, public string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret, public = filepath.Join(dir, name+".sec.asc"), filepath.Join(dir, name+".asc")
	var pub bytes.Buffer
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if pass != nil {
		if err := e.EncryptPrivateKeys(pass, nil); err != nil {
			t.Fatal(err)
		}
	}
	var sec bytes.Buffer
	w, _ = armor.Encode(&sec, openpgp.PrivateKeyType, nil)
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	os.WriteFile(secret, sec.Bytes(), 0o600)
	os.WriteFile(public, pub.Bytes(), 0o644)
	return secret, public
}

func TestSignVerify(t *testing.T) {
	sec, pub := newKey(t, "repo", nil)
	s, err := LoadSigner(sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Key().Fingerprint) != 40 || !strings.HasSuffix(s.Key().Fingerprint, s.Key().KeyID) || s.Key().UserID == "" {
		t.Errorf("Key() = %+v", s.Key())
	}
	msg := []byte("a package's bytes")
	var sig bytes.Buffer
	if err := s.Sign(&sig, bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	ring, err := LoadKeyring(pub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ring.Verify(bytes.NewReader(msg), sig.Bytes())
	if err != nil || k.Fingerprint != s.Key().Fingerprint {
		t.Fatalf("Verify = %+v, %v; want the signer's key", k, err)
	}
	if _, err := ring.Verify(strings.NewReader("other bytes"), sig.Bytes()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(changed file) = %v, want ErrBadSignature", err)
	}
	ids, err := Issuers(sig.Bytes())
	if err != nil || len(ids) != 1 || ids[0] != s.Issuer() {
		t.Errorf("Issuers = %v, %v; want [%s]", ids, err, s.Issuer())
	}

	// A key the ring does not hold: untrusted, naming the key seen.
	otherSec, _ := newKey(t, "stranger", nil)
	other, err := LoadSigner(otherSec, nil)
	if err != nil {
		t.Fatal(err)
	}
	var osig bytes.Buffer
	other.Sign(&osig, bytes.NewReader(msg))
	if _, err := ring.Verify(bytes.NewReader(msg), osig.Bytes()); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), other.Issuer()) {
		t.Errorf("Verify(stranger's signature) = %v, want ErrUntrusted naming %s", err, other.Issuer())
	}
}

func TestIssuersRefusesMalformed(t *testing.T) {
	sec, _ := newKey(t, "repo", nil)
	s, _ := LoadSigner(sec, nil)
	var good bytes.Buffer
	s.Sign(&good, strings.NewReader("x"))
	var armored bytes.Buffer
	w, _ := armor.Encode(&armored, openpgp.SignatureType, nil)
	w.Write(good.Bytes())
	w.Close()
	pubKey := s.Key().Armored
	cases := []struct {
		name string
		sig  []byte
	}{
		{"empty", nil},
		{"garbage", []byte("garbage")},
		{"armored", armored.Bytes()},
		{"truncated", good.Bytes()[:len(good.Bytes())/2]},
		{"trailing bytes", append(append([]byte{}, good.Bytes()...), "junk"...)},
		{"a public key", pubKey},
		{"too large", bytes.Repeat(good.Bytes(), MaxSig/good.Len()+1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if ids, err := Issuers(c.sig); !errors.Is(err, ErrMalformed) {
				t.Errorf("Issuers(%s) = %v, %v; want ErrMalformed", c.name, ids, err)
			}
		})
	}
	if ids, err := Issuers(append(good.Bytes(), good.Bytes()...)); err != nil || len(ids) != 2 {
		t.Errorf("Issuers(two signatures) = %v, %v", ids, err)
	}
}

func TestNewKey(t *testing.T) {
	sec, pub, err := NewKey("Repo", "repo@example.org")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "k.asc")
	os.WriteFile(path, sec, 0o600)
	s, err := LoadSigner(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sig bytes.Buffer
	s.Sign(&sig, strings.NewReader("db"))
	ring, err := ReadKeyring(bytes.NewReader(pub))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Verify(strings.NewReader("db"), sig.Bytes()); err != nil {
		t.Errorf("Verify with NewKey's public half = %v", err)
	}
	if !bytes.Equal(pub, s.Key().Armored) {
		t.Error("NewKey's public half differs from the signer's Key().Armored")
	}
}

func TestLoadSigner(t *testing.T) {
	sec, pub := newKey(t, "locked", []byte("s3cret"))
	if _, err := LoadSigner(sec, nil); err == nil || !strings.Contains(err.Error(), "MIRRORD_HOSTED_SIGNING_PASSPHRASE") {
		t.Errorf("LoadSigner(protected, no passphrase) = %v, want a hint at the variable", err)
	}
	if _, err := LoadSigner(sec, []byte("wrong")); err == nil {
		t.Error("LoadSigner(wrong passphrase) succeeded")
	}
	if _, err := LoadSigner(sec, []byte("s3cret")); err != nil {
		t.Errorf("LoadSigner(right passphrase) = %v", err)
	}
	if _, err := LoadSigner(pub, nil); err == nil || !strings.Contains(err.Error(), "public key only") {
		t.Errorf("LoadSigner(public key) = %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.asc")
	os.WriteFile(junk, []byte("not a key"), 0o600)
	if _, err := LoadSigner(junk, nil); err == nil {
		t.Error("LoadSigner(junk) succeeded")
	}
}

// TestGPGInterop: gpg accepts our signatures, we accept gpg's, and a key
// made by gpg loads (the e2e tests drive pacman with such a key).
func TestGPGInterop(t *testing.T) {
	if _, err := exec.LookPath("gpg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("gpg is required in CI")
		}
		t.Skip("gpg not installed")
	}
	home := t.TempDir()
	gpg := func(stdin string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	gpg("", "--quick-generate-key", "Repo Key <repo@example.org>", "default", "sign", "never")
	dir := t.TempDir()
	sec, pub := filepath.Join(dir, "sec.asc"), filepath.Join(dir, "pub.asc")
	os.WriteFile(sec, gpg("", "--armor", "--export-secret-keys"), 0o600)
	os.WriteFile(pub, gpg("", "--armor", "--export"), 0o644)
	s, err := LoadSigner(sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("a database"), 0o644)
	var sig bytes.Buffer
	f, _ := os.Open(file)
	s.Sign(&sig, f)
	f.Close()
	os.WriteFile(file+".sig", sig.Bytes(), 0o644)
	gpg("", "--verify", file+".sig", file)

	gpg("", "--detach-sign", "--no-armor", "-o", file+".gpg.sig", file)
	gsig, _ := os.ReadFile(file + ".gpg.sig")
	ring, _ := LoadKeyring(pub)
	f, _ = os.Open(file)
	defer f.Close()
	if k, err := ring.Verify(f, gsig); err != nil || k.Fingerprint != s.Key().Fingerprint {
		t.Errorf("Verify(gpg's signature) = %+v, %v", k, err)
	}
}
