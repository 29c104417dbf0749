// Package alpm reads and writes the formats of pacman (Arch Linux): package
// files and their .PKGINFO, repository databases and their desc/files
// entries, package file names, and version comparison exactly as libalpm's
// alpm_pkg_vercmp. Everything mirrord knows about packages goes through it.
//
// It imports nothing of the project and never touches the network or the
// tree on disk: callers hand it readers and writers.
package alpm
