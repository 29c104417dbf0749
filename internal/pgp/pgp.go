package pgp

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// MaxSig bounds a detached signature file, as pacman does (16 KiB).
const MaxSig = 16 << 10

// Sentinels that callers branch on.
var (
	// ErrMalformed: the bytes are not a binary detached signature.
	ErrMalformed = errors.New("not a binary OpenPGP detached signature")
	// ErrUntrusted: a well-formed signature by no trusted key.
	ErrUntrusted = errors.New("signature by no trusted key")
	// ErrBadSignature: a trusted key's signature that does not match the file.
	ErrBadSignature = errors.New("signature does not match the file")
)

// config is the one packet.Config of every signature made: SHA-256, as
// pacman's gpgme and Arch's own signatures use.
var config = &packet.Config{DefaultHash: crypto.SHA256}

// Key is the public half of a signing key, as clients need it.
type Key struct {
	Fingerprint string // 40 upper-case hex digits (v4), as pacman-key --lsign-key takes it
	KeyID       string // the last 16 of them
	UserID      string // the primary identity, "" if none
	Armored     []byte // the armored public key (pacman-key --add)
}

// Signer makes detached signatures with one secret key.
type Signer struct {
	entity *openpgp.Entity
	key    Key
	issuer string // key id of the (sub)key that signs, upper-case hex
}

// LoadSigner reads an armored OpenPGP secret key (the first of the file)
// and unlocks it with passphrase when it is protected.
func LoadSigner(path string, passphrase []byte) (*Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list, err := openpgp.ReadArmoredKeyRing(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: not an armored OpenPGP key: %w", path, err)
	}
	e := list[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("%s holds a public key only; export the secret key (gpg --armor --export-secret-keys KEYID)", path)
	}
	if encrypted(e) {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("%s is protected by a passphrase: set MIRRORD_HOSTED_SIGNING_PASSPHRASE", path)
		}
		if err := e.DecryptPrivateKeys(passphrase); err != nil {
			return nil, fmt.Errorf("%s: unlock with MIRRORD_HOSTED_SIGNING_PASSPHRASE: %w", path, err)
		}
	}
	sk, ok := e.SigningKey(time.Now())
	if !ok || sk.PrivateKey == nil {
		return nil, fmt.Errorf("%s has no valid (unexpired, unrevoked) signing key", path)
	}
	s := &Signer{entity: e, issuer: fmt.Sprintf("%016X", sk.PublicKey.KeyId)}
	if s.key, err = publicKey(e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Prove the key works now rather than at the first publish.
	if err := s.Sign(io.Discard, strings.NewReader("mirrord")); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func encrypted(e *openpgp.Entity) bool {
	if e.PrivateKey != nil && e.PrivateKey.Encrypted {
		return true
	}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// publicKey describes e's public half.
func publicKey(e *openpgp.Entity) (Key, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return Key{}, err
	}
	if err := e.Serialize(w); err != nil {
		return Key{}, fmt.Errorf("serialize public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return Key{}, err
	}
	buf.WriteByte('\n')
	k := Key{Fingerprint: fmt.Sprintf("%X", e.PrimaryKey.Fingerprint), Armored: buf.Bytes()}
	k.KeyID = k.Fingerprint[max(len(k.Fingerprint)-16, 0):]
	if id := e.PrimaryIdentity(); id != nil {
		k.UserID = id.Name
	}
	return k, nil
}

// Key is the signer's public key.
func (s *Signer) Key() Key { return s.key }

// Issuer is the key id its signatures name (a signing subkey's, if the
// key has one), as Issuers reports it.
func (s *Signer) Issuer() string { return s.issuer }

// Sign writes a binary detached signature of everything r yields to w.
func (s *Signer) Sign(w io.Writer, r io.Reader) error {
	if err := openpgp.DetachSign(w, s.entity, r, config); err != nil {
		return fmt.Errorf("sign with %s: %w", s.key.KeyID, err)
	}
	return nil
}

// Keyring is a set of trusted public keys, each described once at load.
type Keyring struct {
	list openpgp.EntityList
	keys map[*openpgp.Entity]Key
}

// LoadKeyring reads an armored public keyring (one or more keys, as
// `gpg --armor --export` writes them).
func LoadKeyring(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	k, err := ReadKeyring(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadKeyring reads an armored public keyring from r.
func ReadKeyring(r io.Reader) (*Keyring, error) {
	list, err := openpgp.ReadArmoredKeyRing(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("not an armored OpenPGP keyring: %w", err)
	}
	k := &Keyring{list: list, keys: make(map[*openpgp.Entity]Key, len(list))}
	for _, e := range list {
		d, err := publicKey(e)
		if err != nil {
			return nil, err
		}
		k.keys[e] = d
	}
	return k, nil
}

// NewKey makes a new signing key (the library's default algorithm) for
// name and email and returns its secret and public halves, armored, as
// `gpg --armor --export-secret-keys` and `--export` would.
func NewKey(name, email string) (secret, public []byte, err error) {
	e, err := openpgp.NewEntity(name, "", email, config)
	if err != nil {
		return nil, nil, err
	}
	var sec, pub bytes.Buffer
	w, err := armor.Encode(&sec, openpgp.PrivateKeyType, nil)
	if err == nil {
		err = e.SerializePrivate(w, config)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return nil, nil, err
	}
	k, err := publicKey(e)
	if err != nil {
		return nil, nil, err
	}
	pub.Write(k.Armored)
	return sec.Bytes(), pub.Bytes(), nil
}

// Len is the number of keys in the ring.
func (k *Keyring) Len() int { return len(k.list) }

// Issuers checks that sig is a well-formed binary detached signature, as
// pacman reads one: one or more signature packets of binary documents and
// nothing else (armor is refused, like repo-add refuses it). It returns
// the issuers' key ids, upper-case hex.
func Issuers(sig []byte) ([]string, error) {
	if len(sig) == 0 || len(sig) > MaxSig {
		return nil, fmt.Errorf("%w: %d bytes (want 1 to %d)", ErrMalformed, len(sig), MaxSig)
	}
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%w: it is armored; send the binary form (gpg --detach-sign without --armor)", ErrMalformed)
	}
	var ids []string
	pr := packet.NewReader(bytes.NewReader(sig))
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		s, ok := p.(*packet.Signature)
		if !ok {
			return nil, fmt.Errorf("%w: holds a %T packet", ErrMalformed, p)
		}
		if s.SigType != packet.SigTypeBinary {
			return nil, fmt.Errorf("%w: signature type %#x, not of a binary document", ErrMalformed, uint8(s.SigType))
		}
		switch {
		case s.IssuerKeyId != nil:
			ids = append(ids, fmt.Sprintf("%016X", *s.IssuerKeyId))
		case len(s.IssuerFingerprint) > 0:
			ids = append(ids, fmt.Sprintf("%X", s.IssuerFingerprint))
		default:
			return nil, fmt.Errorf("%w: a signature names no issuer", ErrMalformed)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no signature packet", ErrMalformed)
	}
	return ids, nil
}

// Verify checks that sig is a well-formed detached signature of what
// signed yields by a key of k, and returns that key. ErrUntrusted names
// the key ids seen when no key of k made it; ErrBadSignature when one did
// but the file is not what it signed.
func (k *Keyring) Verify(signed io.Reader, sig []byte) (Key, error) {
	ids, err := Issuers(sig)
	if err != nil {
		return Key{}, err
	}
	e, err := openpgp.CheckDetachedSignature(k.list, signed, bytes.NewReader(sig), config)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return Key{}, fmt.Errorf("%w: made by key %s", ErrUntrusted, strings.Join(ids, ", "))
	case err != nil:
		return Key{}, fmt.Errorf("%w (key %s): %v", ErrBadSignature, strings.Join(ids, ", "), err)
	}
	return k.keys[e], nil
}
