package proxy

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/cluster"
	"github.com/mirrord/mirrord/internal/store"
)

// Presigner makes a URL that gets a file from the shared storage without
// credentials (internal/store/s3obj.Bucket; storage.s3.redirect).
type Presigner interface {
	Presign(ctx context.Context, key string, expiry time.Duration) (*url.URL, error)
}

// redirects reports whether a hit on t with metadata m is answered with
// a redirect to the shared storage rather than from the tree: a file
// that never changes, known to be in the storage (m.Shared). A database
// is the node's own and is always served.
func (h *Handler) redirects(mutable bool, m store.Meta) bool {
	return h.presign != nil && !mutable && m.Shared
}

// redirected answers r with 307 to a presigned URL of t if redirects
// says so; false leaves r to be served from the tree.
func (h *Handler) redirected(w http.ResponseWriter, r *http.Request, t catalog.Target) bool {
	if h.presign == nil || t.Mutable() || cluster.FromPeer(r.Context()) {
		return false // a peer wants the bytes, to keep them
	}
	m, err := h.store.Stat(t.Rel)
	if err != nil || !h.redirects(false, m) {
		return false
	}
	u, err := h.presign.Presign(r.Context(), t.Rel, h.presignExpiry)
	if err != nil {
		h.log.Warn("presign", "file", t.Rel, "err", err)
		return false // served from the tree instead
	}
	h.store.Touch(t.Rel) // the local copy is still this node's cache of it
	h.counted(r, t, resultRedirected)
	h.requested(t, false)
	// The URL expires: no cache may keep the redirect longer than it.
	// No body (http.Redirect writes a line of HTML): pacman gives curl
	// the package's size as the largest file it takes, and curl applies
	// it to the redirect's Content-Length too, so a small package would
	// fail with "Maximum file size exceeded".
	hd := w.Header()
	hd.Set("Cache-Control", "private, max-age=0")
	hd.Set("Location", u.String())
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusTemporaryRedirect)
	return true
}
