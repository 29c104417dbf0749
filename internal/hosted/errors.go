package hosted

import "errors"

// Sentinels that callers branch on (internal/api maps them to statuses).
var (
	// ErrNotFound: no such hosted repo, job or package.
	ErrNotFound = errors.New("not found")
	// ErrOlderVersion: the repo holds the same or a newer version of the
	// name; publish with force to replace it anyway.
	ErrOlderVersion = errors.New("version not newer than the published one")
	// ErrInvalid: the upload is not an acceptable package (not an archive,
	// no .PKGINFO, bad name, arch not served by the repo, bad signature).
	ErrInvalid = errors.New("invalid package")
	// ErrTooLarge: the upload exceeds hosted.max_upload.
	ErrTooLarge = errors.New("upload too large")
	// ErrBusy: the publish queue is full; retry later.
	ErrBusy = errors.New("publish queue full")
)
