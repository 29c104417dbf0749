// Package pgp signs and verifies the detached OpenPGP signatures of
// hosted repos: the repo key's signatures of databases and packages, and
// the uploaders' signatures checked against hosted.trusted_keys.
//
// Only this package imports github.com/ProtonMail/go-crypto; it knows
// nothing of repos, files or HTTP. Signatures are binary (never armored),
// as pacman reads them.
package pgp
