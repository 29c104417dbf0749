package hosted

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/pgp"
	"github.com/mirrord/mirrord/internal/store"
)

// loadKeys reads the signing key of every hosted repo (its own
// signing_key, else hosted.signing_key; one Signer per file) and the
// trusted uploader keys. An unreadable key stops the start.
func (s *Service) loadKeys(cfg *config.Config, passphrase []byte) error {
	signers := map[string]*pgp.Signer{}
	for _, r := range s.repos {
		file, key := cfg.Distros[r.distro].Repos[r.name].SigningKey, "distros."+r.distro+".repos."+r.name+".signing_key"
		if file == "" {
			file, key = cfg.Hosted.SigningKey, "hosted.signing_key"
		}
		if file == "" {
			continue
		}
		if signers[file] == nil {
			sg, err := pgp.LoadSigner(file, passphrase)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			signers[file] = sg
			s.log.Info("signing key loaded", "file", file, "fingerprint", sg.Key().Fingerprint)
		}
		r.signer = signers[file]
	}
	if cfg.Hosted.TrustedKeys != "" {
		ring, err := pgp.LoadKeyring(cfg.Hosted.TrustedKeys)
		if err != nil {
			return fmt.Errorf("hosted.trusted_keys: %w", err)
		}
		s.trusted = ring
	}
	return nil
}

// Key is the public signing key of a hosted repo; false when unsigned.
func (s *Service) Key(distro, repo string) (pgp.Key, bool) {
	r := s.repos[distro+"/"+repo]
	if r == nil || r.signer == nil {
		return pgp.Key{}, false
	}
	return r.signer.Key(), true
}

// SignedBy is the fingerprint of the key whose signature of a published
// file mirrord verified against hosted.trusted_keys or made itself; "" if
// none (no signature, or one only known to be well-formed).
func (s *Service) SignedBy(distro, repo, arch, file string) string {
	r := s.repos[distro+"/"+repo]
	if r == nil {
		return ""
	}
	v, _ := r.signedBy.Load(arch + "/" + file)
	fpr, _ := v.(string)
	return fpr
}

// signature decides the detached signature a package is published with,
// before anything of it reaches the tree: the uploaded one, checked (a
// valid signature by a trusted key when hosted.trusted_keys is set, else
// at least a well-formed binary one); or, without one, one made with the
// repo's key (hosted.sign_packages); or none, unless the repo requires
// one. signedBy is the fingerprint of a verified signer, "" if none.
func (s *Service) signature(r *repo, j *Job, pkg *os.File) (sig []byte, signedBy string, err error) {
	whole := func() io.Reader { return io.NewSectionReader(pkg, 0, 1<<62) }
	switch {
	case j.HasSig:
		f, err := s.store.OpenStaged(stagedName(j.ID, ".sig"))
		if err == nil {
			sig, err = io.ReadAll(f)
			f.Close()
		}
		if err != nil {
			return nil, "", fmt.Errorf("read staged signature: %w", err)
		}
		if s.trusted == nil {
			if _, err := pgp.Issuers(sig); err != nil {
				return nil, "", fmt.Errorf("%w: %v", ErrInvalid, err)
			}
			return sig, "", nil
		}
		k, err := s.trusted.Verify(whole(), sig)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v (hosted.trusted_keys holds %d keys)", ErrInvalid, err, s.trusted.Len())
		}
		return sig, k.Fingerprint, nil
	case r.signer != nil && s.tun.SignPackages:
		var buf bytes.Buffer
		if err := r.signer.Sign(&buf, whole()); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), r.signer.Key().Fingerprint, nil
	case s.tun.RequireSignatures:
		return nil, "", fmt.Errorf("%w: %s requires signed packages (hosted.require_signatures): upload a .sig with the package", ErrInvalid, r.key)
	}
	return nil, "", nil
}

// writeSig signs the db temp file f, about to be published at rel, and
// publishes the signature at rel+".sig" first: the db follows at once, so
// a client that reads the new db reads the new signature too, except in
// the moment between the two renames (a client that fetched the old db
// just before and its signature just after sees a mismatch and retries
// at its next -Sy). Without a signer, a signature left from an earlier
// key is removed, as it would no longer match.
func (s *Service) writeSig(signer *pgp.Signer, f *os.File, rel string) error {
	if signer == nil {
		if err := s.store.Remove(rel + ".sig"); err != nil {
			return err
		}
		return nil
	}
	sf, err := s.store.CreateTemp("db-sig-*")
	if err != nil {
		return err
	}
	defer sf.Close()
	err = signer.Sign(sf, io.NewSectionReader(f, 0, 1<<62))
	if err == nil {
		err = s.store.Commit(sf, rel+".sig", store.Meta{})
	}
	if err != nil {
		os.Remove(sf.Name())
		return fmt.Errorf("sign %s: %w", rel, err)
	}
	return nil
}

// linkSig points (or, unsigned, stops pointing) {link}.sig at the
// signature of the db file name, as repo-add -s does.
func (s *Service) linkSig(signer *pgp.Signer, dir, link, name string) error {
	if signer == nil {
		if _, err := s.store.Lstat(path.Join(dir, link+".sig")); err == nil {
			return s.store.Remove(path.Join(dir, link+".sig"))
		}
		return nil
	}
	return s.store.Symlink(name+".sig", path.Join(dir, link+".sig"))
}

// sigCurrent says whether arch's db signature is the one the config asks
// for: made by the repo's key, or absent when the repo is unsigned. A
// changed key makes load rebuild the db at start.
func (r *repo) sigCurrent(arch string) bool {
	f, err := r.s.store.Open(path.Join(r.dirs[arch], r.name+".db.tar.gz.sig"))
	if err != nil {
		return r.signer == nil
	}
	defer f.Close()
	if r.signer == nil {
		return false
	}
	sig, err := io.ReadAll(io.LimitReader(f, pgp.MaxSig+1))
	if err != nil {
		return false
	}
	ids, err := pgp.Issuers(sig)
	return err == nil && len(ids) == 1 && ids[0] == r.signer.Issuer()
}
